"""Feature names: canonical snake_case names; Earth Engine, scikit-image and IBSI
aliases.

The definitions, edge cases and references are in ``docs/features.md``.
"""

from __future__ import annotations

from typing import Iterable, Sequence, Tuple, Union

# Canonical names, in the order used when "all" features are requested.
FEATURES: Tuple[str, ...] = (
    "contrast",
    "dissimilarity",
    "homogeneity",
    "inverse_difference",
    "asm",
    "energy",
    "correlation",
    "mean",
    "variance",
    "std",
    "entropy",
    "sum_average",
    "sum_variance",
    "sum_entropy",
    "difference_variance",
    "difference_entropy",
    "imc1",
    "imc2",
    "max_correlation",
    "cluster_shade",
    "cluster_prominence",
    "joint_max",
    "autocorrelation",
    "cluster_tendency",
    "inverse_difference_normalized",
    "inverse_difference_moment_normalized",
    "inverse_variance",
)

CONVENTIONS = ("skimage", "ibsi")

# IBSI-1's feature names (its GLCM section) for our canonical names. Under
# convention="ibsi" these are looked up first: IBSI's "energy" is Σ P² (our asm),
# while scikit-image's energy, our default, is √(Σ P²).
IBSI_NAMES = {
    "joint_max": "joint_max",
    "joint_avg": "mean",
    "joint_var": "variance",
    "joint_entr": "entropy",
    "diff_avg": "dissimilarity",
    "diff_var": "difference_variance",
    "diff_entr": "difference_entropy",
    "sum_avg": "sum_average",
    "sum_var": "sum_variance",
    "sum_entr": "sum_entropy",
    "energy": "asm",
    "contrast": "contrast",
    "dissimilarity": "dissimilarity",
    "inv_diff": "inverse_difference",
    "inv_diff_norm": "inverse_difference_normalized",
    "inv_diff_mom": "homogeneity",
    "inv_diff_mom_norm": "inverse_difference_moment_normalized",
    "inv_var": "inverse_variance",
    "corr": "correlation",
    "auto_corr": "autocorrelation",
    "clust_tend": "cluster_tendency",
    "clust_shade": "cluster_shade",
    "clust_prom": "cluster_prominence",
    "info_corr1": "imc1",
    "info_corr2": "imc2",
}

# Earth Engine band names and scikit-image prop names that differ from ours.
ALIASES = {
    "inertia": "contrast",
    "diss": "dissimilarity",
    "idm": "homogeneity",
    "ASM": "asm",
    "corr": "correlation",
    "var": "variance",
    "ent": "entropy",
    "savg": "sum_average",
    "svar": "sum_variance",
    "sent": "sum_entropy",
    "dvar": "difference_variance",
    "dent": "difference_entropy",
    "imcorr1": "imc1",
    "imcorr2": "imc2",
    "maxcorr": "max_correlation",
    "shade": "cluster_shade",
    "prom": "cluster_prominence",
    # IBSI names that mean the same under every convention ("energy" does not)
    **{name: target for name, target in IBSI_NAMES.items()
       if name not in ("energy", "contrast", "dissimilarity", "joint_max")},
}

# Features that are expectations of a function of (i, j) under P: linear in P.
LINEAR_FEATURES = frozenset({"contrast", "dissimilarity", "homogeneity", "inverse_difference"})


def check_convention(convention: str) -> str:
    """Returns ``convention`` if it is one of CONVENTIONS, else raises ValueError."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}, got "
                         f"{convention!r}")
    return convention


def canonical_name(name: str, convention: str = "skimage") -> str:
    """Returns the canonical name of a feature given its name or an alias.

    Args:
      name: a canonical name (``"contrast"``), an Earth Engine band alias
        (``"savg"``), a scikit-image prop name (``"ASM"``) or an IBSI name
        (``"joint_avg"``). Matching is exact first, then case-insensitive.
      convention: ``"ibsi"`` looks IBSI's names up first, so that its ``energy``
        means Σ P² (:func:`glcm.graycoprops` then also uses IBSI's definitions).

    Returns:
      The canonical snake_case name.

    Raises:
      ValueError: the name is unknown; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise ValueError(f"feature names must be strings, got {name!r}")
    key = name.strip()
    if check_convention(convention) == "ibsi" and key in IBSI_NAMES:
        return IBSI_NAMES[key]
    if key in FEATURES:
        return key
    if key in ALIASES:
        return ALIASES[key]
    lower = key.lower()
    if lower in FEATURES:
        return lower
    for alias, target in ALIASES.items():
        if alias.lower() == lower:
            return target
    raise ValueError(
        f"unknown GLCM feature {name!r}. Valid names: {', '.join(FEATURES)}; "
        f"aliases: {', '.join(f'{a}->{t}' for a, t in ALIASES.items())}"
    )


def resolve_features(features: Union[str, Iterable[str]],
                     convention: str = "skimage") -> Tuple[str, ...]:
    """Resolves a feature list to canonical names, keeping the order requested.

    Args:
      features: one name, a comma-separated string, an iterable of names, or
        ``"all"`` for every feature in :data:`FEATURES`.
      convention: as :func:`canonical_name`.

    Returns:
      A tuple of canonical names, without duplicates, in the order requested.

    Raises:
      ValueError: the list is empty or holds an unknown name.
    """
    if isinstance(features, str):
        if features.strip().lower() == "all":
            return FEATURES
        items: Sequence[str] = [f for f in features.split(",") if f.strip()]
    else:
        items = list(features)
    if not items:
        raise ValueError(
            f"no features requested; choose from: {', '.join(FEATURES)}")
    out = []
    for item in items:
        name = canonical_name(item, convention)
        if name not in out:
            out.append(name)
    return tuple(out)
