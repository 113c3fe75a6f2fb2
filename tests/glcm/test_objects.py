"""glcm.object_glcm / object_features against an independent count of each object's
pairs (pixel by pixel), scikit-image's graycoprops and the numpy formulas."""

import numpy as np
import pytest
from scipy.spatial import cKDTree
from skimage import data
from skimage.feature import graycoprops as sk_graycoprops

import glcm
import glcm.objects
from tests.glcm.reference import feature_scale, numpy_features

ANGLES = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]


def pair_count(codes, labels, obj, levels, offsets, mask=None):
    """(L, L, K) counts of the pairs of object ``obj``, one pixel at a time."""
    H, W = codes.shape
    P = np.zeros((levels, levels, len(offsets)), np.int64)
    valid = np.ones(codes.shape, bool) if mask is None else mask
    rows, cols = np.nonzero((labels == obj) & valid)
    for k, (dr, dc) in enumerate(offsets):
        for r, c in zip(rows, cols):
            r2, c2 = r + dr, c + dc
            if 0 <= r2 < H and 0 <= c2 < W and labels[r2, c2] == obj and valid[r2, c2]:
                P[codes[r, c], codes[r2, c2], k] += 1
    return P


def voronoi(shape, n, seed):
    rng = np.random.default_rng(seed)
    points = rng.random((n, 2)) * shape
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    _, nearest = cKDTree(points).query(np.stack([rows.ravel(), cols.ravel()], 1))
    return (nearest + 1).reshape(shape)


@pytest.mark.parametrize("seed", range(4))
def test_matrices_equal_an_independent_count_of_each_objects_pairs(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(20, 40)), int(rng.integers(20, 40)))
    levels = int(rng.choice([3, 8, 16]))
    codes = rng.integers(0, levels, shape)
    labels = voronoi(shape, int(rng.integers(3, 12)), seed)
    labels[rng.random(shape) < 0.1] = 0  # background holes
    labels[0, :5] = -3  # negative: background too
    labels[-1, -1] = 99  # a one-pixel object: no pair
    mask = rng.random(shape) > 0.15
    distances = [1, 2] if seed % 2 else [3]
    offsets = glcm.validation.pixel_offsets(distances, ANGLES)
    ids, P = glcm.object_glcm(codes, labels, distances, ANGLES, levels, symmetric=False,
                              mask=mask)
    expected_ids = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(ids, expected_ids)
    assert P.shape == (len(ids), levels, levels, len(distances), 4) and P.dtype == np.int32
    for k, obj in enumerate(ids):
        expected = pair_count(codes, labels, obj, levels, offsets, mask)
        np.testing.assert_array_equal(P[k].reshape(levels, levels, -1), expected)
    _, S = glcm.object_glcm(codes, labels, distances, ANGLES, levels, mask=mask)
    np.testing.assert_array_equal(S, P + P.transpose(0, 2, 1, 3, 4))
    assert not S[ids == 99].any()


@pytest.mark.parametrize("image_name, seed", [("brick", 0), ("grass", 1), ("camera", 2)])
def test_features_equal_skimage_graycoprops_of_each_object(image_name, seed):
    image = getattr(data, image_name)()[:96, :112]
    levels = 16
    codes = (image.astype(int) * levels) // 256
    labels = voronoi(codes.shape, 25, seed)
    props = ["contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation",
             "mean", "variance", "std", "entropy"]
    ids, values = glcm.object_features(codes, labels, props, [1, 2], ANGLES, levels,
                                       average=False)
    assert values.shape == (len(ids), 2, 4, len(props))
    offsets = glcm.validation.pixel_offsets([1, 2], ANGLES)
    for k, obj in enumerate(ids):
        P = pair_count(codes, labels, obj, levels, offsets).reshape(levels, levels, 2, 4)
        P = (P + P.transpose(1, 0, 2, 3)).astype(np.float64)
        for f, prop in enumerate(props):
            np.testing.assert_allclose(values[k, :, :, f], sk_graycoprops(P, prop),
                                       rtol=2e-4, atol=2e-5, err_msg=f"{obj} {prop}")


@pytest.mark.parametrize("convention", ["skimage", "ibsi"])
def test_every_feature_averaged_over_offsets(convention):
    rng = np.random.default_rng(7)
    levels = 8
    codes = rng.integers(0, levels, (30, 34))
    labels = voronoi(codes.shape, 6, 7)
    ids, averaged = glcm.object_features(codes, labels, "all", [1], ANGLES, levels,
                                         convention=convention)
    _, per_offset = glcm.object_features(codes, labels, "all", [1], ANGLES, levels,
                                         average=False, convention=convention)
    np.testing.assert_allclose(averaged, per_offset.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    _, P = glcm.object_glcm(codes, labels, [1], ANGLES, levels)
    # Names that mean the same feature under this convention (IBSI's "energy" is asm).
    same = [f for f, name in enumerate(glcm.FEATURES)
            if glcm.canonical_name(name, convention) == name]
    expected = np.asarray(glcm.graycoprops(P, [glcm.FEATURES[f] for f in same],
                                           convention=convention))
    np.testing.assert_allclose(per_offset[..., same], expected, rtol=1e-5, atol=1e-6)
    if convention == "skimage":  # the formulas themselves, for one object and offset
        reference = numpy_features(P[0, :, :, 0, 0])
        for f, name in enumerate(glcm.FEATURES):
            scale = feature_scale(P[0, :, :, 0, 0], name)
            assert abs(per_offset[0, 0, 0, f] - reference[name]) <= 2e-4 * scale, name


def test_blocks_with_halo_sum_to_the_whole_image():
    rng = np.random.default_rng(3)
    levels = 8
    codes = rng.integers(0, levels, (45, 52))
    labels = voronoi(codes.shape, 9, 3)
    mask = rng.random(codes.shape) > 0.1
    distances = [1, 3]
    halo = max(distances)
    ids, whole = glcm.object_glcm(codes, labels, distances, ANGLES, levels, mask=mask)
    total = np.zeros_like(whole)
    for r0 in range(0, 45, 16):
        for c0 in range(0, 52, 20):
            r1, c1 = min(45, r0 + 16), min(52, c0 + 20)
            a0, b0 = max(0, r0 - halo), max(0, c0 - halo)
            a1, b1 = min(45, r1 + halo), min(52, c1 + halo)
            block = (slice(a0, a1), slice(b0, b1))
            part_ids, part = glcm.object_glcm(
                codes[block], labels[block], distances, ANGLES, levels, mask=mask[block],
                core=(r0 - a0, r1 - a0, c0 - b0, c1 - b0))
            total[np.searchsorted(ids, part_ids)] += part
    np.testing.assert_array_equal(total, whole)


def test_objects_without_pairs_are_nan_and_given_ids_are_kept():
    codes = np.array([[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1]])
    labels = np.array([[1, 2, 1, 5], [3, 3, 3, 0], [0, 0, 0, 0]])
    mask = np.array([[1, 1, 1, 1], [1, 0, 1, 1], [1, 1, 1, 1]], bool)
    ids, values = glcm.object_features(codes, labels, ["contrast", "asm"], [1], [0], 4,
                                       mask=mask, ids=[1, 3, 4, 5])
    assert ids.tolist() == [1, 3, 4, 5]
    # 1: two pixels not side by side; 3: its middle pixel masked; 4: absent; 5: alone.
    assert np.isnan(values).all()
    ids, values = glcm.object_features(codes, labels, ["contrast"], [1], [0], 4)
    assert ids.tolist() == [1, 2, 3, 5]
    assert np.isnan(values[[0, 1, 3]]).all()
    assert values[2, 0] == pytest.approx(1.0)  # pairs (1,2), (2,3) both ways


def test_batch_shares_or_brings_labels_and_matches_single_images():
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 8, (3, 20, 24))
    labels = voronoi((20, 24), 5, 5)
    ids, batched = glcm.object_features(codes, labels, ["contrast", "entropy"], levels=8)
    assert batched.shape == (3, len(ids), 2)
    for b in range(3):
        single_ids, single = glcm.object_features(codes[b], labels, ["contrast", "entropy"],
                                                  levels=8)
        np.testing.assert_array_equal(single_ids, ids)
        np.testing.assert_allclose(batched[b], single, rtol=1e-6)
    per_image = np.stack([labels, np.where(labels == 2, 0, labels), labels])
    ids2, values = glcm.object_features(codes, per_image, ["contrast"], levels=8)
    np.testing.assert_array_equal(ids2, ids)
    assert np.isnan(values[1, ids == 2]).all() and not np.isnan(values[0, ids == 2]).any()


def test_objects_are_chunked_without_changing_the_numbers(monkeypatch):
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 16, (40, 40))
    labels = voronoi(codes.shape, 30, 11)
    ids, values = glcm.object_features(codes, labels, "all", [1, 2], ANGLES, 16)
    _, P = glcm.object_glcm(codes, labels, [1, 2], ANGLES, 16)
    monkeypatch.setattr(glcm.objects, "MAX_OBJECT_BINS", 7 * 8 * 16 * 16)  # 7 per pass
    ids2, values2 = glcm.object_features(codes, labels, "all", [1, 2], ANGLES, 16)
    _, P2 = glcm.object_glcm(codes, labels, [1, 2], ANGLES, 16)
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_array_equal(P2, P)
    # float32 features of other batch shapes may round differently (cluster_shade)
    np.testing.assert_allclose(values2, values, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_large_and_float_labels():
    codes = np.arange(12).reshape(3, 4) % 4
    labels = np.array([[10 ** 12, 10 ** 12, 7, 7]] * 3)  # beyond any lookup table
    ids, P = glcm.object_glcm(codes, labels, [1], [0], 4)
    assert ids.tolist() == [7, 10 ** 12] and P.sum() == 12
    float_labels = np.where(labels == 7, 7.0, np.nan)
    ids, P_float = glcm.object_glcm(codes, float_labels, [1], [0], 4)
    assert ids.tolist() == [7]
    np.testing.assert_array_equal(P_float[0], P[0])


def test_background_values_are_not_checked_but_object_values_are():
    codes = np.array([[0, 1, 200], [1, 0, -5]])
    labels = np.array([[1, 1, 0], [1, 1, 0]])
    ids, values = glcm.object_features(codes, labels, ["contrast"], levels=2)
    assert ids.tolist() == [1] and np.isfinite(values).all()
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        glcm.object_features(codes, np.ones((2, 3), int), ["contrast"], levels=2)
    # Masked out inside an object: not read either.
    glcm.object_features(codes, np.ones((2, 3), int), ["contrast"], levels=2,
                         mask=np.array([[1, 1, 0], [1, 1, 0]], bool))


@pytest.mark.parametrize("kwargs, message", [
    (dict(labels=np.ones((3, 3))), "labels must have the shape"),
    (dict(labels=np.full((2, 3), 1.5)), "non-integer"),
    (dict(labels=np.ones((2, 3), bool)), "integer object labels"),
    (dict(mask=np.ones((3, 2), bool)), "mask must have the shape"),
    (dict(ids=[3, 1]), "increasing order"),
    (dict(levels=1), "levels"),
])
def test_bad_arguments_are_refused(kwargs, message):
    arguments = dict(codes=np.zeros((2, 3), int), labels=np.ones((2, 3), int),
                     features=["contrast"], levels=4)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        glcm.object_features(**arguments)


def test_core_outside_the_image_is_refused():
    with pytest.raises(ValueError, match="core"):
        glcm.object_glcm(np.zeros((4, 4), int), np.ones((4, 4), int), levels=2,
                         core=(0, 5, 0, 4))
