"""Outputs: per-tile results, the per-scene COG mosaic, quicklook PNG and manifest.

Local paths only for now (gs:// output is the cloud issue). Every final file is
written under a temporary name in the same folder and renamed, so a reader never
sees a partial ``features.tif`` or ``manifest.json``.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import warnings
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window

from transforms.raster import SceneInfo

TILE_DIR = ".tiles"


def tile_path(output: str, scene_id: str, row: int, col: int, band: int) -> str:
    return os.path.join(output, scene_id, TILE_DIR, f"r{row}_c{col}_b{band}.npy")


def write_tile(path: str, core: np.ndarray) -> str:
    """Saves one tile's core features (h, w, F) float32, atomically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.npy"
    np.save(tmp, core.astype(np.float32))
    os.replace(tmp, path)
    return path


def band_names(bands: Sequence[int], features: Sequence[str]) -> List[str]:
    return [f"b{b}_{f}" for b in bands for f in features]


def write_mosaic(path: str, info: SceneInfo, bands: Sequence[int], features: Sequence[str],
                 tiles: Iterable[Tuple[int, int, int, object, str]]) -> None:
    """Assembles tile files into a Cloud-Optimized GeoTIFF, one tile at a time.

    Args:
      path: final ``features.tif``.
      info: the input's size, CRS and transform (kept as they are).
      bands, features: output band order is (band, feature), named b<band>_<feature>.
      tiles: (core_row, core_col, band_index, task, npy path) for every tile and
        band, in output pixels (block units in block mode).
    """
    names = band_names(bands, features)
    folder = os.path.dirname(path)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".mosaic-") as work:
        plain = os.path.join(work, "plain.tif")
        profile = dict(driver="GTiff", height=info.height, width=info.width,
                       count=len(names), dtype="float32", nodata=float("nan"),
                       crs=info.crs, transform=Affine(*info.transform), tiled=True,
                       blockxsize=256, blockysize=256, BIGTIFF="IF_SAFER")
        with rasterio.open(plain, "w", **profile) as dst:
            for index, name in enumerate(names, start=1):
                dst.set_band_description(index, name)
            for row, col, band_index, _, tile_file in tiles:
                core = np.load(tile_file)  # (h, w, F)
                window = Window(col, row, core.shape[1], core.shape[0])
                first = band_index * len(features) + 1
                dst.write(np.moveaxis(core, -1, 0),
                          indexes=list(range(first, first + len(features))), window=window)
        cog = os.path.join(work, "cog.tif")
        # Compressed once, here, with every core (the intermediate stays raw: a
        # deflate pass over it doubled the mosaic time).
        rasterio.shutil.copy(plain, cog, driver="COG", compress="DEFLATE",
                             predictor="3", overviews="AUTO", BIGTIFF="IF_SAFER",
                             num_threads="ALL_CPUS")
        os.replace(cog, path)


def write_quicklook(path: str, mosaic: str, max_side: int = 512) -> None:
    """PNG of up to three feature bands as RGB (2-98 % stretch), from a decimated
    read of the COG's overviews."""
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
    tmp = f"{path}.tmp-{os.getpid()}.png"
    with warnings.catch_warnings():
        # a quicklook is a picture, not georeferenced on purpose
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", driver="PNG", height=shape[0], width=shape[1],
                           count=4, dtype="uint8") as dst:
            dst.write(rgb, [1, 2, 3])
            dst.write(alpha.astype(np.uint8) * 255, 4)
    os.replace(tmp, path)
    aux = tmp + ".aux.xml"
    if os.path.exists(aux):
        os.remove(aux)


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


def write_json(path: str, content: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(content, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_manifest(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
