"""Serializable Keras layers: GLCM, GLCMFeatures and TextureMap.

Each layer takes (batch, H, W) or (batch, H, W, 1) grey levels in [0, levels)
(any numeric dtype holding integers) and an optional boolean ``mask`` of the same
shape (False = invalid pixel). No weights, no hidden state: the config is the layer.
"""

from __future__ import annotations

import keras
from keras import ops

from glcm.cooccurrence import graycomatrix
from glcm.features import resolve_features
from glcm.properties import features_from_glcm, nanmean
from glcm.texture import texture_map
from glcm.validation import (DEFAULT_ANGLES, check_angles, check_distances, check_levels,
                             check_window)


class _GLCMConfig(keras.layers.Layer):
    """Shared arguments and config of the GLCM layers."""

    def __init__(self, levels, distances=(1,), angles=DEFAULT_ANGLES, symmetric=True,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.levels = check_levels(levels)
        self.distances = check_distances(distances)
        self.angles = check_angles(angles)
        self.symmetric = bool(symmetric)
        # The validity mask is an input of the computation, not a Keras padding mask
        # to propagate: accept it without a warning and emit none.
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(levels=self.levels, distances=list(self.distances),
                      angles=list(self.angles), symmetric=self.symmetric)
        return config

    def _glcm(self, inputs, mask, normed):
        return graycomatrix(inputs, self.distances, self.angles, self.levels,
                            symmetric=self.symmetric, normed=normed, mask=mask)


@keras.saving.register_keras_serializable(package="glcm")
class GLCM(_GLCMConfig):
    """Grey-level co-occurrence matrices, laid out as :func:`glcm.graycomatrix`.

    Output: float32 (batch, levels, levels, n_distances, n_angles).

    Args:
      levels: number of grey levels.
      distances: pixel distances.
      angles: angles in radians (scikit-image's convention).
      symmetric: count (i, j) and (j, i) (default False, as scikit-image).
      normed: divide each matrix by its sum.
    """

    def __init__(self, levels, distances=(1,), angles=DEFAULT_ANGLES, symmetric=False,
                 normed=False, **kwargs):
        super().__init__(levels, distances, angles, symmetric, **kwargs)
        self.normed = bool(normed)

    def call(self, inputs, mask=None):
        return ops.cast(self._glcm(inputs, mask, self.normed), "float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.levels, self.levels, len(self.distances),
                len(self.angles))

    def get_config(self):
        config = super().get_config()
        config.update(normed=self.normed)
        return config


@keras.saving.register_keras_serializable(package="glcm")
class GLCMFeatures(_GLCMConfig):
    """Haralick features of each image's GLCM.

    Output: float32 (batch, n_features) with ``average=True`` (each feature averaged
    over the offsets that have at least one valid pair), else
    (batch, n_distances, n_angles, n_features). NaN where there is no valid pair.

    Args:
      features: names or aliases (see :data:`glcm.FEATURES`), or "all".
      levels, distances, angles: as :class:`GLCM`.
      symmetric: default True (Earth Engine and most texture work).
      average: average over offsets.
    """

    def __init__(self, features, levels, distances=(1,), angles=DEFAULT_ANGLES,
                 symmetric=True, average=True, **kwargs):
        super().__init__(levels, distances, angles, symmetric, **kwargs)
        self.features = resolve_features(features)
        self.average = bool(average)

    def call(self, inputs, mask=None):
        P = self._glcm(inputs, mask, normed=False)
        values = features_from_glcm(ops.transpose(P, (0, 3, 4, 1, 2)), self.features)
        if self.average:
            batch = ops.shape(values)[0]
            values = nanmean(
                ops.reshape(values, (batch, -1, len(self.features))), axis=1)
        return values

    def compute_output_shape(self, input_shape):
        if self.average:
            return (input_shape[0], len(self.features))
        return (input_shape[0], len(self.distances), len(self.angles), len(self.features))

    def get_config(self):
        config = super().get_config()
        config.update(features=list(self.features), average=self.average)
        return config


@keras.saving.register_keras_serializable(package="glcm")
class TextureMap(_GLCMConfig):
    """Per-pixel texture features (see :func:`glcm.texture_map`).

    Output: float32 (batch, H, W, n_features), or (batch, H, W, n_offsets, n_features)
    with ``average=False``. NaN where the centre pixel is invalid or the window has
    no valid pair. Inside a compiled model the whole input is processed at once:
    feed tiles (the pipeline does).

    Args:
      features: names or aliases, or "all".
      window: odd window size, 3..63.
      levels, distances, angles, symmetric, average: as :func:`glcm.texture_map`.
    """

    def __init__(self, features, window, levels, distances=(1,), angles=DEFAULT_ANGLES,
                 symmetric=True, average=True, **kwargs):
        super().__init__(levels, distances, angles, symmetric, **kwargs)
        self.features = resolve_features(features)
        self.window = check_window(window)
        self.average = bool(average)

    def call(self, inputs, mask=None):
        return texture_map(inputs, self.features, self.window, levels=self.levels,
                           distances=self.distances, angles=self.angles,
                           symmetric=self.symmetric, average=self.average, mask=mask)

    def compute_output_shape(self, input_shape):
        spatial = tuple(input_shape[:3])
        if self.average:
            return spatial + (len(self.features),)
        return spatial + (len(self.distances) * len(self.angles), len(self.features))

    def get_config(self):
        config = super().get_config()
        config.update(features=list(self.features), window=self.window,
                      average=self.average)
        return config
