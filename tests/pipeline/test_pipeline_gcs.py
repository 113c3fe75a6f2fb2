"""The pipeline on Cloud Storage: a real gcp-storage-emulator, real GeoTIFFs, a real
DirectRunner pipeline reading gs:// scenes and writing its outputs back to gs://."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from pipeline.run import main
from transforms.io import storage

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = ["--features=contrast,entropy,mean", "--window=5", "--levels=16", "--tile=40"]


def tif_bytes(tmp_path, name, seed, shape=(1, 70, 90)):
    rng = np.random.default_rng(seed)
    data = (np.cumsum(rng.integers(0, 7, shape), axis=2) % 200).astype(np.uint8)
    path = tmp_path / name
    with rasterio.open(path, "w", driver="GTiff", height=shape[1], width=shape[2],
                       count=shape[0], dtype="uint8", crs="EPSG:32631",
                       transform=Affine(10, 0, 500000, 0, -10, 4000000)) as dst:
        dst.write(data)
    return path


def upload(path, uri):
    storage.write_bytes(uri, path.read_bytes())


def read_back(uri):
    with rasterio.Env(**storage.gdal_options(uri)), rasterio.open(uri) as src:
        return src.read(), src.descriptions, src.crs, src.transform


def counts(summary):
    """(exit code, done, new, changed, skipped, failure records) of a run."""
    return (summary.exit_code, summary.done, summary.new, summary.changed, summary.skipped,
            len(summary.failures))


def test_gcs_end_to_end_and_incremental(bucket, tmp_path):
    gs = f"gs://{bucket}"
    for name, seed in [("a.tif", 1), ("b.tif", 2), ("c.tif", 3)]:
        upload(tif_bytes(tmp_path, name, seed), f"{gs}/in/{name}")
    out = f"{gs}/out"
    argv = [f"--input={gs}/in/*.tif", f"--output={out}", *FLAGS]

    # first run: every scene computed, outputs readable back from the bucket
    assert counts(main(argv)) == (0, 3, 3, 0, 0, 0)
    local = tmp_path / "local"
    assert main([f"--input={tmp_path}/a.tif", f"--output={local}", *FLAGS]).exit_code == 0
    with rasterio.open(local / "a" / "features.tif") as src:
        want = src.read()
    got, names, crs, transform = read_back(f"{out}/a/features.tif")
    np.testing.assert_array_equal(got, want)  # same numbers as a local run
    assert names == ("b1_contrast", "b1_entropy", "b1_mean")
    assert crs.to_epsg() == 32631 and transform == Affine(10, 0, 500000, 0, -10, 4000000)
    for sid in "abc":
        manifest = json.loads(storage.read_bytes(f"{out}/{sid}/manifest.json"))
        blob = storage.client().bucket(bucket).get_blob(f"in/{sid}.tif")
        assert manifest["fingerprint"] == f"{blob.size}-{blob.generation}"
        assert manifest["input"] == f"{gs}/in/{sid}.tif"
        png = storage.read_bytes(f"{out}/{sid}/quicklook.png")
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    names = sorted(b.name for b in storage.client().list_blobs(bucket, prefix="out/"))
    assert names == sorted(["out/errors.jsonl"] + [
        f"out/{s}/{f}" for s in "abc"
        for f in ("features.tif", "manifest.json", "quicklook.png")])  # no scratch left
    assert storage.read_bytes(f"{out}/errors.jsonl") == b""

    # second run: nothing to do
    assert counts(main(argv)) == (0, 0, 0, 0, 3, 0)

    # a new scene and an overwritten one: exactly those two are computed
    upload(tif_bytes(tmp_path, "d.tif", 4), f"{gs}/in/d.tif")
    upload(tif_bytes(tmp_path, "b2.tif", 5), f"{gs}/in/b.tif")
    before = read_back(f"{out}/b/features.tif")[0]
    assert counts(main(argv)) == (0, 2, 1, 1, 2, 0)
    after = read_back(f"{out}/b/features.tif")[0]
    assert not np.array_equal(before, after)
    assert read_back(f"{out}/d/features.tif")[0].shape == (3, 70, 90)

    # --force recomputes all; changed parameters count as changed
    assert counts(main(argv + ["--force"])) == (0, 4, 0, 0, 0, 0)
    assert counts(main(argv[:-1] + ["--tile=40", "--window=3"])) == (0, 4, 0, 4, 0, 0)


@pytest.mark.slow  # a subprocess pipeline
def test_gcs_list_directory_and_missing_file(bucket, tmp_path):
    gs = f"gs://{bucket}"
    upload(tif_bytes(tmp_path, "x.tif", 7, shape=(2, 30, 41)), f"{gs}/scenes/x.tif")
    storage.write_bytes(f"{gs}/lists/run.txt",
                        f"# two scenes\n{gs}/scenes/x.tif\n{gs}/scenes/gone.tif\n".encode())
    out = f"{gs}/out"
    # the command line, in a fresh process that knows only STORAGE_EMULATOR_HOST
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOOGLE_")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run([sys.executable, "-m", "pipeline", f"--input=@{gs}/lists/run.txt",
                           f"--output={out}", *FLAGS, "--fail-on-error"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "scenes done: 1 (new: 1, changed: 0)" in done.stdout
    assert "failure records: 1" in done.stdout
    records = [json.loads(line) for line in
               storage.read_bytes(f"{out}/errors.jsonl").decode().splitlines()]
    assert [(r["uri"], r["stage"]) for r in records] == [(f"{gs}/scenes/gone.tif",
                                                         "discover")]
    got = read_back(f"{out}/x/features.tif")
    assert got[0].shape == (6, 30, 41) and got[1][3] == "b2_contrast"
    # a gs:// "directory" (prefix) finds its GeoTIFFs; the finished scene is skipped
    assert counts(main([f"--input={gs}/scenes", f"--output={out}", *FLAGS])) == (
        0, 0, 0, 0, 1, 0)
