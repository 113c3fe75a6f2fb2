"""glcm.xarray: DataArrays in memory and on a real dask.distributed cluster with
worker processes; COG and Zarr written and read back."""

import subprocess
import sys

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401 - the .rio accessor
import xarray as xr
from rasterio.transform import Affine
from skimage import data

import glcm
import glcm.xarray as gx

FEATURES = ["contrast", "ent", "correlation", "savg", "cluster_shade", "joint_max"]
NAMES = ["contrast", "entropy", "correlation", "sum_average", "cluster_shade", "joint_max"]
GEO = Affine(10, 0, 500000, 0, -10, 4000000)


def scene(path, bands=2):
    """A GeoTIFF with nodata and a NaN hole, opened with rioxarray."""
    brick = data.brick()[:150, :170].astype(np.float32)
    stack = np.stack([brick, brick[::-1] * 3.5][:bands])
    stack[:, 20:30, 40:70] = np.nan
    stack[0, 100:104, 10:14] = -9999
    with rasterio.open(path, "w", driver="GTiff", height=150, width=170, count=bands,
                       dtype="float32", crs="EPSG:32633", transform=GEO,
                       nodata=-9999) as dst:
        dst.write(stack)
    return rioxarray.open_rasterio(path)


def test_fixed_range_equals_quantize_then_texture_map(tmp_path):
    da = scene(tmp_path / "a.tif")
    out = gx.texture_map(da, FEATURES, window=5, levels=16, distances=(1, 2),
                         quantize="fixed:0,256")
    assert out.dims == ("band", "feature", "y", "x") and out.dtype == np.float32
    assert list(out.feature.values) == NAMES
    np.testing.assert_array_equal(out.x, da.x)
    np.testing.assert_array_equal(out.band, da.band)
    assert out.rio.crs.to_epsg() == 32633 and out.rio.transform() == GEO
    assert out.attrs["glcm_quantization_range"] == [[0.0, 256.0], [0.0, 256.0]]
    assert out.attrs["glcm_window"] == 5 and out.attrs["glcm_distances"] == [1, 2]
    values = da.values.astype(np.float64)
    for b in range(2):
        q, ok = glcm.quantize(values[b][None], 16, 0.0, 256.0,
                              mask=values[b][None] != -9999)
        want = np.asarray(glcm.texture_map(q, NAMES, 5, levels=16, distances=[1, 2],
                                           mask=ok))[0]
        np.testing.assert_array_equal(out.values[b], np.moveaxis(want, -1, 0))
    # invalid pixels (NaN, nodata) are NaN in every feature
    assert np.isnan(out.values[:, :, 25, 50]).all()
    assert np.isnan(out.values[0, :, 101, 11]).all() and not np.isnan(
        out.values[1, 0, 101, 11])


def test_two_d_input_and_ranges_from_the_whole_array():
    image = data.camera()[:96, :80].astype(np.uint8)
    da = xr.DataArray(image, dims=("y", "x"),
                      coords={"y": np.arange(96.0), "x": np.arange(80.0)})
    out = gx.texture_map(da, "contrast,idm", window=3, levels=8, quantize="minmax")
    assert out.dims == ("feature", "y", "x")
    assert list(out.feature.values) == ["contrast", "homogeneity"]
    assert out.attrs["glcm_quantization_range"] == [float(image.min()), float(image.max())]
    # the range is the whole array's, whatever the chunks
    lazy = gx.texture_map(da.chunk({"y": 20, "x": 30}), "contrast,idm", window=3,
                          levels=8, quantize="percentile:2,98")
    eager = gx.texture_map(da, "contrast,idm", window=3, levels=8,
                           quantize="percentile:2,98")
    assert lazy.attrs["glcm_quantization_range"] == eager.attrs["glcm_quantization_range"]
    with pytest.raises(ValueError, match="2-D \\(y, x\\) or 3-D"):
        gx.texture_map(da.expand_dims(("a", "b")), "contrast")
    with pytest.raises(ValueError, match="no valid pixel"):
        gx.texture_map(da.where(da < 0), "contrast")


@pytest.mark.slow  # a LocalCluster of two worker processes, each importing TensorFlow
def test_dask_on_a_distributed_cluster_equals_in_memory(tmp_path, dask_client):
    da = scene(tmp_path / "a.tif")
    names = FEATURES + ["imc2", "asm"]
    eager = gx.texture_map(da, names, window=7, levels=16)
    chunked = da.chunk({"band": 1, "y": 40, "x": 64})
    lazy = gx.texture_map(chunked, names, window=7, levels=16)
    assert lazy.chunks is not None  # lazy until computed
    # the chunks stay as given, along x too: the count features' integer sums do
    # not depend on where a block starts
    assert lazy.chunks[-1] == chunked.chunks[-1] and len(lazy.chunks[-1]) == 3
    computed = dask_client.compute(lazy).result()
    workers = dask_client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2  # two real processes
    np.testing.assert_array_equal(computed.values, eager.values)  # chunk borders too
    assert computed.attrs == eager.attrs


def test_writes_cog_and_zarr(tmp_path):
    da = scene(tmp_path / "a.tif", bands=1).squeeze("band", drop=True)
    out = gx.texture_map(da.chunk({"y": 64, "x": 64}), ["contrast", "mean"], window=5,
                         levels=16)
    cog = tmp_path / "texture.tif"
    out.rio.to_raster(cog, driver="COG")
    with rasterio.open(cog) as src:
        assert (src.count, src.crs.to_epsg(), src.transform) == (2, 32633, GEO)
        assert src.nodata is not None and np.isnan(src.nodata)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(src.read(), out.values)
    store = tmp_path / "texture.zarr"
    out.to_dataset(name="texture").to_zarr(store)
    back = xr.open_zarr(store)["texture"]
    np.testing.assert_array_equal(back.values, out.values)
    assert list(back.feature.values) == ["contrast", "mean"]
    assert back.attrs["glcm_levels"] == 16


def test_import_glcm_needs_neither_xarray_nor_dask():
    probe = ("import sys, glcm; "
             "assert not {'xarray', 'dask', 'distributed'} & set(sys.modules), "
             "sorted({'xarray', 'dask', 'distributed'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=300)


def test_raster_bands_write_a_cog_named_like_the_pipeline(tmp_path):
    da = scene(tmp_path / "a.tif")
    out = gx.texture_map(da, ["contrast", "ent"], window=5, levels=16,
                         quantize="fixed:0,256")
    bands = gx.raster_bands(out)
    assert bands.dims == ("band", "y", "x") and bands.shape[0] == 4
    names = ("b1_contrast", "b1_entropy", "b2_contrast", "b2_entropy")
    assert tuple(bands.attrs["long_name"]) == names
    bands.rio.to_raster(tmp_path / "t.tif", driver="COG")
    with rasterio.open(tmp_path / "t.tif") as src:
        assert src.descriptions == names
        assert (src.crs.to_epsg(), src.transform) == (32633, GEO)
        np.testing.assert_array_equal(src.read(3), out.values[1, 0])
    # a single band (feature, y, x), and bands named by their coordinate (STAC assets)
    single = gx.texture_map(da.sel(band=1), ["contrast"], window=5, levels=16,
                            quantize="fixed:0,256")
    assert tuple(gx.raster_bands(single).attrs["long_name"]) == ("b1_contrast",)
    named = out.assign_coords(band=["nir", "red"])
    assert gx.raster_bands(named).attrs["long_name"][2] == "red_contrast"
    with pytest.raises(ValueError, match="raster_bands takes the result"):
        gx.raster_bands(da)


def test_library_messages_name_the_argument(tmp_path):
    da = scene(tmp_path / "a.tif")
    with pytest.raises(ValueError, match="^quantize must be minmax") as refused:
        gx.texture_map(da, ["contrast"], quantize="percentil:2,98")
    assert refused.value.parameter == "quantize"
    with pytest.raises(ValueError, match="did you mean 'contrast'"):
        gx.texture_map(da, ["contrst"])
