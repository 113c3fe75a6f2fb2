"""Inputs shared by graycomatrix and texture_map: shape and value checks, grey-level
codes with invalid pixels marked, and neighbour codes for every offset."""

from __future__ import annotations

import dataclasses
from typing import Any, Tuple

import keras
import numpy as np
from keras import ops

from glcm._compile import is_symbolic
from glcm.validation import (check_angles, check_distances, check_levels, concrete_numpy,
                             pixel_offsets)


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
    dtype = np.dtype(keras.backend.standardize_dtype(images.dtype))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if info.min >= 0 and info.max < levels:
            return  # e.g. uint8 with 256 levels: every value the dtype holds is a level
    if not isinstance(images, np.ndarray) and not is_symbolic([images, mask]):
        if _levels_where_they_are(images, levels, mask):
            return  # a tensor (perhaps on a GPU): only the verdict came back
    values = concrete_numpy(images)
    if values is None:
        return
    valid = np.ones(values.shape, bool) if mask is None else concrete_numpy(mask)
    if valid is None:
        return
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


def _levels_where_they_are(images, levels: int, mask=None) -> bool:
    """Whether every valid value of a concrete tensor is an integer level, computed
    on the tensor's device: one boolean comes back, not the whole input. False sends
    the caller to the host check, which says what is wrong and where."""
    ok = ops.logical_and(ops.greater_equal(images, 0), ops.less(images, levels))
    if "float" in str(images.dtype):
        ok = ops.logical_and(ok, ops.equal(images, ops.floor(images)))
    if mask is not None:
        ok = ops.logical_or(ok, ops.logical_not(mask))
    return bool(ops.convert_to_numpy(ops.all(ok)))


def level_codes(images, levels: int, mask=None, invalid: int = -1):
    """Casts (batch, H, W) grey levels to int32, with ``invalid`` where a pixel is
    masked or outside [0, levels)."""
    if "float" in str(images.dtype):
        images = ops.floor(images)
    codes = ops.cast(images, "int32")
    ok = ops.logical_and(ops.greater_equal(codes, 0), ops.less(codes, levels))
    if mask is not None:
        ok = ops.logical_and(ok, mask)
    return ops.where(ok, codes, invalid)


def neighbour_codes(codes, offsets: np.ndarray, fill: int = -1):
    """The neighbour's code of every reference pixel, for every offset.

    Args:
      codes: int32 (batch, H, W), -1 marks invalid pixels.
      offsets: int (K, 2) array of (row, col) offsets.

    Returns:
      int32 (batch, K, H * W): ``codes[b, r + dr, c + dc]``, or ``fill`` where that falls
      outside the image (no wrap-around). One gather for all offsets.
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
    check_level_values(images, levels, mask)  # where the tensors are: no copy back
    offsets = tuple(map(tuple, pixel_offsets(distances, angles).tolist()))
    return images, mask, levels, distances, angles, offsets


@dataclasses.dataclass(frozen=True)
class WindowPairs:
    """The inputs every texture_map mechanism shares: each anchor's pair codes over
    the region the windows cover, and the window geometry.

    Attributes:
      reference, neighbour: int32 (B, rh, rw, K) codes of each anchor's pair per
        offset, -1 where invalid (rh = out_h + window - 1, likewise rw).
      valid: bool (B, rh, rw, K), both pixels of the pair valid.
      centre_value: int32 (B, out_h, out_w) code of each window's centre pixel.
      window: odd window size.
      offsets: int (K, 2) numpy array of (row, col) offsets.
      levels: number of grey levels.
      symmetric: (i, j) and (j, i) both counted.
    """

    reference: Any
    neighbour: Any
    valid: Any
    centre_value: Any
    window: int
    offsets: np.ndarray = dataclasses.field(compare=False)
    levels: int
    symmetric: bool

    @property
    def offset_tuples(self) -> Tuple[Tuple[int, int], ...]:
        return tuple(map(tuple, np.asarray(self.offsets).reshape(-1, 2).tolist()))
