"""Keras layers (model, .keras round trip, tracing) and quantize."""

import os

import keras
import numpy as np
import pytest
from skimage.feature import graycomatrix as sk_graycomatrix
from skimage.feature import graycoprops as sk_graycoprops

import glcm
from glcm.layers import GLCM, GLCMFeatures

FOUR = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]


def images(shape=(3, 24, 19), levels=8, seed=0):
    return np.random.default_rng(seed).integers(0, levels, shape).astype("float32")


def test_glcm_layer_matches_function_and_roundtrips(tmp_path):
    x = images((2, 16, 16, 1))
    inp = keras.Input((16, 16, 1))
    model = keras.Model(inp, GLCM(levels=8, distances=[1, 2], angles=FOUR)(inp))
    y = model.predict(x, verbose=0)
    assert y.shape == (2, 8, 8, 2, 4)
    np.testing.assert_array_equal(y, np.asarray(glcm.graycomatrix(x, [1, 2], FOUR, 8)))
    path = os.path.join(tmp_path, "glcm.keras")
    model.save(path)
    np.testing.assert_array_equal(keras.models.load_model(path).predict(x, verbose=0), y)


def test_features_layer_average_and_roundtrip(tmp_path):
    x = images()
    names = ["contrast", "homogeneity", "ASM", "correlation", "entropy"]
    layer = GLCMFeatures(names, levels=8, distances=[1, 3], average=False)
    inp = keras.Input((24, 19))
    model = keras.Model(inp, layer(inp))
    y = model.predict(x, verbose=0)
    assert y.shape == (3, 2, 4, 5)
    assert layer.compute_output_shape((None, 24, 19)) == (None, 2, 4, 5)
    for b in range(3):
        P = sk_graycomatrix(x[b].astype(np.uint8), [1, 3], FOUR, 8, symmetric=True)
        for f, name in enumerate(names):
            np.testing.assert_allclose(y[b, :, :, f], sk_graycoprops(P, name), rtol=1e-5,
                                       atol=1e-6)
    path = os.path.join(tmp_path, "features.keras")
    model.save(path)
    np.testing.assert_array_equal(keras.models.load_model(path).predict(x, verbose=0), y)
    averaged = GLCMFeatures(names, levels=8, distances=[1, 3])(x)
    np.testing.assert_allclose(np.asarray(averaged), y.mean(axis=(1, 2)), rtol=1e-5,
                               atol=1e-7)


def test_features_layer_with_mask_and_config():
    x = images()
    mask = np.ones(x.shape, bool)
    mask[0] = False  # first image fully masked -> NaN
    layer = GLCMFeatures("contrast,entropy", levels=8)
    y = np.asarray(layer(x, mask=mask))
    assert np.isnan(y[0]).all() and np.isfinite(y[1:]).all()
    clone = GLCMFeatures.from_config(layer.get_config())
    np.testing.assert_array_equal(np.asarray(clone(x, mask=mask)), y)
    assert clone.get_config()["features"] == ["contrast", "entropy"]


def test_traced_with_backend_jit():
    x = images((2, 12, 12))
    layer = GLCMFeatures(["contrast", "energy"], levels=8)
    eager = np.asarray(layer(x))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for compiled in (tf.function(layer), tf.function(layer, jit_compile=True)):
            np.testing.assert_allclose(np.asarray(compiled(x)), eager, rtol=1e-6)
    else:
        import jax

        np.testing.assert_allclose(np.asarray(jax.jit(layer)(x)), eager, rtol=1e-6)


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="levels must be >= 2"):
        GLCM(levels=1)
    with pytest.raises(ValueError, match="unknown GLCM feature 'foo'"):
        GLCMFeatures(["foo"], levels=8)
    with pytest.raises(ValueError, match="distances is empty"):
        GLCMFeatures(["contrast"], levels=8, distances=[])


def test_quantize_matches_formula_and_masks_invalid():
    rng = np.random.default_rng(0)
    x = rng.normal(100, 30, (2, 50, 50)).astype(np.float32)
    x[0, 0, :5] = [np.nan, np.inf, -np.inf, 1e9, -1e9]
    nodata = np.ones(x.shape, bool)
    nodata[1, 3, 3] = False
    q, valid = glcm.quantize(x, 32, 40.0, 160.0, mask=nodata)
    q, valid = np.asarray(q), np.asarray(valid)
    exact = (x.astype(np.float64) - 40.0) / 120.0 * 32
    want = np.clip(np.floor(exact), 0, 31)
    finite = np.isfinite(x) & nodata
    np.testing.assert_array_equal(valid, finite)
    # float32 arithmetic: only values within rounding of a level boundary may differ
    near = np.abs(exact - np.round(exact)) < 1e-4
    np.testing.assert_array_equal(q[finite & ~near], want[finite & ~near])
    assert q[0, 0, 3] == 31 and q[0, 0, 4] == 0 and (q[~valid] == 0).all()
    assert q.dtype == np.int32


def test_quantize_integer_input_and_errors():
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    q, valid = glcm.quantize(x, 16, 0, 256)
    np.testing.assert_array_equal(np.asarray(q), x // 16)
    assert np.asarray(valid).all()
    with pytest.raises(ValueError, match="vmax must be greater than vmin"):
        glcm.quantize(x, 16, 5, 5)
    with pytest.raises(ValueError, match="levels must be >= 2"):
        glcm.quantize(x, 1, 0, 1)


def boundary_values(rng, levels, vmin, vmax, n):
    """Values on, just below and just above every level boundary of the range (where
    float32 rounding decides the level), and beyond the range on both sides."""
    edges = vmin + (vmax - vmin) * np.arange(levels + 1) / levels
    near = np.concatenate([edges, np.nextafter(edges.astype(np.float32), -np.inf),
                           np.nextafter(edges.astype(np.float32), np.inf)])
    return np.concatenate([near, rng.uniform(vmin - (vmax - vmin), vmax + (vmax - vmin),
                                             n)]).astype(np.float32)


def assert_same_levels(x, levels, vmin, vmax, host, backend):
    """``host`` equals the backend's codes: bit for bit on TensorFlow (IEEE float32
    operations both); elsewhere (JAX's compiled division may round a quotient one unit
    differently) except where the exact level is within float32 rounding of a
    boundary, and there by one level at most."""
    backend = np.asarray(backend)
    if keras.backend.backend() == "tensorflow":
        np.testing.assert_array_equal(host, backend)
        return
    exact = ((np.asarray(x, np.float64) - np.float64(np.float32(vmin)))
             / (np.float64(np.float32(vmax)) - np.float64(np.float32(vmin))) * levels)
    with np.errstate(invalid="ignore"):
        near = np.abs(exact - np.round(exact)) <= 1e-5 * np.maximum(1.0, np.abs(exact))
    differ = host != backend
    assert not (differ & ~near).any()
    assert (np.abs(host.astype(int) - backend) <= 1).all()


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint16", "int16", "uint8"])
def test_quantize_on_host_is_the_backends(dtype):
    rng = np.random.default_rng(7)
    for levels, vmin, vmax in ((32, 40.0, 160.0), (7, -3.3, 0.1), (256, 0, 1000),
                               (65536, -1.0e4, 3.0e4), (2, 0.25, 0.5)):
        values = boundary_values(rng, levels, vmin, vmax, 4000)
        if np.dtype(dtype).kind in "iu":
            info = np.iinfo(dtype)
            values = np.clip(np.round(values), info.min, info.max)
        x = values.astype(dtype)
        if np.dtype(dtype).kind == "f":
            x[:4] = [np.nan, np.inf, -np.inf, np.finfo(dtype).max]
        mask = rng.random(x.shape) > 0.1
        for m in (None, mask, mask.astype(np.uint8)):
            q_dev, ok_dev = glcm.quantize(x, levels, vmin, vmax, mask=m)
            q, ok = glcm.quantize(x, levels, vmin, vmax, mask=m, host=True)
            assert isinstance(q, np.ndarray) and isinstance(ok, np.ndarray)
            assert q.dtype == np.int32 and ok.dtype == bool
            assert_same_levels(x, levels, vmin, vmax, q, q_dev)
            np.testing.assert_array_equal(ok, np.asarray(ok_dev))
    # ranges per pixel (broadcast), as the backend's
    x = rng.normal(0, 10, (3, 40, 50)).astype(np.float32)
    lo, hi = np.array([-5.0, -1.0, 0.0]).reshape(3, 1, 1), np.array([5.0, 9.0, 0.5])[:, None, None]
    assert_same_levels(x, 16, lo, hi, glcm.quantize(x, 16, lo, hi, host=True)[0],
                       glcm.quantize(x, 16, lo, hi)[0])


def test_quantize_on_host_checks_its_range():
    x = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="vmax must be greater than vmin"):
        glcm.quantize(x, 8, 1.0, 1.0, host=True)
    with pytest.raises(ValueError, match="finite"):
        glcm.quantize(x, 8, 0.0, np.inf, host=True)
