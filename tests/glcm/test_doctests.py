"""The examples in the docstrings of the main functions run, and say what they print
(both backends: tests/glcm runs under TensorFlow and JAX)."""

import doctest
import importlib

import pytest

MODULES = ["glcm.spec", "glcm.layers", "glcm.features", "glcm.texture",
           "glcm.cooccurrence", "glcm.properties", "glcm.quantization", "glcm.xarray",
           "glcm.halo", "glcm.objects"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS |
                             doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0


def test_the_main_functions_have_examples():
    import glcm
    import glcm.xarray

    for function in (glcm.graycomatrix, glcm.graycoprops, glcm.texture_map,
                     glcm.quantize, glcm.TextureSpec, glcm.xarray.texture_map,
                     glcm.xarray.raster_bands, glcm.layers.SoftGLCMFeatures,
                     glcm.layers.Quantize, glcm.model_halo, glcm.object_glcm,
                     glcm.object_features, glcm.xarray.object_features):
        assert ">>> " in function.__doc__, function.__name__
