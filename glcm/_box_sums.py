"""Box sums: window sums of per-anchor maps, for the features that are expectations
of (i, j) and their second moments under the window's GLCM."""

from __future__ import annotations

import functools
import math
import operator

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


def added(terms):
    """The sum of ``terms`` (tensors), without the ``0 +`` that ``sum`` starts with (an
    op more to trace and compile per shape)."""
    return functools.reduce(operator.add, terms)


def _tap(maps, weights, dtype):
    """``maps`` weighted by one tap's per-offset indicator: left as it is where the
    tap counts for every offset (most taps), so the traced program holds no multiply
    by ones (fewer ops to trace and compile per shape)."""
    if weights.all():
        return maps
    return maps * weights.astype(dtype)


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

    def __init__(self, pairs):
        self.valid = ops.cast(pairs.valid, "float32")
        self.i = ops.cast(ops.maximum(pairs.reference, 0), "float32") * self.valid
        self.j = ops.cast(ops.maximum(pairs.neighbour, 0), "float32") * self.valid
        self.c = ops.cast(ops.maximum(pairs.centre_value, 0), "float32")[..., None]
        self.symmetric = pairs.symmetric
        self.levels = float(pairs.levels)
        self.rows, self.cols = anchor_kernels(pairs.window, pairs.offsets)

    @functools.cached_property
    def n(self):
        """Pairs per window and offset (B, out_h, out_w, K), float32 (exact)."""
        return self.box(self.valid)

    @functools.cached_property
    def n_safe(self):
        """:attr:`n`, 1 where a window has no pair (its features are masked)."""
        return ops.where(self.n > 0, self.n, 1.0)

    def box(self, maps):
        """Window sums of (B, rh, rw, K) maps -> (B, out_h, out_w, K).

        Window taps weighted by the per-offset indicator: elementwise adds that XLA
        fuses into one pass (its depthwise convolution was far slower on CPU).
        """
        window = self.rows.shape[0]
        out_h, out_w = maps.shape[1] - window + 1, maps.shape[2] - window + 1
        dtype = keras.backend.standardize_dtype(maps.dtype)
        rows = added(_tap(maps[:, t:t + out_h], self.rows[t], dtype) for t in range(window))
        return added(_tap(rows[:, :, t:t + out_w], self.cols[t], dtype)
                     for t in range(window))

    def _mean_of(self, maps):
        return self.box(maps) / self.n_safe

    @functools.cached_property
    def _centred(self):
        """E[x-c], E[y-c], E[(x-c)²], E[(y-c)²], E[(x-c)(y-c)] under the GLCM."""
        i, j, c, n = self.i, self.j, self.c, self.n
        if self.symmetric:  # x and y share their moments: two boxes fewer
            s = self.box(i + j)
            ab = (self.box(i * j) - c * s + n * c * c) / self.n_safe
            m1 = (s - 2.0 * n * c) / (2.0 * self.n_safe)
            m2 = ((self.box(i * i + j * j) - 2.0 * c * s + 2.0 * n * c * c)
                  / (2.0 * self.n_safe))
            return m1, m1, m2, m2, ab
        si, sj = self.box(i), self.box(j)
        a1, b1 = si - n * c, sj - n * c
        a2 = self.box(i * i) - 2.0 * c * si + n * c * c
        b2 = self.box(j * j) - 2.0 * c * sj + n * c * c
        ab = (self.box(i * j) - c * (si + sj) + n * c * c) / self.n_safe
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
        d = self.i - self.j
        return self._mean_of(d * d)

    def dissimilarity(self):
        return self._mean_of(ops.abs(self.i - self.j))

    def homogeneity(self):
        d = self.i - self.j
        return self._mean_of(self.valid / (1.0 + d * d))

    def inverse_difference(self):
        return self._mean_of(self.valid / (1.0 + ops.abs(self.i - self.j)))

    def inverse_difference_normalized(self):
        return self._mean_of(self.valid / (1.0 + ops.abs(self.i - self.j) / self.levels))

    def inverse_difference_moment_normalized(self):
        d = (self.i - self.j) / self.levels
        return self._mean_of(self.valid / (1.0 + d * d))

    def inverse_variance(self):
        d = self.i - self.j
        off = ops.not_equal(d, 0.0)
        return self._mean_of(ops.where(off, self.valid / ops.where(off, d * d, 1.0), 0.0))

    def autocorrelation(self):
        # E[ij]: integer products, so the window sums are exact in float32
        return self._mean_of(self.i * self.j)

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
        return self._mean_of(ops.cast(ops.not_equal(self.i, self.j), "float32") * self.valid)

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
