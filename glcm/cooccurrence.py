"""Batched grey-level co-occurrence matrices with scikit-image's conventions."""

from __future__ import annotations

import numpy as np
from keras import ops

from glcm._compile import jit_when_eager, scatter_parts
from glcm._inputs import checked_inputs, level_codes, neighbour_codes
from glcm.validation import DEFAULT_ANGLES


def graycomatrix(images, distances, angles=DEFAULT_ANGLES, levels=256, symmetric=False,
                 normed=False, mask=None):
    """Grey-level co-occurrence matrices of a batch of images.

    Equal to stacking ``skimage.feature.graycomatrix`` over the batch. For distance d
    and angle θ the pair is (reference, neighbour) = (image[r, c],
    image[r + round(d sin θ), c + round(d cos θ)]): θ=0 pairs a pixel with its right
    neighbour, θ=π/2 with the one below it. Pairs that leave the image are not
    counted (no wrap-around). See ``docs/features.md`` for the conventions.

    Parameters
    ----------
    images : int array (batch, H, W) or (batch, H, W, 1)
        Grey levels in [0, levels). Use :func:`glcm.quantize` for other data.
    distances : sequence of int
        Pixel pair distances (>= 1).
    angles : sequence of float
        Angles in radians (scikit-image's convention; any real angle).
    levels : int
        Number of grey levels (2..65536).
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
        Wrong rank, ``levels`` out of range, empty distances/angles, values outside
        [0, levels) (checked when the values are known, i.e. not while tracing).

    Examples
    --------
    >>> import numpy as np, glcm
    >>> image = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 2], [2, 2, 3, 3]])
    >>> P = glcm.graycomatrix(image[None], [1], [0], levels=4)
    >>> tuple(P.shape)
    (1, 4, 4, 1, 1)
    >>> np.asarray(P)[0, :, :, 0, 0]
    array([[2, 2, 1, 0],
           [0, 2, 0, 0],
           [0, 0, 3, 1],
           [0, 0, 0, 1]], dtype=int32)
    """
    images, mask, levels, distances, angles, offsets = checked_inputs(
        images, mask, levels, distances, angles)
    parts = scatter_parts((images, mask), images.shape[0])
    return _cooccurrence(images, mask, offsets=offsets, grid=(len(distances), len(angles)),
                         levels=levels, symmetric=bool(symmetric), normed=bool(normed),
                         parts=parts)


def _pair_counts(images, mask, offsets, levels):
    """(batch, K * (L + 1)²) int32: each image's pair counts per offset, the extra
    level L holding pairs with an invalid pixel. One flat segment-sum over the
    batch: jit-able on every backend, unlike keras.ops.bincount (a loop over the
    batch on JAX)."""
    # Invalid pixels (masked, out of range, outside the image) become the extra
    # level L: every pair code stays in range, and the extra row/column is dropped.
    reference = level_codes(images, levels, mask, invalid=levels)
    batch = ops.shape(reference)[0]
    side = levels + 1
    offset_base = ops.arange(len(offsets), dtype="int32")[None, :, None] * (side * side)
    pair_code = (ops.reshape(reference, (batch, 1, -1)) * side + offset_base
                 + neighbour_codes(reference, offsets, fill=levels))
    n_bins = len(offsets) * side * side
    batch_base = ops.arange(batch, dtype="int32")[:, None, None] * n_bins
    pair_code = ops.reshape(pair_code + batch_base, (-1,))
    counts = ops.segment_sum(ops.ones_like(pair_code), pair_code,
                             num_segments=batch * n_bins)
    return ops.reshape(counts, (batch, n_bins))


@jit_when_eager
def _cooccurrence(images, mask, *, offsets, grid, levels, symmetric, normed, parts=1):
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    if parts > 1:
        # Independent groups of images, counted by independent scatter-adds that
        # XLA:CPU runs concurrently (glcm._compile.scatter_parts); a few static
        # groups, not a loop over images. Split before the pair codes are made:
        # slicing codes made for the whole batch was slower.
        batch = images.shape[0]
        size = -(-batch // parts)
        counts = ops.concatenate(
            [_pair_counts(images[a:a + size], None if mask is None else mask[a:a + size],
                          offsets, levels) for a in range(0, batch, size)], axis=0)
    else:
        counts = _pair_counts(images, mask, offsets, levels)
    side = levels + 1
    counts = ops.reshape(counts, (-1,) + tuple(grid) + (side, side))
    P = counts[:, :, :, :levels, :levels]
    P = ops.transpose(P, (0, 3, 4, 1, 2))
    if symmetric:
        P = P + ops.transpose(P, (0, 2, 1, 3, 4))
    if normed:
        P = ops.cast(P, "float32")
        total = ops.sum(P, axis=(1, 2), keepdims=True)
        P = P / ops.where(total > 0, total, 1.0)
    return P
