"""Save a tile: keep the core of its texture maps (the halo only fed the windows)
where its scene's mosaic step will read it; the writer of a scene's last tile then
finishes the scene at once."""

from __future__ import annotations

import logging
import os
import pickle
import socket
from typing import Optional

import apache_beam as beam
import numpy as np

from transforms import storage
from transforms.errors import ErrorRecord, with_retries
from transforms.finish import finish_scene
from transforms.metrics import counter
from transforms.params import TextureParams
from transforms.records import TileResult, TileTask
from transforms.write import (RESULT_SUFFIX, result_path, tile_path, tiles_folder,
                              write_tile)

# Created (exclusively) in a run's tile folder by the writer that finishes the scene.
FINISH_CLAIM = "finishing"

log = logging.getLogger("glcm")


def save_tile(task: TileTask, maps: np.ndarray, params: TextureParams, output: str,
              run_id: str) -> TileResult:
    """Saves the core of ``maps`` (the model's output for ``task``), then its
    :class:`TileResult` beside it (:func:`~transforms.write.result_path`); writes are
    retried. In block mode the core is in cells of ``block`` pixels, with a partial
    cell at the scene's edge."""
    t, h, scale = task.tile, params.halo, params.scale
    height, width = -(-t.core_height // scale), -(-t.core_width // scale)
    path = tile_path(output, task.scene.scene_id, run_id, t.key.row, t.key.col,
                     task.band_index)
    with_retries(lambda: write_tile(path, maps[h:h + height, h:h + width]))
    result = TileResult(task, t.core_row // scale, t.core_col // scale, path,
                        worker=f"{socket.gethostname()}:{os.getpid()}")
    # The record last: a record present means its tile is complete.
    record = pickle.dumps(result)
    with_retries(lambda: storage.write_bytes(result_path(path), record))
    log.info("%s: tile row %d col %d band %s computed", task.scene.scene_id, t.key.row,
             t.key.col, task.source.label)
    return result


def finish_if_last(result: TileResult, params: TextureParams, output: str,
                   run_id: str) -> Optional[bool]:
    """Finishes ``result``'s scene now if every one of its tiles is saved.

    A batch GroupByKey emits only once all of its input is in, so without this every
    scene's mosaic would wait for the last tile of the whole run; this way a scene is
    written (and safe from a later crash) while other scenes still compute. Of the
    writers that see their scene complete, the one that creates the scene's claim
    file finishes it. If none does, or it fails, :class:`~transforms.finish.
    FinishScenes` finishes the scene at the end of the run: this step only decides
    *when*, so it never raises. A storage error here (listing the records, creating
    the claim, building the scene) is logged and leaves the scene to that step,
    instead of failing the bundle and recomputing every tile in it.

    Returns:
      True when this call finished the scene; False when it was not the scene's last
      tile or another writer claimed the scene; None when it failed (logged).
    """
    task = result.task
    scene_id = task.scene.scene_id
    folder = tiles_folder(output, scene_id, run_id)
    try:
        records = storage.list_files(folder, RESULT_SUFFIX)
        if len(records) < task.n_tasks or not storage.create_exclusive(
                storage.join(folder, FINISH_CLAIM)):
            return False
        results = [pickle.loads(storage.read_bytes(uri)) for uri in records]
        finish_scene(scene_id, results, params, output, run_id)
    except Exception as exc:  # noqa: BLE001 - the end-of-run step tries again
        log.warning("%s: finishing after its last tile failed (%s: %s); the finish "
                    "step at the end of the run tries again", scene_id,
                    type(exc).__name__, exc)
        return None
    return True


class SaveTiles(beam.DoFn):
    """:func:`save_tile` for each (task, maps): (scene_id, TileResult) out, ready to
    group by scene, then :func:`finish_if_last`; failures to ``errors``."""

    def __init__(self, params: TextureParams, output: str, run_id: str):
        self.params, self.output, self.run_id = params, output, run_id
        self.finished_early = counter("scenes_finished_after_last_tile")
        self.early_failures = counter("early_finish_failures")

    def process(self, element):
        task, maps = element
        try:
            result = save_tile(task, maps, self.params, self.output, self.run_id)
        except Exception as exc:  # noqa: BLE001
            yield ErrorRecord.from_exception(task.scene.uri, task.scene.scene_id,
                                             "write_tile", exc).tagged()
            return
        yield task.scene.scene_id, result
        finished = finish_if_last(result, self.params, self.output, self.run_id)
        if finished:
            self.finished_early.inc()
        elif finished is None:
            self.early_failures.inc()
