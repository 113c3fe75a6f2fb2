"""Read a tile: its window (core + halo) of one band, quantized with the scene's
range, padded to the common shape every tile of the scene shares; with a model, the
window of every band as float values."""

from __future__ import annotations

import threading
import time
from typing import Dict, Optional, Tuple

import apache_beam as beam
import numpy as np

import glcm
from transforms.errors import GuardedStep, with_retries
from transforms.io.raster import TileWindows, read_tile
from transforms.plan import (ACCELERATOR_SHAPE_EXTRA_PIXELS, PaddingAccount, core_size,
                             example_cores, ladder_padding)
from transforms.records import TextureParams, TileTask
from transforms.texture import visible_gpus


def read_example(task: TileTask, params: TextureParams, read_tile=read_tile,
                 shapes=None) -> Dict[str, np.ndarray]:
    """The model input of ``task``: ``codes`` int32 and ``valid`` bool, both the shape
    ``shapes`` gives (default :data:`EXAMPLE_SHAPES`, this process's), invalid
    outside the scene. Reads are retried.

    ``read_tile(uri, band, tile) -> (values, valid)``: the raster reader
    (:func:`transforms.io.raster.read_tile`; tests pass a failing one)."""
    source = task.source
    values, valid = with_retries(lambda: read_tile(source.uri, source.band, task.tile))
    height, width = (EXAMPLE_SHAPES if shapes is None else shapes)(task, params)
    pad = ((0, height - values.shape[0]), (0, width - values.shape[1]))
    # On the host: on a GPU worker the backend's ops would go to the GPU, one round
    # trip each from every reading thread, queued behind the texture kernel there.
    codes, ok = glcm.quantize(values, params.levels, task.vmin, task.vmax, mask=valid,
                              host=True)
    return {"codes": np.pad(codes, pad), "valid": np.pad(ok, pad)}


def own_shape(task: TileTask, params: TextureParams) -> Tuple[int, int]:
    """The scene's tile core (:func:`transforms.plan.core_size`) plus the halo on both
    sides: the smallest shape that holds every tile of ``task``'s scene."""
    info, size, quantum = task.info, params.tile_size, params.tile_quantum
    return tuple(core_size(extent, size, quantum) + 2 * params.halo
                 for extent in (info.height, info.width))


def tile_shape(task: TileTask, params: TextureParams) -> Tuple[int, int]:
    """The shape that ``task``'s scene's texture examples may share with scenes of
    other sizes: in pixel mode, cores of the ladder where the scene's tiles are small
    (:func:`transforms.plan.example_cores`), plus the halo; else :func:`own_shape`
    (block mode cuts the example into blocks). One shape for all a scene's tiles."""
    if params.mode != "pixel":
        return own_shape(task, params)
    info, halo = task.info, params.halo
    cores = example_cores(info.height, info.width, params.tile_size, halo,
                          len(task.sources), params.tile_quantum)
    return tuple(core + 2 * halo for core in cores)


def ladder_shape(task: TileTask, params: TextureParams) -> Tuple[Tuple[int, int], int]:
    """(shape, extra pixels): the ladder's shape for ``task``'s scene whatever it adds
    (:func:`transforms.plan.ladder_padding`, plus the halo), and the pixels it adds
    over all the scene's examples; :func:`own_shape` and 0 outside pixel mode."""
    if params.mode != "pixel":
        return own_shape(task, params), 0
    info, halo = task.info, params.halo
    _, cores, extra = ladder_padding(info.height, info.width, params.tile_size, halo,
                                     len(task.sources), params.tile_quantum)
    return tuple(core + 2 * halo for core in cores), extra


# Scenes whose shape an accelerator's ExampleShapes remembers (their tiles may arrive
# interleaved with other scenes'); the oldest is forgotten beyond this.
REMEMBERED_SCENES = 1 << 16


class ExampleShapes:
    """The shape each scene's texture examples are padded to, in one process.

    On the CPU (default): the shared :func:`tile_shape` for the first scene of each
    :func:`own_shape`, the own shape for every later scene of it. A new shape compiles
    the kernel once per process (``transforms.plan``): scenes of many sizes then share
    the ladder's few compiled shapes, while a collection of one size (chips of 300²,
    say, whose rung is 384²) pays one compilation more, not the padding on every scene
    (the ladder alone: 1.23x the CPU on forty such clips).

    On an accelerator (``accelerator=True``) a compilation costs far more than padding
    (:data:`transforms.plan.ACCELERATOR_SHAPE_EXTRA_PIXELS`), so scenes take the
    ladder's shape (:func:`ladder_shape`, whatever the size of their tiles) until the
    scenes of their own size have been padded by ``budget`` pixels in all; later
    scenes of that size take their own shape (rent until the rent paid would buy:
    never more than about twice the cheaper of the two, whatever comes next).

    The padding is invalid and only the core is kept: the values do not depend on it
    (tested bit for bit). Thread-safe; a scene keeps the shape it was given first.

    Args:
      accelerator: the tiles are computed on a GPU or TPU.
      budget: on an accelerator, the padded pixels worth one compilation (default
        :data:`~transforms.plan.ACCELERATOR_SHAPE_EXTRA_PIXELS`). On the CPU the
        scene's own padding decides (:func:`tile_shape`).
    """

    def __init__(self, accelerator: bool = False, budget: Optional[int] = None):
        self.accelerator = accelerator
        self._lock = threading.Lock()
        self._first = {}  # (own shape, shared shape) -> the first scene id (CPU)
        # Accelerator: per own shape, the pixels its scenes were padded by.
        self._padded = PaddingAccount(
            ACCELERATOR_SHAPE_EXTRA_PIXELS if budget is None else budget)
        self._given = {}  # scene id -> its shape (accelerator), oldest first

    def __call__(self, task: TileTask, params: TextureParams) -> Tuple[int, int]:
        if self.accelerator:
            return self._on_accelerator(task, params)
        own, shared = own_shape(task, params), tile_shape(task, params)
        if shared == own:
            return own
        scene = task.scene.scene_id
        with self._lock:
            first = self._first.setdefault((own, shared), scene)
        return shared if first == scene else own

    def _on_accelerator(self, task: TileTask, params: TextureParams) -> Tuple[int, int]:
        scene = task.scene.scene_id
        with self._lock:
            shape = self._given.get(scene)
            if shape is not None:
                return shape
            own = own_shape(task, params)
            ladder, extra = ladder_shape(task, params)
            shape = ladder if ladder == own or self._padded.pad(own, extra) else own
            self._given[scene] = shape
            if len(self._given) > REMEMBERED_SCENES:
                del self._given[next(iter(self._given))]
            return shape


# This process's: the DoFns of a worker's threads share the kernels compiled in it.
EXAMPLE_SHAPES = ExampleShapes()
ACCELERATOR_EXAMPLE_SHAPES = ExampleShapes(accelerator=True)


def example_shapes(accelerator: str) -> ExampleShapes:
    """This process's :class:`ExampleShapes` for tiles computed where ``accelerator``
    (``required``, ``optional`` or ``none``, as the texture step's) puts them: on a GPU
    where the backend sees one and ``accelerator`` is not ``none``."""
    on_gpu = accelerator != "none" and bool(visible_gpus())
    return ACCELERATOR_EXAMPLE_SHAPES if on_gpu else EXAMPLE_SHAPES


def read_bands(task: TileTask, read_tile=read_tile) -> Dict[str, np.ndarray]:
    """The model input of ``task`` (model mode): ``values`` float32 (h, w, bands), NaN
    where invalid, over the tile's read window clipped to the scene, so a model sees
    the scene's edge where it is (its own padding, as on the whole scene)."""
    t = task.tile
    bands = []
    for source in task.sources:
        values, valid = with_retries(lambda s=source: read_tile(s.uri, s.band, t))
        inside = (slice(t.pad_top, t.pad_top + t.read_height),
                  slice(t.pad_left, t.pad_left + t.read_width))
        bands.append(np.where(valid[inside], values[inside], np.nan).astype(np.float32))
    return {"values": np.stack(bands, axis=-1)}


class SpreadTiles(beam.PTransform):
    """Spreads TileTasks over the workers, the band tasks of one tile together and in
    band order (a shuffle keyed by tile), so that :class:`ReadTiles` reads a tile's
    bands one right after the other and decodes a pixel-interleaved file's window
    once for all of them; a plain Reshuffle would send each band anywhere."""

    def expand(self, tasks):
        return (tasks
                | "ByTile" >> beam.Map(lambda task: (tile_name(task), task))
                | "Group" >> beam.GroupByKey()
                | "InBandOrder" >> beam.FlatMap(
                    lambda keyed: sorted(keyed[1], key=lambda task: task.band_index)))


def tile_name(task: TileTask) -> str:
    """A tile's shuffle key: its scene and grid position, as text (a deterministic
    key for the shuffle)."""
    key = task.tile.key
    return f"{key.scene_id}/{key.row}/{key.col}"


class ReadTiles(GuardedStep):
    """:func:`read_example` for each TileTask: (task, example) out, the example also
    holding ``read_seconds``; failures to ``errors``.

    ``read_tile``: the raster reader (default: a :class:`TileWindows` per bundle, so
    that the bands of one tile, which :class:`SpreadTiles` sends one after the other,
    decode a pixel-interleaved file's window once); tests pass a failing one.
    ``accelerator``: the texture step's (``required``, ``optional``, ``none``): where
    it puts the tiles decides how their shapes are shared (:func:`example_shapes`).
    """

    STEP, STAGE = "read", "read"

    def __init__(self, params: TextureParams, read_tile=None, accelerator: str = "optional"):
        super().__init__()
        self.params, self.read_tile, self.accelerator = params, read_tile, accelerator
        self._reader = self._shapes = None

    def setup(self):
        self._shapes = example_shapes(self.accelerator)

    def start_bundle(self):
        self._reader = self.read_tile or TileWindows()

    def finish_bundle(self):
        self._reader = None  # the kept window's memory goes with the bundle

    def run(self, task: TileTask):
        start = time.perf_counter()
        if self.params.model is None:
            example = read_example(task, self.params, self._reader, self._shapes)
        else:
            example = read_bands(task, self._reader)
        self.metrics.bytes.inc(sum(int(a.nbytes) for a in example.values()))
        example["read_seconds"] = time.perf_counter() - start
        yield task, example

    def where(self, task: TileTask):
        return task.scene.uri, task.scene.scene_id
