"""How far a per-pixel Keras model reads: the halo a tile needs so that a model
applied tile by tile equals the model applied to the whole image.

A model's output at a pixel depends on the input within some distance of it: its
*halo* (receptive radius). Along a path of layers the radii add up; where paths
merge (Concatenate, Add...) the largest wins. :func:`model_halo` walks a functional
or sequential model and adds the radius of each layer it knows:

==========================================  =============================================
layer                                        radius
==========================================  =============================================
glcm ``TextureMap``, ``SoftTextureMap``      ``window // 2 + max(distances)`` (padding
                                             ``same``)
glcm ``Quantize``, pointwise layers          0 (``Dense``, activations, normalization over
                                             the channels, dropout and noise, rescaling,
                                             merges, ``Masking``...)
``Conv2D``, ``DepthwiseConv2D``,             ``ceil((kernel - 1) * dilation / 2)`` (the
``SeparableConv2D``, stride 1, ``same``      larger side; a 1x1 convolution is pointwise)
``MaxPooling2D``, ``AveragePooling2D``,      ``ceil((pool - 1) / 2)``
stride 1, ``same``
a nested functional or sequential model      its own halo
==========================================  =============================================

Any other layer (strides, ``valid`` padding, whole-image reductions, ``Lambda``,
custom layers) has no radius it can be trusted with: :func:`model_halo` refuses it
and the caller gives the halo explicitly.
"""

from __future__ import annotations

import math
from typing import Dict

import keras

from glcm.validation import ParameterError, texture_halo

# Layers whose output at a pixel depends on that pixel's input alone (channels_last).
_POINTWISE = (
    "InputLayer", "Dense", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ActivityRegularization", "Identity", "Rescaling", "Masking", "Concatenate", "Add",
    "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Quantize")
# Pointwise only when they act on the channel axis (the last).
_CHANNEL_AXIS = ("BatchNormalization", "LayerNormalization", "Normalization",
                 "UnitNormalization")
_CONVOLUTIONS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
_POOLING = ("MaxPooling2D", "AveragePooling2D")
_WINDOWED_GLCM = ("TextureMap", "SoftTextureMap")


class HaloUnknown(ParameterError):
    """A layer whose reach :func:`model_halo` cannot derive (parameter
    ``model_halo``: give the halo explicitly)."""

    def __init__(self, layer, why: str):
        super().__init__(
            "model_halo",
            f"cannot derive the model's halo: layer {layer.name!r} "
            f"({type(layer).__name__}) {why}; give the halo explicitly (the largest "
            f"distance, in pixels, at which an input pixel changes an output pixel)")


def _last_axis(axis, rank: int = 4) -> bool:
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and axes[0] in (-1, rank - 1)


def _spatial(layer, sizes, strides, dilation=(1, 1)) -> int:
    """Radius of a sliding-window layer, or :class:`HaloUnknown`."""
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise HaloUnknown(layer, "is channels_first (the model's input is (H, W, C))")
    if tuple(strides) != (1, 1):
        raise HaloUnknown(layer, f"has strides {tuple(strides)} (the output must keep "
                                 f"the input's grid: strides 1)")
    if tuple(sizes) != (1, 1) and getattr(layer, "padding", "same") != "same":
        raise HaloUnknown(layer, "has padding 'valid' (the output must keep the "
                                 "input's size: padding 'same')")
    return max(math.ceil((k - 1) * d / 2) for k, d in zip(sizes, dilation))


def layer_radius(layer) -> int:
    """How far ``layer``'s output at a pixel reads its input, in pixels.

    Raises
    ------
    HaloUnknown
        a layer outside the table of the module's docstring.
    """
    kind = type(layer).__name__
    if isinstance(layer, keras.Model):
        return model_halo(layer)
    if kind in _POINTWISE:
        if kind == "Softmax" and not _last_axis(layer.axis):
            raise HaloUnknown(layer, f"normalizes over axis {layer.axis}, not the "
                                     f"channels")
        if kind == "Concatenate" and not _last_axis(layer.axis):
            raise HaloUnknown(layer, f"concatenates along axis {layer.axis}, not the "
                                     f"channels")
        return 0
    if kind in _CHANNEL_AXIS:
        if not _last_axis(layer.axis):
            raise HaloUnknown(layer, f"normalizes over axis {layer.axis}, not the "
                                     f"channels")
        return 0
    if kind in _WINDOWED_GLCM and layer.__module__.startswith("glcm."):
        if getattr(layer, "padding", "same") != "same":
            raise HaloUnknown(layer, "has padding 'valid' (the output must keep the "
                                     "input's size: padding 'same')")
        return texture_halo(layer.window, layer.distances)
    if kind in _CONVOLUTIONS:
        return _spatial(layer, layer.kernel_size, layer.strides, layer.dilation_rate)
    if kind in _POOLING:
        return _spatial(layer, layer.pool_size, layer.strides)
    raise HaloUnknown(layer, "is not one whose reach is known (pointwise layers, "
                             "stride-1 'same' convolutions and pooling, glcm layers)")


def model_halo(model) -> int:
    """The halo of a per-pixel model: how far (in pixels) an input pixel can change an
    output pixel. Tiles read this much around their core to give the same result as
    the whole image.

    Parameters
    ----------
    model : keras.Model
        A functional model, or a sequential one built with an ``Input``, mapping
        (batch, H, W, C) to (batch, H, W, K).

    Returns
    -------
    int
        The largest sum of layer radii along any path from an input to an output
        (see the module's table).

    Raises
    ------
    HaloUnknown
        (a :class:`~glcm.validation.ParameterError` for ``model_halo``) a layer
        whose reach is unknown, or a model without a graph.

    Examples
    --------
    >>> import keras, glcm
    >>> x = keras.Input((None, None, 1))
    >>> codes = glcm.layers.Quantize(32, 0.0, 255.0)(x)
    >>> maps = glcm.layers.TextureMap(["contrast"], window=7, levels=32,
    ...                               distances=[1, 2])(codes)
    >>> y = keras.layers.Conv2D(4, 3, padding="same")(maps)
    >>> glcm.model_halo(keras.Model(x, y))
    6
    """
    try:
        outputs = list(model.outputs)
    except (AttributeError, ValueError):
        outputs = None
    if not outputs:
        raise HaloUnknown(model, "has no graph (build it with keras.Input)")
    inputs = {id(t) for t in model.inputs}
    memo: Dict[int, int] = {}

    def reach(tensor) -> int:
        if id(tensor) in inputs:
            return 0
        if id(tensor) not in memo:
            operation, node_index, _ = tensor._keras_history
            node = operation._inbound_nodes[node_index]
            below = [reach(t) for t in node.input_tensors]
            memo[id(tensor)] = layer_radius(operation) + max(below, default=0)
        return memo[id(tensor)]

    return max(reach(t) for t in outputs)
