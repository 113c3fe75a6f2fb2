"""Save a tile: keep the core of its texture maps (the halo only fed the windows)
where its scene's finish step will read it."""

from __future__ import annotations

import logging
import os
import pickle
import socket
import time
from typing import Tuple

import numpy as np

from transforms.errors import GuardedStep, with_retries
from transforms.io import storage
from transforms.io.cog import save_tile_bands
from transforms.layout import result_path, tile_path
from transforms.records import TextureParams, Tile, TileResult, TileTask

log = logging.getLogger("glcm")


def core_offset(tile: Tile, params: TextureParams) -> Tuple[int, int]:
    """Where the core starts in the model's output for ``tile``: at its corner in
    pixel and block mode (the texture layer leaves the halo out of its output, block
    mode has none), after the part of the halo inside the scene in model mode (model
    examples are the read window as it is)."""
    if params.model is not None:
        return tile.core_row - tile.read_row, tile.core_col - tile.read_col
    return 0, 0


def save_tile(task: TileTask, maps: np.ndarray, params: TextureParams, output: str,
              run_id: str, timings=()) -> TileResult:
    """Saves the core of ``maps`` (the model's output for ``task``) as the mosaic
    reads it (:func:`~transforms.io.cog.save_tile_bands`), then its :class:`TileResult` beside it
    (:func:`~transforms.layout.result_path`); each write is atomic and retried. In
    block mode the core is in cells of ``block`` pixels, with a partial cell at the
    scene's edge. ``timings``: the tile's (step, seconds) so far; the save's own
    time is added."""
    started = time.perf_counter()
    t, scale = task.tile, params.scale
    top, left = core_offset(t, params)
    height, width = -(-t.core_height // scale), -(-t.core_width // scale)
    path = tile_path(output, task.scene.scene_id, run_id, t.key.row, t.key.col,
                     task.band_index)
    # The strided core as it is: save_npy makes it contiguous a block at a time
    # (np.save would write it element by element: a 1024² x 8-feature tile 183 ms).
    core = maps[top:top + height, left:left + width]
    with_retries(lambda: save_tile_bands(path, core))
    result = TileResult(task, t.core_row // scale, t.core_col // scale, path,
                        worker=f"{socket.gethostname()}:{os.getpid()}",
                        timings=tuple(timings) + (("save", time.perf_counter() - started),))
    # The record last: a record present means its tile is complete.
    record = pickle.dumps(result)
    with_retries(lambda: storage.write_bytes(result_path(path), record))
    log.info("%s: tile row %d col %d band %s computed", task.scene.scene_id, t.key.row,
             t.key.col, task.source.label)
    return result


class SaveTiles(GuardedStep):
    """:func:`save_tile` for each (task, TextureOutput): (scene_id, TileResult) out;
    failures to ``errors`` (stage ``write_tile``)."""

    STEP, STAGE = "save", "write_tile"

    def __init__(self, params: TextureParams, output: str, run_id: str):
        super().__init__()
        self.params, self.output, self.run_id = params, output, run_id

    def where(self, element):
        task = element[0]
        return task.scene.uri, task.scene.scene_id

    def run(self, element):
        task, out = element
        timings = (("read", out.read_seconds), ("texture", out.texture_seconds),
                   ("texture_wait", out.wait_seconds))
        result = save_tile(task, out.maps, self.params, self.output, self.run_id, timings)
        self.metrics.bytes.inc(int(out.maps.nbytes))
        yield task.scene.scene_id, result
