"""Finish a scene: once all its tiles are saved, the COG mosaic (with a model: its
predictions, and the class map), the quicklook and, last, the manifest that marks it
finished; then the run's scratch is removed.

Two steps call :func:`finish_scene`: :class:`FinishAfterLastTile`, right after each
tile is saved (the writer of a scene's last tile finishes it at once), and
:class:`FinishScenes` at the end of the run, for any scene the first did not finish.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import pickle
import platform
import time
from typing import Dict, Iterable, Optional, Sequence

import apache_beam as beam
from affine import Affine

from transforms.errors import GuardedStep
from transforms.io import storage
from transforms.io.cog import (write_class_quicklook, write_classes, write_mosaic,
                               write_quicklook)
from transforms.layout import (CLASSES_NAME, QUICKLOOK_NAME, band_names, claim_scene,
                               outputs_for, read_manifest, remove_scratch, saved_results,
                               write_manifest)
from transforms.metrics import StepMetrics, counter
from transforms.records import Manifest, SceneInfo, TextureParams, TileResult, TileTask

log = logging.getLogger("glcm")


def output_grid(info: SceneInfo, scale: int) -> SceneInfo:
    """The output raster's grid: the input's, or block resolution (ceil(H / block) x
    ceil(W / block) cells, transform scaled by the block) in block mode."""
    if scale == 1:
        return info
    transform = Affine(*info.transform) @ Affine.scale(scale, scale)
    return dataclasses.replace(info, height=-(-info.height // scale),
                               width=-(-info.width // scale),
                               transform=tuple(transform)[:6])


def step_timings(results: Sequence[TileResult]) -> Dict[str, float]:
    """The scene's seconds per step (summed over its tiles and workers): planning,
    then each tile's read, texture and save."""
    totals = {"plan_seconds": results[0].task.plan_seconds}
    for result in results:
        for step, seconds in result.timings:
            totals[f"{step}_seconds"] = totals.get(f"{step}_seconds", 0.0) + seconds
    return {key: round(value, 3) for key, value in totals.items()}


def finish_scene(scene_id: str, results: Iterable[TileResult], params: TextureParams,
                 output: str, run_id: str) -> Manifest:
    """Builds and commits ``OUTPUT/<scene_id>/``: features.tif (with a model:
    predictions.tif, and classes.tif when the outputs are classes), quicklook.png,
    then manifest.json; then deletes the run's tiles of the scene.

    Raises:
      RuntimeError: some of the scene's tiles are missing (they failed; their own
        records say why): nothing is written.
    """
    results = sorted(results, key=lambda r: r.order)
    task = results[0].task
    if len(results) != task.n_tasks:
        raise RuntimeError(f"{task.n_tasks - len(results)} of {task.n_tasks} tiles "
                           f"failed (see their records); no mosaic written")
    started = time.time()
    log.info("%s: all %d tiles saved; writing the mosaic", scene_id, len(results))
    folder = storage.join(output, scene_id)
    info = task.info
    outputs = outputs_for(params)
    if params.model is None:
        names, per_task = band_names(task.sources, params.features), len(params.features)
    else:
        names = list(params.output_names)
        per_task = len(names)
    with storage.workdir(folder) as work:  # built locally, then committed whole
        paths = {name: os.path.join(work, name) for name in outputs}
        mosaic = paths[outputs[0]]
        write_mosaic(mosaic, output_grid(info, params.scale), names, per_task, results,
                     params.cog_compression)
        if CLASSES_NAME in paths:
            write_classes(paths[CLASSES_NAME], mosaic, names)
            write_class_quicklook(paths[QUICKLOOK_NAME], paths[CLASSES_NAME])
        else:
            write_quicklook(paths[QUICKLOOK_NAME], mosaic)
        for name in outputs:
            storage.upload(paths[name], storage.join(folder, name))
    manifest = Manifest(
        scene_id=scene_id, input=task.scene.uri, fingerprint=task.scene.fingerprint,
        params=params.to_json(), params_digest=params.digest(),
        bands=[s.band for s in task.sources],
        quantization={} if params.model else {
            r.task.source.label: [r.task.vmin, r.task.vmax] for r in results},
        band_names=names,
        size=[info.height, info.width], pixels=info.height * info.width, crs=info.crs,
        transform=list(info.transform), warnings=info.warnings, tiles=len(results),
        outputs=list(outputs), versions=versions(),
        workers=dict(collections.Counter(r.worker for r in results)),
        item=dict(task.scene.item, assets=dict(task.scene.assets)) if task.scene.assets
        else {}, run_id=run_id,
        model=dataclasses.asdict(params.model) if params.model else {},
        timings=dict(step_timings(results), mosaic_seconds=round(time.time() - started, 3),
                     finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    write_manifest(manifest, output)
    stale = remove_scratch(output, scene_id, run_id)
    if stale:
        log.info("%s: removed scratch of earlier interrupted runs: %s", scene_id,
                 ", ".join(sorted(stale)))
    log.info("%s: done -> %s", scene_id, folder)
    return manifest


def finished_by(output: str, task: TileTask, params_digest: str, run_id: str) -> bool:
    """Whether run ``run_id`` already finished ``task``'s scene: the manifest says this
    run wrote it, or (another run on the same output may have rewritten it since)
    it describes the same input and parameters and this run's tiles of the scene
    are gone, as finishing deletes them."""
    scene = task.scene
    manifest = read_manifest(output, scene.scene_id)
    if manifest is None:
        return False
    if manifest.run_id == run_id:
        return True
    return (manifest.is_finished(scene.fingerprint, params_digest) and not
            saved_results(output, scene.scene_id, run_id))


class FinishScenes(GuardedStep):
    """:func:`finish_scene` for each (scene_id, [TileResult]) that this run has not
    finished yet (most scenes are finished after their last tile: see
    :class:`FinishAfterLastTile`): finished scene ids out, failures to ``errors``
    (stage ``mosaic``); counts scenes done and pixels."""

    STEP, STAGE = "finish", "mosaic"

    def __init__(self, params: TextureParams, output: str, run_id: str):
        super().__init__()
        self.params, self.output, self.run_id = params, output, run_id
        self.done = counter("scenes_done")
        self.pixels = counter("pixels")

    def where(self, element):
        scene_id, results = element
        return next(iter(results)).task.scene.uri, scene_id

    def run(self, element):
        scene_id, results = element
        results = list(results)
        task = results[0].task
        if finished_by(self.output, task, self.params.digest(), self.run_id):
            # what retried tile writes may have left after it was finished
            remove_scratch(self.output, scene_id, self.run_id)
        else:
            finish_scene(scene_id, results, self.params, self.output, self.run_id)
        self.done.inc()
        self.pixels.inc(task.info.height * task.info.width * len(task.sources))
        yield scene_id


def finish_if_last(result: TileResult, params: TextureParams, output: str,
                   run_id: str) -> Optional[bool]:
    """Finishes ``result``'s scene now if every one of its tiles is saved.

    A batch GroupByKey emits only once all of its input is in, so without this every
    scene's mosaic would wait for the last tile of the whole run; this way a scene is
    written (and safe from a later crash) while other scenes still compute. Of the
    writers that see their scene complete, the one that creates the scene's claim
    file finishes it. If none does, or it fails, :class:`FinishScenes` finishes the
    scene at the end of the run: this step only decides *when*, so it never raises.
    A storage error here (listing the records, creating the claim, building the
    scene) is logged and leaves the scene to that step, instead of failing the
    bundle and recomputing every tile in it.

    Returns:
      True when this call finished the scene; False when it was not the scene's last
      tile or another writer claimed the scene; None when it failed (logged).
    """
    task = result.task
    scene_id = task.scene.scene_id
    try:
        records = saved_results(output, scene_id, run_id)
        if len(records) < task.n_tasks or not claim_scene(output, scene_id, run_id):
            return False
        results = [pickle.loads(storage.read_bytes(uri)) for uri in records]
        finish_scene(scene_id, results, params, output, run_id)
    except Exception as exc:  # noqa: BLE001 - the end-of-run step tries again
        log.warning("%s: finishing after its last tile failed (%s: %s); the finish "
                    "step at the end of the run tries again", scene_id,
                    type(exc).__name__, exc)
        return None
    return True


class FinishAfterLastTile(beam.DoFn):
    """:func:`finish_if_last` for each saved (scene_id, TileResult), passed on
    unchanged (fused with the save: no shuffle); counts the scenes it finished and
    the times it failed."""

    def __init__(self, params: TextureParams, output: str, run_id: str):
        self.params, self.output, self.run_id = params, output, run_id
        self.finished = counter("scenes_finished_after_last_tile")
        self.failures = counter("early_finish_failures")
        self.metrics = StepMetrics("finish")

    def process(self, element):
        _, result = element
        with self.metrics.timed(elements=0):  # the finish step's time, wherever spent
            finished = finish_if_last(result, self.params, self.output, self.run_id)
        if finished:
            self.finished.inc()
        elif finished is None:
            self.failures.inc()
        yield element


def versions() -> Dict[str, str]:
    """The versions a manifest records."""
    import apache_beam
    import keras
    import numpy as np
    import rasterio

    import glcm

    out = {"glcm": glcm.__version__, "keras": keras.__version__,
           "keras_backend": keras.backend.backend(), "apache_beam": apache_beam.__version__,
           "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__,
           "numpy": np.__version__, "python": platform.python_version()}
    try:
        import tensorflow as tf

        out["tensorflow"] = tf.__version__
    except ImportError:
        pass
    return out
