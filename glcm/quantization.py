"""Quantization of raw values (any dtype) into grey levels."""

from __future__ import annotations

import numpy as np
from keras import ops

from glcm.validation import check_levels, concrete_numpy


def quantize(x, levels: int, vmin, vmax, mask=None):
    """Quantizes values into ``levels`` grey levels.

    .. math:: q = \\mathrm{clip}(\\lfloor (x - v_{min}) / (v_{max} - v_{min})
              \\cdot L \\rfloor, 0, L - 1)

    Parameters
    ----------
    x : array
        Any shape, integer or float.
    levels : int
        Number of grey levels L (2..65536).
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
