"""The pipeline graph: discover -> (spread) -> plan -> (spread) -> read -> texture
(RunInference) -> save tiles -> finish after the last tile (the writer of a scene's
last tile finishes it: COG mosaic, quicklook, manifest) -> at the end, finish any
scene not finished yet; every failure to errors.jsonl. With --tile-accelerator the
read, texture and save steps carry an accelerator resource hint and every scene is
finished at the end, off the GPU workers."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Callable, Optional

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from pipeline.options import (TextureOptions, add_dataflow_experiments, flag_names,
                              is_dataflow, params_from, tile_accelerator_hint)
from transforms.discover import DiscoverScenes
from transforms.errors import ERRORS_TAG, WriteErrors
from transforms.finish import FinishAfterLastTile, FinishScenes
from transforms.io import storage
from transforms.layout import errors_uri
from transforms.objects import ObjectTexture
from transforms.plan import SKIPPED_TAG, PlanScenes
from transforms.read import ReadTiles, SpreadTiles
from transforms.records import TextureParams
from transforms.save import SaveTiles
from transforms.texture import TILE_OUTCOME, TextureResults, TileModelHandler, model_handler


@dataclasses.dataclass(frozen=True)
class Seams:
    """What the graph calls to read tiles and to make its model handler. Tests pass
    other functions here (a reader that fails, a handler that raises) instead of
    patching module globals.

    Attributes:
      read_tile: ``read_tile(uri, band, tile) -> (values, valid)``; None: the raster
        reader (:class:`transforms.io.raster.TileWindows`, one per bundle).
      model_handler: ``model_handler(params, accelerator, tiles_per_call) ->
        ModelHandler`` of examples -> maps.
    """

    read_tile: Optional[Callable] = None
    model_handler: Callable = model_handler


def build(p: beam.Pipeline, options: TextureOptions, params: Optional[TextureParams] = None,
          seams: Seams = Seams()):
    """Adds the texture pipeline to ``p``.

    Returns:
      dict of PCollections: ``done`` and ``skipped`` scene ids, ``errors`` records.

    Raises:
      ValueError: bad flags (before any work starts). Scenes are found while the
        job runs: an input that matches nothing is an error record.
    """
    o = options.view_as(TextureOptions)
    params = params or params_from(options)
    on_gpu = _gpu_steps(tile_accelerator_hint(options))
    if not o.input:
        raise ValueError("no --input given (./run_local.sh without arguments runs the "
                         "built-in sample)")
    output = storage.normalize(o.output)
    if storage.is_gcs(output):
        storage.split_gcs(output)  # names a bucket
    storage.makedirs(output)
    if is_dataflow(p.options):
        add_dataflow_experiments(p.options)
    # Tile results of this run live under their own folder (see tiles_folder).
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]

    assets = [name.strip() for value in o.asset or () for name in value.split(",")
              if name.strip()]
    discovered = p | "Discover" >> DiscoverScenes(o.input, assets)
    # Breaks fusion after naming: scenes that share a file name (B04.tif in every
    # scene folder) are named under one key, and planning (a header and a
    # decimated read per scene) would otherwise run on the one worker holding it.
    scenes = discovered["scenes"] | "SpreadScenes" >> beam.Reshuffle()
    planned = scenes | "Plan" >> beam.ParDo(
        PlanScenes(params, output, o.force)).with_outputs(ERRORS_TAG, SKIPPED_TAG,
                                                          main="tasks")
    # Breaks fusion: the tiles of one scene spread over every worker, not only the
    # one that planned it (a tile's bands together, read one after the other).
    tasks = planned.tasks | "SpreadTiles" >> SpreadTiles()
    read = tasks | "Read" >> on_gpu(beam.ParDo(ReadTiles(
        params, seams.read_tile, o.accelerator)).with_outputs(ERRORS_TAG, main="examples"))
    if params.objects is not None:  # one texture vector per polygon, no maps
        objects = read.examples | "Objects" >> on_gpu(ObjectTexture(params, output, run_id))
        done, stage_errors = objects["done"], (objects["errors"],)
    else:
        done, stage_errors = _texture_maps(read.examples, params, output, run_id, o, seams,
                                           on_gpu)
    errors = ((discovered["errors"], planned.errors, read.errors) + stage_errors
              | "Errors" >> beam.Flatten())
    # On Dataflow no exit code reaches the user: with --fail-on-error the job fails.
    _ = errors | "WriteErrors" >> WriteErrors(
        errors_uri(output), fail_job=o.fail_on_error and is_dataflow(options),
        parameter_names=flag_names())
    return {"done": done, "skipped": planned.skipped, "errors": errors}


def _gpu_steps(hint: Optional[str]) -> Callable:
    """What marks a step for the GPU workers: with ``--tile-accelerator``, its
    accelerator resource hint (Dataflow's right fitting gives the marked steps
    workers with that GPU, the others the job's own workers); else nothing."""
    if hint is None:
        return lambda transform: transform
    return lambda transform: transform.with_resource_hints(accelerator=hint)


def _texture_maps(examples, params, output, run_id, o, seams, on_gpu):
    """Texture (or model) maps per tile, saved, mosaicked per scene: (done scene ids,
    error outputs)."""
    # Their declared type gives the tiles' maps a coder that sizes them without a
    # pickle (transforms.texture.TextureOutcomeCoder).
    computed = (examples
                | "Texture" >> on_gpu(RunInference(TileModelHandler(
                    seams.model_handler(params, o.accelerator,
                                        o.tiles_per_call))).with_output_types(
                        TILE_OUTCOME))
                | "TextureResults" >> on_gpu(beam.ParDo(TextureResults()).with_outputs(
                    ERRORS_TAG, main="maps")))
    # Set on the collection, not declared on the ParDo: Beam's --runtime_type_check
    # would hold the ParDo's error records to the main output's type too.
    computed.maps.element_type = TILE_OUTCOME
    saved = computed.maps | "WriteTile" >> on_gpu(beam.ParDo(
        SaveTiles(params, output, run_id)).with_outputs(ERRORS_TAG, main="saved"))
    if o.tile_accelerator:
        # The mosaics are the CPU work that would starve the GPU workers: none runs
        # there; every scene is finished after the shuffle, on the job's own workers
        # (in a batch job, once every tile is saved).
        finished_early = saved.saved
    else:
        # Fused with the save: the writer of a scene's last tile finishes the scene.
        finished_early = saved.saved | "FinishAfterLastTile" >> beam.ParDo(
            FinishAfterLastTile(params, output, run_id))
    finished = (finished_early | "ByScene" >> beam.GroupByKey()
                | "Finish" >> beam.ParDo(FinishScenes(params, output, run_id)).with_outputs(
                    ERRORS_TAG, main="done"))
    return finished.done, (computed.errors, saved.errors, finished.errors)
