"""The pipeline graph: discover -> plan (skip / ranges / tiles) -> read -> RunInference
-> write tiles -> per-scene COG mosaic, quicklook, manifest; errors to errors.jsonl."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import uuid
from typing import Callable, Optional, Tuple, TypeVar

import apache_beam as beam
from affine import Affine
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

import glcm
from pipeline.options import TextureOptions, TextureParams, is_dataflow, params_from
from transforms import storage
from transforms.compute import BlockModelHandler, TextureModelHandler
from transforms.raster import (SceneInfo, check_bands, quantization_range, read_tile,
                               scene_info)
from transforms.scenes import Scene, discover
from transforms.tiling import Tile, tiles_for
from transforms.write import (TILES_PREFIX, band_names, read_manifest, tile_path,
                              tiles_folder, versions, write_json, write_mosaic,
                              write_quicklook, write_tile)

NAMESPACE = "glcm_texture"
# Scratch that killed runs left in a scene folder is removed when the scene is next
# finished, once untouched this long (a run still at work keeps touching its own).
STALE_SCRATCH_SECONDS = 6 * 3600
ATTEMPTS = 3  # tries of a tile's read or write before it becomes an error record
RETRY_DELAY_SECONDS = 0.5
T = TypeVar("T")


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
    transform = Affine(*info.transform) @ Affine.scale(scale, scale)
    return dataclasses.replace(info, height=-(-info.height // scale),
                               width=-(-info.width // scale),
                               transform=tuple(transform)[:6])


def error_record(uri, scene_id, stage, exc) -> dict:
    return {"uri": uri, "scene_id": scene_id, "stage": stage,
            "error": type(exc).__name__, "message": str(exc)}


def with_retries(action: Callable[[], T]) -> T:
    """Runs ``action`` up to ATTEMPTS times: I/O can fail once and work the next time
    (a dropped connection, a busy disk). A ValueError means bad input: not retried."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action()
        except ValueError:
            raise
        except Exception:  # noqa: BLE001 - the last failure is raised below
            if attempt == ATTEMPTS:
                raise
            time.sleep(RETRY_DELAY_SECONDS * attempt)
    raise AssertionError("unreachable")


class PlanScene(beam.DoFn):
    """Skips finished scenes, reads the header and per-band ranges, emits tile tasks.

    A scene is finished when its manifest records the same input fingerprint and
    parameter digest; otherwise it is new (no manifest), or changed.
    """

    def __init__(self, params: TextureParams, output: str, force: bool):
        self.params, self.output, self.force = params, output, force
        self.skipped = Metrics.counter(NAMESPACE, "scenes_skipped")
        self.new = Metrics.counter(NAMESPACE, "scenes_new")
        self.changed = Metrics.counter(NAMESPACE, "scenes_changed")

    def process(self, scene: Scene):
        try:
            manifest = read_manifest(storage.join(self.output, scene.scene_id,
                                                  "manifest.json"))
            finished = (manifest is not None
                        and manifest.get("fingerprint") == scene.fingerprint
                        and manifest.get("params_digest") == self.params.digest())
            if finished and not self.force:
                self.skipped.inc()
                yield beam.pvalue.TaggedOutput("skipped", scene.scene_id)
                return
            info = scene_info(scene.uri)
            bands = check_bands(scene.uri, info, self.params.bands)
            ranges = [quantization_range(scene.uri, b, self.params.quantize) for b in bands]
            tiles = tiles_for(scene.scene_id, info.height, info.width,
                              self.params.tile_size, self.params.halo)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            yield beam.pvalue.TaggedOutput("errors", error_record(
                scene.uri, scene.scene_id, "plan", exc))
            return
        why = "new" if manifest is None else ("forced" if finished else "changed")
        if why == "new":
            self.new.inc()
        elif why == "changed":
            self.changed.inc()
        n_tasks = len(tiles) * len(bands)
        notes = "".join(f"; note: {w}" for w in info.warnings)
        progress(f"{scene.scene_id} ({why}): {info.height}x{info.width}, {len(bands)} "
                 f"band(s), {len(tiles)} tile(s){notes}")
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
            values, valid = with_retries(lambda: read_tile(task.scene.uri, band, task.tile))
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

    def __init__(self, params: TextureParams, output: str, run_id: str):
        self.params, self.output, self.run_id = params, output, run_id

    def process(self, element):
        task, maps = element
        try:
            t, h, scale = task.tile, self.params.halo, self.params.scale
            # block mode: cells of `scale` pixels, a partial cell at the scene edge
            height, width = -(-t.core_height // scale), -(-t.core_width // scale)
            core = maps[h:h + height, h:h + width]
            path = tile_path(self.output, task.scene.scene_id, self.run_id, t.key.row,
                             t.key.col, task.bands[task.band_index])
            with_retries(lambda: write_tile(path, core))
        except Exception as exc:  # noqa: BLE001
            yield beam.pvalue.TaggedOutput("errors", error_record(
                task.scene.uri, task.scene.scene_id, "write_tile", exc))
            return
        progress(f"{task.scene.scene_id}: tile row {t.key.row} col {t.key.col} band "
                 f"{task.bands[task.band_index]} computed")
        yield task.scene.scene_id, (t.core_row // scale, t.core_col // scale,
                                    task.band_index, task, path)


class FinishScene(beam.DoFn):
    """Mosaic (COG), quicklook and manifest of a scene whose tiles all arrived.

    The manifest is committed last: a scene is finished exactly when its manifest
    exists, and its features.tif and quicklook.png are then complete.
    """

    def __init__(self, params: TextureParams, output: str, run_id: str):
        self.params, self.output, self.run_id = params, output, run_id
        self.done = Metrics.counter(NAMESPACE, "scenes_done")
        self.pixels = Metrics.counter(NAMESPACE, "pixels")

    def process(self, element):
        scene_id, tiles = element
        tiles = sorted(tiles, key=lambda t: t[:3])
        task = tiles[0][3]
        scene = task.scene
        folder = storage.join(self.output, scene_id)
        started = time.time()
        try:
            if len(tiles) != task.n_tasks:
                raise RuntimeError(f"{task.n_tasks - len(tiles)} of {task.n_tasks} tiles "
                                   f"failed (see their records); no mosaic written")
            info = task.info
            with storage.workdir(folder) as work:
                mosaic = os.path.join(work, "features.tif")
                quicklook = os.path.join(work, "quicklook.png")
                write_mosaic(mosaic, output_grid(info, self.params.scale), task.bands,
                             self.params.features, tiles)
                write_quicklook(quicklook, mosaic)
                storage.upload(mosaic, storage.join(folder, "features.tif"))
                storage.upload(quicklook, storage.join(folder, "quicklook.png"))
            write_json(storage.join(folder, "manifest.json"), {
                "scene_id": scene_id, "input": scene.uri, "fingerprint": scene.fingerprint,
                "params": self.params.to_json(), "params_digest": self.params.digest(),
                "bands": list(task.bands),
                "quantization": {str(t[3].bands[t[3].band_index]): [t[3].vmin, t[3].vmax]
                                 for t in tiles},
                "band_names": band_names(task.bands, self.params.features),
                "size": [info.height, info.width], "pixels": info.height * info.width,
                "crs": info.crs, "transform": list(info.transform),
                "warnings": info.warnings,
                "tiles": len(tiles), "outputs": ["features.tif", "quicklook.png"],
                "versions": versions(),
                "timings": {"mosaic_seconds": round(time.time() - started, 3),
                            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                         time.gmtime())},
            })
            own = tiles_folder(self.output, scene_id, self.run_id)
            storage.delete_tree(own)
            stale = storage.remove_stale(
                folder, (TILES_PREFIX, storage.WORKDIR_PREFIX, storage.TEMPORARY_PREFIX),
                keep=own.rsplit("/", 1)[-1], older_than_seconds=STALE_SCRATCH_SECONDS)
            if stale:
                progress(f"{scene_id}: removed scratch of earlier interrupted runs: "
                         f"{', '.join(sorted(stale))}")
        except Exception as exc:  # noqa: BLE001
            yield beam.pvalue.TaggedOutput("errors", error_record(
                scene.uri, scene_id, "mosaic", exc))
            return
        progress(f"{scene_id}: done -> {folder}")
        self.done.inc()
        self.pixels.inc(task.info.height * task.info.width * len(task.bands))
        yield scene_id


def inference_errors(failure) -> list:
    """Error records for a batch RunInference could not compute."""
    batch, exc = failure
    exc = exc if isinstance(exc, BaseException) else RuntimeError(str(exc))
    return [error_record(task.scene.uri, task.scene.scene_id, "texture", exc)
            for task, _ in batch]


def fail_if_any(records: list) -> None:
    if records:
        raise RuntimeError(f"{len(records)} scene(s) or tile(s) failed (--fail-on-error); "
                           f"see errors.jsonl")


def write_errors(records: list, uri: str) -> None:
    """The run's dead-letter file, one JSON object per line, sorted (committed whole;
    empty when nothing failed)."""
    lines = sorted(json.dumps(r, sort_keys=True) for r in records)
    storage.write_bytes(uri, "".join(line + "\n" for line in lines).encode())


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
    output = storage.normalize(o.output)
    if storage.is_gcs(output):
        storage.split_gcs(output)  # names a bucket
    scenes, missing = discover(o.input)
    storage.makedirs(output)
    # Tile results of this run live under their own folder (see tiles_folder).
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]

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
    predictions, failed = (read.examples | "Texture" >> RunInference(
        KeyedModelHandler(model)).with_exception_handling())
    inference_failed = failed.failed_inferences | "TextureErrors" >> beam.FlatMap(
        inference_errors)
    written = predictions | "WriteTile" >> beam.ParDo(
        WriteTile(params, output, run_id)).with_outputs("errors", main="written")
    finished = (written.written | "ByScene" >> beam.GroupByKey()
                | "Finish" >> beam.ParDo(FinishScene(params, output, run_id)).with_outputs(
                    "errors", main="done"))
    missing_records = p | "Missing" >> beam.Create(
        [{"uri": uri, "scene_id": None, "stage": "discover", "error": "FileNotFoundError",
          "message": f"{problem}: check the path in the input list"}
         for uri, problem in missing])
    errors = ((planned.errors, read.errors, inference_failed, written.errors,
               finished.errors, missing_records) | "Errors" >> beam.Flatten())
    all_errors = errors | "AllErrors" >> beam.combiners.ToList()
    _ = all_errors | "WriteErrors" >> beam.Map(write_errors,
                                               storage.join(output, "errors.jsonl"))
    if o.fail_on_error and is_dataflow(options):
        # No process exit code to set there: the job itself fails.
        _ = all_errors | "FailOnError" >> beam.Map(fail_if_any)
    return {"done": finished.done, "skipped": planned.skipped, "errors": errors}
