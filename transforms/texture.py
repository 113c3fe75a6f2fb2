"""Texture: maps per tile with Beam's RunInference and the glcm Keras layers, or a
trained Keras model (the model handlers; the graph wires them with
``RunInference``)."""

from __future__ import annotations

import contextlib
import logging
import pickle
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from apache_beam import coders, typehints
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler

import glcm

from transforms.errors import GuardedStep, tagged
from transforms.metrics import WAIT_COUNTER, StepMetrics, counter
from transforms.plan import ACCELERATOR_SHAPE_EXTRA_PIXELS, PaddingAccount
from transforms.records import (ErrorRecord, TextureFailure, TextureOutcome, TextureOutput,
                                TileTask)

# One model call at a time per process: each call already uses every core
# (texture_map's chunk threads and XLA's thread pool) or the whole GPU; two at once
# only thrash. Beam's other threads still read and write tiles meanwhile.
_COMPUTE = threading.Lock()
# Per thread: seconds this thread has waited for _COMPUTE since take_waited().
_WAITED = threading.local()


@contextlib.contextmanager
def model_turn(device: str):
    """The process's one model call at a time, on ``device`` (:func:`device_scope`);
    the seconds spent waiting for the turn are added to the calling thread's tally
    (:func:`take_waited`)."""
    start = time.perf_counter()
    with _COMPUTE:
        _WAITED.seconds = getattr(_WAITED, "seconds", 0.0) + time.perf_counter() - start
        with device_scope(device):
            yield


def take_waited() -> float:
    """Seconds the calling thread waited for its model turns since the last call."""
    waited, _WAITED.seconds = getattr(_WAITED, "seconds", 0.0), 0.0
    return waited


ACCELERATOR_CHOICES = ("required", "optional", "none")


class AcceleratorError(RuntimeError):
    """A GPU was required (accelerator "required") and the backend sees none."""

    parameter = "accelerator"


def visible_gpus() -> list:
    """The GPUs the Keras backend sees (names); empty on a CPU-only machine."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    return []


def compute_device(accelerator: str) -> str:
    """Where the model runs: "GPU (name)" or "CPU".

    Raises:
      AcceleratorError: ``accelerator`` is "required" and the backend sees no GPU, so
        the worker fails at start-up instead of quietly computing on its CPU.
    """
    if accelerator not in ACCELERATOR_CHOICES:
        raise ValueError(f"accelerator must be one of {', '.join(ACCELERATOR_CHOICES)}, "
                         f"got {accelerator!r}")
    gpus = visible_gpus()
    if accelerator == "required" and not gpus:
        import keras

        build = ""
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            info = tf.sysconfig.get_build_info()
            if info.get("is_cuda_build"):
                build = (f" This TensorFlow was built for CUDA {info.get('cuda_version')} "
                         f"and cuDNN {info.get('cudnn_version')}: the image must carry "
                         f"those libraries (see dataflow/check_gpu_image.py).")
            else:
                build = " This TensorFlow is a CPU-only build."
        raise AcceleratorError(
            "accelerator=required, but the Keras backend "
            f"({keras.backend.backend()}) sees no GPU on this worker. Check that the job "
            "requested one (worker_accelerator experiment, a GPU machine type) and "
            "that the worker image's CUDA and cuDNN match its TensorFlow." + build +
            " Use accelerator=optional to allow the CPU.")
    if gpus and accelerator != "none":
        return f"GPU ({gpus[0]})"
    return "CPU"


def device_scope(device: str):
    """A context that places the model's computation on ``device`` ("CPU" forces the
    CPU even where a GPU is visible)."""
    import contextlib

    import keras

    if not device.startswith("CPU"):
        return contextlib.nullcontext()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.device("/CPU:0")
    if keras.backend.backend() == "jax":
        import jax

        return jax.default_device(jax.devices("cpu")[0])
    return contextlib.nullcontext()


class TextureModelHandler(ModelHandler):
    """Loads a Keras model around ``glcm.layers.TextureMap`` once per worker.

    Examples are dicts with ``codes`` (H, W) int32 grey levels and ``valid`` (H, W)
    bool, every tile of a scene padded to the same (H, W) (its tile core + 2 halo,
    :func:`transforms.read.tile_shape`), so Beam can batch them. Predictions are
    float32 (H - 2 halo, W - 2 halo, n_features) maps: the layer reads the halo as
    the windows' context only (``padding="valid"``), so no map is computed for it.

    Args:
      spec: the texture (:class:`glcm.TextureSpec`).
      max_batch_size: tiles per model call (``--tiles-per-call``). 1 by default: on a
        CPU a batch brings no speed, and every new batch size compiles the kernel
        again; a GPU computes 4 tiles per call faster than one at a time
        (docs/performance.md, "On a GPU"). Beam makes batches of exactly this size,
        except the last of a bundle.
      accelerator: ``required``, ``optional`` or ``none`` (:func:`compute_device`).
    """

    def __init__(self, spec: glcm.TextureSpec, max_batch_size: int = 1,
                 accelerator: str = "optional"):
        self.spec = spec
        self._max_batch_size = max_batch_size
        self._accelerator = accelerator
        self._device = None
        # Set by load_model, on the worker (a lock does not pickle): the filling's
        # account, kept for the model's kernels, which a new model compiles anew.
        self._filled = None

    def map_size(self, height: int, width: int) -> Tuple[int, int]:
        """The (rows, columns) of the maps for an example of (height, width): the
        example less its halo on every side."""
        halo = self.spec.halo
        return height - 2 * halo, width - 2 * halo

    def _layer(self, shape):
        from glcm.layers import TextureMap

        return TextureMap.from_spec(self.spec, padding="valid"), shape

    def load_model(self):
        """The Keras model, on the device ``accelerator`` allows (checked first)."""
        import keras

        self._device = compute_device(self._accelerator)
        # (tile shape, short size) -> pixels filled in vain
        self._filled = PaddingAccount(ACCELERATOR_SHAPE_EXTRA_PIXELS)
        layer, shape = self._layer((None, None))
        codes = keras.Input(shape, dtype="int32", name="codes")
        valid = keras.Input(shape, dtype="bool", name="valid")
        model = keras.Model([codes, valid], layer(codes, mask=valid))
        logging.getLogger("glcm").info("texture model loaded on %s", self._device)
        return model

    def _predict(self, model, codes, valid):
        with model_turn(self._device or "GPU"):
            return np.asarray(model([codes, valid]))

    def run_inference(self, batch: Sequence[Dict[str, np.ndarray]], model: Any,
                      inference_args: Optional[Dict[str, Any]] = None) -> Iterable[np.ndarray]:
        maps = [None] * len(batch)
        # Tiles of different scenes may differ in shape: one call per shape.
        for members in same_shapes([example["codes"] for example in batch]):
            codes = np.stack([batch[i]["codes"] for i in members])
            valid = np.stack([batch[i]["valid"] for i in members])
            codes, valid = self._filled_up(codes, valid)
            for i, values in zip(members, self._maps(model, codes, valid)):
                maps[i] = values  # the filling's maps, past the members, are dropped
        return maps

    def _filled_up(self, codes, valid):
        """On a GPU, a batch shorter than ``max_batch_size`` (the last of a bundle, or
        a batch split by shape) filled up with invalid tiles: each batch size
        compiles the kernel again, seconds of the host's CPU while the GPU waits,
        where a tile more costs the GPU hundredths of a second. Rent or buy, as the
        read step's shapes (:class:`transforms.read.ExampleShapes`): the batches of
        one tile shape and one short size are filled until their filling has
        computed :data:`transforms.plan.ACCELERATOR_SHAPE_EXTRA_PIXELS` pixels in vain;
        later ones are called as they are (their size compiled once), so small
        bundles cannot make every call mostly filling. On the CPU the batch stays as
        it is: a tile computed in vain costs as much there as any other."""
        size = codes.shape[0]
        short = self._max_batch_size - size
        if short <= 0 or self._device is None or self._device.startswith("CPU"):
            return codes, valid
        # A key's filling is always the same size: once over the budget, always over.
        extra = short * int(np.prod(codes.shape[1:]))
        if not self._filled.pad((codes.shape[1:], size), extra):
            return codes, valid
        fill = (short,) + codes.shape[1:]
        return (np.concatenate([codes, np.zeros(fill, codes.dtype)]),
                np.concatenate([valid, np.zeros(fill, bool)]))

    def _maps(self, model, codes, valid) -> np.ndarray:
        """The model's output for examples of one shape, stacked."""
        return self._predict(model, codes, valid)

    def batch_elements_kwargs(self):
        return batch_sizes(self._max_batch_size)

    def share_model_across_processes(self) -> bool:
        return False


def batch_sizes(tiles_per_call: int) -> Dict[str, int]:
    """Beam's BatchElements bounds for ``tiles_per_call`` tiles per model call: the
    lower bound too, so that batches have one size (each size compiles the kernel
    once) but for the last of a bundle."""
    return {"min_batch_size": tiles_per_call, "max_batch_size": tiles_per_call}


def same_shapes(arrays: Sequence[np.ndarray]) -> List[List[int]]:
    """The indexes of ``arrays``, grouped by shape (first appearance order)."""
    groups: Dict[tuple, List[int]] = {}
    for i, array in enumerate(arrays):
        groups.setdefault(array.shape, []).append(i)
    return list(groups.values())


class BlockModelHandler(TextureModelHandler):
    """Block mode: ``glcm.layers.GLCMFeatures`` on every block x block cell of a tile.

    Examples as :class:`TextureModelHandler` (H and W multiples of ``block``);
    predictions are float32 (H / block, W / block, n_features).
    """

    def __init__(self, spec: glcm.TextureSpec, block: int, max_batch_size: int = 1,
                 accelerator: str = "optional"):
        super().__init__(spec, max_batch_size, accelerator)
        self._block = block

    def _layer(self, shape):
        from glcm.layers import GLCMFeatures

        config = self.spec.to_config()
        config.pop("window")  # a block is one GLCM, not a sliding window
        return GLCMFeatures(**config), (self._block, self._block)

    def _maps(self, model, codes, valid):
        b = self._block
        n, rows, cols = codes.shape[0], codes.shape[1] // b, codes.shape[2] // b

        def blocks(x):
            return x.reshape(n, rows, b, cols, b).transpose(0, 1, 3, 2, 4).reshape(-1, b, b)

        values = self._predict(model, blocks(codes), blocks(valid))
        return values.reshape(n, rows, cols, -1)

    def map_size(self, height: int, width: int) -> Tuple[int, int]:
        """The (rows, columns) of cells for an example of (height, width)."""
        return height // self._block, width // self._block


class KerasFileModelHandler(ModelHandler):
    """Model mode: a trained Keras model (``.keras``, local or gs://), loaded once per
    worker, applied to each tile.

    Examples are dicts with ``values``: float32 (h, w, bands), NaN where invalid (the
    tile's read window; tiles at the scene's edge are smaller). Predictions are
    float32 (h, w, K).

    Args:
      model: the model's :class:`~transforms.records.ModelRef` (described, and so
        checked, before the run started).
      accelerator: ``required``, ``optional`` or ``none`` (:func:`compute_device`).
      max_batch_size: tiles per model call (``--tiles-per-call``), as
        :class:`TextureModelHandler`'s.
    """

    def __init__(self, model, accelerator: str = "optional", max_batch_size: int = 1):
        self.model = model
        self._accelerator = accelerator
        self._max_batch_size = max_batch_size
        self._device = None

    def load_model(self):
        """The Keras model; ValueError when the file's content is no longer the one
        the run was started with (its digest), so one run never mixes two models."""
        from transforms.io.model import load_model_bytes, model_digest, read_model_bytes

        self._device = compute_device(self._accelerator)
        data = read_model_bytes(self.model.uri)
        if model_digest(data) != self.model.digest:
            raise ValueError(f"the model file {self.model.uri} changed since the run "
                             f"started (digest {model_digest(data)}, expected "
                             f"{self.model.digest}): run again to use the new one")
        model = load_model_bytes(self.model.uri, data)
        logging.getLogger("glcm").info("model %s loaded on %s", self.model.uri,
                                       self._device)
        return model

    def run_inference(self, batch, model, inference_args=None):
        outputs = [None] * len(batch)
        # Tiles differ in size at the scene's edge: one call per shape.
        for members in same_shapes([e["values"] for e in batch]):
            values = np.stack([batch[i]["values"] for i in members])
            with model_turn(self._device or "GPU"):
                out = np.asarray(model(values, training=False), np.float32)
            expected = values.shape[1:3] + (self.model.outputs,)
            if out.shape != (len(members),) + expected:
                raise ValueError(f"the model {self.model.uri} returned {out.shape[1:]} "
                                 f"for a tile of {values.shape[1:]}; expected {expected}")
            for i, tile in zip(members, out):
                outputs[i] = tile
        return outputs

    def batch_elements_kwargs(self):
        return batch_sizes(self._max_batch_size)

    def share_model_across_processes(self) -> bool:
        return False


def model_handler(params, accelerator: str = "optional",
                  tiles_per_call: int = 1) -> ModelHandler:
    """The model handler for a run's :class:`~transforms.records.TextureParams`:
    per-pixel texture maps, per-block features in block mode, or the user's model;
    ``tiles_per_call`` tiles of one shape per model call."""
    if params.model is not None:
        return KerasFileModelHandler(params.model, accelerator, tiles_per_call)
    if params.mode == "block":
        return BlockModelHandler(params.spec, params.block, tiles_per_call, accelerator)
    return TextureModelHandler(params.spec, tiles_per_call, accelerator)


class TileModelHandler(KeyedModelHandler):
    """(TileTask, example) -> (TileTask, :class:`TextureOutput` or
    :class:`TextureFailure`) around a texture or block model handler.

    A batch the model cannot compute becomes a TextureFailure per tile instead of
    failing the bundle, so that :class:`TextureResults` turns it into error records
    like every other step's failures. Counts the model's time (of it, the wait for
    the process's one model call at a time: ``texture_wait_msec``) and output bytes
    (the texture step's metrics).
    """

    def __init__(self, unkeyed: "TextureModelHandler"):
        super().__init__(unkeyed)
        self.metrics = StepMetrics("texture")
        self.waited = counter(WAIT_COUNTER)

    def run_inference(self, batch, model, inference_args=None):
        tasks, examples = zip(*batch)
        take_waited()  # this call's waits only
        start = time.perf_counter()
        try:
            maps = list(self._unkeyed.run_inference(list(examples), model, inference_args))
        except Exception as exc:  # noqa: BLE001 - recorded per tile by TextureResults
            failure = TextureFailure(type(exc).__name__, str(exc))
            return [(task, failure) for task in tasks]
        seconds, waited = time.perf_counter() - start, take_waited()
        self.metrics.msec.inc(int(round(seconds * 1000)))
        self.waited.inc(int(round(waited * 1000)))
        self.metrics.bytes.inc(sum(int(m.nbytes) for m in maps))
        share, wait_share = seconds / len(tasks), waited / len(tasks)
        return [(task, TextureOutput(m, float(e.get("read_seconds", 0.0)), share,
                                     wait_share))
                for task, e, m in zip(tasks, examples, maps)]


class TextureOutcomeCoder(coders.Coder):
    """Encodes a :class:`~transforms.records.TextureOutcome` as a pickle, as Beam's
    default coder does, and sizes it without encoding it.

    Beam estimates the byte size of a sample of every PCollection's elements (every
    one of the first ten, then fewer) by encoding them, even where the runner hands
    them on unencoded; a tile's maps are tens of MB, so each sample was a whole
    pickle. A four-scene run of 1024² tiles pickled 56 of them, 19 ms and a fresh
    34 MB buffer each: 1.1 CPU-s (docs/performance-history.md). The size here is
    the maps' bytes plus what a pickle adds around them."""

    # pickle's framing, the dataclass and its three floats, with room to spare
    OVERHEAD_BYTES = 320

    def encode(self, value):
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded):
        return pickle.loads(encoded)

    def estimate_size(self, value):
        maps = getattr(value, "maps", None)
        if isinstance(maps, np.ndarray):
            return maps.nbytes + self.OVERHEAD_BYTES
        return len(self.encode(value))

    def is_deterministic(self):
        return False

    def to_type_hint(self):
        return TextureOutcome


coders.registry.register_coder(TextureOutcome, TextureOutcomeCoder)
# The type of the texture step's outputs (the graph's Texture and TextureResults),
# which gives them the coder above.
TILE_OUTCOME = typehints.Tuple[TileTask, TextureOutcome]


class TextureResults(GuardedStep):
    """The texture step's outputs: computed tiles pass on, failed ones become error
    records (stage ``texture``)."""

    STEP, STAGE = "texture", "texture"

    def run(self, element):
        task, out = element
        if isinstance(out, TextureFailure):
            yield tagged(ErrorRecord(task.scene.uri, task.scene.scene_id, self.STAGE,
                                     out.error, out.message))
            return
        yield task, out

    def where(self, element):
        task: TileTask = element[0]
        return task.scene.uri, task.scene.scene_id
