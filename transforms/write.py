"""Outputs: per-tile results, the per-scene COG mosaic and the quicklook PNG.

Local folders and ``gs://`` prefixes alike (through :mod:`transforms.storage`). Files
are built in a private scratch folder and then committed whole (a rename, or an
upload that becomes visible only when complete), so a reader never sees a partial
``features.tif`` or ``manifest.json``.
"""

from __future__ import annotations

import os
import platform
import warnings
from typing import Dict, Iterable, List, Sequence

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window

from transforms import storage
from transforms.raster import SceneInfo
from transforms.records import BandSource, TileResult

TILES_PREFIX = ".tiles-"
# A saved tile's record: written after the tile itself, so the records in a tile
# folder name the tiles that are complete.
RESULT_SUFFIX = ".result"
# GDAL's block cache while a mosaic is built, in bytes (rasterio passes it to
# GDALSetCacheMax64): GDAL's default, 5 % of the RAM, fills with blocks the mosaic
# writes once; a bounded cache is as fast (README, "Benchmarks").
MOSAIC_CACHE_BYTES = 128 * 2 ** 20
# How the mosaic's overviews (what zoomed-out viewers and the quicklook read) are made.
OVERVIEW_RESAMPLING = "AVERAGE"


def tiles_folder(output: str, scene_id: str, run_id: str) -> str:
    """Where one run keeps a scene's tile results until the mosaic is built; one
    folder per run, so two runs on the same output never remove each other's."""
    return storage.join(output, scene_id, TILES_PREFIX + run_id)


def tile_path(output: str, scene_id: str, run_id: str, row: int, col: int,
              band_index: int) -> str:
    return storage.join(tiles_folder(output, scene_id, run_id),
                        f"r{row}_c{col}_i{band_index}.npy")


def result_path(tile_uri: str) -> str:
    """Where a saved tile's :class:`~transforms.records.TileResult` is kept, beside
    the tile (``r0_c1_i0.npy`` -> ``r0_c1_i0.result``)."""
    return tile_uri.rsplit(".", 1)[0] + RESULT_SUFFIX


def write_tile(uri: str, core: np.ndarray) -> str:
    """Saves one tile's core features (h, w, F) float32, atomically."""
    storage.save_npy(uri, core.astype(np.float32))
    return uri


def band_names(sources: Sequence[BandSource], features: Sequence[str]) -> List[str]:
    """Output band names, ``<source>_<feature>``: ``b1_contrast``, ``nir_contrast``."""
    return [f"{s.name}_{f}" for s in sources for f in features]


def write_mosaic(path: str, info: SceneInfo, sources: Sequence[BandSource],
                 features: Sequence[str], tiles: Iterable[TileResult]) -> None:
    """Assembles tile files into a local Cloud-Optimized GeoTIFF, one tile at a time.

    Args:
      path: the local file to write (in a scratch folder; the caller commits it).
      info: the input's size, CRS and transform (kept as they are).
      sources, features: output band order is (band, feature), named as
        :func:`band_names`.
      tiles: every tile and band's saved core, placed at its (row, col) in output
        pixels (block cells in block mode).
    """
    with rasterio.Env(GDAL_CACHEMAX=MOSAIC_CACHE_BYTES):
        _write_mosaic(path, info, sources, features, tiles)


def _write_mosaic(path, info, sources, features, tiles) -> None:
    """The body of :func:`write_mosaic`, inside its GDAL settings."""
    names = band_names(sources, features)
    plain = path + ".plain.tif"
    profile = dict(driver="GTiff", height=info.height, width=info.width,
                   count=len(names), dtype="float32", nodata=float("nan"),
                   crs=info.crs, transform=Affine(*info.transform), tiled=True,
                   blockxsize=256, blockysize=256, BIGTIFF="IF_SAFER")
    with warnings.catch_warnings():
        # an input without CRS/transform keeps none; the manifest says so
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(plain, "w", **profile) as dst:
            for index, name in enumerate(names, start=1):
                dst.set_band_description(index, name)
            for result in tiles:
                core = storage.load_npy(result.path)  # (h, w, F)
                window = Window(result.col, result.row, core.shape[1], core.shape[0])
                first = result.task.band_index * len(features) + 1
                dst.write(np.moveaxis(core, -1, 0),
                          indexes=list(range(first, first + len(features))), window=window)
        # Compressed once, here, with every core (the intermediate stays raw).
        # Level 1: float features barely compress, and level 6 took 60 % longer.
        # Overviews average (NaN skipped): the COG driver's default, cubic,
        # overshoots and put impossible values in them (negative contrast, ASM
        # above 1); averaging keeps every overview value inside the band's range.
        rasterio.shutil.copy(plain, path, driver="COG", compress="DEFLATE",
                             predictor="3", level=1, overviews="AUTO",
                             resampling=OVERVIEW_RESAMPLING, BIGTIFF="IF_SAFER",
                             num_threads="ALL_CPUS")
    os.remove(plain)


def write_quicklook(path: str, mosaic: str, max_side: int = 512) -> None:
    """PNG of up to three feature bands as RGB (2-98 % stretch), from a decimated
    read of the COG's overviews; both paths local."""
    with rasterio.open(mosaic) as src:
        scale = max(1.0, max(src.height, src.width) / max_side)
        shape = (max(1, int(src.height / scale)), max(1, int(src.width / scale)))
        indexes = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
        data = src.read(indexes, out_shape=(3,) + shape)
    rgb = np.zeros(data.shape, np.uint8)
    alpha = np.isfinite(data).all(axis=0)
    for k in range(3):
        values = data[k][np.isfinite(data[k])]
        if values.size:
            lo, hi = np.percentile(values, [2, 98])
            scaled = (data[k] - lo) / (hi - lo if hi > lo else 1.0)
            rgb[k] = np.clip(np.nan_to_num(scaled) * 255, 0, 255).astype(np.uint8)
    with warnings.catch_warnings():
        # a quicklook is a picture, not georeferenced on purpose
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="PNG", height=shape[0], width=shape[1],
                           count=4, dtype="uint8") as dst:
            dst.write(rgb, [1, 2, 3])
            dst.write(alpha.astype(np.uint8) * 255, 4)


def versions() -> Dict[str, str]:
    import apache_beam
    import keras

    import glcm

    out = {"glcm": glcm.__version__, "keras": keras.__version__,
           "keras_backend": keras.backend.backend(), "apache_beam": apache_beam.__version__,
           "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__,
           "numpy": np.__version__, "python": platform.python_version()}
    try:
        import tensorflow as tf

        out["tensorflow"] = tf.__version__
    except ImportError:
        pass
    return out
