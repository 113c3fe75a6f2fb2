"""Gathered windows: every window's pairs gathered along a last axis, for joint_max,
max_correlation (a GLCM per window), and the higher moments (cluster shade and
prominence, difference_variance) where the backend has no float64 for box sums."""

from __future__ import annotations

import functools

import numpy as np
from keras import ops

from glcm.features import GATHERED_WINDOWS, names_by
from glcm.properties import features_from_glcm


def anchor_mask(window, offsets):
    """(window², K) bool: anchor (a, b) of the window pairs inside it for offset k."""
    a, b = np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
    return np.stack([((a + dr >= 0) & (a + dr < window) & (b + dc >= 0)
                      & (b + dc < window)).ravel() for dr, dc in offsets], axis=1)


def gather_windows(pairs, n):
    """The :class:`WindowStatistics` of every window.

    Args:
      pairs: the window pairs (:class:`glcm._inputs.WindowPairs`).
      n: float32 (B, out_h, out_w, K) pairs per window (from the box sums).
    """
    reference, neighbour, valid = pairs.reference, pairs.neighbour, pairs.valid
    window, offsets = pairs.window, pairs.offset_tuples
    levels, symmetric = pairs.levels, pairs.symmetric
    batch = ops.shape(reference)[0]
    region_h, region_w = reference.shape[1], reference.shape[2]
    out_h, out_w = region_h - window + 1, region_w - window + 1
    n_off = len(offsets)
    # Pair-code map (code + 1, 0 where there is no pair) gathered in window patches:
    # (B, out_h, out_w, window², K), one gather (extract_patches lowers to a far
    # slower convolution on CPU).
    code = ops.where(valid, reference * levels + neighbour + 1, 0)
    rows = np.arange(out_h)[:, None, None, None]
    cols = np.arange(out_w)[None, :, None, None]
    dr = np.arange(window)[None, None, :, None]
    dc = np.arange(window)[None, None, None, :]
    index = ((rows + dr) * region_w + cols + dc).reshape(out_h * out_w, window * window)
    flat = ops.reshape(code, (batch, region_h * region_w, n_off))
    patches = ops.take(flat, ops.convert_to_tensor(index.astype("int32")), axis=1)
    patches = ops.cast(ops.reshape(patches, (batch, out_h, out_w, window * window, n_off)),
                       "float32")
    patches = ops.where(ops.convert_to_tensor(anchor_mask(window, offsets)), patches, 0.0)
    patches = ops.moveaxis(patches, -2, -1)  # (B, out_h, out_w, K, window²)
    pair = patches > 0
    code = ops.maximum(patches - 1.0, 0.0)
    i = ops.floor(code / levels)
    j = code - i * levels
    return WindowStatistics(i, j, ops.cast(pair, "float32"), ops.where(n > 0, n, 1.0),
                            levels, symmetric)


class WindowStatistics:
    """Features of every window from its gathered pairs (i, j) along the last axis.

    ``w`` is 1 for a pair, 0 for padding; ``n`` the number of pairs (>= 1 here).
    For symmetric GLCMs each pair stands for (i, j) and (j, i) with weight 1/2, which
    leaves these features unchanged.
    """

    # its own features, and the float64 ones where the backend has no float64
    FEATURES = names_by(lambda f: f.mechanism == GATHERED_WINDOWS or f.float64)

    @classmethod
    def elements_per_row(cls, names, batch, width, window, levels, n_offsets):
        """Values this mechanism holds per output row: window² gathered pairs per
        pixel and offset, times a GLCM per window (levels², for max_correlation) or
        every pair against every other (window², for joint_max)."""
        growth = 1
        if "max_correlation" in names:
            growth = max(growth, levels * levels // (window * window))
        if "joint_max" in names:
            growth = max(growth, window * window)
        return batch * width * n_offsets * window * window * growth

    def __init__(self, i, j, w, n, levels, symmetric):
        self.i, self.j, self.w, self.n = i, j, w, n
        self.levels, self.symmetric = levels, symmetric

    def expect(self, values):
        """E[values] over the window's pairs."""
        return ops.sum(values * self.w, axis=-1) / self.n

    @functools.cached_property
    def _sum_average(self):
        return self.expect(self.i + self.j)

    def _sum_moment(self, power):
        return self.expect((self.i + self.j - self._sum_average[..., None]) ** power)

    def cluster_shade(self):
        return self._sum_moment(3)

    def cluster_prominence(self):
        return self._sum_moment(4)

    def difference_variance(self):
        d = ops.abs(self.i - self.j)
        mu = self.expect(d)[..., None]
        return self.expect(ops.square(d - mu))

    def joint_max(self):
        """The largest entry of the window's normalized GLCM, from the number of
        pairs that share each pair's key (window² comparisons per pair)."""
        L = float(self.levels)
        if self.symmetric:
            # (i, j) and (j, i) share a key; an off-diagonal key's count splits over
            # two cells of P, a diagonal one's does not
            lo, hi = ops.minimum(self.i, self.j), ops.maximum(self.i, self.j)
            key, factor = lo * L + hi, ops.where(ops.equal(lo, hi), 1.0, 0.5)
        else:
            key, factor = self.i * L + self.j, 1.0
        same = ops.cast(ops.equal(key[..., :, None], key[..., None, :]), "float32")
        count = ops.sum(same * self.w[..., None, :], axis=-1)
        return ops.max(count * factor * self.w, axis=-1) / self.n

    def max_correlation(self):
        """Builds each window's GLCM (levels² per pixel: slow) for the exact value."""
        L = self.levels
        one_i = ops.one_hot(ops.cast(self.i, "int32"), L) * self.w[..., None]
        one_j = ops.one_hot(ops.cast(self.j, "int32"), L)
        P = ops.einsum("...ni,...nj->...ij", one_i, one_j)
        if self.symmetric:
            P = P + ops.swapaxes(P, -1, -2)
        return features_from_glcm(P, ["max_correlation"])[..., 0]
