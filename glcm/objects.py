"""Exact GLCM features per object: one co-occurrence matrix per label (parcel,
segment, cell), counted over the pixel pairs whose two pixels carry that label.

Counts add up: an object's matrix is the sum of the matrices of any partition of its
reference pixels, so blocks of an image (Dask chunks, pipeline tiles) each count the
pairs whose reference pixel is in their core (``core=``) and the sums are exact,
whatever the seams. :func:`object_glcm` gives those counts; :func:`object_features`
the features.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from glcm._compile import jit_when_eager
from glcm._inputs import check_level_values, neighbour_codes
from glcm.features import resolve_features
from glcm.properties import _features_from_glcm, nanmean
from glcm.validation import (DEFAULT_ANGLES, check_angles, check_distances, check_levels,
                             pixel_offsets)

# Bins (batch x objects x offsets x levels²) counted by one pass over the image:
# objects are taken this many bins at a time, so memory stays bounded however many
# objects there are (each pass reads the whole image again).
MAX_OBJECT_BINS = 1 << 25


def object_glcm(codes, labels, distances=(1,), angles=DEFAULT_ANGLES, levels=256,
                symmetric=True, mask=None, *, core=None, ids=None):
    """Co-occurrence matrices of every labelled object of an image.

    A pixel pair (reference, neighbour) at offset (distance, angle) counts for object
    ``k`` when both pixels carry label ``k`` and both are valid: each object's matrix
    equals :func:`glcm.graycomatrix` of the image restricted to that object's pairs.
    Offsets follow scikit-image (θ=0: right neighbour, θ=π/2: the one below).

    Parameters
    ----------
    codes : int array (H, W) or (batch, H, W)
        Grey levels in [0, levels) (see :func:`glcm.quantize`); only pixels inside
        objects are read, so the background may hold any value.
    labels : int array (H, W), or (batch, H, W) like ``codes``
        Object labels; positive values are objects, 0 and negative values (and NaN
        for float labels) background. A (H, W) labelling is shared by every image of
        the batch (e.g. the bands of a scene).
    distances, angles, levels, symmetric
        As :func:`glcm.graycomatrix`; ``symmetric`` defaults to True, as
        :func:`object_features`.
    mask : bool array like ``codes``, optional
        Valid pixels; a pair counts only when both are valid.
    core : (row_start, row_stop, col_start, col_stop), optional
        Count only the pairs whose reference pixel lies in these rows and columns (the
        neighbour may lie anywhere in the array). For blocks read with a halo of at
        least the largest distance: the blocks' counts sum to the image's counts.
    ids : int array, optional
        The objects to count, sorted (default: every positive label present, in the
        core when given). Objects absent from the image get zero matrices.

    Returns
    -------
    ids : int64 numpy array (n,)
        The objects' labels, sorted.
    P : int32 numpy array (n, levels, levels, n_distances, n_angles)
        The counts, ``P[k, i, j, d, a]`` pairs of object ``ids[k]`` with grey levels
        (i, j); with a leading batch axis for batched ``codes``. Pass them to
        :func:`glcm.graycoprops` for features (after summing partial counts).

    Examples
    --------
    >>> import numpy as np, glcm
    >>> codes = np.array([[0, 1, 1, 0], [0, 1, 1, 0]])
    >>> labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    >>> ids, P = glcm.object_glcm(codes, labels, [1], [0], levels=2, symmetric=False)
    >>> ids.tolist(), P[:, :, :, 0, 0].tolist()
    ([1, 2], [[[0, 2], [0, 0]], [[0, 0], [2, 0]]])
    """
    prepared = _prepare(codes, labels, distances, angles, levels, mask, core, ids)
    ids, counts = prepared.ids, list(_count_chunks(prepared))
    P = np.concatenate(counts, axis=1) if counts else np.zeros(
        (prepared.batch, 0, prepared.grid[0] * prepared.grid[1], levels, levels), np.int32)
    P = P.reshape(P.shape[:2] + prepared.grid + (prepared.levels,) * 2)
    P = np.moveaxis(P, (2, 3), (4, 5))  # (batch, n, L, L, D, A)
    if symmetric:
        P = P + np.swapaxes(P, 2, 3)
    P = np.ascontiguousarray(P, dtype=np.int32)
    return ids, (P if prepared.batched else P[0])


def object_features(codes, labels, features, distances=(1,), angles=DEFAULT_ANGLES,
                    levels=256, symmetric=True, average=True, mask=None,
                    convention="skimage", *, ids=None):
    """Haralick features of every labelled object's co-occurrence matrix.

    Each object's numbers equal :func:`glcm.graycomatrix` followed by
    :func:`glcm.graycoprops` on that object's pairs alone: a pair counts when both
    pixels carry the object's label and both are valid (see :func:`object_glcm`).
    Unlike zeroing the background (mahotas' ``ignore_zeros``), pairs that cross the
    object's border are never counted, and objects of any shape or size are exact.

    Parameters
    ----------
    codes, labels, distances, angles, levels, mask, ids
        As :func:`object_glcm`.
    features : str or sequence of str
        Names or aliases of :data:`glcm.FEATURES`, or "all".
    symmetric : bool
        Count both orders of each pair (default True, as Earth Engine).
    average : bool
        Average each feature over the offsets that have at least one pair.
    convention : {"skimage", "ibsi"}
        As :func:`glcm.graycoprops`.

    Returns
    -------
    ids : int64 numpy array (n,)
        The objects' labels, sorted.
    values : float32 numpy array (n, n_features), or (n, n_distances, n_angles,
        n_features) with ``average=False``; with a leading batch axis for batched
        ``codes``. NaN for an object without a valid pair (e.g. a single pixel).

    Examples
    --------
    >>> import numpy as np, glcm
    >>> codes = np.array([[0, 1, 1, 0], [0, 1, 1, 0]])
    >>> labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    >>> ids, values = glcm.object_features(codes, labels, ["contrast", "mean"],
    ...                                    distances=[1], angles=[0], levels=2)
    >>> ids.tolist(), values.tolist()
    ([1, 2], [[1.0, 0.5], [1.0, 0.5]])
    """
    names = resolve_features(features, convention)
    prepared = _prepare(codes, labels, distances, angles, levels, mask, None, ids)
    values = _features_of_chunks(_count_chunks(prepared), prepared.batch, names,
                                 convention, prepared.grid, prepared.levels,
                                 bool(symmetric), bool(average))
    return prepared.ids, (values if prepared.batched else values[0])


def object_glcm_features(P, features, average=True, convention="skimage"):
    """Features of object matrices, e.g. partial counts of :func:`object_glcm` summed
    over blocks; taken a bounded number of objects at a time.

    Parameters
    ----------
    P : int array (n, L, L, n_distances, n_angles) or (batch, n, L, L, D, A)
        Counts as :func:`object_glcm` returns them (already symmetric if wanted).
    features, average, convention
        As :func:`object_features`.

    Returns
    -------
    float32 numpy array (n, n_features) or (n, D, A, n_features) (batch first when
    ``P`` has a batch axis); NaN for a matrix without pairs.
    """
    names = resolve_features(features, convention)
    P = np.asarray(P)
    batched = P.ndim == 6
    if not batched:
        P = P[None]
    if P.ndim != 6 or P.shape[2] != P.shape[3]:
        raise ValueError(f"P must have shape (n, L, L, n_distances, n_angles), got "
                         f"{np.shape(P)}")
    batch, n, levels = P.shape[0], P.shape[1], P.shape[2]
    grid = tuple(P.shape[4:])
    chunk = max(1, MAX_OBJECT_BINS // (batch * grid[0] * grid[1] * levels * levels))
    # (batch, m, K, L, L) counts, as _count_chunks gives them
    parts = (np.moveaxis(P[:, start:start + chunk], (4, 5), (2, 3)).reshape(
        (batch, -1, grid[0] * grid[1], levels, levels)) for start in range(0, n, chunk))
    values = _features_of_chunks(parts, batch, names, convention, grid, levels,
                                 symmetric=False, average=bool(average))
    return values if batched else values[0]


class _Prepared:
    """Validated inputs: int32 codes (-1 invalid), dense object indices, the ids."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def object_ids(labels, core=None) -> np.ndarray:
    """The sorted positive labels present in ``labels`` (in the core when given)."""
    values = _label_values(labels)
    if core is not None:
        r0, r1, c0, c1 = core
        values = values[..., r0:r1, c0:c1]
    positive = values[values > 0]
    if positive.size and positive.max() <= _table_limit(values.size):
        return np.flatnonzero(np.bincount(positive)).astype(np.int64)  # no sort
    return np.unique(positive).astype(np.int64)


def _table_limit(n_pixels: int) -> int:
    """Largest label for which a lookup table (one entry per label value) is used
    instead of sorting: tables of a few times the image's size cost less."""
    return 4 * n_pixels + (1 << 20)


def _dense_index(label_values, ids) -> np.ndarray:
    """int32: each pixel's position in ``ids``, -1 for background and other labels."""
    largest = int(label_values.max(initial=0))
    if largest <= _table_limit(label_values.size):
        table = np.full(max(largest, int(ids.max(initial=0))) + 1, -1, np.int32)
        table[ids] = np.arange(len(ids), dtype=np.int32)
        return table[np.maximum(label_values, 0)]  # table[0] is -1: background
    index = np.searchsorted(ids, label_values)
    found = (label_values > 0) & (index < len(ids))
    found[found] = ids[index[found]] == label_values[found]
    return np.where(found, index, -1).astype(np.int32)


def _label_values(labels, name="labels") -> np.ndarray:
    """``labels`` as int64, NaN (float labels) as background; non-integers refused."""
    values = np.asarray(labels)
    if values.dtype == bool or not (np.issubdtype(values.dtype, np.integer)
                                    or np.issubdtype(values.dtype, np.floating)):
        raise ValueError(f"{name} must hold integer object labels, got dtype {values.dtype}")
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if np.any(values[finite] != np.floor(values[finite])):
            raise ValueError(f"{name} holds non-integer values; object labels are "
                             f"integers (0 or NaN for the background)")
        values = np.where(finite, values, 0)
    return values.astype(np.int64, copy=False)


def _prepare(codes, labels, distances, angles, levels, mask, core, ids) -> _Prepared:
    levels = check_levels(levels)
    distances = check_distances(distances)
    angles = check_angles(angles)
    offsets = pixel_offsets(distances, angles)
    values = np.asarray(codes)
    batched = values.ndim == 3
    if values.ndim not in (2, 3):
        raise ValueError(f"codes must have shape (H, W) or (batch, H, W), got "
                         f"{values.shape}")
    values = values if batched else values[None]
    shape = values.shape
    label_values = _label_values(labels)
    if label_values.shape not in (shape, shape[1:]):
        raise ValueError(f"labels must have the shape of codes {shape[-2:]} (shared by "
                         f"the batch) or {shape}, got {label_values.shape}")
    if label_values.ndim == 2:
        label_values = label_values[None]
    if mask is not None:
        mask = np.asarray(mask)
        mask = (mask if batched else mask[None]) != 0
        if mask.shape != shape:
            raise ValueError(f"mask must have the shape of codes {np.shape(codes)}, got "
                             f"{np.shape(mask)}")
    if core is not None:
        r0, r1, c0, c1 = (int(v) for v in core)
        if not (0 <= r0 <= r1 <= shape[1] and 0 <= c0 <= c1 <= shape[2]):
            raise ValueError(f"core {tuple(core)} is not inside the image of "
                             f"{shape[1]} x {shape[2]} pixels")
        core = (r0, r1, c0, c1)
    if ids is None:
        ids = object_ids(label_values, core)
    else:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (np.any(np.diff(ids) <= 0) or ids[0] <= 0):
            raise ValueError("ids must be positive labels in increasing order")
    # Only object pixels are read: values elsewhere (nodata, background) may be
    # anything, and are marked invalid.
    inside = label_values > 0
    valid = np.broadcast_to(inside if mask is None else inside & mask, shape)
    check_level_values(values, levels, valid, name="codes")
    neighbour_index = _dense_index(label_values, ids)
    reference_index = neighbour_index
    if core is not None:
        reference_index = np.full_like(neighbour_index, -1)
        r0, r1, c0, c1 = core
        reference_index[:, r0:r1, c0:c1] = neighbour_index[:, r0:r1, c0:c1]
    if np.issubdtype(values.dtype, np.floating):
        values = np.floor(np.where(np.isfinite(values), values, -1))
    codes32 = np.where(valid & (values >= 0) & (values < levels), values,
                       -1).astype(np.int32)
    batch = shape[0]
    bins_per_object = batch * len(offsets) * levels * levels
    chunk = max(1, min(max(len(ids), 1), MAX_OBJECT_BINS // bins_per_object))
    return _Prepared(codes=codes32, reference_index=reference_index,
                     neighbour_index=neighbour_index, ids=ids, levels=levels,
                     offsets=tuple(map(tuple, offsets.tolist())),
                     grid=(len(distances), len(angles)), batch=batch, batched=batched,
                     chunk=chunk)


def _count_chunks(prepared: _Prepared):
    """Yields int32 (batch, m, K, L, L): the pair counts of the objects, a chunk of
    them (one pass over the image) at a time."""
    index_shape = (prepared.batch,) + prepared.codes.shape[1:]
    n = len(prepared.ids)
    for start in range(0, n, prepared.chunk):
        counts = _object_pair_counts(
            prepared.codes, np.broadcast_to(prepared.reference_index, index_shape),
            np.broadcast_to(prepared.neighbour_index, index_shape),
            np.asarray(start, np.int32), offsets=prepared.offsets,
            levels=prepared.levels, size=prepared.chunk)
        yield np.asarray(ops.convert_to_numpy(counts))[:, :min(prepared.chunk, n - start)]


def _features_of_chunks(count_chunks, batch, names, convention, grid, levels, symmetric,
                        average) -> np.ndarray:
    """float32 (batch, n, F) or (batch, n, D, A, F): the features of (batch, m, K, L, L)
    count chunks, each computed as it comes (memory: one chunk)."""
    values = [np.asarray(_object_values(
        counts, names=names, convention=convention, grid=grid, levels=levels,
        symmetric=symmetric, average=average)) for counts in count_chunks]
    if values:
        return np.concatenate(values, axis=1)
    tail = (len(names),) if average else tuple(grid) + (len(names),)
    return np.zeros((batch, 0) + tail, np.float32)


@jit_when_eager
def _object_pair_counts(codes, reference_index, neighbour_index, start, *, offsets,
                        levels, size):
    """One segment-sum over every pair of the image: bin (object - start, offset,
    reference level, neighbour level) when both pixels are valid and in the same
    object of this chunk, else a dropped bin."""
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    batch = ops.shape(codes)[0]
    n_offsets = len(offsets)
    reference_code = ops.reshape(codes, (batch, 1, -1))
    neighbour_code = neighbour_codes(codes, offsets, fill=-1)
    reference_object = ops.reshape(reference_index, (batch, 1, -1)) - start
    neighbour_object = neighbour_codes(neighbour_index, offsets, fill=-1) - start
    counted = ops.logical_and(
        ops.logical_and(ops.greater_equal(reference_object, 0),
                        ops.less(reference_object, size)),
        ops.logical_and(ops.equal(reference_object, neighbour_object),
                        ops.logical_and(ops.greater_equal(reference_code, 0),
                                        ops.greater_equal(neighbour_code, 0))))
    square = levels * levels
    n_bins = batch * size * n_offsets * square
    image = ops.arange(batch, dtype="int32")[:, None, None]
    offset = ops.arange(n_offsets, dtype="int32")[None, :, None]
    bin_index = (((image * size + reference_object) * n_offsets + offset) * square
                 + reference_code * levels + neighbour_code)
    bin_index = ops.reshape(ops.where(counted, bin_index, n_bins), (-1,))
    counts = ops.segment_sum(ops.ones_like(bin_index), bin_index, num_segments=n_bins + 1)
    return ops.reshape(counts[:n_bins], (batch, size, n_offsets, levels, levels))


@jit_when_eager
def _object_values(counts, *, names, convention, grid, levels, symmetric, average):
    """Features of (batch, n, K, L, L) counts: (batch, n, F) or (batch, n, D, A, F)."""
    P = counts
    if symmetric:
        P = P + ops.transpose(P, (0, 1, 2, 4, 3))
    values = _features_from_glcm(P, names=names, convention=convention)  # (batch, n, K, F)
    if average:
        return nanmean(values, axis=2)
    return ops.reshape(values, ops.shape(values)[:2] + tuple(grid) + (len(names),))
