"""Finish a scene: once all its tiles arrived, the COG mosaic, the quicklook and,
last, the manifest that marks it finished; then the run's scratch is removed."""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import time
from typing import Iterable

import apache_beam as beam
from affine import Affine

from transforms import storage
from transforms.errors import ErrorRecord
from transforms.manifest import Manifest, manifest_uri
from transforms.metrics import counter
from transforms.params import TextureParams
from transforms.raster import SceneInfo
from transforms.records import TileResult, TileTask
from transforms.write import (RESULT_SUFFIX, TILES_PREFIX, band_names, tiles_folder,
                              versions, write_mosaic, write_quicklook)

# Scratch that killed runs left in a scene folder is removed when the scene is next
# finished, once untouched this long (a run still at work keeps touching its own).
STALE_SCRATCH_SECONDS = 6 * 3600
OUTPUTS = ("features.tif", "quicklook.png")
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


def finish_scene(scene_id: str, results: Iterable[TileResult], params: TextureParams,
                 output: str, run_id: str) -> Manifest:
    """Builds and commits ``OUTPUT/<scene_id>/``: features.tif, quicklook.png, then
    manifest.json; then deletes the run's tiles of the scene.

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
    folder = storage.join(output, scene_id)
    info = task.info
    with storage.workdir(folder) as work:  # built locally, then committed whole
        mosaic, quicklook = (os.path.join(work, name) for name in OUTPUTS)
        write_mosaic(mosaic, output_grid(info, params.scale), task.sources,
                     params.features, results)
        write_quicklook(quicklook, mosaic)
        for name in OUTPUTS:
            storage.upload(os.path.join(work, name), storage.join(folder, name))
    manifest = Manifest(
        scene_id=scene_id, input=task.scene.uri, fingerprint=task.scene.fingerprint,
        params=params.to_json(), params_digest=params.digest(),
        bands=[s.band for s in task.sources],
        quantization={r.task.source.label: [r.task.vmin, r.task.vmax] for r in results},
        band_names=band_names(task.sources, params.features),
        size=[info.height, info.width], pixels=info.height * info.width, crs=info.crs,
        transform=list(info.transform), warnings=info.warnings, tiles=len(results),
        outputs=list(OUTPUTS), versions=versions(),
        workers=dict(collections.Counter(r.worker for r in results)),
        item=dict(task.scene.item, assets=dict(task.scene.assets)) if task.scene.assets
        else {}, run_id=run_id,
        timings={"mosaic_seconds": round(time.time() - started, 3),
                 "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    manifest.write(manifest_uri(output, scene_id))
    own = tiles_folder(output, scene_id, run_id)
    storage.delete_tree(own)
    stale = storage.remove_stale(
        folder, (TILES_PREFIX, storage.WORKDIR_PREFIX, storage.TEMPORARY_PREFIX),
        keep=own.rsplit("/", 1)[-1], older_than_seconds=STALE_SCRATCH_SECONDS)
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
    manifest = Manifest.read(manifest_uri(output, scene.scene_id))
    if manifest is None:
        return False
    if manifest.run_id == run_id:
        return True
    return (manifest.is_finished(scene.fingerprint, params_digest) and not
            storage.list_files(tiles_folder(output, scene.scene_id, run_id),
                               RESULT_SUFFIX))


class FinishScenes(beam.DoFn):
    """:func:`finish_scene` for each (scene_id, [TileResult]) that this run has not
    finished yet (most scenes are finished after their last tile: see
    :func:`transforms.save_tile.finish_if_last`): finished scene ids out, failures to
    ``errors``; counts scenes done and pixels."""

    def __init__(self, params: TextureParams, output: str, run_id: str):
        self.params, self.output, self.run_id = params, output, run_id
        self.done = counter("scenes_done")
        self.pixels = counter("pixels")

    def process(self, element):
        scene_id, results = element
        results = list(results)
        task = results[0].task
        try:
            if finished_by(self.output, task, self.params.digest(), self.run_id):
                # what retried tile writes may have left after it was finished
                storage.delete_tree(tiles_folder(self.output, scene_id, self.run_id))
            else:
                finish_scene(scene_id, results, self.params, self.output, self.run_id)
        except Exception as exc:  # noqa: BLE001
            yield ErrorRecord.from_exception(task.scene.uri, scene_id, "mosaic",
                                             exc).tagged()
            return
        self.done.inc()
        self.pixels.inc(task.info.height * task.info.width * len(task.sources))
        yield scene_id
