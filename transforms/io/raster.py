"""Raster reading with rasterio: scene headers, quantization ranges, tile windows."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import rasterio
import rasterio.errors
from rasterio.enums import Interleaving
from rasterio.windows import Window

from glcm.quantization import range_from_sample
from transforms.io import storage
from transforms.records import ParameterError, SceneInfo, Tile

SUPPORTED_KINDS = "uif"  # unsigned, signed integer, float
STATS_SAMPLE_SIDE = 1024  # decimated read for quantization ranges


class RasterError(ValueError):
    """A scene that cannot be opened or read as a raster; the message says why."""


@contextlib.contextmanager
def open_raster(uri: str) -> Iterator[rasterio.io.DatasetReader]:
    """Opens ``uri`` (local or gs://, GDAL configured for it) for reading.

    Raises:
      RasterError: the file is missing, empty, not a raster, or unreadable.
    """
    with rasterio.Env(**storage.gdal_options(uri)):
        try:
            src = rasterio.open(uri)
        except rasterio.errors.RasterioIOError as exc:
            raise RasterError(f"{uri} cannot be opened as a raster: {exc}. "
                              f"Check that it is a complete GeoTIFF/COG and readable "
                              f"by this user.") from exc
        with src:
            yield src


def read_band(src, uri: str, band: Optional[int], what: str,
              **kwargs) -> np.ma.MaskedArray:
    """``src.read(band, masked=True, **kwargs)`` (``band`` None: every band, stacked),
    with a RasterError naming the file, the band and GDAL's reason when the data
    cannot be decoded."""
    try:
        return src.read(band, masked=True, **kwargs)
    except rasterio.errors.RasterioIOError as exc:
        reason = f"{exc.__cause__ or exc}".strip()
        which = "every band" if band is None else f"band {band}"
        raise RasterError(f"{uri} {which}: reading {what} failed ({reason}); the "
                          f"file is probably truncated or corrupt: copy or export it "
                          f"again") from exc


def scene_info(uri: str) -> SceneInfo:
    """Reads the header of ``uri``; raises ValueError for rasters we cannot process."""
    with open_raster(uri) as src:
        dtype = src.dtypes[0]
        if np.dtype(dtype).kind not in SUPPORTED_KINDS:
            raise RasterError(f"{uri}: unsupported data type {dtype}; texture needs "
                              f"integer or float bands (convert it, e.g. take the "
                              f"magnitude of complex data, with gdal_translate)")
        return SceneInfo(src.height, src.width, src.count, dtype,
                         src.crs.to_wkt() if src.crs else None,
                         tuple(src.transform)[:6], src.nodata)


def check_bands(uri: str, info: SceneInfo, bands: Optional[Sequence[int]]) -> Tuple[int, ...]:
    """The 1-based bands to process; ParameterError (``bands``) naming the file for a
    missing band."""
    if bands is None:
        return tuple(range(1, info.count + 1))
    missing = [b for b in bands if b > info.count]
    if missing:
        raise ParameterError("bands", f"{uri} has {info.count} band(s), not {missing}: "
                                      f"choose bands in 1..{info.count}")
    return tuple(bands)


def _valid(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return mask & np.isfinite(data) if data.dtype.kind == "f" else mask


def quantization_range(uri: str, band: int, quantize) -> Tuple[float, float]:
    """One (vmin, vmax) per scene and band, from a decimated read, so tiles agree.

    Args:
      uri: raster.
      band: 1-based band.
      quantize: ("minmax", ()), ("percentile", (lo, hi)) or ("fixed", (vmin, vmax)).

    Returns:
      (vmin, vmax) with vmax > vmin (a constant band gets vmax = vmin + 1).

    Raises:
      ValueError: the band has no valid pixel.
    """
    if quantize[0] == "fixed":
        return range_from_sample(np.empty(0), quantize)
    with open_raster(uri) as src:
        scale = max(1.0, max(src.height, src.width) / STATS_SAMPLE_SIDE)
        shape = (max(1, int(src.height / scale)), max(1, int(src.width / scale)))
        data = read_band(src, uri, band, "a decimated overview for the quantization "
                         "range", out_shape=shape)
    valid = _valid(data.data, ~np.ma.getmaskarray(data))
    sample = data.data[valid].astype(np.float64)
    if sample.size == 0:
        raise ValueError(f"{uri} band {band} has no valid pixel (all nodata/NaN): "
                         f"nothing to compute (a fixed quantization range, "
                         f"fixed:VMIN,VMAX, would give an all-NaN output)")
    return range_from_sample(sample, quantize)


def read_tile(uri: str, band: int, tile: Tile) -> Tuple[np.ndarray, np.ndarray]:
    """Reads a tile's window (core + halo), padded as invalid outside the scene.

    Returns:
      (values float64, valid bool), both (core + 2 halo) on each side; nodata,
      internal masks, NaN and inf are invalid.
    """
    with open_raster(uri) as src:
        return _padded(_read_window(src, uri, band, tile), tile)


# A window of every band is decoded at once (TileWindows) only up to this many bytes,
# so that a file of hundreds of bands, or a huge tile, is read band by band instead.
MAX_WINDOW_BYTES = 64 * 2 ** 20


class TileWindows:
    """:func:`read_tile` that decodes a pixel-interleaved file's window once for all
    its bands: each compressed block of such a file holds every band, so reading its
    bands one by one decodes every block once per band (four bands of uint16 DEFLATE:
    0.052 CPU-us per band-pixel against 0.013, docs/performance.md). The last window
    read is kept, so a tile's other bands read right after it cost no decoding; other
    files, and windows of more than :data:`MAX_WINDOW_BYTES`, are read band by band.

    One per thread (a Beam DoFn instance); :meth:`clear` drops the kept window.
    """

    def __init__(self):
        self._key, self._bands = None, None

    def __call__(self, uri: str, band: int, tile: Tile) -> Tuple[np.ndarray, np.ndarray]:
        key = (uri, tile.read_row, tile.read_col, tile.read_height, tile.read_width)
        if key != self._key:
            self.clear()
            with open_raster(uri) as src:
                if not self._decoded_together(src, tile):
                    return _padded(_read_window(src, uri, band, tile), tile)
                self._bands = _read_window(src, uri, None, tile)
                self._key = key
        if not 1 <= band <= len(self._bands):
            raise RasterError(f"{uri} has {len(self._bands)} band(s): there is no band "
                              f"{band}")
        return _padded(self._bands[band - 1], tile)

    def clear(self):
        self._key, self._bands = None, None

    @staticmethod
    def _decoded_together(src, tile: Tile) -> bool:
        window_bytes = (src.count * tile.read_height * tile.read_width
                        * np.dtype(src.dtypes[0]).itemsize)
        return (src.count > 1 and src.interleaving == Interleaving.pixel
                and window_bytes <= MAX_WINDOW_BYTES)


def _read_window(src, uri: str, band: Optional[int], tile: Tile) -> np.ma.MaskedArray:
    """:func:`read_band` of the tile's window (core + halo, clipped to the scene);
    ``band`` None: every band."""
    window = Window(tile.read_col, tile.read_row, tile.read_width, tile.read_height)
    what = (f"rows {tile.read_row}..{tile.read_row + tile.read_height - 1}, columns "
            f"{tile.read_col}..{tile.read_col + tile.read_width - 1}")
    return read_band(src, uri, band, what, window=window)


def _padded(data: np.ma.MaskedArray, tile: Tile) -> Tuple[np.ndarray, np.ndarray]:
    """(values float64, valid bool) of one band's window, padded as invalid outside
    the scene."""
    values = data.data.astype(np.float64)
    valid = _valid(values, ~np.ma.getmaskarray(data))
    pads = ((tile.pad_top, tile.pad_bottom), (tile.pad_left, tile.pad_right))
    return np.pad(values, pads), np.pad(valid, pads)
