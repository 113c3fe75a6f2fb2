"""Read a tile: its window (core + halo) of one band, quantized with the scene's
range, padded to the common shape every tile of the run shares."""

from __future__ import annotations

from typing import Dict

import apache_beam as beam
import numpy as np

import glcm
from transforms.errors import tagged, with_retries
from transforms.io.raster import read_tile
from transforms.records import ErrorRecord, TextureParams, TileTask


def read_example(task: TileTask, params: TextureParams) -> Dict[str, np.ndarray]:
    """The model input of ``task``: ``codes`` int32 and ``valid`` bool, both
    (tile + 2 halo) square, invalid outside the scene. Reads are retried."""
    source = task.source
    values, valid = with_retries(lambda: read_tile(source.uri, source.band, task.tile))
    side = params.tile_size + 2 * params.halo
    pad = ((0, side - values.shape[0]), (0, side - values.shape[1]))
    codes, ok = glcm.quantize(values, params.levels, task.vmin, task.vmax, mask=valid)
    return {"codes": np.pad(np.asarray(codes), pad).astype(np.int32),
            "valid": np.pad(np.asarray(ok), pad)}


class ReadTiles(beam.DoFn):
    """:func:`read_example` for each TileTask: (task, example) out, failures to
    ``errors``."""

    def __init__(self, params: TextureParams):
        self.params = params

    def process(self, task: TileTask):
        try:
            example = read_example(task, self.params)
        except Exception as exc:  # noqa: BLE001
            yield tagged(ErrorRecord.from_exception(task.scene.uri, task.scene.scene_id, "read",
                                             exc))
            return
        yield task, example
