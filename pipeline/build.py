"""The pipeline graph: discover -> plan -> read -> RunInference -> save tiles ->
finish each scene (COG mosaic, quicklook, manifest); every failure to errors.jsonl."""

from __future__ import annotations

import time
import uuid
from typing import Optional

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from pipeline.options import TextureOptions, is_dataflow, params_from
from transforms import storage
from transforms.compute import inference_errors, model_handler
from transforms.errors import ERRORS_TAG, ErrorRecord, WriteErrors
from transforms.finish import FinishScenes
from transforms.params import TextureParams
from transforms.plan import SKIPPED_TAG, PlanScenes
from transforms.read import ReadTiles
from transforms.save_tile import SaveTiles
from transforms.scenes import discover

ERRORS_FILE = "errors.jsonl"


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
               | "Plan" >> beam.ParDo(PlanScenes(params, output, o.force)).with_outputs(
                   ERRORS_TAG, SKIPPED_TAG, main="tasks"))
    read = planned.tasks | "Read" >> beam.ParDo(ReadTiles(params)).with_outputs(
        ERRORS_TAG, main="examples")
    maps, failed = read.examples | "Texture" >> RunInference(
        KeyedModelHandler(model_handler(params))).with_exception_handling()
    saved = maps | "WriteTile" >> beam.ParDo(SaveTiles(params, output, run_id)).with_outputs(
        ERRORS_TAG, main="saved")
    finished = (saved.saved | "ByScene" >> beam.GroupByKey()
                | "Finish" >> beam.ParDo(FinishScenes(params, output, run_id)).with_outputs(
                    ERRORS_TAG, main="done"))
    missing_records = p | "Missing" >> beam.Create(
        [ErrorRecord(uri, None, "discover", "FileNotFoundError",
                     f"{problem}: check the path in the input list")
         for uri, problem in missing])
    texture_failed = failed.failed_inferences | "TextureErrors" >> beam.FlatMap(
        inference_errors)
    errors = ((planned.errors, read.errors, texture_failed, saved.errors, finished.errors,
               missing_records) | "Errors" >> beam.Flatten())
    # On Dataflow no exit code reaches the user: with --fail-on-error the job fails.
    _ = errors | "WriteErrors" >> WriteErrors(
        storage.join(output, ERRORS_FILE), fail_job=o.fail_on_error and is_dataflow(options))
    return {"done": finished.done, "skipped": planned.skipped, "errors": errors}
