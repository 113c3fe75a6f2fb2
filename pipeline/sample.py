"""The built-in sample collection: georeferenced GeoTIFFs from scikit-image textures."""

from __future__ import annotations

import os
from typing import List

import numpy as np
import rasterio
from rasterio.transform import from_origin


def make_sample(folder: str) -> List[str]:
    """Writes (once) four small scenes of different sizes and types into ``folder``.

    brick (uint8, 512x512), grass (uint8, 300x420, 20 m pixels), gravel as float32
    with a NaN nodata border, and a 2-band uint16 scene from camera; UTM 33N.
    Returns the file paths.
    """
    from skimage import data

    os.makedirs(folder, exist_ok=True)
    gravel = data.gravel()[:400, :380].astype(np.float32)
    gravel[:12, :] = np.nan
    gravel[:, -9:] = np.nan
    camera = data.camera()[::2, ::2].astype(np.uint16) * 200
    scenes = {
        "brick.tif": (data.brick()[None], 10.0, None),
        "grass.tif": (data.grass()[:300, :420][None], 20.0, None),
        "gravel_nodata.tif": (gravel[None], 10.0, float("nan")),
        "camera_2band.tif": (np.stack([camera, camera[::-1]]), 30.0, None),
    }
    paths = []
    for name, (array, pixel, nodata) in scenes.items():
        path = os.path.join(folder, name)
        paths.append(path)
        if os.path.exists(path):
            continue
        profile = dict(driver="GTiff", height=array.shape[1], width=array.shape[2],
                       count=array.shape[0], dtype=array.dtype.name, crs="EPSG:32633",
                       transform=from_origin(500000.0, 4650000.0, pixel, pixel),
                       nodata=nodata, tiled=True, blockxsize=128, blockysize=128)
        tmp = path + ".tmp.tif"
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array)
        os.replace(tmp, path)
    return paths
