"""The feature registry: every feature declared once (:data:`REGISTRY`), with its
canonical snake_case name, its Earth Engine, scikit-image and IBSI aliases, how
``texture_map`` computes it and what else the package needs to know of it. The
names, aliases and per-mechanism lists everywhere else derive from it.

The definitions, edge cases and references are in ``docs/features.md``.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

import numpy as np

# How texture_map computes a feature (glcm.texture): window sums of per-anchor maps,
# key histograms kept up to date as the window slides, or each window's pairs
# gathered.
BOX_SUMS, SLIDING_HISTOGRAMS, GATHERED_WINDOWS = (
    "box_sums", "sliding_histograms", "gathered_windows")


@dataclasses.dataclass(frozen=True)
class Feature:
    """Everything the package knows about one feature, declared once.

    Attributes:
      name: the canonical snake_case name.
      aliases: Earth Engine band names and scikit-image prop names that mean it.
      ibsi: IBSI-1's names for it (looked up first under ``convention="ibsi"``).
      mechanism: how :func:`glcm.texture_map` computes it (:data:`BOX_SUMS`,
        :data:`SLIDING_HISTOGRAMS` or :data:`GATHERED_WINDOWS`).
      histograms: for sliding histograms, the key histograms it needs: ``joint``
        (pair keys), ``sum`` (i + j), ``diff`` (|i - j|), ``x`` (grey levels).
      float64: computed from float64 box sums of integer powers; where the backend
        has no float64, by gathered windows instead.
      weight: for features Σ w(i - j) P(i, j): ``w(d, L)`` on the level differences
        (graycoprops computes all of them in one matrix product).
      not_smooth: why a soft (differentiable) layer cannot offer it; None if it can.
    """

    name: str
    aliases: Tuple[str, ...] = ()
    ibsi: Tuple[str, ...] = ()
    mechanism: str = BOX_SUMS
    histograms: Tuple[str, ...] = ()
    float64: bool = False
    weight: Optional[Callable] = dataclasses.field(default=None, compare=False)
    not_smooth: Optional[str] = None


# The registry, in the order used when "all" features are requested. Adding a feature:
# one entry here, plus its formula in GLCMStatistics (graycoprops) and in the class of
# its mechanism (texture_map).
REGISTRY: Tuple[Feature, ...] = (
    Feature("contrast", ("inertia",), ("contrast",), weight=lambda d, L: d ** 2),
    Feature("dissimilarity", ("diss",), ("dissimilarity", "diff_avg"),
            weight=lambda d, L: np.abs(d)),
    Feature("homogeneity", ("idm",), ("inv_diff_mom",),
            weight=lambda d, L: 1.0 / (1.0 + d ** 2)),
    Feature("inverse_difference", (), ("inv_diff",),
            weight=lambda d, L: 1.0 / (1.0 + np.abs(d))),
    Feature("asm", ("ASM",), ("energy",), SLIDING_HISTOGRAMS, ("joint",)),
    Feature("energy", (), (), SLIDING_HISTOGRAMS, ("joint",)),
    Feature("correlation", ("corr",), ("corr",)),
    Feature("mean", (), ("joint_avg",)),
    Feature("variance", ("var",), ("joint_var",)),
    Feature("std"),
    Feature("entropy", ("ent",), ("joint_entr",), SLIDING_HISTOGRAMS, ("joint",)),
    Feature("sum_average", ("savg",), ("sum_avg",)),
    Feature("sum_variance", ("svar",), ("sum_var",)),
    Feature("sum_entropy", ("sent",), ("sum_entr",), SLIDING_HISTOGRAMS, ("sum",)),
    Feature("difference_variance", ("dvar",), ("diff_var",), float64=True),
    Feature("difference_entropy", ("dent",), ("diff_entr",), SLIDING_HISTOGRAMS,
            ("diff",)),
    Feature("imc1", ("imcorr1",), ("info_corr1",), SLIDING_HISTOGRAMS, ("joint", "x")),
    Feature("imc2", ("imcorr2",), ("info_corr2",), SLIDING_HISTOGRAMS, ("joint", "x")),
    Feature("max_correlation", ("maxcorr",), (), GATHERED_WINDOWS,
            not_smooth="the second singular value of a normalized matrix: it has no "
                       "gradient where singular values coincide, and the SVD's "
                       "gradient is unstable near there"),
    Feature("cluster_shade", ("shade",), ("clust_shade",), float64=True),
    Feature("cluster_prominence", ("prom",), ("clust_prom",), float64=True),
    Feature("joint_max", (), ("joint_max",), GATHERED_WINDOWS,
            not_smooth="the largest entry of the matrix: its gradient reaches one cell "
                       "only and jumps from cell to cell"),
    Feature("autocorrelation", (), ("auto_corr",)),
    Feature("cluster_tendency", (), ("clust_tend",)),
    Feature("inverse_difference_normalized", (), ("inv_diff_norm",),
            weight=lambda d, L: 1.0 / (1.0 + np.abs(d) / L)),
    Feature("inverse_difference_moment_normalized", (), ("inv_diff_mom_norm",),
            weight=lambda d, L: 1.0 / (1.0 + (d / L) ** 2)),
    Feature("inverse_variance", (), ("inv_var",),
            weight=lambda d, L: np.where(d != 0, 1.0 / np.where(d != 0, d, 1) ** 2, 0.0)),
)
BY_NAME: Dict[str, Feature] = {f.name: f for f in REGISTRY}

# Canonical names, in the order used when "all" features are requested.
FEATURES: Tuple[str, ...] = tuple(BY_NAME)

CONVENTIONS = ("skimage", "ibsi")

# IBSI-1's feature names (its GLCM section) for our canonical names. Under
# convention="ibsi" these are looked up first: IBSI's "energy" is Σ P² (our asm),
# while scikit-image's energy, our default, is √(Σ P²).
IBSI_NAMES: Dict[str, str] = {ibsi: f.name for f in REGISTRY for ibsi in f.ibsi}

# Earth Engine band names, scikit-image prop names, and the IBSI names that mean the
# same under every convention (not those that are canonical names of other features,
# such as "energy").
ALIASES: Dict[str, str] = {
    **{alias: f.name for f in REGISTRY for alias in f.aliases},
    **{ibsi: f.name for f in REGISTRY for ibsi in f.ibsi if ibsi not in BY_NAME},
}


def names_by(predicate) -> Tuple[str, ...]:
    """Canonical names of the features for which ``predicate(Feature)`` holds."""
    return tuple(f.name for f in REGISTRY if predicate(f))


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
      ValueError: the name is unknown; the message suggests the closest name or
        alias and lists the canonical names.
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
    known = list(FEATURES) + list(ALIASES)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6) or \
        difflib.get_close_matches(lower, [k.lower() for k in known], n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown GLCM feature {name!r}; {hint}Valid names: "
                     f"{', '.join(FEATURES)} (Earth Engine, scikit-image and IBSI aliases "
                     f"such as 'savg' or 'ASM' work too)")


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
