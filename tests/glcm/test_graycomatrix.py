"""graycomatrix against scikit-image, masks against a numpy reference, errors."""

import math

import keras
import numpy as np
import pytest
from skimage import data
from skimage.feature import graycomatrix as sk_graycomatrix

import glcm
import glcm.cooccurrence

FOUR = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
ODD = [0.3, 2.0, -1.0, np.pi, 5 * np.pi / 6, 7.0]


def sk_stack(images, distances, angles, levels, symmetric=False, normed=False):
    return np.stack([sk_graycomatrix(im, distances, angles, levels, symmetric=symmetric,
                                     normed=normed) for im in images])


@pytest.mark.parametrize("seed", range(24))
def test_matches_skimage_random(seed):
    rng = np.random.default_rng(seed)
    levels = int(rng.choice([2, 3, 5, 8, 16, 31, 64, 256]))
    height, width = int(rng.integers(1, 129)), int(rng.integers(1, 98))
    if seed == 0:
        height, width = 1, 1
    if seed == 1:
        height, width = 128, 97
    images = rng.integers(0, levels, (int(rng.integers(1, 4)), height, width))
    images = images.astype(np.uint8 if levels <= 256 else np.uint16)
    distances = sorted(set(rng.integers(1, 6, size=int(rng.integers(1, 4))).tolist()))
    angles = FOUR + list(rng.choice(ODD, 2, replace=False))
    symmetric, normed = bool(seed % 2), bool((seed // 2) % 2)
    got = np.asarray(glcm.graycomatrix(images, distances, angles, levels,
                                       symmetric=symmetric, normed=normed))
    want = sk_stack(images, distances, angles, levels, symmetric, normed)
    assert got.shape == want.shape
    if normed:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["brick", "grass", "gravel", "camera"])
def test_matches_skimage_real_textures(name):
    image = getattr(data, name)()[:256, :256]
    images = np.stack([image, image[::-1], image.T])
    got = np.asarray(glcm.graycomatrix(images, [1, 3], FOUR, 256, symmetric=True))
    np.testing.assert_array_equal(got, sk_stack(images, [1, 3], FOUR, 256, True))


def test_offsets_follow_skimage_convention():
    image = np.zeros((1, 3, 3), np.uint8)
    image[0, 1, 1] = 1
    image[0, 1, 2] = 2  # right neighbour of the centre
    image[0, 2, 1] = 3  # pixel below the centre
    P = np.asarray(glcm.graycomatrix(image, [1], [0, np.pi / 2], 4))
    assert P[0, 1, 2, 0, 0] == 1  # angle 0 pairs (r, c) with (r, c + 1)
    assert P[0, 1, 3, 0, 1] == 1  # angle pi/2 pairs (r, c) with (r + 1, c)


def test_no_wraparound():
    image = np.array([[[1, 0, 0, 2]]], np.uint8)
    P = np.asarray(glcm.graycomatrix(image, [1], [0], 3))
    assert P[0, 2, 1, 0, 0] == 0 and P.sum() == 3


def mask_reference(image, valid, distance, angle, levels):
    dr = int(math.floor(abs(math.sin(angle) * distance) + 0.5)) * np.sign(math.sin(angle))
    dc = int(math.floor(abs(math.cos(angle) * distance) + 0.5)) * np.sign(math.cos(angle))
    dr, dc = int(dr), int(dc)
    out = np.zeros((levels, levels), np.int64)
    H, W = image.shape
    for r in range(H):
        for c in range(W):
            r2, c2 = r + dr, c + dc
            if 0 <= r2 < H and 0 <= c2 < W and valid[r, c] and valid[r2, c2]:
                out[image[r, c], image[r2, c2]] += 1
    return out


@pytest.mark.parametrize("seed", range(6))
def test_mask_matches_numpy_reference(seed):
    rng = np.random.default_rng(100 + seed)
    levels = 6
    images = rng.integers(0, levels, (2, 13, 17))
    valid = rng.random((2, 13, 17)) > 0.3
    images_with_junk = np.where(valid, images, 999)  # masked pixels may hold anything
    angles = FOUR + [2.0]
    got = np.asarray(glcm.graycomatrix(images_with_junk, [1, 2], angles, levels,
                                       mask=valid))
    for b in range(2):
        for di, d in enumerate([1, 2]):
            for ai, a in enumerate(angles):
                np.testing.assert_array_equal(
                    got[b, :, :, di, ai], mask_reference(images[b], valid[b], d, a, levels))


@pytest.mark.parametrize("parts", [1, 3, 8])
def test_counts_do_not_depend_on_the_scatter_split(parts, monkeypatch):
    # the batch is counted in independent groups on the CPU (7 images: 3 + 3 + 1,
    # or one group each when there are more parts than images)
    monkeypatch.setattr(glcm.cooccurrence, "scatter_parts",
                        lambda arrays, batch: min(batch, parts))
    rng = np.random.default_rng(7)
    images = rng.integers(0, 5, (7, 11, 9))
    valid = rng.random((7, 11, 9)) > 0.2
    got = np.asarray(glcm.graycomatrix(images, [1], FOUR, 5, mask=valid))
    for b in range(7):
        for ai, a in enumerate(FOUR):
            np.testing.assert_array_equal(got[b, :, :, 0, ai],
                                          mask_reference(images[b], valid[b], 1, a, 5))


def test_accepts_channel_axis_and_float_integers():
    image = np.random.default_rng(0).integers(0, 4, (2, 9, 9))
    a = np.asarray(glcm.graycomatrix(image[..., None].astype(np.float32), [1], FOUR, 4))
    b = np.asarray(glcm.graycomatrix(image, [1], FOUR, 4))
    np.testing.assert_array_equal(a, b)


def test_fully_masked_gives_zero_matrix():
    image = np.ones((1, 5, 5), np.uint8)
    P = np.asarray(glcm.graycomatrix(image, [1], FOUR, 4, normed=True,
                                     mask=np.zeros((1, 5, 5), bool)))
    assert P.sum() == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(images=np.zeros((4, 4)), levels=4), "batch, H, W"),
    (dict(images=np.zeros((1, 4, 4), np.uint8), levels=1), "levels must be >= 2"),
    (dict(images=np.full((1, 4, 4), 9), levels=4), "outside \\[0, 4\\)"),
    (dict(images=np.full((1, 4, 4), -1), levels=4), "quantize"),
    (dict(images=np.full((1, 4, 4), 0.5), levels=4), "non-integer"),
    (dict(images=np.zeros((1, 4, 4), np.uint8), levels=4, distances=[]), "distances is empty"),
    (dict(images=np.zeros((1, 4, 4), np.uint8), levels=4, angles=[]), "angles is empty"),
    (dict(images=np.zeros((1, 4, 4), np.uint8), levels=4, distances=[0]), "positive"),
])
def test_errors(kwargs, message):
    kwargs.setdefault("distances", [1])
    kwargs.setdefault("angles", FOUR)
    with pytest.raises(ValueError, match=message):
        glcm.graycomatrix(**kwargs)


def test_error_says_how_many_and_where():
    image = np.zeros((1, 4, 4), np.uint8)
    image[0, 2, 3] = 7
    with pytest.raises(ValueError, match=r"1 values outside.*\(0, 2, 3\)"):
        glcm.graycomatrix(image, [1], FOUR, 4)
    # (batch, H, W, 1) and an integer mask included; masked values are not checked,
    # and tensors are checked too
    channels = np.zeros((2, 4, 5, 1), np.int32)
    channels[1, 3, 4, 0] = -2
    with pytest.raises(ValueError, match=r"1 values outside.*\(1, 3, 4\)"):
        glcm.texture_map(channels, ["contrast"], 3, levels=4)
    mask = np.ones((2, 4, 5, 1), np.uint8)
    mask[1, 3, 4, 0] = 0
    assert np.isnan(np.asarray(glcm.texture_map(channels, ["contrast"], 3, levels=4,
                                                mask=mask))[1, 3, 4, 0])
    with pytest.raises(ValueError, match=r"1 values outside.*\(1, 3, 4\)"):
        glcm.texture_map(keras.ops.convert_to_tensor(channels), ["contrast"], 3, levels=4,
                         mask=keras.ops.convert_to_tensor(np.ones((2, 4, 5), bool)))


def test_valid_tensors_are_checked_where_they_are(monkeypatch):
    # a tensor (on a GPU, say) whose values are all levels is not copied to the host
    # to be checked: only the verdict comes back
    import glcm._inputs

    def no_copy(x):
        if isinstance(x, np.ndarray):
            return x
        raise AssertionError("a whole tensor was copied to the host")

    monkeypatch.setattr(glcm._inputs, "concrete_numpy", no_copy)
    image = np.random.default_rng(1).integers(0, 6, (1, 9, 11))
    mask = np.ones(image.shape, bool)
    mask[0, 2, 2] = False
    for values in (image, image.astype(np.float32)):
        tensor = keras.ops.convert_to_tensor(values)
        glcm.texture_map(tensor, ["contrast"], 3, levels=6)
        glcm.texture_map(keras.ops.where(mask, tensor, 99), ["asm"], 3, levels=6,
                         mask=keras.ops.convert_to_tensor(mask))
        glcm.graycomatrix(tensor, [1], FOUR, 6)
    with pytest.raises(AssertionError, match="copied"):  # not levels: the host check
        glcm.texture_map(keras.ops.convert_to_tensor(image + 0.5), ["contrast"], 3,
                         levels=6)
