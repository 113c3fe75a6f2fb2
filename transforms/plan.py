"""Plan a scene: skip it when finished, else read its header and quantization ranges
and emit one task per tile and band."""

from __future__ import annotations

import logging
from typing import List, Tuple

import apache_beam as beam

from transforms.errors import ErrorRecord
from transforms.manifest import finished_state
from transforms.metrics import counter
from transforms.params import TextureParams
from transforms.raster import check_bands, quantization_range, scene_info
from transforms.records import TileTask
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
    info = scene_info(scene.uri)
    bands = check_bands(scene.uri, info, params.bands)
    ranges = [quantization_range(scene.uri, b, params.quantize) for b in bands]
    tiles = tiles_for(scene.scene_id, info.height, info.width, params.tile_size,
                      params.halo)
    why = "new" if manifest is None else ("forced" if finished else "changed")
    n_tasks = len(tiles) * len(bands)
    notes = "".join(f"; note: {w}" for w in info.warnings)
    log.info("%s (%s): %dx%d, %d band(s), %d tile(s)%s", scene.scene_id, why, info.height,
             info.width, len(bands), len(tiles), notes)
    return why, [TileTask(scene, info, bands, band_index, tile, vmin, vmax, n_tasks)
                 for band_index, (vmin, vmax) in enumerate(ranges) for tile in tiles]


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
