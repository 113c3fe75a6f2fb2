"""graycoprops against scikit-image, mahotas and numpy references."""

import mahotas
import numpy as np
import pytest
from skimage import data
from skimage.feature import graycomatrix as sk_graycomatrix
from skimage.feature import graycoprops as sk_graycoprops

import glcm
from glcm._compile import MIN_COMPILED_SIZE
from tests.glcm.reference import feature_scale, numpy_features

FOUR = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
SKIMAGE_PROPS = ["contrast", "dissimilarity", "homogeneity", "ASM", "energy",
                 "correlation", "mean", "variance", "std", "entropy"]


def random_glcms(seed):
    rng = np.random.default_rng(seed)
    levels = int(rng.choice([2, 4, 7, 16, 32, 64]))
    size = int(rng.integers(2, 60))
    images = rng.integers(0, levels, (3, size, int(rng.integers(2, 60)))).astype(np.uint8)
    if seed % 5 == 0:  # smooth images: strong correlation, few levels per region
        images = (np.cumsum(images, axis=2) // 7 % levels).astype(np.uint8)
    symmetric = bool(seed % 2)
    P = np.stack([sk_graycomatrix(im, [1, 2], FOUR, levels, symmetric=symmetric)
                  for im in images])
    return P, levels


@pytest.mark.parametrize("seed", range(20))
def test_skimage_props(seed):
    P, _ = random_glcms(seed)
    for prop in SKIMAGE_PROPS:
        got = np.asarray(glcm.graycoprops(P, prop))
        want = np.stack([sk_graycoprops(p, prop) for p in P])
        scale = max(1.0, np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * scale, err_msg=prop)


@pytest.mark.parametrize("name", ["brick", "grass", "gravel", "camera"])
def test_skimage_props_real_textures(name):
    image = getattr(data, name)()[:200, :200]
    P = sk_graycomatrix(image, [1, 4], FOUR, 256, symmetric=True)
    for prop in SKIMAGE_PROPS:
        got = np.asarray(glcm.graycoprops(P, prop))  # 4-D P: one image
        want = sk_graycoprops(P, prop)
        np.testing.assert_allclose(got, want, rtol=5e-5, atol=1e-6, err_msg=prop)


def test_skimage_props_compiled_batch_and_float32_cancellation():
    """A batch above the compile threshold (XLA on TensorFlow, as in the benchmark),
    with images whose mean is large and variance small: correlation's covariance and
    deviations would lose every digit to float32 cancellation as E[ij] - E[i]E[j]."""
    rng = np.random.default_rng(7)
    near_constant = 250 + rng.integers(0, 2, (128, 128))  # mean ~250.5, variance 0.25
    ramps = np.cumsum(rng.integers(0, 2, (128, 128)), axis=1) % 3 + 200
    images = [data.brick()[:128, :128], data.camera()[:128, :128], near_constant, ramps]
    P = np.stack([sk_graycomatrix(im.astype(np.uint8), [1, 3], FOUR, 256, symmetric=True)
                  for im in images])
    assert P.size >= MIN_COMPILED_SIZE
    got = np.asarray(glcm.graycoprops(P, SKIMAGE_PROPS))
    for f, prop in enumerate(SKIMAGE_PROPS):
        want = np.stack([sk_graycoprops(p, prop) for p in P])
        np.testing.assert_allclose(got[..., f], want, rtol=5e-5, atol=1e-6, err_msg=prop)


@pytest.mark.parametrize("seed", range(12))
def test_all_features_match_numpy_reference(seed):
    P, _ = random_glcms(seed)
    got = np.asarray(glcm.graycoprops(P, glcm.FEATURES))  # (batch, D, A, F)
    for b in range(P.shape[0]):
        for d in range(P.shape[3]):
            for a in range(P.shape[4]):
                want = numpy_features(P[b, :, :, d, a])
                for f, name in enumerate(glcm.FEATURES):
                    scale = feature_scale(P[b, :, :, d, a], name)
                    # imc2 ~ sqrt(2 MI) near independence: a float32 rounding of
                    # 1e-7 in MI moves it by ~5e-4, so it is held to 1e-3 there.
                    atol = 1e-3 if name == "imc2" else 2e-5
                    assert abs(got[b, d, a, f] - want[name]) <= 3e-5 * scale + atol, (
                        name, got[b, d, a, f], want[name])


# mahotas column -> our feature; entropies in mahotas use log2.
MAHOTAS = {0: ("asm", 1.0), 1: ("contrast", 1.0), 2: ("correlation", 1.0),
           3: ("variance", 1.0), 4: ("homogeneity", 1.0), 5: ("sum_average", 1.0),
           6: ("sum_variance", 1.0), 7: ("sum_entropy", np.log(2)),
           8: ("entropy", np.log(2)), 9: ("difference_variance", 1.0),
           10: ("difference_entropy", np.log(2)), 11: ("imc1", 1.0)}


@pytest.mark.parametrize("seed", range(8))
def test_haralick_set_matches_mahotas(seed):
    rng = np.random.default_rng(200 + seed)
    levels = int(rng.choice([3, 8, 16, 40]))
    image = rng.integers(0, levels, (int(rng.integers(8, 50)), int(rng.integers(8, 50))))
    if seed % 2:
        image = (np.cumsum(image, axis=1) // 5) % levels
    image = image.astype(np.uint8)
    image[0, 0] = levels - 1  # mahotas sizes its matrix by image.max() + 1
    want = mahotas.features.haralick(image, distance=1, use_x_minus_y_variance=True)
    P = glcm.graycomatrix(image[None], [1], FOUR, levels, symmetric=True)
    names = [MAHOTAS[k][0] for k in sorted(MAHOTAS)]
    got = np.asarray(glcm.graycoprops(P, names))[0, 0]  # (angles, features)
    for k, (name, factor) in MAHOTAS.items():
        np.testing.assert_allclose(got[:, k], want[:, k] * factor, rtol=5e-5, atol=5e-6,
                                   err_msg=name)


def test_aliases_give_same_values():
    P = sk_graycomatrix(data.brick()[:64, :64], [1], FOUR, 256, symmetric=True)
    # aliases in a few calls, none naming one feature twice (a call per alias compiles
    # a program per call: 74 of them took 10 s on JAX), each against its names
    groups = []
    for alias, name in glcm.ALIASES.items():
        group = next((g for g in groups if name not in g.values()), None)
        if group is None:
            groups.append(group := {})
        group[alias] = name
    for group in groups:
        by_alias = np.asarray(glcm.graycoprops(P, list(group)))
        assert by_alias.shape[-1] == len(group)
        np.testing.assert_array_equal(
            by_alias, np.asarray(glcm.graycoprops(P, list(group.values()))))


def test_degenerate_inputs():
    constant = np.full((1, 6, 6), 3, np.uint8)
    P = glcm.graycomatrix(constant, [1], FOUR, 8, symmetric=True)
    values = dict(zip(glcm.FEATURES, np.asarray(glcm.graycoprops(P, glcm.FEATURES))[0, 0, 0]))
    assert values["correlation"] == 1.0 and values["imc1"] == 0.0
    assert values["max_correlation"] == 0.0 and values["contrast"] == 0.0
    assert values["asm"] == pytest.approx(1.0) and values["entropy"] == 0.0
    assert values["mean"] == pytest.approx(3.0) and values["variance"] == 0.0
    assert not any(np.isnan(v) for v in values.values())
    # one pixel: no pair at all -> NaN for every feature
    one = glcm.graycomatrix(np.zeros((1, 1, 1), np.uint8), [1], FOUR, 8)
    assert np.isnan(np.asarray(glcm.graycoprops(one, glcm.FEATURES))).all()
    # all masked -> NaN
    masked = glcm.graycomatrix(constant, [1], FOUR, 8, mask=np.zeros((1, 6, 6), bool))
    assert np.isnan(np.asarray(glcm.graycoprops(masked, "entropy"))).all()


def test_unknown_prop_lists_valid_names():
    P = np.ones((4, 4, 1, 1))
    with pytest.raises(ValueError, match="Valid names: contrast, dissimilarity"):
        glcm.graycoprops(P, "contrastt")
    with pytest.raises(ValueError, match="batch, L, L"):
        glcm.graycoprops(np.ones((4, 4)), "contrast")


def test_the_registry_declares_every_feature_once():
    from glcm.features import BY_NAME, REGISTRY
    from glcm.properties import LINEAR_WEIGHTS, GLCMStatistics

    assert len(BY_NAME) == len(REGISTRY) and glcm.FEATURES == tuple(BY_NAME)
    names = set(glcm.FEATURES)
    for feature in REGISTRY:
        assert callable(getattr(GLCMStatistics, feature.name))  # graycoprops has it
        assert not set(feature.aliases) & names  # an alias never shadows a name
        assert all(glcm.canonical_name(alias) == feature.name for alias in feature.aliases)
        assert all(glcm.canonical_name(n, "ibsi") == feature.name for n in feature.ibsi)
        assert (feature.weight is not None) == (feature.name in LINEAR_WEIGHTS)
    # every alias belongs to one feature
    owners = [a for f in REGISTRY for a in f.aliases]
    assert len(owners) == len(set(owners))


@pytest.mark.parametrize("typo, closest", [("contrastt", "contrast"), ("entropie", "entropy"),
                                           ("corelation", "correlation"), ("SAVG", None)])
def test_an_unknown_name_suggests_the_closest(typo, closest):
    if closest is None:  # case-insensitive alias: no error at all
        assert glcm.canonical_name(typo) == "sum_average"
        return
    with pytest.raises(ValueError, match=f"did you mean '{closest}'"):
        glcm.resolve_features(["mean", typo])
