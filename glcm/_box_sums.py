"""Box sums: window sums of per-anchor maps, for the features that are expectations
of (i, j) and their second moments under the window's GLCM."""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
from keras import ops

from glcm.features import BOX_SUMS, names_by


def anchor_kernels(window, offsets):
    """Per-offset 1-D indicators of the window rows / columns whose anchors pair
    inside the window: (window, K) each."""
    t = np.arange(window)
    rows = np.stack([(t + dr >= 0) & (t + dr < window) for dr, _ in offsets], axis=1)
    cols = np.stack([(t + dc >= 0) & (t + dc < window) for _, dc in offsets], axis=1)
    return rows.astype(np.float32), cols.astype(np.float32)


def _inverse_variance(i, j, valid, levels):
    d = i - j
    off = ops.not_equal(d, 0.0)
    return ops.where(off, valid / ops.where(off, d * d, 1.0), 0.0)


# The per-anchor maps whose window sums the float32 features take, by key, from the
# anchors' grey levels i and j (0 where a pair is invalid), the pairs' validity and
# the number of levels.
MAPS = {
    "n": lambda i, j, valid, levels: valid,
    "i": lambda i, j, valid, levels: i,
    "j": lambda i, j, valid, levels: j,
    "ii": lambda i, j, valid, levels: i * i,
    "jj": lambda i, j, valid, levels: j * j,
    "ij": lambda i, j, valid, levels: i * j,
    "sum": lambda i, j, valid, levels: i + j,
    "square_sum": lambda i, j, valid, levels: i * i + j * j,
    "off_diagonal": lambda i, j, valid, levels: (
        ops.cast(ops.not_equal(i, j), "float32") * valid),
    "contrast": lambda i, j, valid, levels: (i - j) * (i - j),
    "dissimilarity": lambda i, j, valid, levels: ops.abs(i - j),
    "homogeneity": lambda i, j, valid, levels: valid / (1.0 + (i - j) * (i - j)),
    "inverse_difference": lambda i, j, valid, levels: valid / (1.0 + ops.abs(i - j)),
    "inverse_difference_normalized": lambda i, j, valid, levels: (
        valid / (1.0 + ops.abs(i - j) / levels)),
    "inverse_difference_moment_normalized": lambda i, j, valid, levels: (
        valid / (1.0 + ((i - j) / levels) * ((i - j) / levels))),
    "inverse_variance": _inverse_variance,
}


class BoxMoments:
    """Window sums of per-anchor maps by separable sums whose per-offset indicators
    cover exactly the anchors whose pair lies inside the window
    ((window - |dr|) x (window - |dc|) boxes): O(window) per pixel and offset.

    Sums of integer maps are exact in float32 while below 2**24 (e.g. 32 levels with
    any window up to 63). Second moments are centred on the window's centre pixel
    value c, which lies in the window, so E[(x-c)²] - E[x-c]² cancels by at most about
    the window's pair count instead of by E[x²] / variance.

    Args:
      pairs: the window pairs (:class:`glcm._inputs.WindowPairs`).
    """

    FEATURES = names_by(lambda f: f.mechanism == BOX_SUMS)
    # Higher moments from float64 sums (exact integers; see _power_sums): where the
    # backend has float64 (TensorFlow; JAX with jax_enable_x64), else gathered windows.
    FLOAT64_FEATURES = names_by(lambda f: f.float64)

    @classmethod
    def elements_per_row(cls, names, batch, width, window, levels, n_offsets):
        """Values this mechanism holds per output row: a dozen box-filtered maps per
        pixel and offset, twice the bytes for the float64 power sums."""
        per_pixel = 32 if set(names) & set(cls.FLOAT64_FEATURES) else 16
        return batch * width * n_offsets * per_pixel

    # The float32 window sums (keys of :meth:`summed`) each feature takes beyond the
    # pair count n; the centred moments' differ with symmetry (see :attr:`_centred`).
    SUMS = {"contrast": ("contrast",), "dissimilarity": ("dissimilarity",),
            "homogeneity": ("homogeneity",), "inverse_difference": ("inverse_difference",),
            "inverse_difference_normalized": ("inverse_difference_normalized",),
            "inverse_difference_moment_normalized": ("inverse_difference_moment_normalized",),
            "inverse_variance": ("inverse_variance",), "autocorrelation": ("ij",),
            "off_diagonal_fraction": ("off_diagonal",)}
    CENTRED_SUMS = {True: ("sum", "ij", "square_sum"), False: ("i", "j", "ii", "jj", "ij")}
    CENTRED_FEATURES = ("mean", "variance", "std", "correlation", "sum_average",
                        "sum_variance", "cluster_tendency")

    def __init__(self, pairs):
        self.valid = ops.cast(pairs.valid, "float32")
        self.i = ops.cast(ops.maximum(pairs.reference, 0), "float32") * self.valid
        self.j = ops.cast(ops.maximum(pairs.neighbour, 0), "float32") * self.valid
        self.c = ops.cast(ops.maximum(pairs.centre_value, 0), "float32")[..., None]
        self.symmetric = pairs.symmetric
        self.levels = float(pairs.levels)
        self.rows, self.cols = anchor_kernels(pairs.window, pairs.offsets)
        self._sums = {}  # key -> its window sums (B, out_h, out_w, K)

    def prefetch(self, names):
        """Takes the float32 window sums that ``names`` need (any feature names; the
        symmetric joint entropy needs the off-diagonal fraction) in one stacked
        :meth:`box` instead of one each: a kernel with one box pass traces and
        compiles in a fifth less time (docs/performance.md). Each map's sums are the
        same values either way (the same taps, added in the same order)."""
        keys = ["n"]
        for name in names:
            keys += self.SUMS.get(name, ())
            if name in self.CENTRED_FEATURES:
                keys += self.CENTRED_SUMS[self.symmetric]
            if name == "entropy" and self.symmetric:
                keys += self.SUMS["off_diagonal_fraction"]
        missing = [key for key in dict.fromkeys(keys) if key not in self._sums]
        if len(missing) < 2:
            return
        boxed = self.box(ops.stack([self._map(key) for key in missing], axis=-1))
        self._sums.update({key: boxed[..., k] for k, key in enumerate(missing)})

    def summed(self, key):
        """The window sums of the map ``key`` (see :meth:`_map`), (B, out_h, out_w,
        K): taken once, by :meth:`prefetch` or here."""
        if key not in self._sums:
            self._sums[key] = self.box(self._map(key))
        return self._sums[key]

    def _map(self, key):
        """The per-anchor map whose window sums :meth:`summed` takes for ``key``."""
        return MAPS[key](self.i, self.j, self.valid, self.levels)

    @functools.cached_property
    def n(self):
        """Pairs per window and offset (B, out_h, out_w, K), float32 (exact)."""
        return self.summed("n")

    @functools.cached_property
    def n_safe(self):
        """:attr:`n`, 1 where a window has no pair (its features are masked)."""
        return ops.where(self.n > 0, self.n, 1.0)

    def box(self, maps):
        """Window sums of (B, rh, rw, K) maps -> (B, out_h, out_w, K); of (B, rh, rw,
        K, M) maps, M of them stacked, -> (B, out_h, out_w, K, M).

        Window taps weighted by the per-offset indicator: elementwise adds that XLA
        fuses into one pass (its depthwise convolution was far slower on CPU).
        """
        window = self.rows.shape[0]
        out_h, out_w = maps.shape[1] - window + 1, maps.shape[2] - window + 1
        dtype = keras.backend.standardize_dtype(maps.dtype)
        stacked = (1,) * (len(maps.shape) - 4)  # the taps broadcast over M
        taps_r, taps_c = (t.astype(dtype).reshape(t.shape + stacked)
                          for t in (self.rows, self.cols))
        rows = sum(maps[:, t:t + out_h] * taps_r[t] for t in range(window))
        return sum(rows[:, :, t:t + out_w] * taps_c[t] for t in range(window))

    def _mean_of(self, key):
        return self.summed(key) / self.n_safe

    @functools.cached_property
    def _centred(self):
        """E[x-c], E[y-c], E[(x-c)²], E[(y-c)²], E[(x-c)(y-c)] under the GLCM."""
        i, j, c, n = self.i, self.j, self.c, self.n
        if self.symmetric:  # x and y share their moments: two boxes fewer
            s = self.summed("sum")
            ab = (self.summed("ij") - c * s + n * c * c) / self.n_safe
            m1 = (s - 2.0 * n * c) / (2.0 * self.n_safe)
            m2 = ((self.summed("square_sum") - 2.0 * c * s + 2.0 * n * c * c)
                  / (2.0 * self.n_safe))
            return m1, m1, m2, m2, ab
        si, sj = self.summed("i"), self.summed("j")
        a1, b1 = si - n * c, sj - n * c
        a2 = self.summed("ii") - 2.0 * c * si + n * c * c
        b2 = self.summed("jj") - 2.0 * c * sj + n * c * c
        ab = (self.summed("ij") - c * (si + sj) + n * c * c) / self.n_safe
        n = self.n_safe
        return a1 / n, b1 / n, a2 / n, b2 / n, ab

    @functools.cached_property
    def _variances(self):
        ex, ey, exx, eyy, exy = self._centred
        return (ops.maximum(exx - ex * ex, 0.0), ops.maximum(eyy - ey * ey, 0.0),
                exy - ex * ey)

    def _single_level(self, var):
        # Over integers, two levels or more among M equally weighted elements give a
        # variance of at least (M-1)/M², i.e. var * M >= 1/2.
        elements = 2.0 * self.n_safe if self.symmetric else self.n_safe
        return var * elements < 0.5

    def contrast(self):
        return self._mean_of("contrast")

    def dissimilarity(self):
        return self._mean_of("dissimilarity")

    def homogeneity(self):
        return self._mean_of("homogeneity")

    def inverse_difference(self):
        return self._mean_of("inverse_difference")

    def inverse_difference_normalized(self):
        return self._mean_of("inverse_difference_normalized")

    def inverse_difference_moment_normalized(self):
        return self._mean_of("inverse_difference_moment_normalized")

    def inverse_variance(self):
        return self._mean_of("inverse_variance")

    def autocorrelation(self):
        # E[ij]: integer products, so the window sums are exact in float32
        return self._mean_of("ij")

    def cluster_tendency(self):
        return self.sum_variance()

    def _power_sums(self, values, powers):
        """[Σ 1, Σ v, ..., Σ v^powers] over each window's pairs, float64.

        ``values`` are integer maps, so every sum is an exact integer in float64 (below
        2^53: e.g. 63² pairs x 510⁴ for the fourth power of i + j at 256 levels).
        """
        v = ops.cast(values, "float64")
        # the pair count n is already an exact integer in float32
        return [ops.cast(self.n, "float64")] + [self.box(v ** q)
                                                for q in range(1, powers + 1)]

    def _central_moment(self, sums, power):
        """E[(v - E v)^power] (power 2, 3 or 4) from the power sums [n, S1, ...]:
        n^p m_p as one integer combination (exact in float64 while the terms stay
        below 2^53), divided once."""
        n, s1, s2 = sums[0], sums[1], sums[2]
        if power == 2:
            num = n * s2 - s1 * s1
        elif power == 3:
            num = n * n * sums[3] - 3.0 * n * s1 * s2 + 2.0 * s1 ** 3
        else:
            num = (n ** 3 * sums[4] - 4.0 * n * n * s1 * sums[3] + 6.0 * n * s1 * s1 * s2
                   - 3.0 * s1 ** 4)
        return ops.cast(num / ops.where(n > 0, n, 1.0) ** power, "float32")

    @functools.cached_property
    def _sum_sums(self):
        # i + j centred on twice the window's centre value: smaller integers, and the
        # same moments (each window's sums shifted exactly, by the binomial formula)
        raw = self._power_sums(self.i + self.j, 4)
        shift = ops.cast(-2.0 * self.c, "float64")
        return [sum(math.comb(q, r) * raw[r] * shift ** (q - r) for r in range(q + 1))
                for q in range(5)]

    def cluster_shade(self):
        return self._central_moment(self._sum_sums, 3)

    def cluster_prominence(self):
        return self._central_moment(self._sum_sums, 4)

    def difference_variance(self):
        return self._central_moment(self._power_sums(ops.abs(self.i - self.j), 2), 2)

    def off_diagonal_fraction(self):
        """The fraction of the window's pairs with i != j."""
        return self._mean_of("off_diagonal")

    def mean(self):
        return self.c + self._centred[0]

    def variance(self):
        return self._variances[0]

    def std(self):
        return ops.sqrt(self.variance())

    def correlation(self):
        var_x, var_y, cov = self._variances
        single = ops.logical_or(self._single_level(var_x), self._single_level(var_y))
        denom = ops.sqrt(var_x * var_y)
        return ops.where(single, 1.0, cov / ops.where(single, 1.0, denom))

    def sum_average(self):
        ex, ey = self._centred[:2]
        return 2.0 * self.c + ex + ey

    def sum_variance(self):
        var_x, var_y, cov = self._variances
        return var_x + var_y + 2.0 * cov
