"""Serializable Keras layers: Quantize, GLCM, GLCMFeatures and TextureMap (exact),
and SoftGLCMFeatures and SoftTextureMap (differentiable).

The exact layers take (batch, H, W) or (batch, H, W, 1) grey levels in [0, levels)
(any numeric dtype holding integers; TextureMap also (batch, H, W, C)) and an
optional boolean ``mask`` of the same shape (False = invalid pixel); they have no
weights and no hidden state: the config is the layer. :class:`Quantize` turns float
values into such levels with a fixed range and emits the validity as a Keras mask,
which the exact layers consume. The soft layers take float values and a range
(optionally learned: their only weights).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from glcm import soft
from glcm._inputs import as_image_batch, as_mask_batch
from glcm.cooccurrence import graycomatrix
from glcm.features import resolve_features
from glcm.properties import features_from_glcm, nanmean
from glcm.quantization import quantize
from glcm.spec import TextureSpec
from glcm.texture import texture_map
from glcm.validation import (DEFAULT_ANGLES, check_angles, check_distances, check_levels,
                             check_padding, check_window, pixel_offsets)


@keras.saving.register_keras_serializable(package="glcm")
class Quantize(keras.layers.Layer):
    """Float values to grey-level codes with a fixed range (:func:`glcm.quantize`),
    validity passed on as a Keras mask.

    .. math:: q = \\mathrm{clip}(\\lfloor (x - v_{min}) / (v_{max} - v_{min})
              \\cdot L \\rfloor, 0, L - 1)

    The range is part of the config, so a saved model quantizes every image it
    meets as it quantized its training data (a range per image would let the same
    texture give other codes). NaN, ±inf and pixels masked by an earlier layer are
    invalid: their code is 0 and the emitted mask is False there; :class:`GLCM`,
    :class:`GLCMFeatures` and :class:`TextureMap` called on this layer's output
    receive the mask and ignore those pixels.

    Input: float (batch, H, W) or (batch, H, W, C). Output: int32 codes of the same
    shape, and a boolean mask of that shape.

    Parameters
    ----------
    levels
        grey levels L, 2..65536.
    vmin, vmax
        the value range mapped onto the levels (values outside are clipped to the
        end levels): numbers, or one per channel (lists of length C).

    Examples
    --------
    >>> import numpy as np, keras, glcm
    >>> x = keras.Input((None, None, 1))
    >>> codes = glcm.layers.Quantize(32, vmin=1.0, vmax=255.0)(x)
    >>> maps = glcm.layers.TextureMap(["contrast", "entropy"], window=7, levels=32)(codes)
    >>> model = keras.Model(x, keras.layers.Dense(3, activation="softmax")(maps))
    >>> image = np.random.default_rng(0).uniform(1, 255, (1, 20, 20, 1))
    >>> image[0, 5, 5, 0] = np.nan
    >>> out = np.asarray(model(image))
    >>> out.shape, bool(np.isnan(out[0, 5, 5]).all()), bool(np.isfinite(out[0, 0, 0]).all())
    ((1, 20, 20, 3), True, True)
    """

    def __init__(self, levels, vmin, vmax, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.levels = check_levels(levels)
        lo, hi = (np.asarray(v, np.float64) for v in (vmin, vmax))
        if lo.ndim > 1 or hi.ndim > 1 or not (np.all(np.isfinite(lo))
                                              and np.all(np.isfinite(hi))):
            raise ValueError(f"vmin and vmax must be finite numbers or lists of "
                             f"numbers (one per channel), got vmin={vmin!r}, "
                             f"vmax={vmax!r}")
        if np.any(hi <= lo):
            raise ValueError(f"vmax must be greater than vmin, got vmin={vmin!r}, "
                             f"vmax={vmax!r}")
        self.vmin = lo.tolist()
        self.vmax = hi.tolist()
        self.supports_masking = True

    def _range(self):
        return (np.asarray(self.vmin, np.float32), np.asarray(self.vmax, np.float32))

    def call(self, inputs, mask=None):
        lo, hi = self._range()
        return quantize(inputs, self.levels, lo, hi, mask=_like(mask, inputs))[0]

    def compute_mask(self, inputs, mask=None):
        valid = ops.isfinite(ops.cast(inputs, "float32"))
        if mask is not None:
            valid = ops.logical_and(valid, _like(mask, inputs))
        return valid

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, mask=None):
        return keras.KerasTensor(inputs.shape, dtype="int32")

    def get_config(self):
        config = super().get_config()
        config.update(levels=self.levels, vmin=self.vmin, vmax=self.vmax)
        return config


def _like(mask, inputs):
    """An earlier layer's mask, as bool, with a channel axis where ``inputs`` has one
    and the mask has none (Keras masks are often (batch, H, W))."""
    if mask is None:
        return None
    mask = ops.cast(mask, "bool")
    if len(mask.shape) < len(inputs.shape):
        mask = ops.expand_dims(mask, -1)
    return mask


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

    Parameters
    ----------
    levels
        number of grey levels.
    distances
        pixel distances.
    angles
        angles in radians (scikit-image's convention).
    symmetric
        count (i, j) and (j, i) (default False, as scikit-image).
    normed
        divide each matrix by its sum.
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

    Parameters
    ----------
    features
        names or aliases (see :data:`glcm.FEATURES`), or "all".
    levels, distances, angles
        as :class:`GLCM`.
    symmetric
        default True (Earth Engine and most texture work).
    average
        average over offsets.
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

    A (batch, H, W, C) input with C > 1 (e.g. several bands from :class:`Quantize`)
    gives each channel's maps, channel by channel: (batch, H, W, C * n_features),
    channel c's features at ``c * n_features + f`` (``average=True`` only).

    With ``padding="valid"`` the output is smaller by ``2 * glcm.texture_halo(window,
    distances)`` on both spatial axes: maps for the input's inner pixels only, its
    border read as their windows' context (tiles read with their halo).

    Parameters
    ----------
    features
        names or aliases, or "all".
    window
        odd window size, 3..63.
    levels, distances, angles, symmetric, average, padding
        as :func:`glcm.texture_map` (``padding`` "same" by default, or "valid").
    """

    def __init__(self, features, window, levels, distances=(1,), angles=DEFAULT_ANGLES,
                 symmetric=True, average=True, padding="same", **kwargs):
        super().__init__(levels, distances, angles, symmetric, **kwargs)
        self.spec = TextureSpec(features, window, levels, distances, angles, symmetric)
        self.features, self.window = self.spec.features, self.spec.window
        self.average = bool(average)
        self.padding = check_padding(padding)

    @classmethod
    def from_spec(cls, spec: TextureSpec, average=True, **kwargs) -> "TextureMap":
        """The layer of a :class:`glcm.TextureSpec`."""
        return cls(**spec.to_config(), average=average, **kwargs)

    def _maps(self, inputs, mask):
        spec = self.spec
        return texture_map(inputs, spec.features, spec.window, levels=spec.levels,
                           distances=spec.distances, angles=spec.angles,
                           symmetric=spec.symmetric, average=self.average, mask=mask,
                           padding=self.padding)

    def _channels(self, input_shape) -> int:
        channels = input_shape[3] if len(input_shape) == 4 else 1
        if channels is None:
            raise ValueError("TextureMap needs the number of channels: give the input "
                             "a known last axis, e.g. keras.Input((None, None, 1))")
        if channels > 1 and not self.average:
            raise ValueError(f"TextureMap with average=False takes one channel, got "
                             f"{channels}: split the channels first")
        return channels

    def call(self, inputs, mask=None):
        inputs = ops.convert_to_tensor(inputs)
        channels = self._channels(tuple(inputs.shape))
        if channels == 1:
            return self._maps(inputs, mask)
        # the channels become images of the batch: one call, no loop over channels
        shape = ops.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]

        def images(x):
            return ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, height, width))

        maps = self._maps(images(inputs),
                          None if mask is None else images(_like(mask, inputs)))
        n = len(self.features)
        out_shape = ops.shape(maps)  # "valid": smaller than the input
        height, width = out_shape[1], out_shape[2]
        maps = ops.reshape(maps, (batch, channels, height, width, n))
        return ops.reshape(ops.transpose(maps, (0, 2, 3, 1, 4)),
                           (batch, height, width, channels * n))

    def compute_output_shape(self, input_shape):
        spatial = tuple(input_shape[:3])
        if self.padding == "valid":
            cut = 2 * self.spec.halo
            spatial = (spatial[0],) + tuple(None if side is None else side - cut
                                            for side in spatial[1:])
        channels = self._channels(tuple(input_shape))
        if self.average:
            return spatial + (channels * len(self.features),)
        return spatial + (len(self.distances) * len(self.angles), len(self.features))

    def get_config(self):
        config = super().get_config()
        config.update(features=list(self.features), window=self.window,
                      average=self.average, padding=self.padding)
        return config


class _SoftGLCMConfig(keras.layers.Layer):
    """Shared arguments, range weights and config of the soft (differentiable) layers.

    The quantization range is two scalars: constants in the config, or, with
    ``trainable_range=True``, weights initialized from them and learned with the
    rest of the model (saved with its weights).
    """

    def __init__(self, features, levels, vmin, vmax, distances=(1,),
                 angles=DEFAULT_ANGLES, bandwidth=0.5, symmetric=True,
                 trainable_range=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.features = soft.smooth_features(features)
        self.levels = check_levels(levels)
        self.vmin, self.vmax = float(vmin), float(vmax)
        if not (np.isfinite(self.vmin) and np.isfinite(self.vmax)
                and self.vmax > self.vmin):
            raise ValueError(f"vmin and vmax must be finite with vmax > vmin, got "
                             f"vmin={vmin!r}, vmax={vmax!r}")
        self.distances = check_distances(distances)
        self.angles = check_angles(angles)
        self.offsets = tuple(map(tuple, pixel_offsets(self.distances,
                                                      self.angles).tolist()))
        self.bandwidth = soft.check_bandwidth(bandwidth)
        self.symmetric = bool(symmetric)
        self.trainable_range = bool(trainable_range)
        self.supports_masking = True

    def build(self, input_shape):
        if self.trainable_range:
            self.range_min = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(self.vmin),
                trainable=True, name="vmin")
            self.range_max = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(self.vmax),
                trainable=True, name="vmax")

    def compute_mask(self, inputs, mask=None):
        return None

    def _weights(self, inputs, mask):
        x = as_image_batch(inputs, "inputs")
        if mask is not None:
            mask = as_mask_batch(mask, tuple(x.shape))
        lo, hi = ((self.range_min, self.range_max) if self.trainable_range
                  else (self.vmin, self.vmax))
        return soft.soft_assign(x, self.levels, lo, hi, self.bandwidth, mask)

    def get_config(self):
        config = super().get_config()
        config.update(features=list(self.features), levels=self.levels, vmin=self.vmin,
                      vmax=self.vmax, distances=list(self.distances),
                      angles=list(self.angles), bandwidth=self.bandwidth,
                      symmetric=self.symmetric, trainable_range=self.trainable_range)
        return config


@keras.saving.register_keras_serializable(package="glcm")
class SoftGLCMFeatures(_SoftGLCMConfig):
    """Differentiable GLCM features of whole images (see :mod:`glcm.soft`).

    Each pixel is assigned to the ``levels`` grey levels of ``[vmin, vmax)`` softly,
    with a kernel ``bandwidth`` levels wide; each pixel pair adds the outer product of
    its two pixels' assignments to the co-occurrence matrix (a matrix product); the
    features follow from the matrix as in :class:`GLCMFeatures`. Gradients reach the
    input and, with ``trainable_range=True``, the range. As ``bandwidth`` goes to 0
    the output equals ``GLCMFeatures`` on ``glcm.quantize(x, levels, vmin, vmax)``.

    Input: float (batch, H, W) or (batch, H, W, 1); NaN, ±inf and ``mask`` False are
    invalid (their pairs do not count). Output: float32 (batch, n_features), each
    feature averaged over the offsets that have a valid pair; NaN where none has.

    Parameters
    ----------
    features
        names or aliases of smooth features (every feature of
        :data:`glcm.FEATURES` except joint_max and max_correlation, refused with the
        reason).
    levels
        grey levels.
    vmin, vmax
        the value range mapped onto the levels (the initial range with
        ``trainable_range``).
    distances, angles
        as :func:`glcm.graycomatrix` (radians).
    bandwidth
        kernel width in levels (0.5 default: smooth gradients; small values
        approach the exact features, see docs/soft.md).
    symmetric
        count (i, j) and (j, i) (default True).
    trainable_range
        learn vmin and vmax.

    Examples
    --------
    >>> import numpy as np, glcm
    >>> x = np.random.default_rng(0).uniform(0, 1, (2, 16, 16)).astype("float32")
    >>> layer = glcm.layers.SoftGLCMFeatures(["contrast", "entropy"], levels=8,
    ...                                       vmin=0.0, vmax=1.0)
    >>> tuple(layer(x).shape)
    (2, 2)
    """

    def call(self, inputs, mask=None):
        weights, _ = self._weights(inputs, mask)
        P = soft.soft_glcm(weights, self.offsets, self.symmetric)  # (B, K, L, L)
        return soft.average_offsets(soft.soft_features(P, self.features))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.features))


@keras.saving.register_keras_serializable(package="glcm")
class SoftTextureMap(_SoftGLCMConfig):
    """Differentiable per-pixel texture maps: :class:`SoftGLCMFeatures` of the window
    centred on every pixel (clipped at the border, as :func:`glcm.texture_map`): window
    sums of the outer products of each pair's soft assignments.

    Memory: ``levels²`` floats per pixel and offset (a matrix per window), several
    times that while the gradient is taken; an input holding more than
    :data:`glcm.soft.SOFT_MAP_MAX_ELEMENTS` (2**26) such entries is refused. E.g. 8
    levels, 4 offsets: 256 floats per pixel, so up to 512 x 512 pixels per batch.

    Input as :class:`SoftGLCMFeatures`. Output: float32 (batch, H, W, n_features),
    averaged over the offsets with a pair in the window; NaN where the centre pixel is
    invalid or the window has no valid pair. As ``bandwidth`` goes to 0 it equals
    :class:`TextureMap` on the quantized input.

    Parameters
    ----------
        features, levels, vmin, vmax, distances, angles, bandwidth, symmetric,
    trainable_range
        as :class:`SoftGLCMFeatures`.
    window
        odd window size, 3..63.
    """

    def __init__(self, features, window, levels, vmin, vmax, distances=(1,),
                 angles=DEFAULT_ANGLES, bandwidth=0.5, symmetric=True,
                 trainable_range=False, **kwargs):
        super().__init__(features, levels, vmin, vmax, distances, angles, bandwidth,
                         symmetric, trainable_range, **kwargs)
        self.window = check_window(window)

    def call(self, inputs, mask=None):
        weights, valid = self._weights(inputs, mask)
        soft.check_map_size(tuple(weights.shape[:3]), self.levels, len(self.offsets))
        P = soft.soft_glcm_maps(weights, self.offsets, self.window, self.symmetric)
        values = soft.average_offsets(soft.soft_features(P, self.features))
        return ops.where(valid[..., None], values, float("nan"))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (len(self.features),)

    def get_config(self):
        config = super().get_config()
        config.update(window=self.window)
        return config
