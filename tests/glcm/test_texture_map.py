"""texture_map against scikit-image / numpy on the clipped window of every pixel."""

import os

import keras
import numpy as np
import pytest
from skimage import data
from skimage.feature import graycomatrix as sk_graycomatrix
from skimage.feature import graycoprops as sk_graycoprops

import glcm
from glcm._box_sums import BoxMoments
from glcm._sliding_histograms import SlidingCounts
from glcm.layers import TextureMap
from tests.glcm.reference import feature_scale, numpy_features

FOUR = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
SKIMAGE = {"contrast": "contrast", "dissimilarity": "dissimilarity",
           "homogeneity": "homogeneity", "asm": "ASM", "energy": "energy",
           "correlation": "correlation", "mean": "mean", "variance": "variance",
           "std": "std", "entropy": "entropy"}


def window_glcm(image, valid, r, c, window, distances, symmetric, levels):
    h = window // 2
    rows = slice(max(0, r - h), r + h + 1)
    cols = slice(max(0, c - h), c + h + 1)
    patch = np.where(valid[rows, cols], image[rows, cols], 0).astype(np.uint8)
    return np.asarray(glcm.graycomatrix(patch[None], distances, FOUR, levels,
                                        symmetric=symmetric, mask=valid[rows, cols][None]))[0]


def check_pixels(image, valid, pixels, window, distances, symmetric, levels, names, out):
    """out: (H, W, n_offsets, F) from texture_map(average=False)."""
    for r, c in pixels:
        P = window_glcm(image, valid, r, c, window, distances, symmetric, levels)
        for k in range(len(distances) * 4):
            Pk = P[:, :, k // 4, k % 4]
            if Pk.sum() == 0 or not valid[r, c]:
                assert np.isnan(out[r, c, k]).all()
                continue
            ref = numpy_features(Pk)
            for f, name in enumerate(names):
                want = ref[name]
                if name in SKIMAGE and valid[max(0, r - window):r + window, :].all():
                    sk = sk_graycoprops(Pk[:, :, None, None], SKIMAGE[name])[0, 0]
                    assert abs(sk - want) <= 1e-9 * max(1, abs(want))
                atol = 1e-3 if name == "imc2" else 1e-5
                assert abs(out[r, c, k, f] - want) <= 2e-5 * feature_scale(Pk, name) + atol, (
                    name, r, c, k, out[r, c, k, f], want)


def border_and_random_pixels(H, W, rng, n=40):
    edges = [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1), (0, W // 2), (H // 2, 0),
             (H - 1, W // 2), (H // 2, W - 1), (1, 1), (H - 2, W - 2)]
    return edges + [(int(rng.integers(H)), int(rng.integers(W))) for _ in range(n)]


# Under JAX every seed compiles its own program (15-35 s each on 2 cores): the JAX pass
# runs the unmasked seed 0 and the masked seeds 3 (symmetric) and 4 (not symmetric);
# seeds 1, 2 and 5 differ only in window and distances and run under TensorFlow.
JAX_SEEDS = (0, 3, 4)


@pytest.mark.parametrize("seed", [
    pytest.param(seed, marks=pytest.mark.skipif(
        keras.backend.backend() == "jax" and seed not in JAX_SEEDS,
        reason="window/distance variant: run in the TensorFlow pass"))
    for seed in range(6)])
def test_every_feature_random_images(seed):
    rng = np.random.default_rng(seed)
    levels = int(rng.choice([4, 8, 16]))
    window = [3, 5, 7, 9, 11, 15][seed]
    distances = [[1], [1, 2], [3], [1, 3], [2], [1]][seed]
    H, W = int(rng.integers(window, 40)), int(rng.integers(window, 40))
    image = rng.integers(0, levels, (H, W))
    if seed % 2:
        image = (np.cumsum(image, axis=1) // 4) % levels  # smoother texture
    valid = rng.random((H, W)) > (0.2 if seed >= 3 else 0.0)
    symmetric = seed != 4
    out = np.asarray(glcm.texture_map(image[None], glcm.FEATURES, window, levels=levels,
                                      distances=distances, angles=FOUR,
                                      symmetric=symmetric, average=False,
                                      mask=valid[None]))[0]
    assert out.shape == (H, W, len(distances) * 4, len(glcm.FEATURES))
    check_pixels(image, valid, border_and_random_pixels(H, W, rng, 12), window, distances,
                 symmetric, levels, glcm.FEATURES, out)


@pytest.mark.parametrize("name", ["brick", "grass", "gravel", "camera"])
def test_skimage_features_real_textures(name):
    rng = np.random.default_rng(1)
    raw = getattr(data, name)()[:48, :56]
    q, _ = glcm.quantize(raw[None], 32, 0, 256)
    image = np.asarray(q)[0]
    names = list(SKIMAGE)
    out = np.asarray(glcm.texture_map(q, names, 7, levels=32, average=False))[0]
    valid = np.ones(image.shape, bool)
    for r, c in border_and_random_pixels(*image.shape, rng, 30):
        P = window_glcm(image, valid, r, c, 7, [1], True, 32)
        sk = sk_graycomatrix(image[max(0, r - 3):r + 4, max(0, c - 3):c + 4].astype(np.uint8),
                             [1], FOUR, 32, symmetric=True)
        np.testing.assert_array_equal(P, sk)
        for f, n in enumerate(names):
            want = sk_graycoprops(sk, SKIMAGE[n])[0]
            np.testing.assert_allclose(out[r, c, :, f], want, rtol=2e-5, atol=2e-6, err_msg=n)


def test_average_over_offsets_with_pairs():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 8, (1, 20, 20))
    names = ["contrast", "entropy", "correlation"]
    per = np.asarray(glcm.texture_map(image, names, 5, levels=8, average=False))
    avg = np.asarray(glcm.texture_map(image, names, 5, levels=8))
    np.testing.assert_allclose(avg, np.nanmean(per, axis=3), rtol=1e-5, atol=1e-6)


def test_edge_cases():
    # image smaller than the window, and 1x1 (no pair: NaN)
    small = np.asarray(glcm.texture_map(np.array([[[1, 2], [3, 0]]]), ["contrast"], 7,
                                        levels=4))
    P = np.asarray(glcm.graycomatrix(np.array([[[1, 2], [3, 0]]]), [1], FOUR, 4,
                                     symmetric=True))
    want = np.nanmean(np.asarray(glcm.graycoprops(P, "contrast"))[0, 0])
    np.testing.assert_allclose(small[0, :, :, 0], want, rtol=1e-6)
    one = np.asarray(glcm.texture_map(np.zeros((1, 1, 1)), ["contrast", "entropy"], 3,
                                      levels=4))
    assert one.shape == (1, 1, 1, 2) and np.isnan(one).all()
    # constant image: documented finite values
    const = np.asarray(glcm.texture_map(np.full((1, 9, 9), 2), ["correlation", "entropy",
                                                               "imc1", "variance"], 3,
                                        levels=4))
    np.testing.assert_array_equal(const[..., 0], 1.0)
    np.testing.assert_array_equal(const[..., 1:], 0.0)
    # fully masked
    masked = np.asarray(glcm.texture_map(np.ones((1, 6, 6)), ["asm"], 3, levels=4,
                                         mask=np.zeros((1, 6, 6), bool)))
    assert np.isnan(masked).all()
    # NaN input through quantize: NaN pixels are invalid, output NaN there
    x = np.random.default_rng(0).random((1, 10, 10)).astype(np.float32)
    x[0, 4, 4] = np.nan
    q, valid = glcm.quantize(x, 8, 0.0, 1.0)
    out = np.asarray(glcm.texture_map(q, ["contrast"], 3, levels=8, mask=valid))
    assert np.isnan(out[0, 4, 4, 0]) and np.isfinite(np.delete(out.ravel(), 44)).all()


def test_row_chunks_equal_one_pass(monkeypatch):
    from glcm import texture

    image = np.random.default_rng(5).integers(0, 8, (2, 37, 23))
    names = ["contrast", "asm", "correlation"]
    whole = np.asarray(glcm.texture_map(image, names, 5, levels=8, distances=[1, 2]))
    monkeypatch.setattr(texture, "CHUNK_ELEMENTS", 2 * 23 * 25 * 8 * 3)  # 3-row chunks
    chunked = np.asarray(glcm.texture_map(image, names, 5, levels=8, distances=[1, 2]))
    # chunks run compiled, the small whole image op by op: rounding may differ
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(texture, "STRIP_COLUMNS", 9)  # and column strips: 3 of 8
    tiles = np.asarray(glcm.texture_map(image, names, 5, levels=8, distances=[1, 2]))
    np.testing.assert_allclose(tiles, whole, rtol=1e-5, atol=1e-5)


def test_stacked_chunks_equal_one_pass(monkeypatch):
    # the accelerator's plan, forced on the CPU: narrow column strips stacked along
    # the batch axis, two per call, the last call filled up with an invalid chunk
    from glcm import texture

    rng = np.random.default_rng(12)
    image = rng.integers(0, 8, (2, 41, 270))  # wider than 256: not bucketed
    valid = rng.random(image.shape) > 0.1
    names = ["asm", "entropy", "contrast", "correlation"]
    whole = np.asarray(glcm.texture_map(image, names, 5, levels=8, mask=valid, threads=1))
    monkeypatch.setattr(texture, "on_accelerator", lambda: True)
    monkeypatch.setattr(texture, "ACCELERATOR_STRIP_COLUMNS", 64)  # 5 strips of 54
    per_row = texture._elements_per_row(names, 2, 54, 5, 8, 4)
    monkeypatch.setattr(texture, "ACCELERATOR_CHUNK_ELEMENTS", per_row * 41 * 2)
    assert texture.stacked_chunk_plan(41, 270, names, 2, 5, 8, 4) == (1, 41, 5, 54, 2)
    shapes, kernel = [], texture._texture_kernel

    def kernel_called(chunks, **static):
        shapes.append(tuple(chunks.shape))
        return kernel(chunks, **static)

    monkeypatch.setattr(texture, "_texture_kernel", kernel_called)
    stacked = np.asarray(glcm.texture_map(image, names, 5, levels=8, mask=valid, threads=1))
    # 5 chunks of 2 images in 3 calls of one shape (margin 3 on every side)
    assert shapes == [(4, 41 + 6, 54 + 6)] * 3
    assert np.isnan(stacked).any()  # the mask reached the chunks
    # count features are integer sums: the same bits in any chunk
    np.testing.assert_array_equal(stacked[..., :2], whole[..., :2])
    np.testing.assert_allclose(stacked, whole, rtol=1e-6, atol=1e-6)
    # padding="valid" (halo 3): 264 output columns in 5 strips of 53, the margin taken
    # from the image itself
    shapes.clear()
    inner = np.asarray(glcm.texture_map(image, names, 5, levels=8, mask=valid, threads=1,
                                        padding="valid"))
    assert shapes == [(4, 35 + 6, 53 + 6)] * 3
    np.testing.assert_array_equal(inner[..., :2], whole[:, 3:-3, 3:-3, :2])
    np.testing.assert_allclose(inner, whole[:, 3:-3, 3:-3], rtol=1e-6, atol=1e-6)


def test_stacked_chunk_plan_fills_its_calls():
    from glcm import texture

    names = ["contrast", "dissimilarity", "homogeneity", "asm", "entropy", "correlation",
             "mean", "variance"]
    budget = texture.ACCELERATOR_CHUNK_ELEMENTS
    for height, width in [(4096, 4096), (10980, 10980), (1032, 1032), (300, 5000),
                          (40000, 700)]:
        n_rows, rows, n_cols, cols, per_call = texture.stacked_chunk_plan(
            height, width, names, 1, 7, 32, 4)
        assert cols <= texture.ACCELERATOR_STRIP_COLUMNS
        assert n_cols * cols >= width > (n_cols - 1) * cols
        assert n_rows * rows >= height > (n_rows - 1) * rows
        calls = -(-n_rows * n_cols // per_call)
        assert calls * per_call - n_rows * n_cols < calls  # under one filler per call
        per_row = texture._elements_per_row(names, 1, cols, 7, 32, 4)
        assert per_call == 1 or per_row * rows * per_call <= budget
    # 16 strips of a 4096² image's full height, four per call
    assert texture.stacked_chunk_plan(4096, 4096, names, 1, 7, 32, 4) == (1, 4096, 16, 256, 4)


def test_count_features_largest_window():
    # the fixed-point m ln m table has the fewest bits at the largest window (2^14 for
    # symmetric p_x at 63): the entropies must still match per window (asymmetric
    # GLCMs: test_every_feature_random_images, seed 4)
    window, symmetric = 63, True
    rng = np.random.default_rng(window)
    levels, H, W = 64, 70, 75
    image = (np.cumsum(rng.integers(0, 3, (H, W)), axis=1) // 2) % levels
    valid = rng.random((H, W)) > 0.1
    names = list(SlidingCounts.FEATURES)
    out = np.asarray(glcm.texture_map(image[None], names, window, levels=levels,
                                      angles=FOUR, symmetric=symmetric, average=False,
                                      mask=valid[None]))[0]
    check_pixels(image, valid, border_and_random_pixels(H, W, rng, 8), window, [1],
                 symmetric, levels, names, out)


def test_higher_moments_at_256_levels():
    # float64 power sums: third and fourth powers of i + j up to 510 stay exact
    rng = np.random.default_rng(11)
    H, W = 40, 44
    image = np.clip(np.cumsum(rng.integers(-20, 21, (H, W)), axis=0) + 128, 0, 255)
    valid = rng.random((H, W)) > 0.1
    names = list(BoxMoments.FLOAT64_FEATURES)
    out = np.asarray(glcm.texture_map(image[None], names, 11, levels=256, angles=FOUR,
                                      average=False, mask=valid[None]))[0]
    check_pixels(image, valid, border_and_random_pixels(H, W, rng, 20), 11, [1], True,
                 256, names, out)


def test_threads_and_chunk_starts_do_not_change_the_maps(monkeypatch):
    from glcm import texture

    image = np.random.default_rng(8).integers(0, 8, (1, 45, 31))
    counts = ["asm", "entropy", "sum_entropy", "difference_entropy", "imc1", "imc2"]
    names = counts + ["contrast", "correlation"]
    monkeypatch.setattr(texture, "CHUNK_ELEMENTS", 4 * 35 * 16 * 4 * 5)  # ~5-row chunks
    monkeypatch.setattr(texture, "STRIP_COLUMNS", 16)  # 2 column strips
    one = np.asarray(glcm.texture_map(image, names, 5, levels=8, threads=1))
    if keras.backend.backend() == "tensorflow":
        n_rows, _, n_cols, _ = texture.chunk_plan(45, 31, names, 1, 5, 8, 4, threads=3)
        assert n_rows * n_cols > 3 and n_rows * n_cols % 3 == 0  # whole rounds of 3
        other = np.asarray(glcm.texture_map(image, names, 5, levels=8, threads=3))
    else:  # JAX: one thread; other chunk rows instead
        with pytest.raises(ValueError, match="JAX"):
            glcm.texture_map(image, names, 5, levels=8, threads=3)
        monkeypatch.setattr(texture, "CHUNK_ELEMENTS", 4 * 35 * 16 * 4 * 7)
        other = np.asarray(glcm.texture_map(image, names, 5, levels=8))
    np.testing.assert_allclose(other, one, rtol=1e-6, atol=1e-6)
    # count features are integer sums along the row: the same bits wherever a chunk
    # starts
    np.testing.assert_array_equal(other[..., :len(counts)], one[..., :len(counts)])
    monkeypatch.setattr(texture, "STRIP_COLUMNS", 1280)
    whole = np.asarray(glcm.texture_map(image, counts, 5, levels=8, threads=1))
    np.testing.assert_array_equal(whole, one[..., :len(counts)])
    with pytest.raises(ValueError, match="threads"):
        glcm.texture_map(image, names, 5, levels=8, threads=0)


def test_a_small_image_is_split_so_that_every_thread_has_a_chunk(monkeypatch):
    from glcm import texture

    names = ["asm", "entropy", "contrast", "correlation"]
    # one chunk would fit: 300 x 200 is far below CHUNK_ELEMENTS
    assert texture.chunk_plan(300, 200, names, 1, 7, 32, 4, threads=1)[::2] == (1, 1)
    n_rows, rows, n_cols, _ = texture.chunk_plan(300, 200, names, 1, 7, 32, 4, threads=2)
    assert (n_rows * n_cols, rows) == (2, 150)
    n_rows, rows, _, _ = texture.chunk_plan(300, 200, names, 1, 7, 32, 4, threads=8)
    assert n_rows == 4 and rows >= texture.MIN_SPLIT_ROWS  # no chunk thinner than that
    assert texture.chunk_plan(100, 200, names, 1, 7, 32, 4, threads=2)[0] == 1
    image = np.random.default_rng(4).integers(0, 16, (1, 140, 90))
    if keras.backend.backend() == "tensorflow":
        one = np.asarray(glcm.texture_map(image, names, 7, levels=16, threads=1))
        split = np.asarray(glcm.texture_map(image, names, 7, levels=16, threads=2))
        np.testing.assert_array_equal(split[..., :2], one[..., :2])  # exact sums
        np.testing.assert_allclose(split, one, rtol=1e-6, atol=1e-6)


def test_small_images_of_nearby_sizes_share_one_compiled_kernel():
    from glcm import texture

    # padded up to multiples of 32 while both sides are at most 256; larger ones
    # (the pipeline's tiles, Dask chunks with their halo) keep their shape
    assert texture.bucketed(9, 11) == texture.bucketed(32, 17) == (32, 32)
    assert texture.bucketed(33, 256) == (64, 256)
    assert texture.bucketed(257, 40) == (257, 40)
    assert texture.bucketed(262, 262) == (262, 262)
    assert texture.bucketed(1030, 1030) == (1030, 1030)
    rng = np.random.default_rng(6)
    names = ["contrast", "entropy", "correlation"]
    for H, W in [(9, 11), (32, 17), (25, 30)]:
        image = rng.integers(0, 7, (H, W))
        valid = rng.random((H, W)) > 0.1
        out = np.asarray(glcm.texture_map(image[None], names, 5, levels=7, angles=FOUR,
                                          average=False, mask=valid[None]))[0]
        assert out.shape == (H, W, 4, 3)
        check_pixels(image, valid, border_and_random_pixels(H, W, rng, 10), 5, [1], True,
                     7, names, out)
    if keras.backend.backend() == "tensorflow":
        compiled = [f for key, f in texture._texture_kernel.compiled_functions.items()
                    if dict(key[1])["levels"] == 7]  # no other test uses 7 levels
        assert len(compiled) == 1
        assert compiled[0].experimental_get_tracing_count() == 1  # one shape: 32 x 32


def test_layer_model_roundtrip_and_jit(tmp_path):
    x = np.random.default_rng(2).integers(0, 8, (2, 16, 16, 1)).astype("float32")
    layer = TextureMap(["contrast", "savg", "ent"], window=5, levels=8)
    inp = keras.Input((16, 16, 1))
    model = keras.Model(inp, layer(inp))
    y = model.predict(x, verbose=0)
    assert y.shape == (2, 16, 16, 3)
    assert layer.compute_output_shape((None, 16, 16, 1)) == (None, 16, 16, 3)
    np.testing.assert_allclose(y, np.asarray(glcm.texture_map(
        x, ["contrast", "sum_average", "entropy"], 5, levels=8)), rtol=1e-6)
    path = os.path.join(tmp_path, "texture.keras")
    model.save(path)
    np.testing.assert_array_equal(keras.models.load_model(path).predict(x, verbose=0), y)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        np.testing.assert_allclose(tf.function(layer, jit_compile=True)(x), y, rtol=1e-6)
    else:
        import jax

        np.testing.assert_allclose(jax.jit(layer)(x), y, rtol=1e-6)

    # padding="valid": the output leaves out the halo (window 5, distance 1: 3)
    valid = TextureMap(["contrast", "savg", "ent"], window=5, levels=8, padding="valid")
    assert valid.compute_output_shape((None, 16, 16, 1)) == (None, 10, 10, 3)
    assert valid.compute_output_shape((None, None, None, 1)) == (None, None, None, 3)
    inp = keras.Input((None, None, 1))
    model = keras.Model(inp, valid(inp))
    np.testing.assert_array_equal(model.predict(x, verbose=0), y[:, 3:-3, 3:-3])
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.layers[-1].get_config()["padding"] == "valid"
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), y[:, 3:-3, 3:-3])
    with pytest.raises(ValueError, match="padding must be one of"):
        TextureMap(["contrast"], window=5, levels=8, padding="full")


@pytest.mark.parametrize("window,distances,average", [
    (7, (1,), True), (5, (1, 2), True), (3, (2,), False)])
def test_valid_padding_is_same_cropped_by_the_halo(monkeypatch, window, distances, average):
    """``padding="valid"``: the maps of "same" on the whole input without its border
    of texture_halo pixels, bit for bit; masked pixels, a batch, chunks that do not
    divide the output (small chunks forced), and a halo larger than the offsets'
    margin (distance 2 at angles whose steps are 1 or 2)."""
    from glcm import texture

    rng = np.random.default_rng(window + len(distances))
    image = rng.integers(0, 16, (2, 61, 47))
    valid = rng.random(image.shape) > 0.15
    names = ["contrast", "asm", "entropy", "correlation", "mean"]
    kwargs = dict(levels=16, distances=distances, angles=FOUR, average=average,
                  mask=valid)
    halo = glcm.texture_halo(window, distances)
    core = (slice(None), slice(halo, -halo), slice(halo, -halo))
    same = np.asarray(glcm.texture_map(image, names, window, **kwargs))
    out = np.asarray(glcm.texture_map(image, names, window, padding="valid", **kwargs))
    assert out.shape == same[core].shape
    np.testing.assert_array_equal(out, same[core])
    monkeypatch.setattr(texture, "CHUNK_ELEMENTS", 2 * 47 * 16 * 8 * 9)  # ~9-row chunks
    monkeypatch.setattr(texture, "STRIP_COLUMNS", 19)  # columns in strips that do not divide
    chunked = np.asarray(glcm.texture_map(image, names, window, padding="valid",
                                          **kwargs))
    # asm and entropy are exact integer sums: the same bits in any chunks
    np.testing.assert_array_equal(chunked[..., 1:3], same[core][..., 1:3])
    np.testing.assert_allclose(chunked, same[core], rtol=1e-6, atol=1e-6)


def test_valid_padding_refuses_an_image_without_a_pixel_in_its_context():
    image = np.zeros((1, 8, 30), np.uint8)  # window 7, distance 1: halo 4, 8 <= 2 x 4
    with pytest.raises(ValueError, match="larger than 2 x the halo.*8x30"):
        glcm.texture_map(image, ["contrast"], 7, levels=4, padding="valid")
    assert np.asarray(glcm.texture_map(image[:, :, :9].repeat(2, axis=1), ["contrast"], 7,
                                       levels=4, padding="valid")).shape == (1, 8, 1, 1)
    with pytest.raises(ValueError, match="padding must be one of"):
        glcm.texture_map(image, ["contrast"], 7, levels=4, padding="full")


def test_errors():
    image = np.zeros((1, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="odd integer in 3..63"):
        glcm.texture_map(image, ["contrast"], 4, levels=4)
    with pytest.raises(ValueError, match="odd integer in 3..63"):
        glcm.texture_map(image, ["contrast"], 65, levels=4)
    with pytest.raises(ValueError, match="unknown GLCM feature"):
        glcm.texture_map(image, ["contrast", "nope"], 3, levels=4)
    with pytest.raises(ValueError, match="outside \\[0, 4\\)"):
        glcm.texture_map(image + 5, ["contrast"], 3, levels=4)


def test_every_feature_has_a_mechanism_that_implements_it():
    from glcm.texture import IMPLEMENTATIONS

    assert set(glcm.MECHANISMS) == set(glcm.FEATURES)
    for name, mechanism in glcm.MECHANISMS.items():
        implementation = IMPLEMENTATIONS[mechanism]
        assert name in implementation.FEATURES, (name, mechanism)
    fallback = set(BoxMoments.FLOAT64_FEATURES)  # gathered windows without float64
    assert fallback <= set(IMPLEMENTATIONS["gathered_windows"].FEATURES)
    for mechanism, implementation in IMPLEMENTATIONS.items():
        assert {n for n, m in glcm.MECHANISMS.items() if m == mechanism} == set(
            implementation.FEATURES) - (fallback if mechanism == "gathered_windows" else set())
        # box sums and gathered windows answer each feature with a method of that name
        if mechanism != "sliding_histograms":
            assert all(callable(getattr(implementation, n, None))
                       for n in implementation.FEATURES)


def test_usable_cores_honour_a_cgroup_quota(tmp_path):
    from glcm._compile import usable_cores

    cores = usable_cores(cgroup_files=())
    assert cores >= 1

    def limit(*contents):
        paths = []
        for k, text in enumerate(contents):
            paths.append(tmp_path / f"f{len(list(tmp_path.iterdir()))}_{k}")
            paths[-1].write_text(text)
        return tuple(str(p) for p in paths)

    assert usable_cores(cgroup_files=(limit("150000 100000\n"),)) == 1  # 1.5 cores
    assert usable_cores(cgroup_files=(limit("max 100000\n"),)) == cores  # no quota
    assert usable_cores(cgroup_files=(limit("-1\n", "100000\n"),)) == cores  # v1, none
    assert usable_cores(cgroup_files=(limit("max 100000"), limit("100000", "100000"))) == 1
    assert usable_cores(cgroup_files=((str(tmp_path / "absent"),),)) == cores


def test_higher_moments_use_float64_box_sums_where_the_backend_has_float64():
    from glcm.texture import mechanism_of

    has_float64 = keras.backend.backend() == "tensorflow" or __import__(
        "jax").config.read("jax_enable_x64")
    for name in BoxMoments.FLOAT64_FEATURES:
        assert glcm.MECHANISMS[name] == "box_sums"
        assert mechanism_of(name) == ("box_sums" if has_float64 else "gathered_windows")


def test_import_glcm_gives_the_layers_and_leaves_the_environment_alone():
    import subprocess
    import sys

    probe = ("import os; before = dict(os.environ); import glcm; "
             "assert glcm.layers.TextureMap and glcm.layers.GLCM; "
             "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())")
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=300)
