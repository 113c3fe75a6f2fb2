"""The pipeline graph: discover -> plan (skip / ranges / tiles) -> read -> RunInference
-> write tiles -> per-scene COG mosaic, quicklook, manifest; errors to errors.jsonl."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Optional, Tuple

import apache_beam as beam
from affine import Affine
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

import glcm
from pipeline.options import TextureOptions, TextureParams, params_from
from transforms.compute import BlockModelHandler, TextureModelHandler
from transforms.raster import (SceneInfo, check_bands, quantization_range, read_tile,
                               scene_info)
from transforms.scenes import Scene, discover
from transforms.tiling import Tile, tiles_for
from transforms.write import (band_names, read_manifest, tile_path, versions,
                              write_json, write_mosaic, write_quicklook, write_tile)

NAMESPACE = "glcm_texture"


@dataclasses.dataclass(frozen=True)
class TileTask:
    """One tile of one band of one scene, with the scene-wide quantization range."""

    scene: Scene
    info: SceneInfo
    bands: Tuple[int, ...]
    band_index: int
    tile: Tile
    vmin: float
    vmax: float
    n_tasks: int


def progress(message: str) -> None:
    """One line per planned scene, computed tile and finished scene, on stderr."""
    print(f"[glcm] {message}", file=sys.stderr, flush=True)


def output_grid(info: SceneInfo, scale: int) -> SceneInfo:
    """The output raster's grid: the input's, or block resolution (ceil(H / block) x
    ceil(W / block) cells, transform scaled by the block) in block mode."""
    if scale == 1:
        return info
    transform = Affine(*info.transform) * Affine.scale(scale, scale)
    return dataclasses.replace(info, height=-(-info.height // scale),
                               width=-(-info.width // scale),
                               transform=tuple(transform)[:6])


def error_record(uri, scene_id, stage, exc) -> dict:
    return {"uri": uri, "scene_id": scene_id, "stage": stage,
            "error": type(exc).__name__, "message": str(exc)}


class PlanScene(beam.DoFn):
    """Skips finished scenes, reads the header and per-band ranges, emits tile tasks."""

    def __init__(self, params: TextureParams, output: str, force: bool):
        self.params, self.output, self.force = params, output, force
        self.skipped = Metrics.counter(NAMESPACE, "scenes_skipped")

    def process(self, scene: Scene):
        manifest = read_manifest(os.path.join(self.output, scene.scene_id, "manifest.json"))
        if (not self.force and manifest and manifest.get("fingerprint") == scene.fingerprint
                and manifest.get("params_digest") == self.params.digest()):
            self.skipped.inc()
            yield beam.pvalue.TaggedOutput("skipped", scene.scene_id)
            return
        try:
            info = scene_info(scene.uri)
            bands = check_bands(scene.uri, info, self.params.bands)
            ranges = [quantization_range(scene.uri, b, self.params.quantize) for b in bands]
            tiles = tiles_for(scene.scene_id, info.height, info.width,
                              self.params.tile_size, self.params.halo)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            yield beam.pvalue.TaggedOutput("errors", error_record(
                scene.uri, scene.scene_id, "plan", exc))
            return
        n_tasks = len(tiles) * len(bands)
        progress(f"{scene.scene_id}: {info.height}x{info.width}, {len(bands)} band(s), "
                 f"{len(tiles)} tile(s)")
        for band_index, (vmin, vmax) in enumerate(ranges):
            for tile in tiles:
                yield TileTask(scene, info, bands, band_index, tile, vmin, vmax, n_tasks)


class ReadTile(beam.DoFn):
    """Reads and quantizes a tile, padded to the common (tile + 2 halo) shape."""

    def __init__(self, params: TextureParams):
        self.params = params

    def process(self, task: TileTask):
        import numpy as np

        try:
            band = task.bands[task.band_index]
            values, valid = read_tile(task.scene.uri, band, task.tile)
            side = self.params.tile_size + 2 * self.params.halo
            pad = ((0, side - values.shape[0]), (0, side - values.shape[1]))
            codes, ok = glcm.quantize(values, self.params.levels, task.vmin, task.vmax,
                                      mask=valid)
            codes = np.pad(np.asarray(codes), pad)
            ok = np.pad(np.asarray(ok), pad)
        except Exception as exc:  # noqa: BLE001
            yield beam.pvalue.TaggedOutput("errors", error_record(
                task.scene.uri, task.scene.scene_id, "read", exc))
            return
        yield task, {"codes": codes.astype(np.int32), "valid": ok}


class WriteTile(beam.DoFn):
    """Keeps the core of a tile's texture maps and saves it for the mosaic."""

    def __init__(self, params: TextureParams, output: str):
        self.params, self.output = params, output

    def process(self, element):
        task, maps = element
        try:
            t, h, scale = task.tile, self.params.halo, self.params.scale
            # block mode: cells of `scale` pixels, a partial cell at the scene edge
            height, width = -(-t.core_height // scale), -(-t.core_width // scale)
            core = maps[h:h + height, h:h + width]
            path = write_tile(tile_path(self.output, task.scene.scene_id, t.key.row,
                                        t.key.col, task.bands[task.band_index]), core)
        except Exception as exc:  # noqa: BLE001
            yield beam.pvalue.TaggedOutput("errors", error_record(
                task.scene.uri, task.scene.scene_id, "write_tile", exc))
            return
        progress(f"{task.scene.scene_id}: tile row {t.key.row} col {t.key.col} band "
                 f"{task.bands[task.band_index]} computed")
        yield task.scene.scene_id, (t.core_row // scale, t.core_col // scale,
                                    task.band_index, task, path)


class FinishScene(beam.DoFn):
    """Mosaic (COG), quicklook and manifest of a scene whose tiles all arrived."""

    def __init__(self, params: TextureParams, output: str):
        self.params, self.output = params, output
        self.done = Metrics.counter(NAMESPACE, "scenes_done")
        self.pixels = Metrics.counter(NAMESPACE, "pixels")

    def process(self, element):
        import shutil

        scene_id, tiles = element
        tiles = sorted(tiles, key=lambda t: t[:3])
        task = tiles[0][3]
        scene = task.scene
        folder = os.path.join(self.output, scene_id)
        started = time.time()
        try:
            if len(tiles) != task.n_tasks:
                raise RuntimeError(f"{task.n_tasks - len(tiles)} of {task.n_tasks} tiles "
                                   f"failed (see their records); no mosaic written")
            mosaic = os.path.join(folder, "features.tif")
            info = task.info
            write_mosaic(mosaic, output_grid(info, self.params.scale), task.bands,
                         self.params.features, tiles)
            write_quicklook(os.path.join(folder, "quicklook.png"), mosaic)
            write_json(os.path.join(folder, "manifest.json"), {
                "scene_id": scene_id, "input": scene.uri, "fingerprint": scene.fingerprint,
                "params": self.params.to_json(), "params_digest": self.params.digest(),
                "bands": list(task.bands),
                "quantization": {str(t[3].bands[t[3].band_index]): [t[3].vmin, t[3].vmax]
                                 for t in tiles},
                "band_names": band_names(task.bands, self.params.features),
                "size": [info.height, info.width], "pixels": info.height * info.width,
                "tiles": len(tiles), "outputs": ["features.tif", "quicklook.png"],
                "versions": versions(),
                "timings": {"mosaic_seconds": round(time.time() - started, 3),
                            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                         time.gmtime())},
            })
            shutil.rmtree(os.path.join(folder, ".tiles"), ignore_errors=True)
        except Exception as exc:  # noqa: BLE001
            yield beam.pvalue.TaggedOutput("errors", error_record(
                scene.uri, scene_id, "mosaic", exc))
            return
        progress(f"{scene_id}: done -> {folder}")
        self.done.inc()
        self.pixels.inc(task.info.height * task.info.width * len(task.bands))
        yield scene_id


def build(p: beam.Pipeline, options: TextureOptions, params: Optional[TextureParams] = None):
    """Adds the texture pipeline to ``p``.

    Returns:
      dict of PCollections: ``done`` and ``skipped`` scene ids, ``errors`` records.

    Raises:
      ValueError: bad flags or no input matched (before any work starts).
    """
    o = options.view_as(TextureOptions)
    params = params or params_from(options)
    if not o.input:
        raise ValueError("no --input given (./run_local.sh without arguments runs the "
                         "built-in sample)")
    if o.output.startswith("gs://"):
        raise ValueError("gs:// output is not implemented yet; write to a local folder")
    output = os.path.abspath(o.output)
    scenes, missing = discover(o.input)
    os.makedirs(output, exist_ok=True)

    planned = (p | "Scenes" >> beam.Create(scenes)
               | "Plan" >> beam.ParDo(PlanScene(params, output, o.force)).with_outputs(
                   "errors", "skipped", main="tasks"))
    read = planned.tasks | "Read" >> beam.ParDo(ReadTile(params)).with_outputs(
        "errors", main="examples")
    if params.mode == "block":
        model = BlockModelHandler(params.features, params.block, params.levels,
                                  params.distances, params.angles)
    else:
        model = TextureModelHandler(params.features, params.window, params.levels,
                                    params.distances, params.angles)
    handler = KeyedModelHandler(model)
    predictions = read.examples | "Texture" >> RunInference(handler)
    written = predictions | "WriteTile" >> beam.ParDo(WriteTile(params, output)).with_outputs(
        "errors", main="written")
    finished = (written.written | "ByScene" >> beam.GroupByKey()
                | "Finish" >> beam.ParDo(FinishScene(params, output)).with_outputs(
                    "errors", main="done"))
    missing_records = p | "Missing" >> beam.Create(
        [{"uri": uri, "scene_id": None, "stage": "discover", "error": "FileNotFoundError",
          "message": problem} for uri, problem in missing])
    errors = ((planned.errors, read.errors, written.errors, finished.errors, missing_records)
              | "Errors" >> beam.Flatten())
    _ = (errors | "ToJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
         | "WriteErrors" >> beam.io.WriteToText(os.path.join(output, "errors"),
                                                file_name_suffix=".jsonl", num_shards=1,
                                                shard_name_template=""))
    return {"done": finished.done, "skipped": planned.skipped, "errors": errors}
