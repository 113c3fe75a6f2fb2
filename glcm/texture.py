"""Per-pixel GLCM texture maps, without a GLCM per window.

Three mechanisms, each used only for the features that need it:

- box sums (:class:`_BoxMoments`): contrast, dissimilarity, homogeneity,
  inverse_difference, mean, variance, std, correlation, sum_average, sum_variance are
  window sums of per-anchor maps (separable, O(window) per pixel), second moments
  centred on the window's centre value to keep float32 precision;
- sliding histograms (:class:`_SlidingCounts`): asm, energy, entropy, sum_entropy,
  difference_entropy, imc1, imc2 keep Σ m² and Σ m ln m of the window's key counts
  up to date as the window moves along a row, O(window) per pixel;
- gathered windows (:class:`_WindowStatistics`): difference_variance, cluster_shade,
  cluster_prominence (two-pass over the window's pairs, O(window²)) and
  max_correlation (the window's GLCM, levels² per pixel: slow, but exact).

Apart from max_correlation, cost grows with pixels x window, never with levels² per
pixel (the count features keep a levels²-sized histogram per row, not per pixel).
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
CHUNK_ELEMENTS = 1 << 25


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
    Memory: eagerly, rows are processed in chunks whose largest temporaries hold
    about ``CHUNK_ELEMENTS`` = 2**25 values (box-filtered maps, one count histogram
    per row and offset, or window² gathered pairs per pixel): under 1.3 GB of
    temporaries whatever the image size (measured: 4096 x 4096, 8 features, window 7,
    peak RSS 2.0 GB of which 0.75 GB was the process before the call and 0.5 GB the
    output). Beyond that, peak memory is the input and the float32 output
    (H x W x n_features x 4 bytes) plus one padded int32 copy of the input.
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
    rows = _chunk_rows(names, batch, width, window, levels, len(offsets))
    rows = min(height, rows)
    if rows >= height:
        return _texture_kernel(_pad_for_windows(codes, window, offsets), **static)
    # Row chunks of one fixed shape (the last one padded), so the kernel compiles once;
    # as even as possible, so padding wastes less than one row per chunk (a 1032-row
    # tile in chunks of 508 rows computed 1524 rows: 48 % more work).
    n_chunks = math.ceil(height / rows)
    rows = math.ceil(height / n_chunks)
    codes = ops.pad(codes, [[0, 0], [0, n_chunks * rows - height], [0, 0]],
                    constant_values=-1)
    padded = _pad_for_windows(codes, window, offsets)
    margin = padded.shape[1] - codes.shape[1]
    chunks = [_texture_kernel(padded[:, r0:r0 + rows + margin], **static)
              for r0 in range(0, n_chunks * rows, rows)]
    return ops.concatenate(chunks, axis=1)[:, :height]


def _chunk_rows(names, batch, width, window, levels, n_offsets):
    """Output rows per chunk so that the largest temporaries hold about
    CHUNK_ELEMENTS values: window² gathered pairs per pixel and offset for the
    gathered features (levels² more for max_correlation), a dozen box-filtered maps
    otherwise, and one histogram table of ~levels² + 5 levels per row and offset for
    the count features."""
    gathered = [n for n in names if n not in BOX_FEATURES | COUNT_FEATURES]
    per_pixel = window * window if gathered else 16
    if "max_correlation" in names:
        per_pixel *= max(1, levels * levels // (window * window))
    per_row = batch * width * per_pixel * n_offsets
    if any(n in COUNT_FEATURES for n in names):
        per_row = max(per_row, batch * n_offsets * (levels * levels + 5 * levels))
    return max(1, CHUNK_ELEMENTS // max(1, per_row))


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
    count_names = [n for n in names if n in COUNT_FEATURES]
    gather_names = [n for n in names if n not in BOX_FEATURES | COUNT_FEATURES]
    box = _BoxMoments(first, second, valid, centre_value, window, offsets_np, symmetric)
    has_pairs = box.n > 0
    values = {name: getattr(box, name)() for name in box_names}
    if count_names:
        counts = _SlidingCounts(first, second, valid, window, offsets_np, levels, symmetric,
                                count_names)
        values.update(count_features(counts, box, count_names, symmetric))
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

    def off_diagonal_fraction(self):
        return self._mean_of(ops.cast(ops.not_equal(self.i, self.j), "float32") * self.valid)

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


# Features from per-window counts, kept by a sliding histogram.
COUNT_FEATURES = frozenset({"asm", "energy", "entropy", "sum_entropy",
                            "difference_entropy", "imc1", "imc2"})


def _m_log_m_step(m):
    """(m+1) ln(m+1) - m ln m, written without cancellation: ln(m+1) + m ln(1+1/m)."""
    safe = ops.maximum(m, 1.0)
    return ops.log(m + 1.0) + ops.where(m > 0, safe * ops.log1p(1.0 / safe), 0.0)


class _SlidingCounts:
    """Count features of every window from histograms slid along the columns.

    For each output row and offset, histograms of the window's keys (joint pair
    codes, i + j, |i - j|, grey levels) live in one table. Moving one column right
    removes the anchors of the column that leaves and adds those of the column that
    enters, one element at a time (repeated keys need no special care), keeping
    Σ m² and Σ m ln m up to date: adding to a key of count m changes them by 2m + 1
    and (m+1) ln(m+1) - m ln m. The loop runs over columns (a backend ``fori_loop``),
    vectorized over rows, offsets and key kinds: O(window) per pixel, independent of
    the number of levels. The table holds rows x offsets x (levels² + 5 levels)
    floats; texture_map sizes its row chunks for it.
    """

    def __init__(self, first, second, valid, window, offsets, levels, symmetric, names):
        self.window, self.offsets = window, offsets
        L = levels
        i = ops.maximum(first, 0) + ops.zeros_like(second)  # (B, rh, rw, K)
        j = ops.maximum(second, 0)
        lo, hi = ops.minimum(i, j), ops.maximum(i, j)
        wanted = set()
        if set(names) & {"asm", "energy", "entropy", "imc1", "imc2"}:
            wanted.add("joint")
        if "sum_entropy" in names:
            wanted.add("sum")
        if "difference_entropy" in names:
            wanted.add("diff")
        if set(names) & {"imc1", "imc2"}:
            wanted.update({"x", "y"})
        ones = ops.ones_like(ops.cast(i, "float32"))
        # asm of a symmetric GLCM: an off-diagonal key is split over two cells.
        joint_factor = ops.where(ops.equal(lo, hi), 1.0, 0.5) if symmetric else ones
        candidates = [("joint", lo * L + hi if symmetric else i * L + j, L * L, joint_factor),
                      ("sum", i + j, 2 * L - 1, ones), ("diff", hi - lo, L, ones),
                      ("x", i, L, ones), ("y", j, L, ones)]
        self.stats = [c[0] for c in candidates if c[0] in wanted]
        phases = ([], [])  # (stat slot, keys, asm factor) per stream
        bases = {}
        base = 0
        for name, keys, size, factor in candidates:
            if name not in wanted:
                continue
            if name == "y" and symmetric:
                # p_x = p_y: j joins i's histogram, in a second phase so that one
                # update never touches the same cell twice.
                phases[1].append((self.stats.index("x"), keys + bases["x"], factor))
                continue
            bases[name] = base
            phases[0].append((self.stats.index(name), keys + base, factor))
            base += size
        self.table_size = base
        self.phases = [p for p in phases if p]
        self.weight = ops.cast(valid, "float32")
        self.sums = self._run()

    def _aligned_columns(self, maps, x, back):
        """Column ``x - back[k]`` of offset k's map, 0 outside: (B, rh, K, ...)."""
        rw, k = maps.shape[2], len(self.offsets)
        col = x - ops.convert_to_tensor(back.astype("int32"))
        inside = ops.logical_and(col >= 0, col < rw)
        flat = ops.reshape(maps, tuple(maps.shape[:2]) + (rw * k,) + tuple(maps.shape[4:]))
        index = ops.where(inside, col, 0) * k + ops.arange(k, dtype="int32")
        taken = ops.take(flat, index, axis=2)
        inside = ops.reshape(inside, (1, 1, k) + (1,) * (len(maps.shape) - 4))
        return ops.where(inside, taken, ops.zeros_like(taken))

    def _run(self):
        window, K = self.window, len(self.offsets)
        rows_k, cols_k = _box_kernels(window, self.offsets)
        hi_col = np.array([np.nonzero(cols_k[:, k])[0].max() for k in range(K)])
        width = cols_k.sum(axis=0).astype(np.int64)
        # Shift offset k's columns so every offset's window ends at step x.
        shift = (window - 1) - hi_col
        batch, rh, rw = self.weight.shape[0], self.weight.shape[1], self.weight.shape[2]
        out_h = rh - window + 1
        n_stats = len(self.stats)
        vector = (batch, out_h, K)
        row_base = ops.reshape(ops.arange(batch * out_h * K, dtype="int32"),
                               vector)[..., None] * self.table_size
        phases = []
        for streams in self.phases:
            keys = ops.stack([s[1] for s in streams], axis=-1)  # (B, rh, rw, K, S)
            w = ops.stack([self.weight] * len(streams), axis=-1)
            factor = ops.stack([s[2] for s in streams], axis=-1)
            phases.append(([s[0] for s in streams], keys, w, factor))
        row_mask = [rows_k[t][:, None] for t in range(window)]  # (K, 1) per window row

        def update(table, sq, ml, comp, keys, w, factor, slots, sign):
            idx = ops.reshape(row_base + keys, (-1,))
            m = ops.reshape(ops.take(table, idx), keys.shape)
            if sign > 0:
                d_sq, d_ml = 2.0 * m + 1.0, _m_log_m_step(m)
            else:
                d_sq, d_ml = 1.0 - 2.0 * m, -_m_log_m_step(ops.maximum(m - 1.0, 0.0))
            table = ops.scatter_update(table, idx[:, None], ops.reshape(m + sign * w, (-1,)))
            d_sq, d_ml = d_sq * w * factor, d_ml * w
            for s, slot in enumerate(slots):
                sq[slot] = sq[slot] + d_sq[..., s]
                # Kahan summation: thousands of steps must not drift
                y = d_ml[..., s] - comp[slot]
                total = ml[slot] + y
                comp[slot] = (total - ml[slot]) - y
                ml[slot] = total
            return table

        def body(x, state):
            table, sq, ml, comp, out = state
            sq, ml, comp = list(sq), list(ml), list(comp)
            for slots, keys, w, factor in phases:
                for sign, back in ((-1.0, shift + width), (1.0, shift)):
                    keys_x = self._aligned_columns(keys, x, back)
                    w_x = self._aligned_columns(w, x, back)
                    f_x = self._aligned_columns(factor, x, back)
                    for t in range(window):  # window rows, static
                        rows = slice(t, t + out_h)
                        table = update(table, sq, ml, comp, keys_x[:, rows],
                                       w_x[:, rows] * row_mask[t], f_x[:, rows], slots, sign)
            values = ops.stack(sq + ml, axis=-1)[None]
            out = ops.slice_update(out, (x, 0, 0, 0, 0), values)
            return table, sq, ml, comp, out

        zeros = ops.zeros(vector, "float32")
        state = (ops.zeros((batch * out_h * K * self.table_size,), "float32"),
                 [zeros] * n_stats, [zeros] * n_stats, [zeros] * n_stats,
                 ops.zeros((rw,) + vector + (2 * n_stats,), "float32"))
        out = ops.fori_loop(0, rw, body, state)[-1]
        out = ops.moveaxis(out[window - 1:], 0, 2)  # (B, out_h, out_w, K, 2 S)
        return {name: (out[..., s], out[..., n_stats + s])
                for s, name in enumerate(self.stats)}

    # -- features (n: pairs in the window, from the box sums) -------------------
    def entropy_of(self, stat, total):
        """ln(total) - Σ m ln m / total; exactly 0 where one key holds every element
        (Σ m² > total² - total happens only then)."""
        sq, m_log_m = self.sums[stat]
        h = ops.maximum(ops.log(total) - m_log_m / total, 0.0)
        return ops.where(sq > total * total - total, 0.0, h)


def count_features(counts, box, names, symmetric):
    """Count features from the sliding sums and the box-filtered pair count."""
    n = box.n_safe
    out = {}
    if "joint" in counts.stats:
        h_joint = counts.entropy_of("joint", n)
        if symmetric:
            # an unordered off-diagonal pair splits over two cells: + ln 2 each
            h_joint = h_joint + math.log(2.0) * box.off_diagonal_fraction()
        asm = counts.sums["joint"][0] / (n * n)
        out.update(entropy=h_joint, asm=asm, energy=ops.sqrt(asm))
    if "sum" in counts.stats:
        out["sum_entropy"] = counts.entropy_of("sum", n)
    if "diff" in counts.stats:
        out["difference_entropy"] = counts.entropy_of("diff", n)
    if "x" in counts.stats:
        if symmetric:
            hx = hy = counts.entropy_of("x", 2.0 * n)
        else:
            hx, hy = counts.entropy_of("x", n), counts.entropy_of("y", n)
        mutual = ops.maximum(hx + hy - out["entropy"], 0.0)
        hmax = ops.maximum(hx, hy)
        # below float32 resolution of the entropies a window counts as one level
        positive = hmax > 1e-6
        out["imc1"] = ops.where(positive, -mutual / ops.where(positive, hmax, 1.0), 0.0)
        out["imc2"] = ops.sqrt(ops.maximum(-ops.expm1(-2.0 * mutual), 0.0))
    return {name: out[name] for name in names}


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
                             levels, symmetric)


class _WindowStatistics:
    """Features of every window from its gathered pairs (i, j) along the last axis:
    the higher moments and max_correlation, which box sums cannot give in float32.

    ``w`` is 1 for a pair, 0 for padding; ``n`` the number of pairs (>= 1 here).
    For symmetric GLCMs each pair stands for (i, j) and (j, i) with weight 1/2.
    """

    def __init__(self, i, j, w, n, levels, symmetric):
        self.i, self.j, self.w, self.n = i, j, w, n
        self.levels, self.symmetric = levels, symmetric
        self._cache = {}

    def _get(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def expect(self, values):
        """E[values] over the window's pairs."""
        return ops.sum(values * self.w, axis=-1) / self.n

    def sum_average(self):
        return self._get("savg", lambda: self.expect(self.i + self.j))

    def _sum_moment(self, power):
        centred = self.i + self.j - self.sum_average()[..., None]
        return self.expect(centred ** power)

    def cluster_shade(self):
        return self._sum_moment(3)

    def cluster_prominence(self):
        return self._sum_moment(4)

    def difference_variance(self):
        d = ops.abs(self.i - self.j)
        mu = self.expect(d)[..., None]
        return self.expect(ops.square(d - mu))

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
