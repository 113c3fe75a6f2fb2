"""Quantize, TextureMap on several channels, and model_halo: models that carry their
own quantization, trained and saved on either backend."""

import numpy as np
import keras
import pytest

import glcm
from glcm.halo import HaloUnknown

FEATURES = ["contrast", "entropy", "correlation"]


def images(seed=0, shape=(2, 19, 23, 1)):
    x = np.random.default_rng(seed).uniform(-5, 260, shape).astype("float32")
    x[0, 3, 4] = np.nan
    x[-1, 10, 2:6] = np.inf
    x[-1, 0, 0] = -np.inf
    return x


def test_quantize_gives_glcm_quantize_codes_and_its_validity_as_the_mask():
    x = images()
    layer = glcm.layers.Quantize(32, 1.0, 255.0)
    codes, valid = glcm.quantize(x, 32, 1.0, 255.0)
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(codes))
    np.testing.assert_array_equal(np.asarray(layer.compute_mask(x)), np.asarray(valid))
    assert not np.asarray(valid)[0, 3, 4, 0] and not np.asarray(valid)[1, 10, 3, 0]


def test_quantize_takes_a_range_per_channel():
    x = np.random.default_rng(1).uniform(0, 10, (1, 5, 6, 2)).astype("float32")
    out = np.asarray(glcm.layers.Quantize(8, [0.0, 2.0], [10.0, 4.0])(x))
    np.testing.assert_array_equal(out[..., 0], np.asarray(glcm.quantize(x[..., 0], 8, 0, 10)[0]))
    np.testing.assert_array_equal(out[..., 1], np.asarray(glcm.quantize(x[..., 1], 8, 2, 4)[0]))


@pytest.mark.parametrize("vmin,vmax", [(1.0, 1.0), (np.nan, 2.0), ([[0.0]], [1.0])])
def test_quantize_refuses_a_bad_range(vmin, vmax):
    with pytest.raises(ValueError, match="vmax must be greater|must be finite"):
        glcm.layers.Quantize(8, vmin, vmax)


def test_the_mask_of_quantize_reaches_every_exact_layer():
    """Quantize -> GLCM / GLCMFeatures / TextureMap in a model equals the layers given
    glcm.quantize's codes and validity by hand (NaN and inf pixels ignored)."""
    x = images()
    codes, valid = glcm.quantize(x, 16, 0.0, 255.0)
    inputs = keras.Input((None, None, 1))
    q = glcm.layers.Quantize(16, 0.0, 255.0)(inputs)
    layers = [glcm.layers.GLCM(16, distances=[1, 2], symmetric=True),
              glcm.layers.GLCMFeatures(FEATURES, 16, distances=[1, 2]),
              glcm.layers.TextureMap(FEATURES, window=5, levels=16, distances=[1, 2])]
    for layer in layers:
        got = np.asarray(keras.Model(inputs, layer(q))(x))
        expected = np.asarray(layer(codes, mask=valid))
        unmasked = np.asarray(layer(codes))
        np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)
        assert not np.allclose(got, unmasked, equal_nan=True), type(layer).__name__


def test_texture_map_on_several_channels_is_each_channel_in_turn():
    x = images(shape=(2, 17, 15, 3))
    codes, valid = glcm.quantize(x, 8, 0.0, 255.0)
    layer = glcm.layers.TextureMap(FEATURES, window=3, levels=8)
    out = np.asarray(layer(codes, mask=valid))
    assert out.shape == (2, 17, 15, 9)
    assert layer.compute_output_shape((None, None, None, 3)) == (None, None, None, 9)
    inner = glcm.layers.TextureMap(FEATURES, window=3, levels=8, padding="valid")
    np.testing.assert_array_equal(np.asarray(inner(codes, mask=valid)),
                                  out[:, 2:-2, 2:-2])  # halo 2: window 3, distance 1
    for c in range(3):
        expected = glcm.texture_map(np.asarray(codes)[..., c], FEATURES, 3, levels=8,
                                    mask=np.asarray(valid)[..., c])
        np.testing.assert_allclose(out[..., 3 * c:3 * c + 3], np.asarray(expected),
                                   rtol=1e-6, equal_nan=True)
    with pytest.raises(ValueError, match="average=False takes one channel"):
        glcm.layers.TextureMap(FEATURES, window=3, levels=8, average=False)(codes)


def land_cover_model(classes=3):
    x = keras.Input((None, None, 1))
    codes = glcm.layers.Quantize(16, 0.0, 255.0)(x)
    maps = glcm.layers.TextureMap(["contrast", "homogeneity", "entropy"], window=5,
                                  levels=16)(codes)
    scaled = keras.layers.Normalization(mean=[5.0, 0.5, 2.0], variance=[25.0, 0.1, 1.0])(maps)
    return keras.Model(x, keras.layers.Dense(classes, activation="softmax")(scaled))


def test_a_model_with_its_own_quantization_trains_saves_and_loads(tmp_path):
    """Built, trained, saved as .keras and loaded like any Keras model; the loaded
    model gives the same output, NaN where the input is invalid."""
    keras.utils.set_random_seed(0)
    model = land_cover_model()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (6, 16, 16, 1)).astype("float32")
    x[:3] = np.where(rng.random(x[:3].shape) < 0.5, 40.0, 200.0)  # a coarse texture
    y = np.zeros((6, 16, 16), "int32")
    y[:3] = 1
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, batch_size=3, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before
    path = tmp_path / "cover.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    test = images(seed=2, shape=(1, 20, 21, 1))
    out = np.asarray(loaded(test))
    np.testing.assert_allclose(out, np.asarray(model(test)), rtol=1e-6, equal_nan=True)
    assert np.isnan(out[0, 3, 4]).all() and np.isfinite(out[0, 15, 15]).all()
    assert glcm.model_halo(loaded) == 3


def sequential(*layers, channels=1):
    return keras.Sequential([keras.Input((None, None, channels)), *layers])


@pytest.mark.parametrize("layers,halo", [
    ([keras.layers.Dense(3), keras.layers.Activation("relu")], 0),
    ([keras.layers.Conv2D(2, 3, padding="same")], 1),
    ([keras.layers.Conv2D(2, 4, padding="same")], 2),
    ([keras.layers.Conv2D(2, 3, padding="same", dilation_rate=3)], 3),
    ([keras.layers.Conv2D(2, (1, 5), padding="same")], 2),
    ([keras.layers.SeparableConv2D(2, 3, padding="same"),
      keras.layers.DepthwiseConv2D(5, padding="same")], 3),
    ([keras.layers.MaxPooling2D(3, strides=1, padding="same"),
      keras.layers.Conv2D(2, 1, padding="valid")], 1),
    ([glcm.layers.Quantize(8, 0, 1),
      glcm.layers.TextureMap(["asm"], window=9, levels=8, distances=[1, 3])], 7),
    ([keras.layers.BatchNormalization(), keras.layers.LayerNormalization(),
      keras.layers.Softmax()], 0),
])
def test_the_halo_adds_up_along_the_layers(layers, halo):
    assert glcm.model_halo(sequential(*layers)) == halo


def test_the_halo_of_branches_is_the_longest_path_and_nested_models_count():
    x = keras.Input((None, None, 1))
    a = keras.layers.Conv2D(2, 5, padding="same")(x)  # 2
    b = keras.layers.Conv2D(2, 3, padding="same")(keras.layers.Conv2D(2, 3, padding="same")(
        keras.layers.Conv2D(2, 3, padding="same")(x)))  # 3
    inner = sequential(keras.layers.Conv2D(2, 7, padding="same"), channels=4)  # 3
    merged = inner(keras.layers.Concatenate()([a, b]))
    y = keras.layers.Add()([merged, keras.layers.Conv2D(2, 1)(x)])
    assert glcm.model_halo(keras.Model(x, y)) == 6


@pytest.mark.parametrize("layer,words", [
    (keras.layers.Conv2D(2, 3, strides=2, padding="same"), "strides"),
    (keras.layers.Conv2D(2, 3), "padding 'valid'"),
    (keras.layers.MaxPooling2D(2), "strides"),
    (keras.layers.Lambda(lambda t: t * 2), "is not one whose reach is known"),
    (keras.layers.Softmax(axis=1), "not the channels"),
    (keras.layers.GlobalAveragePooling2D(), "is not one whose reach is known"),
    (glcm.layers.TextureMap(["asm"], window=3, levels=8, padding="valid"),
     "padding 'valid'"),
])
def test_a_halo_that_cannot_be_derived_is_refused(layer, words):
    with pytest.raises(HaloUnknown, match=words) as caught:
        glcm.model_halo(sequential(layer))
    assert caught.value.parameter == "model_halo"
    assert "give the halo explicitly" in str(caught.value)


def test_every_feature_runs_inside_fit_where_the_batch_is_unknown():
    """Keras traces fit and predict with an unknown batch size (a last partial
    batch): every feature's kernel accepts it, and an image predicted in the last
    batch (of 1) equals the same image predicted in a batch of 2 (the data reversed:
    the same batch shapes, so nothing compiles again; an eager call of every feature
    as the reference cost more than the rest of the test). evaluate traces the same
    forward pass as predict: left out for time."""
    keras.utils.set_random_seed(1)
    x = keras.Input((None, None, 1))
    maps = glcm.layers.TextureMap("all", window=5, levels=8, distances=[1, 2])(
        glcm.layers.Quantize(8, 0.0, 1.0)(x))
    model = keras.Model(x, keras.layers.Dense(2, activation="softmax")(
        keras.layers.Rescaling(0.01)(maps)))
    model.compile("adam", "sparse_categorical_crossentropy")
    data = np.random.default_rng(0).uniform(0, 1, (5, 12, 12, 1)).astype("float32")
    labels = np.zeros((5, 12, 12), "int32")
    history = model.fit(data, labels, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    forward = model.predict(data, batch_size=2, verbose=0)  # batches 01, 23, 4
    backward = model.predict(data[::-1], batch_size=2, verbose=0)[::-1]  # 43, 21, 0
    assert forward.shape == (5, 12, 12, 2) and np.isfinite(forward).all()
    np.testing.assert_allclose(forward, backward, atol=1e-5)
