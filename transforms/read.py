"""Read a tile: its window (core + halo) of one band, quantized with the scene's
range, padded to the common shape every tile of the scene shares; with a model, the
window of every band as float values."""

from __future__ import annotations

import threading
import time
from typing import Dict, Tuple

import apache_beam as beam
import numpy as np

import glcm
from transforms.errors import GuardedStep, with_retries
from transforms.io.raster import TileWindows, read_tile
from transforms.plan import core_size, example_cores
from transforms.records import TextureParams, TileTask


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


class ExampleShapes:
    """The shape each scene's texture examples are padded to, in one process: the
    shared :func:`tile_shape` for the first scene of each :func:`own_shape`, the own
    shape for every later scene of it.

    A new shape compiles the kernel once per process (``transforms.plan``): scenes of
    many sizes then share the ladder's few compiled shapes, while a collection of one
    size (chips of 300², say, whose rung is 384²) pays one compilation more, not the
    padding on every scene (the ladder alone: 1.23x the CPU on forty such clips). The
    padding is invalid and only the core is kept: the values do not depend on it
    (tested bit for bit). Thread-safe; a scene keeps the shape it was given first.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._first = {}  # (own shape, shared shape) -> the first scene id

    def __call__(self, task: TileTask, params: TextureParams) -> Tuple[int, int]:
        own, shared = own_shape(task, params), tile_shape(task, params)
        if shared == own:
            return own
        scene = task.scene.scene_id
        with self._lock:
            first = self._first.setdefault((own, shared), scene)
        return shared if first == scene else own


# This process's: the DoFns of a worker's threads share the kernels compiled in it.
EXAMPLE_SHAPES = ExampleShapes()


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
    """

    STEP, STAGE = "read", "read"

    def __init__(self, params: TextureParams, read_tile=None):
        super().__init__()
        self.params, self.read_tile = params, read_tile
        self._reader = None

    def start_bundle(self):
        self._reader = self.read_tile or TileWindows()

    def finish_bundle(self):
        self._reader = None  # the kept window's memory goes with the bundle

    def run(self, task: TileTask):
        start = time.perf_counter()
        if self.params.model is None:
            example = read_example(task, self.params, self._reader)
        else:
            example = read_bands(task, self._reader)
        self.metrics.bytes.inc(sum(int(a.nbytes) for a in example.values()))
        example["read_seconds"] = time.perf_counter() - start
        yield task, example

    def where(self, task: TileTask):
        return task.scene.uri, task.scene.scene_id
