"""Texture properties of GLCMs: scikit-image's props and the full Haralick set."""

from __future__ import annotations

import functools
from typing import Iterable, Optional, Sequence, Union

import numpy as np
from keras import ops

from glcm._compile import jit_when_eager
from glcm.features import REGISTRY, check_convention, resolve_features

# Features Σ w(i - j) P(i, j), weights of (d = i - j, L) from the registry: one matrix
# product computes all of them.
LINEAR_WEIGHTS = {f.name: f.weight for f in REGISTRY if f.weight is not None}
LN2 = float(np.log(2.0))
# Smallest argument of a square root whose gradient is taken (float32's normal range
# starts at 1.2e-38; the root's derivative there is still finite).
TINY = 1e-30
# Marginal entropy below which imc1 of a soft matrix counts as one level's (0).
IMC_SINGLE_LEVEL = 1e-6


def entropy_of(q, axis):
    """-Σ q ln q over ``axis``, with 0 ln 0 = 0."""
    safe = ops.where(q > 0, q, 1.0)
    return -ops.sum(q * ops.log(safe), axis=axis)


class GLCMStatistics:
    """Statistics of GLCMs laid out (..., L, L), computed on first use and shared.

    Each feature of ``docs/features.md`` is a method. Quantities linear in P come
    from the raw counts (matrix products, scaled by 1 / total at the end); the
    normalized P is only built for the features that need it (entropies,
    mutual information, max_correlation).

    Args:
      counts: co-occurrence counts or normalized matrices (..., L, L).
      names: the features that will be asked for: the linear ones among them are
        computed together in one product. Default: all of them.
      convention: "skimage" (grey levels from 0, natural log: the default) or
        "ibsi" (grey levels from 1, log2 in entropies and in imc2).
      differentiable: square roots of values that can be 0 (energy, std,
        correlation's denominator, imc2) take the root of at least
        :data:`TINY`, so that their gradient stays finite (the soft layers); the
        values change only where the argument is below TINY.
    """

    def __init__(self, counts, names: Optional[Sequence[str]] = None,
                 convention: str = "skimage", differentiable: bool = False):
        self.differentiable = bool(differentiable)
        self.ibsi = check_convention(convention) == "ibsi"
        # IBSI counts grey levels from 1: the level-dependent averages shift by one.
        self.first_level = 1.0 if self.ibsi else 0.0
        # Entropies in bits under IBSI, nats otherwise.
        self.entropy_unit = LN2 if self.ibsi else 1.0
        self.counts = ops.cast(counts, "float32")
        self.levels = int(counts.shape[-1])
        index = np.arange(self.levels, dtype=np.float32)
        self.index = ops.convert_to_tensor(index)
        self.diff = index[:, None] - index[None, :]
        wanted = LINEAR_WEIGHTS if names is None else names
        self.linear_names = tuple(n for n in LINEAR_WEIGHTS if n in wanted)

    def _sqrt(self, x):
        return ops.sqrt(ops.maximum(x, TINY)) if self.differentiable else ops.sqrt(x)

    @functools.cached_property
    def total(self):
        return ops.sum(self.counts, axis=(-2, -1))

    @functools.cached_property
    def has_pairs(self):
        return self.total > 0

    @functools.cached_property
    def scale(self):
        """1 / total (1 where a matrix has no pair; its features are masked)."""
        return 1.0 / ops.where(self.has_pairs, self.total, 1.0)

    @functools.cached_property
    def P(self):
        """The normalized matrices (sum 1)."""
        return self.counts * self.scale[..., None, None]

    @functools.cached_property
    def linear(self):
        """{name: Σ_ij w(i - j) P(i, j)} for every linear feature asked for.

        One product of the flattened counts (M, L²) with the weight columns (L², k):
        on CPU, XLA's dot is faster than a fused multiply-and-sum.
        """
        names = self.linear_names or tuple(LINEAR_WEIGHTS)
        columns = np.stack([LINEAR_WEIGHTS[name](self.diff, self.levels).ravel()
                            for name in names], axis=1).astype(np.float32)
        flat = ops.reshape(self.counts, (-1, self.levels * self.levels))
        sums = ops.matmul(flat, ops.convert_to_tensor(columns))
        return {name: ops.reshape(sums[:, k], ops.shape(self.total)) * self.scale
                for k, name in enumerate(names)}

    @functools.cached_property
    def px(self):
        return ops.sum(self.counts, axis=-1) * self.scale[..., None]

    @functools.cached_property
    def py(self):
        return ops.sum(self.counts, axis=-2) * self.scale[..., None]

    @functools.cached_property
    def mu_x(self):
        return ops.sum(self.px * self.index, axis=-1)

    @functools.cached_property
    def mu_y(self):
        return ops.sum(self.py * self.index, axis=-1)

    @functools.cached_property
    def var_x(self):
        return ops.sum(self.px * ops.square(self.index - self.mu_x[..., None]), axis=-1)

    @functools.cached_property
    def var_y(self):
        return ops.sum(self.py * ops.square(self.index - self.mu_y[..., None]), axis=-1)

    @functools.cached_property
    def cov(self):
        """Σ_i (i - μx) Σ_j (j - μy) P(i, j).

        The inner sums are one batched matrix-vector product with the centred index
        (j - μy): centring before the product keeps float32's precision where the
        mean is large and the deviations small.
        """
        centred_y = self.index - self.mu_y[..., None]
        rows = ops.einsum("...ij,...j->...i", self.counts, centred_y)
        centred_x = self.index - self.mu_x[..., None]
        return ops.sum(centred_x * rows, axis=-1) * self.scale

    @functools.cached_property
    def single_level(self):
        """True where fewer than two grey levels occur in p_x or in p_y."""
        nx = ops.sum(ops.cast(self.px > 0, "int32"), axis=-1)
        ny = ops.sum(ops.cast(self.py > 0, "int32"), axis=-1)
        return ops.logical_or(nx < 2, ny < 2)

    @functools.cached_property
    def hxy(self):
        return entropy_of(self.P, (-2, -1))

    @functools.cached_property
    def hx(self):
        return entropy_of(self.px, -1)

    @functools.cached_property
    def hy(self):
        return entropy_of(self.py, -1)

    @functools.cached_property
    def p_sum(self):
        """p_{x+y}(k), k = 0..2L-2."""
        return anti_diagonal_sums(self.counts) * self.scale[..., None]

    @functools.cached_property
    def p_diff(self):
        """p_{x-y}(k) = Σ_{|i-j|=k} P, k = 0..L-1."""
        L = self.levels
        q = anti_diagonal_sums(ops.flip(self.counts, axis=-1))  # index i - j + L - 1
        q = q * self.scale[..., None]
        upper = q[..., L - 1:]
        lower = ops.flip(q[..., :L], axis=-1)  # index L-1-k -> k
        zero_first = ops.concatenate([ops.zeros_like(lower[..., :1]), lower[..., 1:]],
                                     axis=-1)
        return upper + zero_first

    @functools.cached_property
    def mutual_information(self):
        """HX + HY - HXY = Σ P ln(P / (p_x p_y)), summed directly: the difference of
        entropies would cancel catastrophically in float32 when it is small."""
        if self.differentiable:
            # ln P - ln p_x - ln p_y: a soft matrix has tiny entries whose p_x p_y
            # underflows, and the gradient of P / (p_x p_y) would be 0 x inf there;
            # P / p_x <= 1 keeps this one finite
            positive = self.P > 0
            logs = (ops.log(ops.where(positive, self.P, 1.0))
                    - ops.log(ops.where(self.px > 0, self.px, 1.0))[..., :, None]
                    - ops.log(ops.where(self.py > 0, self.py, 1.0))[..., None, :])
            terms = ops.where(positive, self.P * logs, 0.0)
            return ops.maximum(ops.sum(terms, axis=(-2, -1)), 0.0)
        outer = self.px[..., :, None] * self.py[..., None, :]
        positive = self.P > 0
        ratio = ops.where(positive, self.P, 1.0) / ops.where(positive, outer, 1.0)
        return ops.maximum(ops.sum(self.P * ops.log(ratio), axis=(-2, -1)), 0.0)

    # -- features ---------------------------------------------------------------
    def contrast(self):
        return self.linear["contrast"]

    def dissimilarity(self):
        return self.linear["dissimilarity"]

    def homogeneity(self):
        return self.linear["homogeneity"]

    def inverse_difference(self):
        return self.linear["inverse_difference"]

    def inverse_difference_normalized(self):
        return self.linear["inverse_difference_normalized"]

    def inverse_difference_moment_normalized(self):
        return self.linear["inverse_difference_moment_normalized"]

    def inverse_variance(self):
        return self.linear["inverse_variance"]

    def joint_max(self):
        return ops.max(self.counts, axis=(-2, -1)) * self.scale

    def autocorrelation(self):
        # Σ_i i Σ_j j P(i, j), row by row (one L² dot loses float32 precision);
        # IBSI's levels from 1: Σ (i+1)(j+1) P = Σ ij P + μx + μy + 1.
        rows = ops.einsum("...ij,j->...i", self.counts, self.index)
        value = ops.sum(rows * self.index, axis=-1) * self.scale
        if self.ibsi:
            value = value + self.mu_x + self.mu_y + 1.0
        return value

    def cluster_tendency(self):
        return self._sum_moment(2)

    @functools.cached_property
    def _asm(self):
        # Row by row, then over rows: one dot over the L² axis accumulates
        # sequentially on CPU and loses float32 precision at large L.
        rows = ops.einsum("...ij,...ij->...i", self.counts, self.counts)
        return ops.sum(rows, axis=-1) * ops.square(self.scale)

    def asm(self):
        return self._asm

    def energy(self):
        return self._sqrt(self._asm)

    def correlation(self):
        denom = self._sqrt(self.var_x * self.var_y)
        value = self.cov / ops.where(self.single_level, 1.0, denom)
        return ops.where(self.single_level, 1.0, value)

    def mean(self):
        return self.mu_x + self.first_level

    def variance(self):
        return self.var_x

    def std(self):
        return self._sqrt(self.var_x)

    def entropy(self):
        return self.hxy / self.entropy_unit

    def sum_average(self):
        return self.mu_x + self.mu_y + 2.0 * self.first_level

    def sum_variance(self):
        return self._sum_moment(2)

    def sum_entropy(self):
        return entropy_of(self.p_sum, -1) / self.entropy_unit

    def difference_variance(self):
        k = ops.arange(self.levels, dtype="float32")
        mu_d = ops.sum(k * self.p_diff, axis=-1)
        return ops.sum(ops.square(k - mu_d[..., None]) * self.p_diff, axis=-1)

    def difference_entropy(self):
        return entropy_of(self.p_diff, -1) / self.entropy_unit

    def imc1(self):
        # HXY1 = -Σ P ln(p_x p_y) = HX + HY exactly, so HXY - HXY1 = -(mutual information).
        hmax = ops.maximum(self.hx, self.hy)
        # Soft matrices leak a little weight into every level: below float32's
        # resolution of the entropies (as texture_map's count features), a matrix
        # counts as one level, where the ratio would be rounding over rounding.
        positive = hmax > (IMC_SINGLE_LEVEL if self.differentiable else 0.0)
        value = -self.mutual_information / ops.where(positive, hmax, 1.0)
        return ops.where(positive, value, 0.0)

    def imc2(self):
        # HXY2 = HX + HY as well: HXY2 - HXY is the mutual information (in bits under
        # IBSI); expm1 keeps precision where it is tiny.
        mutual = self.mutual_information / self.entropy_unit
        return self._sqrt(ops.maximum(-ops.expm1(-2.0 * mutual), 0.0))

    def max_correlation(self):
        # Q = D_x^-1 P D_y^-1 P^T is similar to A A^T with A = D_x^-1/2 P D_y^-1/2, so
        # the eigenvalues of Q are the squared singular values of A.
        sx = ops.sqrt(self.px)
        sy = ops.sqrt(self.py)
        A = self.P / (ops.where(sx > 0, sx, 1.0)[..., :, None]
                      * ops.where(sy > 0, sy, 1.0)[..., None, :])
        singular = ops.svd(A, compute_uv=False)
        singular = ops.flip(ops.sort(singular, axis=-1), axis=-1)
        second = ops.minimum(ops.maximum(singular[..., 1], 0.0), 1.0)
        return ops.where(self.single_level, 0.0, second)

    def cluster_shade(self):
        return self._sum_moment(3)

    def cluster_prominence(self):
        return self._sum_moment(4)

    def _sum_moment(self, power):
        # Over p_{x+y} (2L-1 terms, not L²): i + j - μx - μy = k - (μx + μy).
        k = ops.arange(2 * self.levels - 1, dtype="float32")
        centred = k - (self.mu_x + self.mu_y)[..., None]
        return ops.sum(centred ** power * self.p_sum, axis=-1)

    def feature(self, name: str):
        """The feature with canonical name ``name``."""
        return getattr(self, name)()


def anti_diagonal_sums(P):
    """Σ_{i+j=k} P(i, j) for k = 0..2L-2 over the last two axes.

    Padding every row with L zeros and reading the flat result in rows of 2L-1
    puts P(i, j) at column i + j (no gather).
    """
    L = int(P.shape[-1])
    lead = ops.shape(P)[:-2]
    flat = ops.reshape(P, (-1, L, L))
    padded = ops.pad(flat, [[0, 0], [0, 0], [0, L]])
    skew = ops.reshape(padded, (-1, 2 * L * L))[:, :L * (2 * L - 1)]
    skew = ops.reshape(skew, (-1, L, 2 * L - 1))
    return ops.reshape(ops.sum(skew, axis=1), tuple(lead) + (2 * L - 1,))


def nanmean(values, axis):
    """Mean over ``axis`` ignoring NaN; NaN where every value is NaN (averaging
    features over the offsets that have at least one valid pair)."""
    finite = ops.logical_not(ops.isnan(values))
    total = ops.sum(ops.where(finite, values, 0.0), axis=axis)
    count = ops.sum(ops.cast(finite, "float32"), axis=axis)
    return ops.where(count > 0, total / ops.maximum(count, 1.0), float("nan"))


def features_from_glcm(P, features: Iterable[str], convention: str = "skimage",
                       differentiable: bool = False):
    """Features of (..., L, L) GLCMs (not necessarily normalized).

    ``differentiable``: see :class:`GLCMStatistics`.

    Returns:
      float32 (..., n_features); NaN where a matrix has no pair.
    """
    return _features_from_glcm(P, names=resolve_features(features, convention),
                               convention=convention, differentiable=bool(differentiable))


@jit_when_eager
def _features_from_glcm(P, *, names, convention="skimage", differentiable=False):
    stats = GLCMStatistics(P, names, convention, differentiable)
    values = ops.stack([stats.feature(n) for n in names], axis=-1)
    return ops.where(stats.has_pairs[..., None], values, float("nan"))


@jit_when_eager
def _graycoprops(P, *, names, convention):
    # The transpose runs inside the compiled function: eagerly it is a separate
    # full copy of P.
    moved = ops.transpose(P, (0, 3, 4, 1, 2))  # (batch, D, A, L, L)
    return _features_from_glcm(moved, names=names, convention=convention)


def graycoprops(P, prop: Union[str, Sequence[str]] = "contrast", convention="skimage"):
    """Texture properties of GLCMs, batched.

    Every scikit-image prop name gives scikit-image's value wherever the GLCM has at
    least one pair; the full Haralick / Earth Engine set is available too. With
    ``P`` normalized to sum 1, marginals p_x, p_y, means μ, deviations σ:

    - contrast Σ(i-j)²P, dissimilarity Σ|i-j|P, homogeneity ΣP/(1+(i-j)²),
      inverse_difference ΣP/(1+|i-j|), asm ΣP², energy √asm
    - correlation Σ(i-μx)(j-μy)P/(σxσy) (1 where fewer than two levels occur)
    - mean μx, variance σx², std σx, entropy -ΣP ln P
    - sum_average, sum_variance, sum_entropy of p_{x+y}; difference_variance,
      difference_entropy of p_{x-y}
    - imc1 (HXY-HXY1)/max(HX,HY), imc2 √(1-exp(-2(HXY2-HXY))), max_correlation √λ₂(Q)
    - cluster_shade Σ(i+j-μx-μy)³P, cluster_prominence Σ(i+j-μx-μy)⁴P,
      cluster_tendency Σ(i+j-μx-μy)²P
    - joint_max max P, autocorrelation Σ ij P, inverse_variance Σ_{i≠j} P/(i-j)²,
      inverse_difference_normalized ΣP/(1+|i-j|/L),
      inverse_difference_moment_normalized ΣP/(1+(i-j)²/L²)

    ``docs/features.md`` gives every definition, the edge cases and the references
    each feature is tested against.

    Parameters
    ----------
    P : array (batch, L, L, n_distances, n_angles), or (L, L, n_distances, n_angles)
        Co-occurrence counts or normalized matrices (each is normalized here).
    prop : str or sequence of str
        A canonical name, an Earth Engine alias, a scikit-image name (``"ASM"``) or
        an IBSI name (``"joint_avg"``).
    convention : {"skimage", "ibsi"}
        ``"skimage"`` (default): grey levels from 0, natural log, scikit-image's
        values. ``"ibsi"``: the Image Biomarker Standardisation Initiative's
        definitions: grey levels from 1 (mean, sum_average and autocorrelation
        shift), log2 in the entropies and in imc2, and IBSI's names first (its
        ``energy`` is Σ P², our asm).

    Returns
    -------
    float32 (batch, n_distances, n_angles) for one prop, with a trailing
    n_features axis for a sequence; without the batch axis for a 4-D ``P``.
    NaN where a GLCM is all zero (no pair).

    References
    ----------
    .. [1] R. M. Haralick, K. Shanmugam, I. Dinstein, "Textural Features for Image
           Classification", IEEE Trans. SMC-3(6), 1973.
    .. [2] R. W. Conners, M. M. Trivedi, C. A. Harlow, "Segmentation of a
           high-resolution urban scene using texture operators", CVGIP 25, 1984.
    .. [3] A. Zwanenburg et al., "The Image Biomarker Standardization Initiative",
           Radiology 295(2), 2020 (IBSI-1 reference manual, GLCM features).

    Examples
    --------
    >>> import numpy as np, glcm
    >>> image = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 2], [2, 2, 3, 3]])
    >>> P = glcm.graycomatrix(image[None], [1], [0], levels=4)
    >>> np.round(np.asarray(glcm.graycoprops(P, "contrast")), 4)
    array([[[0.5833]]], dtype=float32)
    >>> tuple(glcm.graycoprops(P, ["savg", "entropy"]).shape)
    (1, 1, 1, 2)
    """
    P = ops.convert_to_tensor(P)
    single_image = len(P.shape) == 4
    if single_image:
        P = P[None]
    if len(P.shape) != 5 or P.shape[1] != P.shape[2]:
        raise ValueError(
            f"P must have shape (batch, L, L, n_distances, n_angles), got {tuple(P.shape)}")
    names = [prop] if isinstance(prop, str) else list(prop)
    if not names:
        raise ValueError("prop is empty: name at least one feature")
    values = _graycoprops(P, names=resolve_features(names, convention),
                          convention=convention)
    if isinstance(prop, str):
        values = values[..., 0]
    return values[0] if single_image else values
