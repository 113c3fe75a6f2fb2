"""The soft (differentiable) GLCM layers: their hard limit against the exact layers,
gradients against central differences, NaN safety, masks, limits and a .keras round
trip; on both backends (tests/glcm runs under TensorFlow and JAX)."""

import os

import keras
import numpy as np
import pytest

import glcm
from glcm.layers import GLCMFeatures, SoftGLCMFeatures, SoftTextureMap
from glcm.soft import NOT_SMOOTH, SOFT_MAP_MAX_ELEMENTS

SMOOTH = tuple(n for n in glcm.FEATURES if n not in NOT_SMOOTH)
FOUR = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]


def away_from_edges(shape, levels, vmin, vmax, seed=0):
    """Float values at least 0.2 levels from every level edge (the hard limit is
    exact there), as quantize sees them."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, levels, shape) + rng.uniform(0.2, 0.8, shape)
    return (vmin + u / levels * (vmax - vmin)).astype("float32")


def assert_close_features(soft, exact, names):
    # per feature, relative to the feature's own scale (float32 sums in both)
    for k, name in enumerate(names):
        scale = max(1.0, float(np.nanmax(np.abs(exact[..., k]))))
        np.testing.assert_allclose(soft[..., k], exact[..., k], rtol=1e-4,
                                   atol=2e-4 * scale, err_msg=name)


@pytest.mark.parametrize("symmetric", [True, False])
def test_soft_features_reach_the_exact_layer_as_bandwidth_goes_to_zero(symmetric):
    x = away_from_edges((3, 17, 15), 8, -1.0, 2.0, seed=1)
    x[0, 3, 4] = np.nan  # invalid pixel: its pairs do not count
    mask = np.ones(x.shape, bool)
    mask[1, :5] = False
    soft = SoftGLCMFeatures(SMOOTH, levels=8, vmin=-1.0, vmax=2.0, distances=[1, 2],
                            angles=FOUR, bandwidth=0.01, symmetric=symmetric)
    got = np.asarray(soft(x, mask=mask))
    q, ok = glcm.quantize(x, 8, -1.0, 2.0, mask=mask)
    exact = GLCMFeatures(SMOOTH, levels=8, distances=[1, 2], angles=FOUR,
                         symmetric=symmetric)
    assert_close_features(got, np.asarray(exact(q, mask=ok)), SMOOTH)
    # the gap grows with the bandwidth: a wide kernel blurs the levels
    blurred = np.asarray(SoftGLCMFeatures(["contrast"], levels=8, vmin=-1.0, vmax=2.0,
                                          bandwidth=0.5)(x, mask=mask))
    sharp = np.asarray(SoftGLCMFeatures(["contrast"], levels=8, vmin=-1.0, vmax=2.0,
                                        bandwidth=0.05)(x, mask=mask))
    contrast = np.asarray(GLCMFeatures(["contrast"], levels=8)(q, mask=ok))
    assert np.all(np.abs(sharp - contrast) < np.abs(blurred - contrast))


def test_soft_texture_map_reaches_texture_map():
    x = away_from_edges((2, 13, 16), 6, 0.0, 1.0, seed=2)
    x[1, 5, 5] = np.inf
    layer = SoftTextureMap(SMOOTH, window=5, levels=6, vmin=0.0, vmax=1.0,
                           distances=[1, 2], angles=FOUR, bandwidth=0.01)
    got = np.asarray(layer(x[..., None]))
    assert got.shape == (2, 13, 16, len(SMOOTH))
    q, ok = glcm.quantize(x, 6, 0.0, 1.0)
    exact = np.asarray(glcm.texture_map(q, SMOOTH, 5, levels=6, distances=[1, 2],
                                        angles=FOUR, mask=ok))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
    assert np.isnan(got[1, 5, 5]).all()
    assert_close_features(got, exact, SMOOTH)


def value_and_gradient(fn, x):
    """fn(x) (a scalar) and its gradient with respect to x, by the backend."""
    if keras.backend.backend() == "jax":
        import jax

        value, grad = jax.jit(jax.value_and_grad(fn))(jax.numpy.asarray(x))
        return float(value), np.asarray(grad)
    import tensorflow as tf

    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        value = fn(variable)
    return float(value), np.asarray(tape.gradient(value, variable))


def directional_check(fn, x, seed, steps=3, h=1e-3):
    """Autodiff directional derivatives against central differences."""
    _, grad = value_and_gradient(fn, x)
    assert np.all(np.isfinite(grad))
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        d = rng.normal(size=x.shape).astype("float32")
        d /= np.linalg.norm(d)
        numeric = (float(fn(x + h * d)) - float(fn(x - h * d))) / (2 * h)
        np.testing.assert_allclose(float(np.sum(grad * d)), numeric, rtol=3e-2,
                                   atol=3e-3 * max(1.0, abs(numeric)))
    return grad


@pytest.mark.parametrize("names", [("contrast", "homogeneity", "correlation", "mean"),
                                   ("asm", "energy", "entropy", "imc1", "imc2"),
                                   ("sum_entropy", "difference_variance",
                                    "cluster_shade", "std")])
def test_gradients_match_central_differences(names):
    x = np.random.default_rng(3).uniform(0.05, 0.95, (2, 9, 8)).astype("float32")
    layer = SoftGLCMFeatures(names, levels=5, vmin=0.0, vmax=1.0, bandwidth=0.5)
    weights = np.random.default_rng(4).normal(size=(2, len(names))).astype("float32")
    grad = directional_check(lambda v: keras.ops.sum(layer(v) * weights), x, seed=5)
    assert np.abs(grad).max() > 0


def test_texture_map_gradients_match_central_differences():
    x = np.random.default_rng(6).uniform(0.0, 1.0, (1, 7, 6)).astype("float32")
    layer = SoftTextureMap(["contrast", "entropy"], window=3, levels=4, vmin=0.0,
                           vmax=1.0, bandwidth=0.5)
    weights = np.random.default_rng(7).normal(size=(1, 7, 6, 2)).astype("float32")
    directional_check(lambda v: keras.ops.sum(layer(v) * weights), x, seed=8, steps=2)


def range_gradient(layer, x):
    """d sum(layer(x)) / d (vmin, vmax) by autodiff, through the layer's weights."""
    layer.build(x.shape)
    if keras.backend.backend() == "jax":
        import jax

        def loss(trainable):
            out, _ = layer.stateless_call(trainable, [], x)
            return keras.ops.sum(out)

        grads = jax.grad(loss)([v.value for v in layer.trainable_variables])
        return [float(g) for g in grads]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = keras.ops.sum(layer(x))
    return [float(g) for g in tape.gradient(value, layer.trainable_variables)]


def test_the_range_is_learned_through_its_gradient():
    x = np.random.default_rng(9).uniform(0.3, 0.7, (2, 10, 10)).astype("float32")
    args = dict(features=["contrast"], levels=6, bandwidth=0.5)
    layer = SoftGLCMFeatures(vmin=0.0, vmax=1.0, trainable_range=True, **args)
    grads = range_gradient(layer, x)
    assert len(layer.trainable_variables) == 2
    h = 1e-3
    for k, (lo, hi) in enumerate([((-h, 1.0), (h, 1.0)), ((0.0, 1.0 - h), (0.0, 1.0 + h))]):
        minus = float(np.sum(SoftGLCMFeatures(vmin=lo[0], vmax=lo[1], **args)(x)))
        plus = float(np.sum(SoftGLCMFeatures(vmin=hi[0], vmax=hi[1], **args)(x)))
        np.testing.assert_allclose(grads[k], (plus - minus) / (2 * h), rtol=3e-2, atol=1e-2)
    # a fixed range has no weights
    assert SoftGLCMFeatures(vmin=0.0, vmax=1.0, **args).trainable_variables == []


def test_nan_safe_forward_and_backward():
    x = np.full((2, 8, 8), 0.55, "float32")  # constant: zero variance, one level
    x[1, :, :4] = np.nan  # half invalid
    x[1, 0, 0] = np.inf
    layer = SoftGLCMFeatures(SMOOTH, levels=4, vmin=0.0, vmax=1.0, bandwidth=0.02)
    out = np.asarray(layer(x))
    assert np.all(np.isfinite(out))
    _, grad = value_and_gradient(lambda v: keras.ops.sum(layer(v)), x)
    assert np.all(np.isfinite(grad))
    assert np.all(grad[1, :, :4] == 0)  # invalid pixels get no gradient
    # no valid pixel at all: NaN features, still a finite (zero) gradient
    empty = np.full((1, 6, 6), np.nan, "float32")
    assert np.isnan(np.asarray(layer(empty))).all()
    _, grad = value_and_gradient(
        lambda v: keras.ops.sum(keras.ops.nan_to_num(layer(v))), empty)
    assert np.all(grad == 0)


def test_smooth_features_only():
    for name, why in NOT_SMOOTH.items():
        with pytest.raises(ValueError, match=f"{name} has no use in a soft GLCM layer"):
            SoftGLCMFeatures(["contrast", name], levels=4, vmin=0, vmax=1)
        assert why.split(":")[0] in str(pytest.raises(
            ValueError, SoftTextureMap, [name], 3, 4, 0, 1).value)
    with pytest.raises(ValueError, match="bandwidth must be a positive number"):
        SoftGLCMFeatures(["contrast"], levels=4, vmin=0, vmax=1, bandwidth=0)
    with pytest.raises(ValueError, match="vmax > vmin"):
        SoftGLCMFeatures(["contrast"], levels=4, vmin=1, vmax=1)


def test_texture_map_memory_limit_is_enforced():
    levels, offsets = 16, 4
    side = int(np.sqrt(SOFT_MAP_MAX_ELEMENTS / (levels * levels * offsets))) + 1
    layer = SoftTextureMap(["contrast"], window=3, levels=levels, vmin=0, vmax=1)
    with pytest.raises(ValueError, match="levels² = 256 floats per pixel and offset"):
        layer(np.zeros((1, side, side), "float32"))


def test_models_with_soft_layers_save_and_load(tmp_path):
    x = np.random.default_rng(10).uniform(0, 1, (3, 12, 12, 1)).astype("float32")
    inp = keras.Input((12, 12, 1))
    pooled = SoftGLCMFeatures(["contrast", "entropy"], levels=6, vmin=0.1, vmax=0.9,
                              trainable_range=True)(inp)
    maps = SoftTextureMap(["homogeneity"], window=3, levels=4, vmin=0.0, vmax=1.0,
                          bandwidth=0.25)(inp)
    model = keras.Model(inp, [keras.layers.Dense(2)(pooled), maps])
    def layer_of(m, kind):
        [found] = [layer for layer in m.layers if isinstance(layer, kind)]
        return found

    layer_of(model, SoftGLCMFeatures).range_min.assign(0.2)  # learned, not the initial
    before = model.predict(x, verbose=0)
    path = os.path.join(tmp_path, "soft.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    after = loaded.predict(x, verbose=0)
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert float(layer_of(loaded, SoftGLCMFeatures).range_min.value) == pytest.approx(0.2)
    assert layer_of(loaded, SoftTextureMap).get_config()["bandwidth"] == 0.25
