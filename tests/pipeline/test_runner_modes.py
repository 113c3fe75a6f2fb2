"""The pipeline as Dataflow runs it: DoFns pickled, SDK workers in other processes
(the DirectRunner's multi_processing mode), against the threaded run."""

import json

import numpy as np
import pytest
import rasterio
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
from rasterio.transform import Affine

from pipeline.run import local_runner, main

FLAGS = ["--tile=32", "--window=5", "--levels=16", "--features=contrast,entropy,mean"]
# What may differ between two runs of the same scene: when, and who computed it.
RUN_SPECIFIC = ("timings", "workers", "run_id")


def write_scene(path, seed, shape):
    rng = np.random.default_rng(seed)
    data = (np.cumsum(rng.integers(0, 9, shape), axis=-1) % 250).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", height=shape[1], width=shape[2],
                       count=shape[0], dtype="uint8", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 4000000)) as dst:
        dst.write(data)


def outputs(folder):
    with rasterio.open(folder / "features.tif") as src:
        features = src.read()
    manifest = json.loads((folder / "manifest.json").read_text())
    return features, manifest


@pytest.mark.slow  # two SDK worker processes, each importing TensorFlow
def test_multi_processing_equals_threads_and_spreads_one_scene(tmp_path):
    scenes = tmp_path / "in"
    scenes.mkdir()
    write_scene(scenes / "big.tif", 1, (1, 192, 192))  # 36 tiles of 32
    write_scene(scenes / "small.tif", 2, (2, 40, 50))
    threads = main([f"--input={scenes}", f"--output={tmp_path / 'threads'}", *FLAGS,
                    "--direct_running_mode=multi_threading", "--direct_num_workers=2"])
    processes = main([f"--input={scenes}", f"--output={tmp_path / 'processes'}", *FLAGS,
                      "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    for summary in (threads, processes):
        assert (summary.exit_code, summary.done, summary.failures) == (0, 2, ())
    for sid in ("big", "small"):
        want, want_manifest = outputs(tmp_path / "threads" / sid)
        got, manifest = outputs(tmp_path / "processes" / sid)
        np.testing.assert_array_equal(got, want)
        assert {k: v for k, v in manifest.items() if k not in RUN_SPECIFIC} == {
            k: v for k, v in want_manifest.items() if k not in RUN_SPECIFIC}
        assert sum(manifest["workers"].values()) == manifest["tiles"]
    # One scene keeps both worker processes computing: its tiles are spread after
    # planning (without the spread, the process that planned it took all 36).
    workers = outputs(tmp_path / "processes" / "big")[1]["workers"]
    assert len(workers) == 2 and min(workers.values()) >= 36 // 4, workers


@pytest.mark.parametrize("flags, local", [
    ([], True), (["--runner=DirectRunner"], True), (["--runner=direct"], True),
    (["--runner=PrismRunner"], False), (["--runner=DataflowRunner"], False),
])
def test_local_runs_use_the_fn_api_runner(flags, local):
    # Beam's DirectRunner (the default) first tries Prism, a binary it downloads at
    # run time; a local run uses the FnApiRunner whether or not the network is there.
    # Any other --runner is Beam's to make.
    runner = local_runner(PipelineOptions(flags))
    assert isinstance(runner, FnApiRunner) if local else runner is None
