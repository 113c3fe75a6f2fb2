"""glcm.xarray.object_features: in memory equals the core; Dask chunks (threads and a
real dask.distributed cluster with worker processes) equal in memory exactly."""

import numpy as np
import pytest
import xarray as xr
from scipy.spatial import cKDTree
from skimage import data

import glcm
import glcm.xarray as gx

NAMES = ["contrast", "entropy", "correlation", "asm", "cluster_shade"]


def scene(bands=2, shape=(90, 110), n_objects=14, seed=0):
    """(band, y, x) values with NaN holes and nodata, and Voronoi labels with
    background, on the same coordinates."""
    full = data.brick().astype(np.float32)
    brick = full[:shape[0], :shape[1]]
    stack = np.stack([brick, brick[::-1] * 3.5, full.T[:shape[0], :shape[1]]][:bands])
    stack[:, 20:26, 40:70] = np.nan
    stack[0, 60:64, 10:14] = -9999
    rng = np.random.default_rng(seed)
    points = rng.random((n_objects, 2)) * shape
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    _, nearest = cKDTree(points).query(np.stack([rows.ravel(), cols.ravel()], 1))
    labels = (nearest + 1).reshape(shape) * 10  # ids 10, 20, ...
    labels[:5, :] = 0
    coords = {"y": 1000.0 - 10 * np.arange(shape[0]), "x": 500.0 + 10 * np.arange(shape[1])}
    da = xr.DataArray(stack, dims=("band", "y", "x"),
                      coords=dict(coords, band=[1, 2, 3][:bands]), attrs={"nodata": -9999})
    return da, xr.DataArray(labels, dims=("y", "x"), coords=coords)


def test_in_memory_equals_quantize_then_object_features():
    da, labels = scene()
    result = gx.object_features(da, labels, NAMES, levels=16, distances=[1, 2],
                                quantize="fixed:0,255")
    assert result.dims == ("band", "object", "feature")
    assert result.feature.values.tolist() == NAMES
    values = da.values.copy()
    values[values == -9999] = np.nan
    codes, ok = glcm.quantize(values, 16, 0.0, 255.0)
    ids, expected = glcm.object_features(np.asarray(codes), labels.values, NAMES,
                                         distances=[1, 2], levels=16, mask=np.asarray(ok))
    np.testing.assert_array_equal(result.object.values, ids)
    np.testing.assert_array_equal(result.values, expected)
    assert result.band.values.tolist() == [1, 2]
    assert result.attrs["glcm_quantization_range"] == [[0.0, 255.0], [0.0, 255.0]]
    two_d = gx.object_features(da[0], labels, NAMES, levels=16, distances=[1, 2],
                               quantize="fixed:0,255", average=False)
    assert two_d.dims == ("object", "distance", "angle", "feature")
    np.testing.assert_allclose(np.nanmean(two_d.values, axis=(1, 2)), expected[0],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunks", [{"y": 23, "x": 31}, {"y": 40, "x": 110}])
def test_dask_chunks_equal_in_memory(chunks):
    da, labels = scene()
    eager = gx.object_features(da, labels, NAMES, levels=16, distances=[1, 3])
    lazy = gx.object_features(da.chunk(dict(chunks, band=1)), labels.chunk(chunks),
                              NAMES, levels=16, distances=[1, 3])
    assert lazy.chunks is not None  # lazy until computed
    computed = lazy.compute(scheduler="threads")
    np.testing.assert_array_equal(computed.object.values, eager.object.values)
    np.testing.assert_array_equal(computed.values, eager.values)  # the seams exact
    assert computed.attrs == eager.attrs


@pytest.mark.slow  # a LocalCluster of two worker processes, each importing TensorFlow
def test_dask_on_a_distributed_cluster_equals_in_memory(dask_client):
    da, labels = scene(bands=3, shape=(120, 130), n_objects=40, seed=4)
    eager = gx.object_features(da, labels, "all", levels=8, distances=[2])
    lazy = gx.object_features(da.chunk({"y": 50, "x": 45}), labels.chunk({"y": 50}),
                              "all", levels=8, distances=[2])
    computed = dask_client.compute(lazy).result()
    workers = dask_client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2
    np.testing.assert_array_equal(computed.values, eager.values)


def test_labels_off_the_grid_are_refused():
    da, labels = scene()
    with pytest.raises(ValueError, match="same grid"):
        gx.object_features(da, labels[:-1], NAMES)
    shifted = labels.assign_coords(x=labels.x + 5)
    with pytest.raises(ValueError, match="x coordinates differ"):
        gx.object_features(da, shifted, NAMES)
    with pytest.raises(ValueError, match="unknown GLCM feature") as refused:
        gx.object_features(da, labels, ["no_such_feature"])
    assert refused.value.parameter == "features"
    with pytest.raises(ValueError, match="levels") as refused:
        gx.object_features(da, labels, NAMES, levels=1)
    assert refused.value.parameter == "levels"
