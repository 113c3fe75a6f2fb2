"""Compute: texture maps per tile with Beam's RunInference and the glcm Keras layers."""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from transforms.errors import ErrorRecord

# One model call at a time per process: each call already uses every core (XLA's
# thread pool) or the whole GPU; two at once only thrash. Beam's other threads
# still read and write tiles meanwhile.
_COMPUTE = threading.Lock()


def accelerator() -> str:
    """The device Keras computes on: the first GPU when there is one, else the CPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"GPU ({gpus[0].name})" if gpus else "CPU"
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"GPU ({device})" if device.platform == "gpu" else device.platform.upper()
    return backend


def _loaded(model):
    logging.getLogger("glcm").info("texture model loaded on %s", accelerator())
    return model


def inference_errors(failure) -> list:
    """Error records for a batch RunInference could not compute."""
    batch, exc = failure
    exc = exc if isinstance(exc, BaseException) else RuntimeError(str(exc))
    return [ErrorRecord.from_exception(task.scene.uri, task.scene.scene_id, "texture", exc)
            for task, _ in batch]


class TextureModelHandler(ModelHandler):
    """Loads a Keras model around ``glcm.layers.TextureMap`` once per worker.

    Examples are dicts with ``codes`` (S, S) int32 grey levels and ``valid`` (S, S)
    bool, every tile padded to the same S (core + 2 halo), so Beam can batch them.
    Predictions are float32 (S, S, n_features) maps.

    ``max_batch_size`` defaults to 1: on a CPU a batch brings no speed, and every new
    batch size compiles the kernel again.
    """

    def __init__(self, features: Sequence[str], window: int, levels: int,
                 distances: Sequence[int], angles: Sequence[float],
                 max_batch_size: int = 1):
        self._config = dict(features=list(features), window=window, levels=levels,
                            distances=list(distances), angles=list(angles))
        self._max_batch_size = max_batch_size

    def load_model(self):
        import keras

        from glcm.layers import TextureMap

        codes = keras.Input((None, None), dtype="int32", name="codes")
        valid = keras.Input((None, None), dtype="bool", name="valid")
        maps = TextureMap(**self._config)(codes, mask=valid)
        return _loaded(keras.Model([codes, valid], maps))

    def run_inference(self, batch: Sequence[Dict[str, np.ndarray]], model: Any,
                      inference_args: Optional[Dict[str, Any]] = None) -> Iterable[np.ndarray]:
        codes = np.stack([e["codes"] for e in batch])
        valid = np.stack([e["valid"] for e in batch])
        with _COMPUTE:
            outputs = np.asarray(model([codes, valid]))
        return list(outputs)

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": self._max_batch_size}

    def share_model_across_processes(self) -> bool:
        return False


class BlockModelHandler(TextureModelHandler):
    """Block mode: ``glcm.layers.GLCMFeatures`` on every block x block cell of a tile.

    Examples as :class:`TextureModelHandler` (S a multiple of ``block``);
    predictions are float32 (S / block, S / block, n_features).
    """

    def __init__(self, features, block: int, levels: int, distances, angles,
                 max_batch_size: int = 1):
        super().__init__(features, 3, levels, distances, angles, max_batch_size)
        self._config.pop("window")
        self._block = block

    def load_model(self):
        import keras

        from glcm.layers import GLCMFeatures

        codes = keras.Input((self._block, self._block), dtype="int32", name="codes")
        valid = keras.Input((self._block, self._block), dtype="bool", name="valid")
        return _loaded(keras.Model([codes, valid],
                                   GLCMFeatures(**self._config)(codes, mask=valid)))

    def run_inference(self, batch, model, inference_args=None):
        b = self._block
        codes = np.stack([e["codes"] for e in batch])
        valid = np.stack([e["valid"] for e in batch])
        n, side = codes.shape[0], codes.shape[1]
        cells = side // b

        def blocks(x):
            return x.reshape(n, cells, b, cells, b).transpose(0, 1, 3, 2, 4).reshape(-1, b, b)

        with _COMPUTE:
            values = np.asarray(model([blocks(codes), blocks(valid)]))
        return list(values.reshape(n, cells, cells, -1))


def model_handler(params) -> TextureModelHandler:
    """The model handler for a run's :class:`~transforms.params.TextureParams`:
    per-pixel texture maps, or per-block features in block mode."""
    if params.mode == "block":
        return BlockModelHandler(params.features, params.block, params.levels,
                                 params.distances, params.angles)
    return TextureModelHandler(params.features, params.window, params.levels,
                               params.distances, params.angles)
