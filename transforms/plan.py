"""Plan a scene: skip it when finished, else read its header and quantization ranges
and emit one task per tile and band."""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple

import apache_beam as beam

from transforms.errors import ErrorRecord
from transforms.manifest import finished_state
from transforms.metrics import counter
from transforms.params import TextureParams
from transforms.raster import (RasterError, SceneInfo, check_bands, quantization_range,
                               scene_info)
from transforms.records import BandSource, TileTask
from transforms.scenes import Scene
from transforms.tiling import tiles_for

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
    manifest, finished = finished_state(output, scene.scene_id, scene.fingerprint,
                                        params.digest())
    if finished and not force:
        return "skipped", []
    info, sources = scene_sources(scene, params.bands)
    ranges = [quantization_range(s.uri, s.band, params.quantize) for s in sources]
    tiles = tiles_for(scene.scene_id, info.height, info.width, params.tile_size,
                      params.halo)
    why = "new" if manifest is None else ("forced" if finished else "changed")
    n_tasks = len(tiles) * len(sources)
    notes = "".join(f"; note: {w}" for w in info.warnings)
    log.info("%s (%s): %dx%d, %d band(s), %d tile(s)%s", scene.scene_id, why, info.height,
             info.width, len(sources), len(tiles), notes)
    return why, [TileTask(scene, info, sources, band_index, tile, vmin, vmax, n_tasks)
                 for band_index, (vmin, vmax) in enumerate(ranges) for tile in tiles]


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


class PlanScenes(beam.DoFn):
    """:func:`plan_scene` for each Scene: TileTasks out, skipped scene ids to the
    ``skipped`` output, failures to ``errors``; counts new, changed and skipped
    scenes."""

    def __init__(self, params: TextureParams, output: str, force: bool):
        self.params, self.output, self.force = params, output, force
        self.counters = {why: counter(f"scenes_{why}")
                         for why in ("skipped", "new", "changed")}

    def process(self, scene: Scene):
        try:
            why, tasks = plan_scene(scene, self.params, self.output, self.force)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            yield ErrorRecord.from_exception(scene.uri, scene.scene_id, "plan", exc).tagged()
            return
        if why in self.counters:
            self.counters[why].inc()
        if why == "skipped":
            yield beam.pvalue.TaggedOutput(SKIPPED_TAG, scene.scene_id)
        yield from tasks
