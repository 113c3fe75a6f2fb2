"""Feature names: canonical snake_case names, Earth Engine and scikit-image aliases.

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
)

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
}

# Features that are expectations of a function of (i, j) under P: linear in P.
LINEAR_FEATURES = frozenset({"contrast", "dissimilarity", "homogeneity", "inverse_difference"})


def canonical_name(name: str) -> str:
    """Returns the canonical name of a feature given its name or an alias.

    Args:
      name: a canonical name (``"contrast"``), an Earth Engine band alias
        (``"savg"``) or a scikit-image prop name (``"ASM"``). Matching is exact
        first, then case-insensitive.

    Returns:
      The canonical snake_case name.

    Raises:
      ValueError: the name is unknown; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise ValueError(f"feature names must be strings, got {name!r}")
    key = name.strip()
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


def resolve_features(features: Union[str, Iterable[str]]) -> Tuple[str, ...]:
    """Resolves a feature list to canonical names, keeping the order requested.

    Args:
      features: one name, a comma-separated string, an iterable of names, or
        ``"all"`` for every feature in :data:`FEATURES`.

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
        name = canonical_name(item)
        if name not in out:
            out.append(name)
    return tuple(out)
