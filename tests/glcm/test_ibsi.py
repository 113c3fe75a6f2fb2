"""The IBSI-1 digital phantom: all 25 GLCM reference values of the IBSI standard
(2D, averaged), under graycoprops(..., convention="ibsi")."""

import json
import math
import os

import numpy as np
import pytest

import glcm

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data",
                    "ibsi1_digital_phantom_glcm.json")


@pytest.fixture(scope="module")
def phantom():
    with open(DATA) as f:
        return json.load(f)


def within_rounding(value, reference):
    """IBSI publishes 3 significant digits: the value must round to them."""
    digits = 3 - 1 - math.floor(math.log10(abs(reference)))
    return abs(value - reference) <= 0.5 * 10.0 ** -digits * (1 + 1e-6)


def test_all_25_ibsi_reference_values(phantom):
    image = np.asarray(phantom["slices"])
    mask = np.asarray(phantom["mask"]).astype(bool)
    levels = 6  # IBSI's grey levels 1..6 are our 0..5
    P = glcm.graycomatrix(np.where(mask, image - 1, 0), [1], glcm.DEFAULT_ANGLES, levels,
                          symmetric=True, mask=mask)
    reference = phantom["reference_2d_averaged"]
    assert len(reference) == 25
    names = glcm.resolve_features(list(reference), convention="ibsi")
    values = np.asarray(glcm.graycoprops(P, list(names), convention="ibsi"))
    averaged = values.reshape(-1, len(names)).astype(np.float64).mean(axis=0)  # 16 GLCMs
    for ibsi_name, want in reference.items():
        got = averaged[names.index(glcm.canonical_name(ibsi_name, "ibsi"))]
        assert within_rounding(got, want), (ibsi_name, got, want)


def test_ibsi_convention_against_the_default():
    rng = np.random.default_rng(4)
    P = glcm.graycomatrix(rng.integers(0, 8, (2, 20, 20)), [1, 2], glcm.DEFAULT_ANGLES, 8,
                          symmetric=True)
    names = ["mean", "sum_average", "autocorrelation", "entropy", "sum_entropy",
             "difference_entropy", "imc2", "variance", "correlation", "cluster_shade",
             "imc1", "asm"]
    default = dict(zip(names, np.moveaxis(np.asarray(glcm.graycoprops(P, names)), -1, 0)))
    ibsi = dict(zip(names, np.moveaxis(
        np.asarray(glcm.graycoprops(P, names, convention="ibsi")), -1, 0)))

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)

    close(ibsi["mean"], default["mean"] + 1)  # grey levels from 1
    close(ibsi["sum_average"], default["sum_average"] + 2)
    close(ibsi["autocorrelation"], default["autocorrelation"] + default["sum_average"] + 1)
    for name in ("entropy", "sum_entropy", "difference_entropy"):  # bits, not nats
        close(ibsi[name], default[name] / math.log(2))
    mutual = -0.5 * np.log1p(-default["imc2"] ** 2)  # nats, from the default imc2
    close(ibsi["imc2"], np.sqrt(-np.expm1(-2 * mutual / math.log(2))))
    for name in ("variance", "correlation", "cluster_shade", "imc1", "asm"):
        close(ibsi[name], default[name])  # no level or log base in them
    # IBSI's "energy" is Σ P²; scikit-image's, the default, is its square root
    np.testing.assert_allclose(np.asarray(glcm.graycoprops(P, "energy", convention="ibsi")),
                               default["asm"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(glcm.graycoprops(P, "energy")),
                               np.sqrt(default["asm"]), rtol=1e-6)
    with pytest.raises(ValueError, match="convention must be one of skimage, ibsi"):
        glcm.graycoprops(P, "mean", convention="pyradiomics")


def test_ibsi_names_are_aliases_everywhere():
    assert glcm.canonical_name("joint_avg") == "mean"
    assert glcm.canonical_name("inv_var") == "inverse_variance"
    assert glcm.canonical_name("info_corr2") == "imc2"
    assert glcm.canonical_name("energy") == "energy"
    assert glcm.canonical_name("energy", "ibsi") == "asm"
