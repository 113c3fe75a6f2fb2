"""Trained Keras models as pipeline inputs: read one (local or gs://), check that it
maps (batch, H, W, bands) to (batch, H, W, K), and describe it (digest, halo) before
any tile is computed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zipfile
from typing import Iterator, Optional

import numpy as np

from transforms.io import storage
from transforms.records import ModelRef, ParameterError

# A probe image's side: small, but larger than a window so that the glcm layers see
# pairs; its output must keep its height and width.
PROBE_SIDE = 24


def model_digest(data: bytes) -> str:
    """The digest that identifies a model's content (16 hex digits of SHA-256)."""
    return hashlib.sha256(data).hexdigest()[:16]


def read_model_bytes(uri: str) -> bytes:
    """The model file's bytes.

    Raises:
      ParameterError (``model``): missing or unreadable, naming the file.
    """
    try:
        return storage.read_bytes(uri)
    except FileNotFoundError:
        raise ParameterError("model", f"model file {uri} does not exist") from None
    except (IsADirectoryError, PermissionError, OSError) as exc:
        raise ParameterError("model", f"model file {uri} cannot be read: "
                                      f"{type(exc).__name__}: {exc}") from None


@contextlib.contextmanager
def _local_file(data: bytes) -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="glcm-model-")
    path = os.path.join(folder, "model.keras")
    try:
        with open(path, "wb") as f:
            f.write(data)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
            os.rmdir(folder)


def load_model_bytes(uri: str, data: bytes):
    """The Keras model saved in ``data`` (read from ``uri``, named in errors).

    Raises:
      ParameterError (``model``): not a ``.keras`` file, or Keras cannot load it.
    """
    import keras

    import glcm.layers  # noqa: F401 - registers the glcm layers for deserialization

    with _local_file(data) as path:
        if not zipfile.is_zipfile(path):
            raise ParameterError(
                "model", f"{uri} is not a Keras model file (.keras, a zip archive): "
                         f"save the model with model.save('name.keras')")
        try:
            return keras.saving.load_model(path, compile=False)
        except Exception as exc:  # noqa: BLE001 - any loading failure, reported whole
            raise ParameterError(
                "model", f"{uri} cannot be loaded as a Keras model ({type(exc).__name__}: "
                         f"{exc}); custom layers must be registered with "
                         f"keras.saving.register_keras_serializable and imported, and "
                         f"Lambda layers are refused (unsafe to deserialize)") from None


def input_channels(model, uri: str) -> int:
    """The bands a per-pixel model takes: its one input's last axis.

    Raises:
      ParameterError (``model``): several inputs, not (batch, H, W, C), a fixed
        height or width, or an unknown C.
    """
    inputs = list(model.inputs or ())
    if len(inputs) != 1:
        raise ParameterError("model", f"{uri} has {len(inputs)} inputs; the pipeline "
                                      f"feeds one: (batch, H, W, bands)")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[3] is None:
        raise ParameterError("model", f"{uri} takes input of shape {shape}; the pipeline "
                                      f"feeds (batch, H, W, bands) with the bands known, "
                                      f"e.g. keras.Input((None, None, 1))")
    if shape[1] is not None or shape[2] is not None:
        raise ParameterError("model", f"{uri} takes input of shape {shape}; tiles come "
                                      f"in any size: build it with keras.Input((None, "
                                      f"None, {shape[3]}))")
    return int(shape[3])


def output_values(model, uri: str, channels: int) -> int:
    """K, the values the model gives per pixel, from a probe image (NaN in one
    corner, as invalid pixels come).

    Raises:
      ParameterError (``model``): the output is not (batch, H, W, K) of the input's
        height and width.
    """
    probe = np.ones((1, PROBE_SIDE, PROBE_SIDE + 1, channels), np.float32)
    probe[0, 0, 0] = np.nan
    try:
        out = model(probe, training=False)
    except Exception as exc:  # noqa: BLE001 - reported with the file's name
        raise ParameterError("model", f"{uri} fails on a (1, {PROBE_SIDE}, "
                                      f"{PROBE_SIDE + 1}, {channels}) float32 input: "
                                      f"{type(exc).__name__}: {exc}") from None
    if isinstance(out, (list, tuple, dict)):
        raise ParameterError("model", f"{uri} has several outputs; the pipeline writes "
                                      f"one: (batch, H, W, K)")
    shape = tuple(out.shape)
    if len(shape) != 4 or shape[:3] != probe.shape[:3]:
        raise ParameterError("model", f"{uri} maps a {probe.shape} input to {shape}; the "
                                      f"pipeline needs (batch, H, W, K) of the input's "
                                      f"height and width (stride 1, padding 'same')")
    return int(shape[3])


def describe_model(uri: str, halo: Optional[int] = None) -> ModelRef:
    """Reads, loads and checks the model at ``uri`` and describes it.

    Args:
      uri: ``.keras`` file, local or ``gs://``.
      halo: pixels to read around each tile's core; None derives it from the layers
        (:func:`glcm.model_halo`).

    Raises:
      ParameterError: ``model`` (missing, not Keras, wrong input or output) or
        ``model_halo`` (cannot be derived, or negative).
    """
    import glcm

    uri = storage.normalize(uri)
    data = read_model_bytes(uri)
    model = load_model_bytes(uri, data)
    channels = input_channels(model, uri)
    outputs = output_values(model, uri, channels)
    if halo is None:
        derived, halo = True, glcm.model_halo(model)
    else:
        derived, halo = False, int(halo)
        if halo < 0:
            raise ParameterError("model_halo", f"the halo must be >= 0 pixels, got {halo}")
    found = dict(storage.match(uri))
    return ModelRef(uri, found.get(uri, ""), model_digest(data), channels, outputs, halo,
                    derived)
