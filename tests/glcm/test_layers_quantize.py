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
