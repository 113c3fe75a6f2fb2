"""GLCM (Haralick) texture features with Keras 3: batched, exact, fast.

Public API (see DESIGN.md): :func:`quantize`, :func:`graycomatrix`,
:func:`graycoprops`, :func:`texture_map`, and the Keras layers in :mod:`glcm.layers`.
"""

from glcm.core import graycomatrix, graycoprops, quantize
from glcm.features import ALIASES, FEATURES, canonical_name, resolve_features
from glcm.texture import texture_map

__version__ = "0.1.0"

__all__ = [
    "ALIASES", "FEATURES", "canonical_name", "graycomatrix", "graycoprops", "quantize",
    "resolve_features", "texture_map",
]
