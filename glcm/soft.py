"""Soft (differentiable) co-occurrence matrices: gradients through GLCM texture.

Counting grey-level pairs has no gradient. Here each pixel belongs to every level
with a weight, a smooth function of its value, and a pixel pair adds the outer
product of its two pixels' weights to the co-occurrence matrix: a sum of outer
products (a matrix product), differentiable in the pixel values and in the
quantization range. The features then follow from the matrix as for the exact
layers (:class:`glcm.properties.GLCMStatistics`).

Soft assignment, for ``L`` levels over ``[vmin, vmax)`` and ``u = (x - vmin) /
(vmax - vmin) L`` (the value in level units; level ``k`` is ``[k, k + 1)``):

.. math:: w_k(u) = \\sigma\\left(\\frac{u - k}{b}\\right)
          - \\sigma\\left(\\frac{u - k - 1}{b}\\right)

with the outer edges open (``w_0 = 1 - \\sigma((u - 1) / b)``, ``w_{L-1} =
\\sigma((u - L + 1) / b)``), ``\\sigma`` the logistic function and ``b`` the
bandwidth in levels. The weights sum to 1. As ``b -> 0`` they become the indicator
of the level :func:`glcm.quantize` gives (values clipped to the range as there): a
pixel at distance ``d`` (in levels) from the nearest inner level edge puts at most
``2 \\sigma(-d / b)`` of its weight elsewhere (``b = 0.05``, ``d = 0.25``: 1.3 %;
``b = 0.01``: 4e-9).
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
from keras import ops

from glcm._box_sums import anchor_kernels
from glcm.features import REGISTRY, resolve_features
from glcm.properties import features_from_glcm, nanmean

# Features that are not smooth functions of the matrix, and why (from the registry).
NOT_SMOOTH: Dict[str, str] = {f.name: f.not_smooth for f in REGISTRY if f.not_smooth}
# Elements (images x pixels x levels² x offsets) SoftTextureMap may hold at once:
# its per-pixel matrices are levels² floats per pixel and offset (256 MB here).
SOFT_MAP_MAX_ELEMENTS = 1 << 26


def smooth_features(features) -> Tuple[str, ...]:
    """Canonical names of ``features``; ValueError for a feature without a gradient."""
    names = resolve_features(features)
    refused = [n for n in names if n in NOT_SMOOTH]
    if refused:
        raise ValueError("; ".join(f"{n} has no use in a soft GLCM layer: it is "
                                   f"{NOT_SMOOTH[n]}" for n in refused)
                         + ". Use the exact layers (GLCMFeatures, TextureMap) for it")
    return names


def check_bandwidth(bandwidth) -> float:
    """``bandwidth`` as a positive float (ValueError otherwise)."""
    value = float(bandwidth)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"bandwidth must be a positive number of grey levels, got "
                         f"{bandwidth!r}")
    return value


def soft_assign(x, levels: int, vmin, vmax, bandwidth: float, mask=None):
    """Soft level weights of every pixel.

    Args:
      x: float array (...); NaN and ±inf are invalid.
      levels, vmin, vmax: as :func:`glcm.quantize` (tensors allowed: trainable).
      bandwidth: kernel width in levels.
      mask: bool array like ``x``, False = invalid.

    Returns:
      (weights float32 (..., levels), zero for invalid pixels; valid bool (...)).
    """
    x = ops.cast(x, "float32")
    valid = ops.isfinite(x)
    if mask is not None:
        valid = ops.logical_and(valid, ops.cast(mask, "bool"))
    vmin = ops.cast(vmin, "float32")
    vmax = ops.cast(vmax, "float32")
    # invalid values replaced before any arithmetic: no NaN in the forward or the
    # backward pass
    u = (ops.where(valid, x, vmin) - vmin) / (vmax - vmin) * float(levels)
    edges = ops.convert_to_tensor(np.arange(1, levels, dtype=np.float32))
    above = ops.sigmoid((u[..., None] - edges) / bandwidth)  # P(value above edge k+1)
    ones, zeros = ops.ones_like(u)[..., None], ops.zeros_like(u)[..., None]
    weights = (ops.concatenate([ones, above], axis=-1)
               - ops.concatenate([above, zeros], axis=-1))
    return weights * ops.cast(valid, "float32")[..., None], valid


def _shifted(padded, reach, dr, dc, height, width):
    """``padded[:, reach + dr : ... + height, reach + dc : ... + width]``."""
    return padded[:, reach + dr:reach + dr + height, reach + dc:reach + dc + width]


def soft_glcm(weights, offsets: Sequence[Tuple[int, int]], symmetric: bool):
    """Soft co-occurrence matrices of whole images: (B, K, L, L) from (B, H, W, L)
    weights, one matrix per (row, col) offset, sums of the outer products of each
    pair's weights (pairs leaving the image do not count)."""
    reach = max(max(abs(dr), abs(dc)) for dr, dc in offsets)
    shape = ops.shape(weights)
    height, width, levels = shape[1], shape[2], weights.shape[-1]
    padded = ops.pad(weights, [[0, 0], [reach, reach], [reach, reach], [0, 0]])
    reference = ops.reshape(_shifted(padded, reach, 0, 0, height, width),
                            (shape[0], -1, levels))
    matrices = []
    for dr, dc in offsets:
        neighbour = ops.reshape(_shifted(padded, reach, dr, dc, height, width),
                                (shape[0], -1, levels))
        P = ops.matmul(ops.transpose(reference, (0, 2, 1)), neighbour)
        matrices.append(P + ops.transpose(P, (0, 2, 1)) if symmetric else P)
    return ops.stack(matrices, axis=1)


def soft_glcm_maps(weights, offsets: Sequence[Tuple[int, int]], window: int,
                   symmetric: bool):
    """Per-pixel soft co-occurrence matrices: (B, H, W, K, L, L), the window centred
    on each pixel clipped at the image border (as :func:`glcm.texture_map`), a pair
    counting when both its pixels lie in the window."""
    half = window // 2
    reach = max(max(abs(dr), abs(dc)) for dr, dc in offsets)
    margin = half + reach
    shape = ops.shape(weights)
    height, width = shape[1], shape[2]
    padded = ops.pad(weights, [[0, 0], [margin, margin], [margin, margin], [0, 0]])
    region_h, region_w = height + window - 1, width + window - 1
    rows, cols = anchor_kernels(window, offsets)
    reference = _shifted(padded, reach, 0, 0, region_h, region_w)
    matrices = []
    for k, (dr, dc) in enumerate(offsets):
        neighbour = _shifted(padded, reach, dr, dc, region_h, region_w)
        outer = reference[..., :, None] * neighbour[..., None, :]  # (B, rh, rw, L, L)
        # window sums of the anchors whose pair lies inside the window (separable)
        summed = sum(outer[:, t:t + height] for t in range(window) if rows[t, k])
        summed = sum(summed[:, :, t:t + width] for t in range(window) if cols[t, k])
        matrices.append(summed + ops.swapaxes(summed, -1, -2) if symmetric else summed)
    return ops.stack(matrices, axis=3)


def average_offsets(values):
    """(..., K, F) -> (..., F): the mean over the offsets that have a pair (NaN where
    none has)."""
    return nanmean(values, axis=-2)


def soft_features(P, names):
    """Features (..., F) of soft matrices (..., L, L), NaN where a matrix is empty,
    with finite gradients."""
    return features_from_glcm(P, names, differentiable=True)


def check_map_size(shape, levels: int, n_offsets: int) -> None:
    """ValueError when a SoftTextureMap input of ``shape`` (B, H, W) would hold more
    than :data:`SOFT_MAP_MAX_ELEMENTS` matrix entries; no check for unknown sizes."""
    if any(not isinstance(d, (int, np.integer)) for d in shape):
        return
    batch, height, width = (int(d) for d in shape)
    needed = batch * height * width * levels * levels * n_offsets
    if needed > SOFT_MAP_MAX_ELEMENTS:
        raise ValueError(
            f"SoftTextureMap keeps levels² = {levels * levels} floats per pixel and "
            f"offset: {batch} x {height} x {width} pixels x {n_offsets} offset(s) need "
            f"{needed:,} (about {needed * 4 / 2**30:.1f} GiB, and several times that "
            f"while the gradient is taken), more than the limit of "
            f"{SOFT_MAP_MAX_ELEMENTS:,}. Feed smaller tiles or batches, or use fewer "
            f"levels or offsets")
