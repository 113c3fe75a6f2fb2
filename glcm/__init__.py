"""GLCM (Haralick) texture features with Keras 3: batched, exact, fast.

Public API (see DESIGN.md): :func:`quantize`, :func:`graycomatrix`,
:func:`graycoprops`, :func:`texture_map`, and the Keras layers in :mod:`glcm.layers`.

CPU allocator: ``import glcm`` sets ``TF_CPU_ALLOCATOR_USE_BFC=true`` (TensorFlow's
caching allocator) unless the variable is already set. TensorFlow's default CPU
allocator hands every large buffer back to the OS when it is freed, so each call pays
page faults on fresh memory again: on a 2-core VM that was half the time of
graycomatrix + graycoprops on 32 x 512x512 images (0.51 s, 0.31 s with the caching
allocator). TensorFlow reads the variable when it first allocates, hence here, before
Keras imports TensorFlow. Set it to ``false`` before importing glcm to keep the
default; memory the caching allocator holds is reused by later TensorFlow calls, not
returned to the OS.
"""

import os

if "TF_CPU_ALLOCATOR_USE_BFC" not in os.environ:
    os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    # Child processes inherit the variable: the marker tells them it is glcm's default,
    # not the user's choice (the pipeline, in transforms, replaces glcm's default).
    os.environ["GLCM_DEFAULT_TF_ALLOCATOR"] = "1"

from glcm.core import graycomatrix, graycoprops, quantize  # noqa: E402 (after the setting)
from glcm.features import ALIASES, FEATURES, canonical_name, resolve_features  # noqa: E402
from glcm.texture import texture_map  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ALIASES", "FEATURES", "canonical_name", "graycomatrix", "graycoprops", "quantize",
    "resolve_features", "texture_map",
]
