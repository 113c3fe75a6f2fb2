"""transforms.io.overviews: GDAL's overview pass called without holding the GIL, on
real rasters, against rasterio's own call."""

import sys

import numpy as np
import pytest
import rasterio
import rasterio.errors
from rasterio.enums import Resampling

from transforms.io import overviews
from transforms.io.overviews import build_overviews, gdal_library


def _raster(path, values, nodata=None):
    bands, height, width = values.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height,
                       count=bands, dtype="float32", tiled=True, blockxsize=256,
                       blockysize=256, nodata=nodata) as dst:
        dst.write(values)
    return str(path)


def _vrt_of(path, raster):
    """A VRT of ``raster`` (as the mosaic builds its overviews from one)."""
    with rasterio.open(raster) as src:
        bands, height, width = src.count, src.height, src.width
    sources = "".join(
        f'<VRTRasterBand dataType="Float32" band="{b}"><SimpleSource><SourceFilename '
        f'relativeToVRT="0">{raster}</SourceFilename><SourceBand>{b}</SourceBand>'
        f'</SimpleSource></VRTRasterBand>' for b in range(1, bands + 1))
    with open(path, "w") as f:
        f.write(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{sources}'
                f'</VRTDataset>')
    return str(path)


def _overviews_of(path):
    with rasterio.open(path) as src:
        factors = src.overviews(1)
        return factors, [src.read(out_shape=(src.count, -(-src.height // f),
                                             -(-src.width // f))) for f in factors]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps")
def test_the_library_is_rasterios_gdal():
    lib = gdal_library()
    assert lib is not None
    assert lib.GDALVersionInfo(b"RELEASE_NAME").decode() == rasterio.__gdal_version__


@pytest.mark.parametrize("kind", ["tif", "vrt"])
@pytest.mark.parametrize("resampling", [Resampling.average, Resampling.nearest,
                                        Resampling.cubic_spline])
@pytest.mark.parametrize("nan", [False, True])
def test_the_same_overviews_as_rasterios_call(tmp_path, monkeypatch, kind, resampling,
                                             nan):
    # Odd sizes, NaN or not, a GeoTIFF (overviews inside) or a VRT (a .ovr beside
    # it): the overviews are those rasterio builds, bit for bit, whether the library
    # is found (ctypes) or not (the fallback to rasterio's call).
    values = np.random.default_rng(int(nan)).normal(0, 1, (2, 301, 517)).astype(
        np.float32)
    if nan:
        values[:, 40:90, 100:180] = np.nan
    built = {}
    for way in ("ours", "fallback", "rasterio"):
        folder = tmp_path / way
        folder.mkdir()
        path = _raster(folder / "r.tif", values, np.nan if nan else None)
        if kind == "vrt":
            path = _vrt_of(folder / "r.vrt", path)
        if way == "rasterio":
            with rasterio.open(path, "r+") as dst:
                dst.build_overviews([2, 4, 8], resampling)
        else:
            with monkeypatch.context() as patch:
                if way == "fallback":
                    patch.setattr(overviews, "gdal_library", lambda: None)
                build_overviews(path, [2, 4, 8], resampling)
        built[way] = _overviews_of(path)
    assert built["rasterio"][0] == [2, 4, 8]
    for way in ("ours", "fallback"):
        assert built[way][0] == built["rasterio"][0]
        for mine, theirs in zip(built[way][1], built["rasterio"][1]):
            np.testing.assert_array_equal(mine, theirs)


def test_without_the_library_rasterio_builds_them(tmp_path, monkeypatch):
    monkeypatch.setattr(overviews, "gdal_library", lambda: None)
    path = _raster(tmp_path / "r.tif", np.ones((1, 64, 64), np.float32))
    build_overviews(path, [2], Resampling.average)
    assert _overviews_of(path)[0] == [2]


def test_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "missing.tif")
    with pytest.raises(rasterio.errors.RasterioIOError, match="missing.tif: GDAL could "
                                                               "not open it"):
        build_overviews(missing, [2], Resampling.average)
    path = _raster(tmp_path / "r.tif", np.ones((1, 64, 64), np.float32))
    with pytest.raises(rasterio.errors.RasterioIOError,
                       match=r"r.tif: GDAL could not build its overviews \[2\]"):
        build_overviews(path, [2], _UnknownMethod())


class _UnknownMethod:
    """A resampling method GDAL does not know (its name reaches GDAL as it is)."""

    name = "no_such_method"
