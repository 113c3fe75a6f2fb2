"""Plan a scene: skip it when finished, else read its header and quantization ranges
and emit one task per tile and band (with a model: one task per tile, every band)."""

from __future__ import annotations

import logging
import threading
import time
from typing import List, Optional, Sequence, Tuple

import apache_beam as beam

from transforms.errors import GuardedStep
from transforms.io.raster import RasterError, check_bands, quantization_range, scene_info
from transforms.layout import finished_state
from transforms.metrics import counter
from transforms.records import (TILE_QUANTUM, BandSource, ModelRef, ParameterError, Scene,
                                SceneInfo, TextureParams, Tile, TileKey, TileTask)

SKIPPED_TAG = "skipped"
log = logging.getLogger("glcm")


def plan_scene(scene: Scene, params: TextureParams, output: str,
               force: bool = False) -> Tuple[str, List[TileTask]]:
    """Decides what to do with ``scene``.

    Returns:
      (why, tasks): why is ``skipped`` (finished with the same input and parameters;
      no tasks), ``new`` (no manifest), ``changed`` (a manifest of another input or
      parameters) or ``forced`` (finished, recomputed for ``force``).

    Raises:
      ValueError (RasterError): the scene cannot be read, has no valid pixel, or lacks
        a requested band.
    """
    started = time.perf_counter()
    manifest, finished = finished_state(output, scene.scene_id, scene.fingerprint,
                                        params.digest())
    if finished and not force:
        return "skipped", []
    info, sources = scene_sources(scene, params.bands)
    if params.objects is not None and info.crs is None:
        raise RasterError(f"{scene.uri} has no CRS: the polygons of "
                          f"{params.objects.uri} cannot be placed on it; give the raster "
                          f"a CRS (e.g. gdal_edit.py -a_srs EPSG:...)")
    if params.model is None:
        ranges = [quantization_range(s.uri, s.band, params.quantize) for s in sources]
    else:
        # one task per tile takes every band; the model quantizes on its own
        check_model_bands(scene, sources, params.model)
        ranges = [(float("nan"), float("nan"))]
    tiles = tiles_for(scene.scene_id, info.height, info.width, params.tile_size,
                      params.halo, params.tile_quantum)
    why = "new" if manifest is None else ("forced" if finished else "changed")
    n_tasks = len(tiles) * len(ranges)
    notes = "".join(f"; note: {w}" for w in info.warnings)
    log.info("%s (%s): %dx%d, %d band(s), %d tile(s)%s", scene.scene_id, why, info.height,
             info.width, len(sources), len(tiles), notes)
    seconds = time.perf_counter() - started
    return why, [TileTask(scene, info, sources, band_index, tile, vmin, vmax, n_tasks,
                          seconds)
                 for band_index, (vmin, vmax) in enumerate(ranges) for tile in tiles]


def check_model_bands(scene: Scene, sources: Sequence[BandSource], model: ModelRef) -> None:
    """ParameterError (``bands``) when the scene's selected bands are not the model's
    channels in number."""
    if len(sources) != model.channels:
        raise ParameterError(
            "bands", f"{scene.uri}: the model {model.uri} takes {model.channels} "
                     f"channel(s), but the scene has {len(sources)} selected band(s) "
                     f"({', '.join(s.name for s in sources)}): select {model.channels}")


def scene_sources(scene: Scene, bands: Optional[Sequence[int]]
                  ) -> Tuple[SceneInfo, Tuple[BandSource, ...]]:
    """The scene's grid and its output bands: the raster's bands, or every asset's
    bands in --asset order (``bands`` selects within each file).

    Raises:
      RasterError / ValueError: a file cannot be read, lacks a band, or a STAC
        item's assets lie on different grids.
    """
    if not scene.assets:
        info = scene_info(scene.uri)
        return info, tuple(BandSource(scene.uri, b)
                           for b in check_bands(scene.uri, info, bands))
    first, sources = None, []
    for name, href in scene.assets:
        info = scene_info(href)
        if first is None:
            first = (name, info)
        elif (info.height, info.width, info.crs, info.transform) != (
                first[1].height, first[1].width, first[1].crs, first[1].transform):
            raise RasterError(
                f"STAC item {scene.scene_id}: assets {first[0]!r} "
                f"({first[1].height}x{first[1].width}) and {name!r} "
                f"({info.height}x{info.width}) are not on the same grid; texture needs "
                f"one grid per scene: choose assets of the same resolution, or "
                f"resample them first")
        selected = check_bands(href, info, bands)
        sources += [BandSource(href, b, name, single=info.count == 1) for b in selected]
    return first[1], tuple(sources)


def core_size(extent: int, tile: int, quantum: int = TILE_QUANTUM) -> int:
    """The tile core along one side of ``extent`` pixels: the fewest cores of at most
    ``tile`` pixels, made as even as possible and rounded up to a multiple of
    ``quantum`` (never above ``tile``); the last core takes what is left.

    Every tile of a scene is padded to this core plus the halo, so an edge
    that leaves a sliver costs a sliver, not a whole tile: 2,500 pixels with tile
    1,024 are cores of 848, 848 and 804 (not 1,024, 1,024 and 452, computed as three
    of 1,024), a 10,980-pixel Sentinel-2 side ten of 1,008 and one of 900.

    Args:
      extent: the scene's height or width (>= 1).
      tile: the largest core (>= 1), the ``--tile`` option.
      quantum: cores are multiples of it where ``tile`` allows (>= 1; the block
        in block mode, so that blocks stay on the scene's grid).
    """
    count = -(-extent // tile)
    even = -(-extent // count)
    return min(tile, -(-even // quantum) * quantum)


# A tile shape the texture kernel has not run on compiles it once per worker process:
# 2.6-4.1 CPU-s on 2 vCPUs, as much as computing 1.5-3 M pixels
# (docs/performance-history.md, "Tile shapes shared between scenes"). Scenes of many
# sizes (clips of an area of interest, chips) would compile once each. So the
# examples of a scene with small tiles may be padded to cores of :func:`ladder_side`,
# which scenes of other sizes share, where that computes at most this many pixels in
# vain over all its tiles and bands (transforms.read.ExampleShapes decides which
# scenes).
SHARED_SHAPE_EXTRA_PIXELS = 1 << 20
# On a GPU the same compilation runs on the host's CPU while the GPU waits: on a lent
# H200 with JAX a first call, compiling, took 2.5-7.9 s, and a pipeline tile then
# 0.04-0.06 s (17.6-24.9 M px/s), so one compilation is worth 44-200 M pixels there.
# This budget, a fraction of that, stays below one compilation on a GPU several times
# slower (an L4 or T4: not measured) too (transforms.read.ExampleShapes).
ACCELERATOR_SHAPE_EXTRA_PIXELS = 1 << 24


class PaddingAccount:
    """Rent or buy, per key: padding (pixels computed in vain so that a compiled
    shape serves again) is accepted until that key's padding would pass ``budget``
    pixels, about what one compilation costs; after that the caller compiles. Never
    more than about twice the cheaper of the two, whatever comes next. Thread-safe;
    keys are hashable (tile shapes, batch sizes).
    """

    def __init__(self, budget: int):
        self.budget = budget
        self._lock = threading.Lock()
        self._spent = {}  # key -> pixels padded so far

    def pad(self, key, pixels: int) -> bool:
        """Whether ``pixels`` more padding for ``key`` is within the budget; if so, it
        is counted as spent."""
        with self._lock:
            spent = self._spent.get(key, 0) + pixels
            if spent > self.budget:
                return False
            self._spent[key] = spent
            return True


# The smallest side of the ladder: texture_map rounds smaller images up to
# multiples of 32 itself.
LADDER_MIN_SIDE = 64


def ladder_side(side: int) -> int:
    """The smallest side of the ladder 64, 96, 128, 192, 256, 384, 512, 768, 1024, ...
    (2^k and 3 x 2^(k-1)) that holds ``side``: at most 1.5 times ``side``, and sides
    of chips (256, 512, 1024, ...) are their own."""
    if side < 1:
        raise ValueError(f"side must be >= 1, got {side}")
    step = LADDER_MIN_SIDE
    while step < side:
        if step * 3 // 2 >= side:
            return step * 3 // 2
        step *= 2
    return step


def ladder_padding(height: int, width: int, tile: int, halo: int, bands: int = 1,
                   quantum: int = TILE_QUANTUM) -> Tuple[Tuple[int, int], Tuple[int, int], int]:
    """(own cores, ladder cores, extra pixels) of a ``height`` x ``width`` scene of
    ``bands`` bands: its tile core per side (:func:`core_size`), that core's
    :func:`ladder_side` per side, and the pixels the ladder's examples (plus ``halo``
    on each side) add over all the scene's examples (tiles x bands)."""
    cores = (core_size(height, tile, quantum), core_size(width, tile, quantum))
    examples = -(-height // cores[0]) * -(-width // cores[1]) * bands
    shared = tuple(ladder_side(c) for c in cores)
    extra = examples * ((shared[0] + 2 * halo) * (shared[1] + 2 * halo)
                        - (cores[0] + 2 * halo) * (cores[1] + 2 * halo))
    return cores, shared, extra


def example_cores(height: int, width: int, tile: int, halo: int, bands: int = 1,
                  quantum: int = TILE_QUANTUM) -> Tuple[int, int]:
    """The (rows, cols) of core every texture example of a ``height`` x ``width`` scene
    of ``bands`` bands is padded to on the CPU (plus ``halo`` on each side): its tile
    core (:func:`core_size`), or that core's :func:`ladder_side` on both sides where
    the larger examples add at most :data:`SHARED_SHAPE_EXTRA_PIXELS` over all the
    scene's examples (tiles x bands), so that scenes of nearby sizes share one
    compiled kernel."""
    cores, shared, extra = ladder_padding(height, width, tile, halo, bands, quantum)
    return shared if extra <= SHARED_SHAPE_EXTRA_PIXELS else cores


def tiles_for(scene_id: str, height: int, width: int, tile: int, halo: int,
              quantum: int = TILE_QUANTUM) -> List[Tile]:
    """Splits a height x width scene into cores of at most tile x tile pixels
    (:func:`core_size` per side: as even as possible, smaller at the last row and
    column).

    Args:
      scene_id: scene the tiles belong to.
      height, width: scene size in pixels (>= 1).
      tile: largest core size (>= 1).
      halo: pixels read around each core (>= 0): ``glcm.texture_halo(window,
        distances)`` makes per-tile texture maps join seamlessly.
      quantum: cores are multiples of it (:func:`core_size`).

    Returns:
      Tiles in row-major order; their cores cover the scene exactly once.

    Raises:
      ValueError: a non-positive size, tile, or a negative halo.
    """
    if height < 1 or width < 1:
        raise ValueError(f"scene {scene_id!r} has no pixels ({height}x{width})")
    if tile < 1:
        raise ParameterError("tile", f"tile must be >= 1, got {tile}")
    if halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    core_h, core_w = core_size(height, tile, quantum), core_size(width, tile, quantum)
    out = []
    for gr, r0 in enumerate(range(0, height, core_h)):
        for gc, c0 in enumerate(range(0, width, core_w)):
            h, w = min(core_h, height - r0), min(core_w, width - c0)
            top, left = max(0, r0 - halo), max(0, c0 - halo)
            bottom, right = min(height, r0 + h + halo), min(width, c0 + w + halo)
            out.append(Tile(TileKey(scene_id, gr, gc), r0, c0, h, w, top, left,
                            bottom - top, right - left, top - (r0 - halo),
                            left - (c0 - halo), (r0 + h + halo) - bottom,
                            (c0 + w + halo) - right))
    return out


class PlanScenes(GuardedStep):
    """:func:`plan_scene` for each Scene: TileTasks out, skipped scene ids to the
    ``skipped`` output, failures to ``errors``; counts new, changed and skipped
    scenes."""

    STEP, STAGE = "plan", "plan"

    def __init__(self, params: TextureParams, output: str, force: bool):
        super().__init__()
        self.params, self.output, self.force = params, output, force
        self.counters = {why: counter(f"scenes_{why}")
                         for why in ("skipped", "new", "changed")}

    def where(self, scene: Scene):
        return scene.uri, scene.scene_id

    def run(self, scene: Scene):
        why, tasks = plan_scene(scene, self.params, self.output, self.force)
        if why in self.counters:
            self.counters[why].inc()
        if why == "skipped":
            yield beam.pvalue.TaggedOutput(SKIPPED_TAG, scene.scene_id)
        yield from tasks
