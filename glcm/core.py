"""Batched GLCM: quantize, graycomatrix and graycoprops with scikit-image's conventions.

Everything here is written with ``keras.ops`` so it runs on the TensorFlow and the
JAX backends, eagerly or traced (``tf.function``, ``jax.jit``).
"""

from __future__ import annotations

from typing import Dict, Iterable, Sequence, Union

import numpy as np
from keras import ops

from glcm._compile import jit_when_eager
from glcm._checks import (DEFAULT_ANGLES, check_angles, check_distances, check_levels,
                          concrete_numpy, pixel_offsets)
from glcm.features import canonical_name, resolve_features


# --------------------------------------------------------------------------- inputs
def as_image_batch(images, name: str = "images"):
    """Returns ``images`` as a (batch, H, W) tensor; (batch, H, W, 1) is squeezed."""
    images = ops.convert_to_tensor(images)
    shape = tuple(images.shape)
    if len(shape) == 4 and shape[-1] == 1:
        images = ops.squeeze(images, axis=-1)
    elif len(shape) != 3:
        raise ValueError(
            f"{name} must have shape (batch, H, W) or (batch, H, W, 1), got {shape}; "
            f"for a single image use image[None]")
    return images


def as_mask_batch(mask, images_shape, name: str = "mask"):
    """Returns ``mask`` as a boolean (batch, H, W) tensor matching the images."""
    mask = ops.convert_to_tensor(mask)
    shape = tuple(mask.shape)
    if len(shape) == 4 and shape[-1] == 1:
        mask = ops.squeeze(mask, axis=-1)
        shape = shape[:-1]
    if len(shape) != 3 or any(
            a is not None and b is not None and a != b for a, b in zip(shape, images_shape)):
        raise ValueError(
            f"{name} must have the images' shape {tuple(images_shape)}, got {shape}")
    if mask.dtype != "bool":
        mask = ops.not_equal(mask, 0)
    return mask


def check_level_values(images, levels: int, mask=None, name: str = "images"):
    """Raises a ValueError for values outside [0, levels) or non-integer values.

    Runs only when the values are known (eagerly); while tracing nothing can be
    checked and such pixels are treated as invalid, as scikit-image's inner loop
    skips them.
    """
    values = concrete_numpy(images)
    if values is None:
        return
    if np.issubdtype(values.dtype, np.integer):
        info = np.iinfo(values.dtype)
        if info.min >= 0 and info.max < levels:
            return  # e.g. uint8 with 256 levels: every value the dtype holds is a level
    valid = np.ones(values.shape, bool) if mask is None else concrete_numpy(mask)
    if valid is not None:
        _check_level_values(values, valid, levels, name)


def levels_or_invalid(images, levels: int, mask=None, invalid: int = -1):
    """Casts (batch, H, W) grey levels to int32, with ``invalid`` where a pixel is
    masked or outside [0, levels)."""
    if "float" in str(images.dtype):
        images = ops.floor(images)
    codes = ops.cast(images, "int32")
    ok = ops.logical_and(ops.greater_equal(codes, 0), ops.less(codes, levels))
    if mask is not None:
        ok = ops.logical_and(ok, mask)
    return ops.where(ok, codes, invalid)


def _check_level_values(values: np.ndarray, valid: np.ndarray, levels: int, name: str):
    if np.issubdtype(values.dtype, np.floating):
        bad_float = valid & (values != np.floor(values))
        if bad_float.any():
            raise ValueError(
                f"{name} holds {int(bad_float.sum())} non-integer values (first at "
                f"(batch, row, col) {tuple(int(i) for i in np.argwhere(bad_float)[0])}); "
                f"quantize first: glcm.quantize(x, levels={levels}, vmin=..., vmax=...)")
    if values.size == 0 or not valid.any():
        return
    if values.min() >= 0 and values.max() < levels:
        return
    bad = valid & ((values < 0) | (values >= levels))
    if bad.any():
        raise ValueError(
            f"{name} holds {int(bad.sum())} values outside [0, {levels}) "
            f"(min {values[valid].min()}, max {values[valid].max()}, first at "
            f"(batch, row, col) {tuple(int(i) for i in np.argwhere(bad)[0])}); "
            f"quantize first: glcm.quantize(x, levels={levels}, vmin=..., vmax=...), "
            f"or raise levels")


def neighbours(codes, offsets: np.ndarray, fill: int = -1):
    """Neighbour values for every offset, without wrap-around.

    Args:
      codes: int32 (batch, H, W), -1 marks invalid pixels.
      offsets: int (K, 2) array of (row, col) offsets.

    Returns:
      int32 (batch, K, H * W): ``codes[b, r + dr, c + dc]``, or ``fill`` where that falls
      outside the image. One gather for all offsets (no Python loop over them).
    """
    pad = int(np.abs(offsets).max()) if len(offsets) else 0
    shape = ops.shape(codes)
    height, width = shape[1], shape[2]
    padded = ops.pad(codes, [[0, 0], [pad, pad], [pad, pad]], constant_values=fill)
    padded_width = width + 2 * pad
    flat = ops.reshape(padded, (shape[0], -1))
    rows = ops.arange(height, dtype="int32") + pad
    cols = ops.arange(width, dtype="int32") + pad
    base = ops.reshape(rows[:, None] * padded_width + cols[None, :], (1, -1))
    row_shift = ops.convert_to_tensor(offsets[:, :1].astype("int32"))
    col_shift = ops.convert_to_tensor(offsets[:, 1:].astype("int32"))
    shift = row_shift * padded_width + col_shift
    return ops.take(flat, base + shift, axis=1)


def checked_inputs(images, mask, levels, distances, angles):
    """Validates the arguments shared by graycomatrix and texture_map.

    Returns:
      (images (batch, H, W), mask or None, levels, distances, angles, offsets) with
      offsets a hashable tuple of (row, col) pairs in (distance, angle) order.
    """
    levels = check_levels(levels)
    distances = check_distances(distances)
    angles = check_angles(angles)
    images = as_image_batch(images)
    if mask is not None:
        mask = as_mask_batch(mask, tuple(images.shape))
    check_level_values(images, levels, mask)
    offsets = tuple(map(tuple, pixel_offsets(distances, angles).tolist()))
    return images, mask, levels, distances, angles, offsets


# ------------------------------------------------------------------------- quantize
def quantize(x, levels: int, vmin, vmax, mask=None):
    """Quantizes values into ``levels`` grey levels.

    .. math:: q = \\mathrm{clip}(\\lfloor (x - v_{min}) / (v_{max} - v_{min})
              \\cdot L \\rfloor, 0, L - 1)

    Parameters
    ----------
    x : array
        Any shape, integer or float.
    levels : int
        Number of grey levels L (>= 2).
    vmin, vmax : float or array broadcastable to ``x``
        Value range mapped onto the levels; values outside are clipped.
    mask : bool array, optional
        False marks pixels to ignore (e.g. nodata).

    Returns
    -------
    (q, valid) : (int32 array, bool array)
        ``q`` is 0 where ``valid`` is False. NaN, +-inf and masked pixels are invalid.

    Notes
    -----
    The arithmetic is float32, as the rest of the package: a value within about 1e-7
    relative of a level boundary may fall on either side of it.
    """
    levels = check_levels(levels)
    lo, hi = concrete_numpy(vmin), concrete_numpy(vmax)
    if lo is not None and hi is not None:
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError(f"vmin and vmax must be finite, got {vmin!r}, {vmax!r}")
        if np.any(np.asarray(hi) <= np.asarray(lo)):
            raise ValueError(
                f"vmax must be greater than vmin (got vmin={vmin!r}, vmax={vmax!r}); "
                f"for a constant image use any range around its value, e.g. vmax=vmin+1")
    x = ops.cast(ops.convert_to_tensor(x), "float32")
    vmin = ops.cast(vmin, "float32")
    vmax = ops.cast(vmax, "float32")
    valid = ops.isfinite(x)
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
        if mask.dtype != "bool":
            mask = ops.not_equal(mask, 0)
        valid = ops.logical_and(valid, mask)
    scaled = ops.floor((x - vmin) / (vmax - vmin) * float(levels))
    scaled = ops.where(valid, scaled, 0.0)
    q = ops.cast(ops.clip(scaled, 0.0, float(levels - 1)), "int32")
    return q, valid


# ---------------------------------------------------------------------- graycomatrix
def graycomatrix(images, distances, angles=DEFAULT_ANGLES, levels=256, symmetric=False,
                 normed=False, mask=None):
    """Grey-level co-occurrence matrices of a batch of images.

    Equal to stacking ``skimage.feature.graycomatrix`` over the batch. For distance d
    and angle θ the pair is (image[r, c], image[r + round(d sin θ), c + round(d cos θ)]):
    θ=0 pairs a pixel with its right neighbour, θ=π/2 with the one below it. Pairs
    that leave the image are not counted (no wrap-around).

    Parameters
    ----------
    images : int array (batch, H, W) or (batch, H, W, 1)
        Grey levels in [0, levels). Use :func:`quantize` for other data.
    distances : sequence of int
        Pixel pair distances (>= 1).
    angles : sequence of float
        Angles in radians (scikit-image's convention; any real angle).
    levels : int
        Number of grey levels.
    symmetric : bool
        If True, P(i, j) + P(j, i) is returned (both orders counted).
    normed : bool
        If True, every matrix is divided by its sum (an all-zero matrix stays zero,
        as scikit-image).
    mask : bool array (batch, H, W), optional
        A pair counts only if both pixels are True.

    Returns
    -------
    P : (batch, levels, levels, n_distances, n_angles)
        int32 counts, or float32 when ``normed``.

    Raises
    ------
    ValueError
        Wrong rank, ``levels`` < 2, empty distances/angles, values outside
        [0, levels) (checked when the values are known, i.e. not while tracing).
    """
    images, mask, levels, distances, angles, offsets = checked_inputs(
        images, mask, levels, distances, angles)
    return _cooccurrence(images, mask, offsets=offsets, grid=(len(distances), len(angles)),
                         levels=levels, symmetric=bool(symmetric), normed=bool(normed))


@jit_when_eager
def _cooccurrence(images, mask, *, offsets, grid, levels, symmetric, normed):
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    n_offsets = len(offsets)
    # Invalid pixels (masked, out of range, outside the image) become the extra
    # level L: every pair code stays in range, and the extra row/column is dropped.
    codes = levels_or_invalid(images, levels, mask, invalid=levels)
    batch = ops.shape(codes)[0]
    side = levels + 1
    offset_base = ops.arange(n_offsets, dtype="int32")[None, :, None] * (side * side)
    first = ops.reshape(codes, (batch, 1, -1)) * side + offset_base
    pair_code = first + neighbours(codes, offsets, fill=levels)
    n_bins = n_offsets * side * side
    # One flat segment-sum for the whole batch (jit-able on every backend, unlike
    # keras.ops.bincount, which loops over the batch on JAX and is not XLA-compilable).
    batch_base = ops.arange(batch, dtype="int32")[:, None, None] * n_bins
    pair_code = ops.reshape(pair_code + batch_base, (-1,))
    counts = ops.segment_sum(ops.ones_like(pair_code), pair_code,
                             num_segments=batch * n_bins)
    counts = ops.reshape(counts, (batch,) + tuple(grid) + (side, side))
    P = counts[:, :, :, :levels, :levels]
    P = ops.transpose(P, (0, 3, 4, 1, 2))
    if symmetric:
        P = P + ops.transpose(P, (0, 2, 1, 3, 4))
    if normed:
        P = ops.cast(P, "float32")
        total = ops.sum(P, axis=(1, 2), keepdims=True)
        P = P / ops.where(total > 0, total, 1.0)
    return P


# ----------------------------------------------------------------------- graycoprops
class GLCMStatistics:
    """Lazily computed statistics of GLCMs laid out (..., L, L).

    Each feature of FEATURES.md is a method; intermediates (marginals, means,
    entropies, sum/difference distributions) are computed once and shared.

    Features linear in P are computed from the raw counts with matrix products and
    scaled by 1 / total afterwards: on CPU, XLA runs a dot over the L² axis about
    three times faster than the fused multiply-and-sum, and the normalized matrix
    is then only built for the features that need it (entropies, max_correlation).
    """

    def __init__(self, counts):
        self.counts = ops.cast(counts, "float32")
        self.levels = int(counts.shape[-1])
        self._cache: Dict[str, object] = {}
        L = self.levels
        index = np.arange(L, dtype=np.float32)
        self.index = ops.convert_to_tensor(index)
        self.diff = index[:, None] - index[None, :]

    def _get(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def total(self):
        return self._get("total", lambda: ops.sum(self.counts, axis=(-2, -1)))

    @property
    def has_pairs(self):
        return self.total > 0

    @property
    def scale(self):
        """1 / total (1 where a matrix has no pair, whose features are masked)."""
        return self._get("scale", lambda: 1.0 / ops.where(self.has_pairs, self.total, 1.0))

    @property
    def P(self):
        """The normalized matrices (sum 1)."""
        return self._get("P", lambda: self.counts * self.scale[..., None, None])

    def _flat_counts(self):
        return ops.reshape(self.counts, (-1, self.levels * self.levels))

    # Features Σ w(i - j) P(i, j): computed together by :meth:`linear`.
    LINEAR_WEIGHTS = {
        "contrast": lambda d: d ** 2,
        "dissimilarity": np.abs,
        "homogeneity": lambda d: 1.0 / (1.0 + d ** 2),
        "inverse_difference": lambda d: 1.0 / (1.0 + np.abs(d)),
    }

    def linear(self, names: Sequence[str]):
        """Σ_ij w(i - j) P(i, j) for several of :attr:`LINEAR_WEIGHTS` at once.

        One matrix product of the flattened counts (M, L²) with the weight columns
        (L², k): a single pass over the matrices for all k features.
        """
        missing = [name for name in dict.fromkeys(names) if name not in self._cache]
        if missing:
            columns = np.stack([self.LINEAR_WEIGHTS[name](self.diff).ravel()
                                for name in missing], axis=1).astype(np.float32)
            sums = ops.matmul(self._flat_counts(), ops.convert_to_tensor(columns))
            for k, name in enumerate(missing):
                self._cache[name] = ops.reshape(sums[:, k], ops.shape(self.total)) * self.scale
        return [self._cache[name] for name in names]

    @property
    def px(self):
        return self._get("px", lambda: ops.sum(self.counts, axis=-1)
                         * self.scale[..., None])

    @property
    def py(self):
        return self._get("py", lambda: ops.sum(self.counts, axis=-2)
                         * self.scale[..., None])

    @property
    def mu_x(self):
        return self._get("mu_x", lambda: ops.sum(self.px * self.index, axis=-1))

    @property
    def mu_y(self):
        return self._get("mu_y", lambda: ops.sum(self.py * self.index, axis=-1))

    @property
    def var_x(self):
        return self._get("var_x", lambda: ops.sum(
            self.px * ops.square(self.index - self.mu_x[..., None]), axis=-1))

    @property
    def var_y(self):
        return self._get("var_y", lambda: ops.sum(
            self.py * ops.square(self.index - self.mu_y[..., None]), axis=-1))

    @property
    def cov(self):
        """Σ_i (i - μx) Σ_j (j - μy) P(i, j).

        The inner sums are one batched matrix-vector product with the centred index
        (j - μy) of each matrix: centring before the product keeps float32's
        precision where the mean is large and the deviations small.
        """
        def fn():
            centred_y = self.index - self.mu_y[..., None]
            rows = ops.einsum("...ij,...j->...i", self.counts, centred_y)
            centred_x = self.index - self.mu_x[..., None]
            return ops.sum(centred_x * rows, axis=-1) * self.scale
        return self._get("cov", fn)

    @property
    def single_level(self):
        """True where fewer than two grey levels occur in p_x or in p_y."""
        def fn():
            nx = ops.sum(ops.cast(self.px > 0, "int32"), axis=-1)
            ny = ops.sum(ops.cast(self.py > 0, "int32"), axis=-1)
            return ops.logical_or(nx < 2, ny < 2)
        return self._get("single_level", fn)

    @staticmethod
    def entropy_of(q, axis):
        safe = ops.where(q > 0, q, 1.0)
        return -ops.sum(q * ops.log(safe), axis=axis)

    @property
    def hxy(self):
        return self._get("hxy", lambda: self.entropy_of(self.P, (-2, -1)))

    @property
    def hx(self):
        return self._get("hx", lambda: self.entropy_of(self.px, -1))

    @property
    def hy(self):
        return self._get("hy", lambda: self.entropy_of(self.py, -1))

    @property
    def p_sum(self):
        """p_{x+y}(k), k = 0..2L-2, by the pad-and-reshape skew (no gather)."""
        def fn():
            return _anti_diagonal_sums(self.counts) * self.scale[..., None]
        return self._get("p_sum", fn)

    @property
    def p_diff(self):
        """p_{x-y}(k) = Σ_{|i-j|=k} P, k = 0..L-1."""
        def fn():
            L = self.levels
            q = _anti_diagonal_sums(ops.flip(self.counts, axis=-1))  # index i - j + L - 1
            q = q * self.scale[..., None]
            upper = q[..., L - 1:]
            lower = ops.flip(q[..., :L], axis=-1)  # index L-1-k -> k
            zero_first = ops.concatenate(
                [ops.zeros_like(lower[..., :1]), lower[..., 1:]], axis=-1)
            return upper + zero_first
        return self._get("p_diff", fn)

    # -- features ---------------------------------------------------------------
    def contrast(self):
        return self.linear(["contrast"])[0]

    def dissimilarity(self):
        return self.linear(["dissimilarity"])[0]

    def homogeneity(self):
        return self.linear(["homogeneity"])[0]

    def inverse_difference(self):
        return self.linear(["inverse_difference"])[0]

    def asm(self):
        def fn():
            # Row by row, then over rows: a single dot over the L² axis accumulates
            # sequentially on CPU (1e-4 relative error at L = 256), two levels do not.
            rows = ops.einsum("...ij,...ij->...i", self.counts, self.counts)
            return ops.sum(rows, axis=-1) * ops.square(self.scale)
        return self._get("asm", fn)

    def energy(self):
        return ops.sqrt(self.asm())

    def correlation(self):
        denom = ops.sqrt(self.var_x * self.var_y)
        value = self.cov / ops.where(self.single_level, 1.0, denom)
        return ops.where(self.single_level, 1.0, value)

    def mean(self):
        return self.mu_x

    def variance(self):
        return self.var_x

    def std(self):
        return ops.sqrt(self.var_x)

    def entropy(self):
        return self.hxy

    def sum_average(self):
        return self.mu_x + self.mu_y

    def sum_variance(self):
        k = ops.arange(2 * self.levels - 1, dtype="float32")
        centred = k - self.sum_average()[..., None]
        return ops.sum(ops.square(centred) * self.p_sum, axis=-1)

    def sum_entropy(self):
        return self.entropy_of(self.p_sum, -1)

    def difference_variance(self):
        k = ops.arange(self.levels, dtype="float32")
        mu_d = ops.sum(k * self.p_diff, axis=-1)
        return ops.sum(ops.square(k - mu_d[..., None]) * self.p_diff, axis=-1)

    def difference_entropy(self):
        return self.entropy_of(self.p_diff, -1)

    @property
    def mutual_information(self):
        """HX + HY - HXY = Σ P ln(P / (p_x p_y)), summed directly: the difference of
        entropies would cancel catastrophically in float32 when it is small."""
        def fn():
            outer = self.px[..., :, None] * self.py[..., None, :]
            positive = self.P > 0
            ratio = ops.where(positive, self.P, 1.0) / ops.where(positive, outer, 1.0)
            return ops.maximum(ops.sum(self.P * ops.log(ratio), axis=(-2, -1)), 0.0)
        return self._get("mutual_information", fn)

    def imc1(self):
        # HXY1 = -Σ P ln(p_x p_y) = HX + HY exactly (Σ_j P(i, j) = p_x(i)), so
        # HXY - HXY1 = -(mutual information).
        hmax = ops.maximum(self.hx, self.hy)
        value = -self.mutual_information / ops.where(hmax > 0, hmax, 1.0)
        return ops.where(hmax > 0, value, 0.0)

    def imc2(self):
        # HXY2 = -Σ p_x p_y ln(p_x p_y) = HX + HY as well: HXY2 - HXY is the mutual
        # information; expm1 keeps precision where it is tiny.
        return ops.sqrt(ops.maximum(-ops.expm1(-2.0 * self.mutual_information), 0.0))

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
        return self._cluster_moment(3)

    def cluster_prominence(self):
        return self._cluster_moment(4)

    def _cluster_moment(self, power):
        # Over p_{x+y} (2L-1 terms, not L²): i + j - μx - μy = k - sum_average.
        k = ops.arange(2 * self.levels - 1, dtype="float32")
        centred = k - self.sum_average()[..., None]
        return ops.sum(centred ** power * self.p_sum, axis=-1)

    def feature(self, name: str):
        return getattr(self, canonical_name(name))()


def _anti_diagonal_sums(P):
    """Σ_{i+j=k} P(i, j) for k = 0..2L-2 over the last two axes.

    Padding every row with L zeros and reading the flat result in rows of 2L-1
    puts P(i, j) at column i + j.
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


def features_from_glcm(P, features: Iterable[str]):
    """Features of (..., L, L) GLCMs (not necessarily normalized).

    Returns:
      float32 (..., n_features); NaN where a matrix has no pair.
    """
    return _features_from_glcm(P, names=resolve_features(features))


@jit_when_eager
def _features_from_glcm(P, *, names):
    stats = GLCMStatistics(P)
    stats.linear([name for name in names if name in GLCMStatistics.LINEAR_WEIGHTS])
    values = ops.stack([stats.feature(n) for n in names], axis=-1)
    return ops.where(stats.has_pairs[..., None], values, float("nan"))


@jit_when_eager
def _graycoprops(P, *, names):
    # The transpose runs inside the compiled function: eagerly it is a separate
    # full copy of P (about half the time of six props on 32 x 256² x 4 matrices).
    moved = ops.transpose(P, (0, 3, 4, 1, 2))  # (batch, D, A, L, L)
    return _features_from_glcm(moved, names=names)


def graycoprops(P, prop: Union[str, Sequence[str]] = "contrast"):
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
    - cluster_shade Σ(i+j-μx-μy)³P, cluster_prominence Σ(i+j-μx-μy)⁴P

    See FEATURES.md for the exact definitions and the references they agree with.

    Parameters
    ----------
    P : array (batch, L, L, n_distances, n_angles), or (L, L, n_distances, n_angles)
        Co-occurrence counts or normalized matrices (each is normalized here).
    prop : str or sequence of str
        A canonical name, an Earth Engine alias or a scikit-image name (``"ASM"``).

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
    values = _graycoprops(P, names=resolve_features(names))
    if isinstance(prop, str):
        values = values[..., 0]
    return values[0] if single_image else values
