"""Quantization of raw values (any dtype) into grey levels."""

from __future__ import annotations

from typing import Tuple

import numpy as np
from keras import ops

from glcm.validation import check_levels, concrete_numpy


def quantize(x, levels: int, vmin, vmax, mask=None, *, host: bool = False):
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
    host : bool, optional
        Compute with NumPy on the host and return NumPy arrays, whatever device the
        Keras backend would use; ``vmin`` and ``vmax`` must then be concrete. For
        host-side steps that quantize many small arrays from several threads (a
        pipeline's tile reads): on a GPU the backend's ops would each be a round trip
        to the device, queued behind the texture kernel. The same float32 formula,
        each operation rounded as IEEE 754 says (as TensorFlow's, bit for bit; JAX's
        compiled division may round a quotient one unit differently, see Notes).

    Returns
    -------
    (q, valid) : (int32 array, bool array)
        ``q`` is 0 where ``valid`` is False. NaN, +-inf and masked pixels are invalid.
        Backend tensors, or NumPy arrays with ``host=True``.

    Notes
    -----
    The arithmetic is float32, as the rest of the package: a value within about 1e-7
    relative of a level boundary may fall on either side of it, and on which side can
    differ between backends and devices.

    Examples
    --------
    >>> import numpy as np, glcm
    >>> q, valid = glcm.quantize(np.array([0.0, 0.3, 0.99, 7.0, np.nan]), 4, 0.0, 1.0)
    >>> np.asarray(q), np.asarray(valid)
    (array([0, 1, 3, 3, 0], dtype=int32), array([ True,  True,  True,  True, False]))
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
    if host:
        if lo is None or hi is None:
            raise ValueError("quantize(host=True) needs concrete vmin and vmax (numbers "
                             "or arrays), not symbolic tensors")
        return _quantize_numpy(x, levels, lo, hi, mask)
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


def _quantize_numpy(x, levels, vmin, vmax, mask):
    """:func:`quantize`'s formula in NumPy, float32 operation for operation (NumPy 2
    keeps float32 with Python scalars)."""
    # float64 beyond float32's range becomes inf, and inf - inf NaN: invalid pixels
    # either way, zeroed below; no warnings for them
    with np.errstate(invalid="ignore", over="ignore"):
        x = np.asarray(x).astype(np.float32, copy=False)
        vmin = np.asarray(vmin).astype(np.float32)
        vmax = np.asarray(vmax).astype(np.float32)
        valid = np.isfinite(x)
        if mask is not None:
            mask = np.asarray(mask)
            valid &= mask if mask.dtype == bool else mask != 0
        scaled = np.floor((x - vmin) / (vmax - vmin) * float(levels))
        scaled = np.where(valid, scaled, np.float32(0.0))
        return np.clip(scaled, 0.0, float(levels - 1)).astype(np.int32), valid


QUANTIZE_KINDS = "minmax, percentile:LO,HI or fixed:VMIN,VMAX"


def parse_quantize(spec: str) -> Tuple[str, Tuple[float, ...]]:
    """Parses a quantization range rule (``glcm.xarray``'s ``quantize``, the
    pipeline's ``--quantize``).

    ``minmax`` -> ("minmax", ()); ``percentile:2,98`` -> ("percentile", (2.0, 98.0));
    ``fixed:0,255`` -> ("fixed", (0.0, 255.0)).

    Raises:
      ValueError: another form, LO >= HI, or percentiles outside 0..100.
    """
    kind, _, rest = str(spec).partition(":")
    if kind == "minmax" and not rest:
        return ("minmax", ())
    if kind in ("percentile", "fixed"):
        try:
            values = tuple(float(v) for v in rest.split(",") if v.strip())
        except ValueError:
            values = ()
        if len(values) != 2 or not values[0] < values[1]:
            raise ValueError(f"quantize {kind}:LO,HI needs two numbers with LO < HI, "
                             f"got {spec!r}")
        if kind == "percentile" and not (0 <= values[0] < values[1] <= 100):
            raise ValueError(f"quantize percentiles must lie in 0..100, got {spec!r}")
        return (kind, values)
    raise ValueError(f"quantize must be {QUANTIZE_KINDS}, got {spec!r}")


def range_from_sample(sample: np.ndarray, rule: Tuple[str, Tuple[float, ...]]
                      ) -> Tuple[float, float]:
    """(vmin, vmax) of a parsed rule over the valid values ``sample`` (1-D, finite).

    A constant sample gets vmax = vmin + 1.

    Raises:
      ValueError: ``sample`` is empty (no valid value) for minmax or percentile.
    """
    kind, values = rule
    if kind == "fixed":
        return float(values[0]), float(values[1])
    if sample.size == 0:
        raise ValueError("no valid pixel: nothing to quantize")
    if kind == "minmax":
        vmin, vmax = float(sample.min()), float(sample.max())
    else:
        vmin, vmax = (float(v) for v in np.percentile(sample, values))
    if not vmax > vmin:
        vmax = vmin + 1.0
    return vmin, vmax
