"""GLCM (Haralick) texture features with Keras 3: batched, exact, fast.

Public API: :func:`quantize`, :func:`graycomatrix`, :func:`graycoprops`,
:func:`texture_map` and its validated arguments (:class:`TextureSpec`), exact
features per labelled object (:func:`object_features`, :func:`object_glcm`), the halo of a
per-pixel model (:func:`model_halo`), the feature names (:data:`FEATURES`, :data:`ALIASES`), the
argument limits (:mod:`glcm.validation`) and the Keras layers in :mod:`glcm.layers`
(``glcm.layers.TextureMap`` works after ``import glcm``), exact and soft
(differentiable, :mod:`glcm.soft`). Definitions and
conventions: ``docs/features.md``.

Importing glcm changes nothing in the process's environment. For speed on CPU with
TensorFlow, see the README's "CPU allocator" note: it is chosen where a process
starts, before TensorFlow allocates anything.
"""

from glcm import layers, validation
from glcm.cooccurrence import graycomatrix
from glcm.features import ALIASES, FEATURES, canonical_name, resolve_features
from glcm.halo import model_halo
from glcm.objects import object_features, object_glcm, object_glcm_features
from glcm.properties import graycoprops
from glcm.quantization import quantize
from glcm.spec import TextureSpec
from glcm.texture import MECHANISMS, texture_map
from glcm.validation import DEFAULT_ANGLES, texture_halo

__version__ = "0.1.0"

__all__ = [
    "ALIASES", "DEFAULT_ANGLES", "FEATURES", "MECHANISMS", "canonical_name",
    "graycomatrix", "graycoprops", "layers", "model_halo", "object_features", "object_glcm",
    "object_glcm_features",
    "quantize", "resolve_features",
    "texture_halo", "texture_map", "TextureSpec", "validation",
]
