"""Per-pixel GLCM texture maps, without a GLCM per window.

For every pixel the window's pairs are gathered from a per-pixel *pair-code map*
(one gather for all offsets), then

- linear and moment features (contrast, dissimilarity, homogeneity,
  inverse_difference, mean, variance, std, correlation, sum_average, sum_variance,
  difference_variance, cluster_shade, cluster_prominence) are sums over the window's
  pairs, two-pass (mean first) so that float32 keeps its precision;
- count features (asm, energy, entropy, sum_entropy, difference_entropy, imc1, imc2)
  sort the window's pair codes and sum a telescoping function of the run lengths;
- max_correlation builds the window's GLCM (levels² per pixel: slow, but exact).

Cost grows with pixels x window area (x log of it for count features), never with
levels² per pixel (except max_correlation).
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from glcm._checks import DEFAULT_ANGLES
from glcm._compile import is_tracing, jit_when_eager
from glcm.core import (checked_inputs, features_from_glcm, levels_or_invalid, nanmean,
                       neighbours)
from glcm.features import resolve_features

# Elements (pixels x window pairs x offsets) of one chunk: bounds peak memory.
CHUNK_ELEMENTS = 1 << 23


def check_window(window) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise ValueError(f"window must be an odd integer in 3..63, got {window!r}")
    if window % 2 == 0 or not 3 <= window <= 63:
        raise ValueError(
            f"window must be an odd integer in 3..63 (a centred square), got {window}")
    return int(window)


def texture_map(images, features, window=7, *, levels, distances=(1,),
                angles=DEFAULT_ANGLES, symmetric=True, average=True, mask=None):
    """Per-pixel GLCM features of the window centred on every pixel.

    The value at (r, c) equals ``graycoprops(graycomatrix(patch))`` where ``patch`` is
    the window x window neighbourhood centred on (r, c), clipped at the image border,
    with a normalized (and by default symmetric) GLCM. With ``average=True`` each
    feature is computed per offset and averaged over the offsets that have at least
    one valid pair in the window (as Earth Engine's ``average``).

    Parameters
    ----------
    images : int array (batch, H, W) or (batch, H, W, 1)
        Grey levels in [0, levels) (see :func:`glcm.quantize`).
    features : str or sequence of str
        Names or aliases from :data:`glcm.FEATURES`, in the output order.
    window : int
        Odd window size, 3..63.
    levels : int
        Number of grey levels.
    distances, angles : sequences
        As :func:`glcm.graycomatrix` (angles in radians, scikit-image's convention).
    symmetric : bool
        Count (i, j) and (j, i) (default True).
    average : bool
        Average over offsets (default) or keep them.
    mask : bool array (batch, H, W), optional
        False marks invalid pixels: their pairs do not count and their output is NaN.

    Returns
    -------
    float32 (batch, H, W, n_features), or (batch, H, W, n_distances * n_angles,
    n_features) with ``average=False`` (offsets in (distance, angle) row-major order).
    NaN where the centre pixel is invalid or the window has no valid pair.

    Notes
    -----
    Memory: eagerly, rows are processed in chunks of about 2**23 gathered pair values
    (a few hundred MB of temporaries at most, whatever the image size; max_correlation
    also holds levels² floats per pixel of a chunk, with chunks shrunk to match).
    Inside a caller's ``tf.function``/``jax.jit`` (e.g. the ``TextureMap`` layer) the
    whole input is one chunk, so feed it tiles.
    """
    window = check_window(window)
    names = resolve_features(features)
    images, mask, levels, distances, angles, offsets = checked_inputs(
        images, mask, levels, distances, angles)
    static = dict(names=names, window=window, levels=levels, offsets=offsets,
                  symmetric=bool(symmetric), average=bool(average))
    codes = levels_or_invalid(images, levels, mask)  # -1 = invalid
    height = images.shape[1]
    width = images.shape[2]
    batch = images.shape[0]
    eager = all(d is not None for d in (batch, height, width)) and not is_tracing([codes])
    if not eager:
        return _texture_kernel(_pad_for_windows(codes, window, offsets), **static)
    # Elements held per output row: window² gathered pairs per offset where a
    # feature needs the window's pairs, else a dozen box-filtered maps per offset.
    per_pair = window * window if any(n not in BOX_FEATURES for n in names) else 16
    per_row = max(1, batch * width * per_pair * len(offsets))
    if "max_correlation" in names:
        per_row *= max(1, levels * levels // (window * window))
    rows = max(1, min(height, CHUNK_ELEMENTS // per_row))
    if rows >= height:
        return _texture_kernel(_pad_for_windows(codes, window, offsets), **static)
    # Row chunks of one fixed shape (the last one padded), so the kernel compiles once.
    n_chunks = math.ceil(height / rows)
    codes = ops.pad(codes, [[0, 0], [0, n_chunks * rows - height], [0, 0]],
                    constant_values=-1)
    padded = _pad_for_windows(codes, window, offsets)
    margin = padded.shape[1] - codes.shape[1]
    chunks = [_texture_kernel(padded[:, r0:r0 + rows + margin], **static)
              for r0 in range(0, n_chunks * rows, rows)]
    return ops.concatenate(chunks, axis=1)[:, :height]


def _margin(window, offsets):
    reach = max(max(abs(dr), abs(dc)) for dr, dc in offsets)
    return window // 2 + reach


def _pad_for_windows(codes, window, offsets):
    m = _margin(window, offsets)
    return ops.pad(codes, [[0, 0], [m, m], [m, m]], constant_values=-1)


def _anchor_mask(window, offsets):
    """(window², K) bool: anchor (a, b) of the window is a pair inside it for offset k."""
    a, b = np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
    out = []
    for dr, dc in offsets:
        out.append(((a + dr >= 0) & (a + dr < window) & (b + dc >= 0)
                    & (b + dc < window)).ravel())
    return np.stack(out, axis=1)


@jit_when_eager(min_size=0)  # chunks share one shape: compiled once, reused
def _texture_kernel(padded, *, names, window, levels, offsets, symmetric, average):
    """Features for the centre region of ``padded`` (codes, -1 invalid, padded by the
    window radius + the largest offset on every side)."""
    offsets_np = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    n_off = len(offsets_np)
    m = _margin(window, offsets)
    reach = m - window // 2
    h_pad, w_pad = padded.shape[1], padded.shape[2]
    out_h, out_w = h_pad - 2 * m, w_pad - 2 * m
    batch = ops.shape(padded)[0]

    # Pair-code map at every anchor of the region the windows cover: code + 1, 0 if
    # either pixel is invalid (so zero padding of patches means "no pair").
    region_h, region_w = out_h + window - 1, out_w + window - 1
    first = padded[:, reach:reach + region_h, reach:reach + region_w]
    # One gather for all offsets (see glcm.core.neighbours), cropped to the region.
    second = ops.reshape(neighbours(padded, offsets_np), (batch, n_off, h_pad, w_pad))
    second = second[:, :, reach:reach + region_h, reach:reach + region_w]
    second = ops.moveaxis(second, 1, -1)  # (B, rh, rw, K)
    first = first[..., None]
    valid = ops.logical_and(first >= 0, second >= 0)
    centre_value = padded[:, m:m + out_h, m:m + out_w]

    box_names = [n for n in names if n in BOX_FEATURES]
    gather_names = [n for n in names if n not in BOX_FEATURES]
    box = _BoxMoments(first, second, valid, centre_value, window, offsets_np, symmetric)
    has_pairs = box.n > 0
    values = {name: getattr(box, name)() for name in box_names}
    if gather_names:
        stats = _gather_windows(first, second, valid, window, offsets, levels, symmetric,
                                box.n)
        values.update({name: getattr(stats, name)() for name in gather_names})
    values = ops.stack([values[name] for name in names], axis=-1)  # (B, h, w, K, F)
    values = ops.where(has_pairs[..., None], values, float("nan"))
    values = ops.where((centre_value >= 0)[..., None, None], values, float("nan"))
    if average:
        values = nanmean(values, axis=-2)
    return values


# Features computed from box sums of per-anchor maps (no per-window gather).
BOX_FEATURES = frozenset({"contrast", "dissimilarity", "homogeneity", "inverse_difference",
                          "mean", "variance", "std", "correlation", "sum_average",
                          "sum_variance"})


def _box_kernels(window, offsets):
    """Per-offset 1-D indicator kernels of the anchor rows / columns of a window."""
    t = np.arange(window)
    rows = np.stack([(t + dr >= 0) & (t + dr < window) for dr, _ in offsets], axis=1)
    cols = np.stack([(t + dc >= 0) & (t + dc < window) for _, dc in offsets], axis=1)
    return rows.astype(np.float32), cols.astype(np.float32)


class _BoxMoments:
    """Window sums of per-anchor maps by separable depthwise convolutions whose
    per-offset kernels cover exactly the anchors whose pair lies inside the window
    ((window - |dr|) x (window - |dc|) boxes): O(window) per pixel and channel.

    Sums of integer maps are exact in float32 while below 2**24 (e.g. levels 32 with
    any window up to 63). Second moments are centred on the window's centre pixel
    value c, which lies in the window, so E[(x-c)²] - E[x-c]² cancels by at most about
    the window's pair count instead of by E[x²] / variance.
    """

    def __init__(self, first, second, valid, centre_value, window, offsets, symmetric):
        self.valid = ops.cast(valid, "float32")  # (B, rh, rw, K)
        self.i = ops.cast(ops.maximum(first, 0), "float32") * self.valid
        self.j = ops.cast(ops.maximum(second, 0), "float32") * self.valid
        self.c = ops.cast(ops.maximum(centre_value, 0), "float32")[..., None]
        self.symmetric = symmetric
        self.rows, self.cols = _box_kernels(window, offsets)
        self._cache = {}
        self.n = self.box(self.valid)
        self.n_safe = ops.where(self.n > 0, self.n, 1.0)

    def box(self, maps):
        """Window sums of (B, rh, rw, K) maps -> (B, out_h, out_w, K).

        A separable sum of window taps, each weighted by the per-offset indicator:
        elementwise adds that XLA fuses into one pass (its depthwise convolution was
        ~10x slower on the CPU).
        """
        window = self.rows.shape[0]
        out_h, out_w = maps.shape[1] - window + 1, maps.shape[2] - window + 1
        rows = sum(maps[:, t:t + out_h] * self.rows[t] for t in range(window))
        return sum(rows[:, :, t:t + out_w] * self.cols[t] for t in range(window))

    def _get(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def _mean_of(self, maps):
        return self.box(maps) / self.n_safe

    def _centred(self):
        """E[x-c], E[y-c], E[(x-c)²], E[(y-c)²], E[(x-c)(y-c)] under the GLCM."""
        def fn():
            i, j, c, n = self.i, self.j, self.c, self.n
            si, sj = self.box(i), self.box(j)
            a1, b1 = si - n * c, sj - n * c
            a2 = self.box(i * i) - 2.0 * c * si + n * c * c
            b2 = self.box(j * j) - 2.0 * c * sj + n * c * c
            ab = (self.box(i * j) - c * (si + sj) + n * c * c) / self.n_safe
            n = self.n_safe
            if self.symmetric:
                m1 = (a1 + b1) / (2.0 * n)
                m2 = (a2 + b2) / (2.0 * n)
                return m1, m1, m2, m2, ab
            return a1 / n, b1 / n, a2 / n, b2 / n, ab
        return self._get("centred", fn)

    def _variances(self):
        def fn():
            ex, ey, exx, eyy, exy = self._centred()
            return (ops.maximum(exx - ex * ex, 0.0), ops.maximum(eyy - ey * ey, 0.0),
                    exy - ex * ey)
        return self._get("variances", fn)

    def _single_level(self, var):
        # Over integers, two levels or more among M equally weighted elements give a
        # variance of at least (M-1)/M², i.e. var * M >= 1/2.
        elements = 2.0 * self.n_safe if self.symmetric else self.n_safe
        return var * elements < 0.5

    def contrast(self):
        d = self.i - self.j
        return self._mean_of(d * d)

    def dissimilarity(self):
        return self._mean_of(ops.abs(self.i - self.j))

    def homogeneity(self):
        d = self.i - self.j
        return self._mean_of(self.valid / (1.0 + d * d))

    def inverse_difference(self):
        return self._mean_of(self.valid / (1.0 + ops.abs(self.i - self.j)))

    def mean(self):
        return self.c + self._centred()[0]

    def variance(self):
        return self._variances()[0]

    def std(self):
        return ops.sqrt(self.variance())

    def correlation(self):
        var_x, var_y, cov = self._variances()
        single = ops.logical_or(self._single_level(var_x), self._single_level(var_y))
        denom = ops.sqrt(var_x * var_y)
        return ops.where(single, 1.0, cov / ops.where(single, 1.0, denom))

    def sum_average(self):
        ex, ey = self._centred()[:2]
        return 2.0 * self.c + ex + ey

    def sum_variance(self):
        var_x, var_y, cov = self._variances()
        return var_x + var_y + 2.0 * cov


def _gather_windows(first, second, valid, window, offsets, levels, symmetric, n):
    """Every window's pairs gathered along a last axis, as _WindowStatistics."""
    batch = ops.shape(first)[0]
    region_h, region_w = first.shape[1], first.shape[2]
    out_h, out_w = region_h - window + 1, region_w - window + 1
    n_off = len(offsets)
    # Pair-code map (code + 1, 0 where there is no pair) gathered in window patches:
    # (B, out_h, out_w, window², K), one gather. (extract_patches lowers to a
    # convolution with a window²-wide identity kernel, about 50x slower on the CPU.)
    code = ops.where(valid, first * levels + second + 1, 0)
    rows = np.arange(out_h)[:, None, None, None]
    cols = np.arange(out_w)[None, :, None, None]
    dr = np.arange(window)[None, None, :, None]
    dc = np.arange(window)[None, None, None, :]
    index = ((rows + dr) * region_w + cols + dc).reshape(out_h * out_w, window * window)
    flat = ops.reshape(code, (batch, region_h * region_w, n_off))
    patches = ops.take(flat, ops.convert_to_tensor(index.astype("int32")), axis=1)
    patches = ops.cast(ops.reshape(patches, (batch, out_h, out_w, window * window, n_off)),
                       "float32")
    anchor = ops.convert_to_tensor(_anchor_mask(window, offsets))
    patches = ops.where(anchor, patches, 0.0)
    # Move the pair axis last: (B, out_h, out_w, K, window²).
    patches = ops.moveaxis(patches, -2, -1)
    pair = patches > 0
    code = ops.maximum(patches - 1.0, 0.0)
    i = ops.floor(code / levels)
    j = code - i * levels
    return _WindowStatistics(i, j, ops.cast(pair, "float32"), ops.where(n > 0, n, 1.0),
                             pair, levels, symmetric, window)


class _WindowStatistics:
    """Features of every window from its pairs (i, j) along the last axis.

    ``w`` is 1 for a pair, 0 for padding; ``n`` the number of pairs (>= 1 here).
    For symmetric GLCMs each pair stands for (i, j) and (j, i) with weight 1/2.
    """

    def __init__(self, i, j, w, n, pair, levels, symmetric, window):
        self.i, self.j, self.w, self.n, self.pair = i, j, w, n, pair
        self.levels, self.symmetric, self.window = levels, symmetric, window
        self._cache = {}

    def _get(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def expect(self, values):
        """E[values] over the window's pairs."""
        return ops.sum(values * self.w, axis=-1) / self.n

    def expect_sym(self, f):
        """E[f(i, j)] under the (symmetrized) GLCM."""
        if self.symmetric:
            return 0.5 * (self.expect(f(self.i, self.j)) + self.expect(f(self.j, self.i)))
        return self.expect(f(self.i, self.j))

    # -- moments ------------------------------------------------------------
    def mu_x(self):
        return self._get("mu_x", lambda: self.expect_sym(lambda a, b: a))

    def mu_y(self):
        return self._get("mu_y", lambda: self.expect_sym(lambda a, b: b))

    def var_x(self):
        mu = self.mu_x()[..., None]
        return self._get("var_x", lambda: self.expect_sym(lambda a, b: (a - mu) ** 2))

    def var_y(self):
        mu = self.mu_y()[..., None]
        return self._get("var_y", lambda: self.expect_sym(lambda a, b: (b - mu) ** 2))

    def contrast(self):
        return self.expect(ops.square(self.i - self.j))

    def dissimilarity(self):
        return self.expect(ops.abs(self.i - self.j))

    def homogeneity(self):
        return self.expect(1.0 / (1.0 + ops.square(self.i - self.j)))

    def inverse_difference(self):
        return self.expect(1.0 / (1.0 + ops.abs(self.i - self.j)))

    def mean(self):
        return self.mu_x()

    def variance(self):
        return self.var_x()

    def std(self):
        return ops.sqrt(self.var_x())

    def single_level(self):
        """True where fewer than two grey levels occur among the window's pairs."""
        big = float(self.levels)
        lo = ops.min(ops.where(self.pair, ops.minimum(self.i, self.j), big), axis=-1)
        hi = ops.max(ops.where(self.pair, ops.maximum(self.i, self.j), -1.0), axis=-1)
        if self.symmetric:
            return lo >= hi
        lo_i = ops.min(ops.where(self.pair, self.i, big), axis=-1)
        hi_i = ops.max(ops.where(self.pair, self.i, -1.0), axis=-1)
        lo_j = ops.min(ops.where(self.pair, self.j, big), axis=-1)
        hi_j = ops.max(ops.where(self.pair, self.j, -1.0), axis=-1)
        return ops.logical_or(lo_i >= hi_i, lo_j >= hi_j)

    def correlation(self):
        mx, my = self.mu_x()[..., None], self.mu_y()[..., None]
        cov = self.expect_sym(lambda a, b: (a - mx) * (b - my))
        single = self.single_level()
        denom = ops.sqrt(self.var_x() * self.var_y())
        return ops.where(single, 1.0, cov / ops.where(single, 1.0, denom))

    def sum_average(self):
        return self._get("savg", lambda: self.expect(self.i + self.j))

    def _sum_moment(self, power):
        centred = self.i + self.j - self.sum_average()[..., None]
        return self.expect(centred ** power)

    def sum_variance(self):
        return self._sum_moment(2)

    def cluster_shade(self):
        return self._sum_moment(3)

    def cluster_prominence(self):
        return self._sum_moment(4)

    def difference_variance(self):
        d = ops.abs(self.i - self.j)
        mu = self.expect(d)[..., None]
        return self.expect(ops.square(d - mu))

    # -- counts ---------------------------------------------------------------
    def _runs(self, keys, valid):
        """Run position (0-based) of every element after sorting ``keys``; invalid
        elements get a sentinel key and weight 0. Returns (sorted keys, position,
        weight)."""
        sentinel = float(self.levels * self.levels + 1)
        keys = ops.where(valid, keys, sentinel)
        keys = ops.sort(keys, axis=-1)
        size = keys.shape[-1]
        index = ops.arange(size, dtype="float32")
        starts = ops.concatenate(
            [ops.ones_like(keys[..., :1], dtype="bool"),
             ops.not_equal(keys[..., 1:], keys[..., :-1])], axis=-1)
        start_index = _running_max(ops.where(starts, index, 0.0))
        position = index - start_index
        weight = ops.cast(keys < sentinel, "float32")
        return keys, position, weight

    @staticmethod
    def _sum_m_log_m(runs):
        """Σ over distinct keys of m ln m (m = count of the key), via telescoping."""
        _, pos, weight = runs
        step = (pos + 1.0) * ops.log(pos + 1.0) - pos * ops.log(ops.maximum(pos, 1.0))
        return ops.sum(step * weight, axis=-1)

    def _entropy_of(self, keys, valid, total):
        """Entropy of the distribution of ``keys`` (each valid element weight 1)."""
        return ops.log(total) - self._sum_m_log_m(self._runs(keys, valid)) / total

    def _joint_runs(self):
        # one sort of the joint codes serves asm, energy, entropy and imc
        return self._get("joint_runs", lambda: self._runs(self._joint_keys(), self.pair))

    def _joint_keys(self):
        if self.symmetric:
            lo, hi = ops.minimum(self.i, self.j), ops.maximum(self.i, self.j)
            return lo * self.levels + hi
        return self.i * self.levels + self.j

    def off_diagonal_fraction(self):
        return self.expect(ops.cast(ops.not_equal(self.i, self.j), "float32"))

    def entropy(self):
        def fn():
            h = ops.log(self.n) - self._sum_m_log_m(self._joint_runs()) / self.n
            if self.symmetric:
                # an unordered off-diagonal pair splits over two cells: + ln 2 each
                h = h + math.log(2.0) * self.off_diagonal_fraction()
            return h
        return self._get("entropy", fn)

    def asm(self):
        def fn():
            keys, pos, weight = self._joint_runs()
            # Σ_u m_u² telescopes to Σ (2 pos + 1); a symmetric off-diagonal pair
            # spreads over two cells of m/2 each: half the square.
            step = (2.0 * pos + 1.0) * weight
            if self.symmetric:
                lo = ops.floor(keys / self.levels)
                diagonal = ops.equal(keys - lo * self.levels, lo)
                step = step * ops.where(diagonal, 1.0, 0.5)
            return ops.sum(step, axis=-1) / ops.square(self.n)
        return self._get("asm", fn)

    def energy(self):
        return ops.sqrt(self.asm())

    def sum_entropy(self):
        return self._entropy_of(self.i + self.j, self.pair, self.n)

    def difference_entropy(self):
        return self._entropy_of(ops.abs(self.i - self.j), self.pair, self.n)

    def _marginal_entropies(self):
        def fn():
            if self.symmetric:
                both = ops.concatenate([self.i, self.j], axis=-1)
                valid = ops.concatenate([self.pair, self.pair], axis=-1)
                hx = self._entropy_of(both, valid, 2.0 * self.n)
                return hx, hx
            return (self._entropy_of(self.i, self.pair, self.n),
                    self._entropy_of(self.j, self.pair, self.n))
        return self._get("marginals", fn)

    def _mutual_information(self):
        hx, hy = self._marginal_entropies()
        return ops.maximum(hx + hy - self.entropy(), 0.0)

    def imc1(self):
        hx, hy = self._marginal_entropies()
        hmax = ops.maximum(hx, hy)
        # below float32 resolution of the entropies, a window is treated as one level
        positive = hmax > 1e-6
        value = -self._mutual_information() / ops.where(positive, hmax, 1.0)
        return ops.where(positive, value, 0.0)

    def imc2(self):
        return ops.sqrt(ops.maximum(-ops.expm1(-2.0 * self._mutual_information()), 0.0))

    # -- slow path --------------------------------------------------------------
    def max_correlation(self):
        """Builds each window's GLCM (levels² per pixel) and takes the exact value."""
        L = self.levels
        one_i = ops.one_hot(ops.cast(self.i, "int32"), L) * self.w[..., None]
        one_j = ops.one_hot(ops.cast(self.j, "int32"), L)
        P = ops.einsum("...ni,...nj->...ij", one_i, one_j)
        if self.symmetric:
            P = P + ops.swapaxes(P, -1, -2)
        return features_from_glcm(P, ["max_correlation"])[..., 0]


def _running_max(x):
    """Running maximum along the last axis (log-step doubling, no Python loop over
    the data: log2(window²) vectorized steps)."""
    size = x.shape[-1]
    shift = 1
    while shift < size:
        padded = ops.concatenate([ops.zeros_like(x[..., :shift]), x[..., :-shift]], axis=-1)
        x = ops.maximum(x, padded)
        shift *= 2
    return x
