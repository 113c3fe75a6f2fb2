"""transforms.save and transforms.finish on their own: a scene is finished by the
writer of its last tile, and the end-of-run finish step then only cleans up; if that
did not happen, the end-of-run step builds the scene. Real GeoTIFFs, local and on the
Cloud Storage emulator."""

import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from transforms.finish import FinishScenes, finish_if_last, finished_by
from transforms.io import storage
from transforms.layout import (FINISH_CLAIM, RESULT_SUFFIX, read_manifest, scenes_for,
                               tiles_folder)
from transforms.plan import plan_scene
from transforms.records import Scene, TextureParams
from transforms.save import save_tile

RUN = "20261130T000000-0123abcd"


@pytest.fixture(params=["local", "gcs"])
def output(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "out")
    request.getfixturevalue("gcs_emulator")
    return f"gs://{request.getfixturevalue('bucket')}/out"


@pytest.fixture
def planned(tmp_path):
    """A 2-band 40x50 scene planned into 2 x 2 tiles x 2 bands = 8 tasks."""
    path = tmp_path / "scene.tif"
    data = np.random.default_rng(0).integers(0, 200, (2, 40, 50)).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", height=40, width=50, count=2,
                       dtype="uint8", crs="EPSG:32632",
                       transform=Affine(10, 0, 600000, 0, -10, 5000000)) as dst:
        dst.write(data)
    params = TextureParams.create(features="contrast,mean", window=3, levels=8, tile=25)
    [scene] = scenes_for([Scene("", uri, fingerprint)
                          for uri, fingerprint in storage.match(str(path))])
    return scene, params


def fake_maps(task, params, value):
    """What the model would return for ``task``: (S, S, F), every pixel ``value``."""
    side = params.tile_size + 2 * params.halo
    return np.full((side, side, len(params.features)), value, np.float32)


def test_the_last_tile_finishes_the_scene(planned, output, tmp_path):
    scene, params = planned
    _, tasks = plan_scene(scene, params, output)
    assert len(tasks) == 8
    folder = tiles_folder(output, scene.scene_id, RUN)
    results = []
    for k, task in enumerate(tasks):
        results.append(save_tile(task, fake_maps(task, params, k), params, output, RUN))
        assert len(storage.list_files(folder, RESULT_SUFFIX)) == k + 1
        finished = finish_if_last(results[-1], params, output, RUN)
        assert finished == (k == len(tasks) - 1)
        assert (read_manifest(output, scene.scene_id) is not None) == finished
    assert storage.list_files(folder, RESULT_SUFFIX) == []  # tiles deleted
    manifest = read_manifest(output, scene.scene_id)
    assert manifest.run_id == RUN and manifest.tiles == 8
    assert finished_by(output, tasks[0], params.digest(), RUN)
    # An older tile's writer, late: the scene is not built twice.
    assert not finish_if_last(results[0], params, output, RUN)

    # The end-of-run step counts the scene and builds nothing (its tiles are gone:
    # building would fail).
    fn = FinishScenes(params, output, RUN)
    assert list(fn.process((scene.scene_id, results))) == [scene.scene_id]
    local = tmp_path / "features.tif"
    local.write_bytes(storage.read_bytes(storage.join(output, scene.scene_id,
                                                      "features.tif")))
    with rasterio.open(local) as src:
        got = src.read()
    # band (source b, feature f) holds, in each tile's core, that tile's value
    for k, task in enumerate(tasks):
        t = task.tile
        for f in range(2):
            core = got[task.band_index * 2 + f, t.core_row:t.core_row + t.core_height,
                       t.core_col:t.core_col + t.core_width]
            assert (core == k).all()


def save_all(tasks, params, output, value, run=RUN):
    """Every tile of the scene saved, as the model's output ``value``."""
    return [save_tile(task, fake_maps(task, params, value), params, output, run)
            for task in tasks]


def test_one_writer_finishes(planned, tmp_path):
    scene, params = planned
    output = str(tmp_path / "out")
    _, tasks = plan_scene(scene, params, output)
    results = save_all(tasks, params, output, 1)
    folder = tiles_folder(output, scene.scene_id, RUN)
    # Every tile is saved and a writer has claimed the scene (and, say, died): the
    # others leave it to the end-of-run step.
    assert storage.create_exclusive(storage.join(folder, FINISH_CLAIM))
    assert not storage.create_exclusive(storage.join(folder, FINISH_CLAIM))
    assert [finish_if_last(r, params, output, RUN) for r in results] == [False] * 8
    assert read_manifest(output, scene.scene_id) is None
    os.remove(os.path.join(folder, FINISH_CLAIM))
    assert [finish_if_last(r, params, output, RUN) for r in results] == [True] + [False] * 7
    assert read_manifest(output, scene.scene_id).run_id == RUN


def test_end_of_run_step_builds_what_was_not_finished(planned, tmp_path):
    scene, params = planned
    output = str(tmp_path / "out")
    _, tasks = plan_scene(scene, params, output)
    results = save_all(tasks, params, output, 2)
    assert not finished_by(output, tasks[0], params.digest(), RUN)
    fn = FinishScenes(params, output, RUN)
    assert list(fn.process((scene.scene_id, results))) == [scene.scene_id]
    manifest = read_manifest(output, scene.scene_id)
    assert manifest.run_id == RUN
    assert sorted(os.listdir(os.path.join(output, scene.scene_id))) == [
        "features.tif", "manifest.json", "quicklook.png"]
    # Another run's manifest of the same input and parameters does not stand in for
    # this run's while this run's tiles are still there (--force recomputes).
    other = "20261130T000001-89abcdef"
    results = save_all(tasks, params, output, 3, run=other)
    assert not finished_by(output, tasks[0], params.digest(), other)
    assert list(FinishScenes(params, output, other).process(
        (scene.scene_id, results))) == [scene.scene_id]
    with rasterio.open(os.path.join(output, scene.scene_id, "features.tif")) as src:
        assert (src.read() == 3).all()


def test_a_storage_error_in_the_early_finish_leaves_the_scene_to_the_end(
        planned, gcs_emulator, bucket):
    """The early finish only decides when: a storage error there (here a bucket that
    does not exist, a 404 no retry mends) is logged, never raised, so the bundle of
    tiles is not recomputed; the end-of-run step then builds the scene."""
    scene, params = planned
    output = f"gs://{bucket}/out"
    _, tasks = plan_scene(scene, params, output)
    results = save_all(tasks, params, output, 4)
    assert finish_if_last(results[-1], params, "gs://no-such-bucket-glcm/out", RUN) is None
    assert read_manifest(output, scene.scene_id) is None
    assert list(FinishScenes(params, output, RUN).process(
        (scene.scene_id, results))) == [scene.scene_id]
    assert read_manifest(output, scene.scene_id).run_id == RUN
