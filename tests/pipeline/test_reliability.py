"""Reliability: bad inputs, injected faults, killed and concurrent runs.

Every input here is a real file written by the test; every run is a real pipeline
(in this process on the DirectRunner, or ``python -m pipeline`` in a subprocess).
"""

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

import transforms.errors
import transforms.layout
from pipeline.build import Seams
from pipeline.run import main
from transforms.io.raster import read_tile
from transforms.layout import scene_id_for
from transforms.texture import TextureModelHandler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = ["--features=contrast,entropy,mean", "--window=5", "--levels=16", "--tile=64"]
OUTPUTS = ["features.tif", "manifest.json", "quicklook.png"]
GEO = Affine(10, 0, 600000, 0, -10, 5000000)


def write_tif(path, array, transform=GEO, crs="EPSG:32632", nodata=None, **profile):
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    with rasterio.open(path, "w", driver="GTiff", height=array.shape[1],
                       width=array.shape[2], count=array.shape[0],
                       dtype=array.dtype.name, crs=crs, transform=transform,
                       nodata=nodata, **profile) as dst:
        dst.write(array)
    return str(path)


def texture(seed, shape):
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.integers(0, 9, shape), axis=-1) % 250).astype(np.uint8)


def read_records(out):
    text = (out / "errors.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def features(out, sid):
    with rasterio.open(out / sid / "features.tif") as src:
        return src.read()


def visible(folder):
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def can_make_unreadable():
    return os.geteuid() != 0 or shutil.which("setpriv") is not None


def pipeline_command(*args, tmp_path):
    """``python -m pipeline`` in a subprocess; as root, without the capability to read
    files regardless of their permissions, so a chmod 000 file is unreadable. Its
    temporary folder under ``tmp_path``: a killed run leaves Beam's there."""
    prefix = []
    if os.geteuid() == 0 and shutil.which("setpriv"):
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(scratch)}
    return prefix + [sys.executable, "-m", "pipeline", *args], env


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    write_tif(folder / "good_a.tif", texture(1, (70, 90)))
    write_tif(folder / "good_b.tif", texture(2, (2, 40, 33)).astype(np.uint16))
    return folder


@pytest.fixture(scope="module")
def reference(good, tmp_path_factory):
    """The good scenes alone, run once: what they must look like in every other run."""
    out = tmp_path_factory.mktemp("reference")
    assert main([f"--input={good}", f"--output={out}", *FLAGS]).exit_code == 0
    return out


def make_bad_inputs(folder):
    """The table of bad inputs. Returns {file name: (expected stages, words the message
    must contain)}; the expected stage is None for odd inputs that must succeed."""
    cases = {}
    (folder / "empty.tif").write_bytes(b"")
    cases["empty.tif"] = ({"plan"}, "cannot be opened as a raster")
    (folder / "text.tif").write_text("this is not a GeoTIFF\n")
    cases["text.tif"] = ({"plan"}, "cannot be opened as a raster")

    whole = write_tif(folder / "whole.tif", texture(3, (256, 256)).astype(np.uint16),
                      tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    data = open(whole, "rb").read()
    (folder / "truncated.tif").write_bytes(data[:len(data) * 6 // 10])
    cases["truncated.tif"] = ({"plan", "read"}, "truncated.tif")
    with rasterio.open(whole) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    corrupt = bytearray(data)
    corrupt[offset:offset + size] = np.random.default_rng(0).integers(
        0, 256, size, dtype=np.uint8).tobytes()
    (folder / "corrupt_tiles.tif").write_bytes(bytes(corrupt))
    cases["corrupt_tiles.tif"] = ({"plan", "read"}, "corrupt_tiles.tif")
    os.remove(whole)

    if can_make_unreadable():
        write_tif(folder / "unreadable.tif", texture(4, (20, 20)))
        os.chmod(folder / "unreadable.tif", 0)
        cases["unreadable.tif"] = ({"plan"}, "readable by this user")

    write_tif(folder / "all_nodata.tif", np.zeros((30, 30), np.uint8), nodata=0)
    cases["all_nodata.tif"] = ({"plan"}, "has no valid pixel")
    write_tif(folder / "complex.tif", np.ones((16, 16), np.complex64))
    cases["complex.tif"] = ({"plan"}, "unsupported data type complex64")

    # odd but valid: these must produce outputs
    write_tif(folder / "one_pixel.tif", np.full((1, 1), 7, np.uint8))
    write_tif(folder / "two_by_two.tif", np.array([[1, 2], [3, 4]], np.uint8))
    values = np.random.default_rng(5).normal(0, 1, (40, 40)).astype(np.float32)
    values[3:9, 4:7] = np.nan
    values[20, 20] = np.inf
    values[30:, 30:] = -np.inf
    write_tif(folder / "nan_inf.tif", values)
    write_tif(folder / "no_crs.tif", texture(6, (30, 30)), crs=None)
    write_tif(folder / "rotated.tif", texture(7, (30, 40)),
              transform=Affine(7.07, -7.07, 1000, 7.07, 7.07, 2000))
    write_tif(folder / "constant.tif", np.full((30, 30), 42, np.uint8))
    write_tif(folder / "wide.tif", texture(8, (1, 3000)))
    write_tif(folder / "thin.tif", texture(9, (2500, 2)))
    for name in ["one_pixel.tif", "two_by_two.tif", "nan_inf.tif", "no_crs.tif",
                 "rotated.tif", "constant.tif", "wide.tif", "thin.tif"]:
        cases[name] = (None, None)
    return cases


@pytest.mark.slow  # subprocess pipelines
def test_bad_inputs_are_recorded_and_the_rest_is_untouched(good, reference, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = make_bad_inputs(bad)
    listing = tmp_path / "scenes.txt"
    listing.write_text("\n".join([str(good / "good_a.tif"), str(good / "good_b.tif"),
                                  str(bad / "missing.tif")]
                                 + [str(bad / name) for name in cases]) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    command, env = pipeline_command(f"--input=@{listing}", f"--output={out}", *FLAGS,
                                    "--fail-on-error", tmp_path=tmp_path)
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]  # failures, and --fail-on-error

    records = read_records(out)
    by_uri = {}
    for record in records:
        assert set(record) == {"uri", "scene_id", "stage", "error", "message"}
        by_uri.setdefault(os.path.basename(record["uri"]), []).append(record)
    assert by_uri.pop("missing.tif") == [{
        "uri": str(bad / "missing.tif"), "scene_id": None, "stage": "discover",
        "error": "FileNotFoundError",
        "message": "file not found: check the path in the input list"}]
    for name, (stages, words) in cases.items():
        sid = name[:-4]
        if stages is None:
            assert name not in by_uri, by_uri.get(name)
            assert visible(out / sid) == OUTPUTS, name
            continue
        found = by_uri.pop(name)
        assert {r["stage"] for r in found} <= stages | {"mosaic"}, found
        assert all(r["scene_id"] == sid for r in found)
        assert any(words in r["message"] for r in found), found
        assert not (out / sid / "features.tif").exists()
        assert not (out / sid / "manifest.json").exists()
    assert by_uri == {}
    n_failed = len(records)
    assert f"failure records: {n_failed}" in done.stdout
    assert "scenes done: 10 (new: 10, changed: 0)" in done.stdout

    # the good scenes are exactly what they are without the bad ones
    for sid in ("good_a", "good_b"):
        np.testing.assert_array_equal(features(out, sid), features(reference, sid))

    # what the odd inputs gave
    one = features(out, "one_pixel")
    assert one.shape == (3, 1, 1) and np.isnan(one).all()  # no pair in any window
    two = features(out, "two_by_two")
    assert two.shape == (3, 2, 2) and np.isfinite(two).all()
    nan_inf = features(out, "nan_inf")
    assert np.isfinite(nan_inf[:, 0, 0]).all()
    with rasterio.open(bad / "nan_inf.tif") as src:
        invalid = ~np.isfinite(src.read(1))
    assert np.isnan(nan_inf[:, invalid]).all()  # invalid pixels stay NaN
    manifest = json.loads((out / "no_crs" / "manifest.json").read_text())
    assert manifest["crs"] is None and "no CRS" in manifest["warnings"][0]
    with rasterio.open(out / "no_crs" / "features.tif") as dst:
        assert dst.crs is None
    with rasterio.open(out / "rotated" / "features.tif") as dst:
        assert dst.transform == Affine(7.07, -7.07, 1000, 7.07, 7.07, 2000)
    assert "rotated" in json.loads((out / "rotated" / "manifest.json").read_text())[
        "warnings"][0]
    constant = features(out, "constant")
    assert (constant[0] == 0).all() and (constant[1] == 0).all()  # contrast, entropy
    assert features(out, "wide").shape == (3, 1, 3000)
    assert features(out, "thin").shape == (3, 2500, 2)

    # without --fail-on-error the same run exits 0; the failures are still recorded
    command, env = pipeline_command(f"--input=@{listing}", f"--output={out}", *FLAGS,
                                    tmp_path=tmp_path)
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "scenes done: 0 (new: 0, changed: 0), skipped (already finished): 10" in \
        done.stdout
    assert len(read_records(out)) == n_failed


def test_band_that_does_not_exist(good, tmp_path):
    out = tmp_path / "out"
    summary = main([f"--input={good / 'good_a.tif'}", f"--output={out}", *FLAGS,
                    "--bands=2"])
    assert summary.exit_code == 0 and len(summary.failures) == 1
    [record] = read_records(out)
    assert summary.failures[0].to_json() == record
    assert record["stage"] == "plan" and record["scene_id"] == "good_a"
    assert record["message"].startswith("--bands: ") and record["parameter"] == "bands"
    assert "has 1 band(s), not [2]: choose bands in 1..1" in record["message"]


# What the injected faults saw. Module level, like the readers below: the runner
# pickles the DoFns that call them, and module-level names travel by reference.
INJECTED = {"failed": set(), "calls": []}


def flaky_read(uri, band, tile):
    """Fails the first read of every tile in column 1."""
    key = (uri, band, tile.key.row, tile.key.col)
    if tile.key.col == 1 and key not in INJECTED["failed"]:
        INJECTED["failed"].add(key)
        raise OSError(f"injected: connection reset reading {uri}")
    return read_tile(uri, band, tile)


def broken_read(uri, band, tile):
    """Always fails good_b's band 2 at tile (0, 0)."""
    if uri.endswith("good_b.tif") and (band, tile.key.row, tile.key.col) == (2, 0, 0):
        INJECTED["calls"].append(1)
        raise OSError("injected: disk unreadable")
    return read_tile(uri, band, tile)


class FailingHandler(TextureModelHandler):
    """Raises for good_b's tiles (one per band), as a device out of memory would."""

    def run_inference(self, batch, model, inference_args=None):
        if batch[0]["valid"].sum() == 40 * 33:  # good_b: one tile per band
            raise RuntimeError("injected: device out of memory")
        return super().run_inference(batch, model, inference_args)


def failing_handler(params, accelerator, tiles_per_call):
    return FailingHandler(params.spec, tiles_per_call, accelerator)


def test_tile_failing_once_is_retried_without_duplicates(good, reference, tmp_path,
                                                         monkeypatch):
    INJECTED["failed"].clear()
    monkeypatch.setattr(transforms.errors, "RETRY_DELAY_SECONDS", 0.01)
    out = tmp_path / "out"
    assert main([f"--input={good}", f"--output={out}", *FLAGS],
                seams=Seams(read_tile=flaky_read)).exit_code == 0
    assert len(INJECTED["failed"]) == 2  # good_a's 2 tiles in column 1 (2x2 tiles of 64)
    assert read_records(out) == []
    for sid in ("good_a", "good_b"):
        assert visible(out / sid) == OUTPUTS
        np.testing.assert_array_equal(features(out, sid), features(reference, sid))


def test_tile_failing_always_goes_to_dead_letter_then_a_rerun_completes(
        good, reference, tmp_path, monkeypatch):
    INJECTED["calls"].clear()
    monkeypatch.setattr(transforms.errors, "RETRY_DELAY_SECONDS", 0.01)
    out = tmp_path / "out"
    assert main([f"--input={good}", f"--output={out}", *FLAGS],
                seams=Seams(read_tile=broken_read)).exit_code == 0
    assert len(INJECTED["calls"]) == transforms.errors.ATTEMPTS
    records = {r["stage"]: r for r in read_records(out)}
    assert sorted((r["scene_id"], stage, r["error"]) for stage, r in records.items()) == [
        ("good_b", "mosaic", "RuntimeError"), ("good_b", "read", "OSError")]
    assert "1 of 2 tiles failed" in records["mosaic"]["message"]  # 1 tile x 2 bands
    assert "injected: disk unreadable" in records["read"]["message"]
    assert visible(out / "good_b") == []  # no mosaic that looks finished
    np.testing.assert_array_equal(features(out, "good_a"), features(reference, "good_a"))

    summary = main([f"--input={good}", f"--output={out}", *FLAGS])  # the real reader
    assert (summary.exit_code, summary.done, summary.new, summary.changed,
            summary.skipped) == (0, 1, 1, 0, 1)
    assert read_records(out) == []
    np.testing.assert_array_equal(features(out, "good_b"), features(reference, "good_b"))


# With Beam's runtime type check, every output is held to its step's declared types
# (the texture step's outputs are declared: transforms.texture.TILE_OUTCOME).
@pytest.mark.parametrize("checks", [[], ["--runtime_type_check"]])
def test_inference_failure_is_recorded(good, tmp_path, checks):
    out = tmp_path / "out"
    assert main([f"--input={good}", f"--output={out}", *FLAGS, *checks],
                seams=Seams(model_handler=failing_handler)).exit_code == 0
    records = read_records(out)
    # both tiles (one per band) failed: a record each, and no mosaic was attempted
    assert sorted((r["scene_id"], r["stage"]) for r in records) == [("good_b", "texture")] * 2
    assert any("device out of memory" in r["message"] for r in records)
    assert visible(out / "good_a") == OUTPUTS and not (out / "good_b").exists()


@pytest.fixture(scope="module")
def larger(tmp_path_factory):
    """Scenes big enough that a run is still busy when the test interrupts it."""
    folder = tmp_path_factory.mktemp("larger")
    for k in range(4):
        write_tif(folder / f"scene{k}.tif", texture(10 + k, (320, 300)))
    out = tmp_path_factory.mktemp("larger_ref")
    assert main([f"--input={folder}", f"--output={out}", *FLAGS]).exit_code == 0
    return folder, out


def check_complete(out, ref, n):
    assert read_records(out) == []
    assert visible(out) == ["errors.jsonl"] + [f"scene{k}" for k in range(n)]
    for k in range(n):
        sid = f"scene{k}"
        assert visible(out / sid) == OUTPUTS
        np.testing.assert_array_equal(features(out, sid), features(ref, sid))
        manifest = json.loads((out / sid / "manifest.json").read_text())
        assert manifest["scene_id"] == sid


@pytest.mark.slow  # subprocess pipelines
def test_killed_run_then_rerun_completes_every_scene(larger, tmp_path, monkeypatch):
    folder, ref = larger
    out = tmp_path / "out"
    command, env = pipeline_command(f"--input={folder}", f"--output={out}", *FLAGS,
                                    tmp_path=tmp_path)
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    # Killed once one scene is finished and another has some of its 25 tiles saved
    # (a scene is finished right after its last tile, so others are under way).
    seen, done, saved = [], set(), collections.Counter()
    for line in proc.stderr:
        seen.append(line)
        found = re.search(r"\] (\S+): (done ->|tile row .* computed)", line)
        if found and found.group(2) == "done ->":
            done.add(found.group(1))
        elif found:
            saved[found.group(1)] += 1
        if done and any(0 < n <= 20 for sid, n in saved.items() if sid not in done):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    finished = [sid for sid in os.listdir(out) if (out / sid / "manifest.json").exists()]
    assert 1 <= len(finished) < 4
    for sid in os.listdir(out):
        if (out / sid / "features.tif").exists():  # any mosaic there is whole
            with rasterio.open(out / sid / "features.tif") as src:
                assert np.isfinite(src.read()).any()

    left = [name for sid in os.listdir(out) if (out / sid).is_dir()
            for name in os.listdir(out / sid) if name.startswith(".")]
    assert any(name.startswith(".tiles-") for name in left)  # the killed run's scratch

    # the rerun finishes what was missing; here it may treat any scratch as stale
    monkeypatch.setattr(transforms.layout, "STALE_SCRATCH_SECONDS", 0)
    assert main([f"--input={folder}", f"--output={out}", *FLAGS]).exit_code == 0
    check_complete(out, ref, 4)
    for k in range(4):
        assert sorted(os.listdir(out / f"scene{k}")) == OUTPUTS


@pytest.mark.slow  # subprocess pipelines
def test_two_runs_at_once_on_the_same_output(larger, tmp_path):
    folder, ref = larger
    out = tmp_path / "out"
    procs = []
    for _ in range(2):
        command, env = pipeline_command(f"--input={folder}", f"--output={out}", *FLAGS,
                                        tmp_path=tmp_path)
        procs.append(subprocess.Popen(command, env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        assert "failure records: 0" in stdout
    check_complete(out, ref, 4)
    for k in range(4):  # each run cleaned up its own scratch, hidden files too
        assert sorted(os.listdir(out / f"scene{k}")) == OUTPUTS


@pytest.mark.slow  # subprocess pipelines
def test_run_local_quotes_hostile_file_names(tmp_path):
    folder = tmp_path / "in $(touch pwned)"
    folder.mkdir()
    hostile = "a'b; rm -rf ~ `id` $HOME ü.tif"
    write_tif(folder / hostile, texture(20, (20, 25)))
    out = tmp_path / "out dir"
    secret = "ya29.secret-token-that-must-not-leak"
    env = {**os.environ, "GOOGLE_OAUTH_ACCESS_TOKEN": secret, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([os.path.join(ROOT, "run_local.sh"), "--input", str(folder),
                           "--output", str(out), *FLAGS], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "pwned").exists() and not os.path.exists(
        os.path.join(ROOT, "pwned"))
    sid = scene_id_for(hostile)
    assert sid.startswith("a_b__rm_-rf") and set(sid) <= set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert sorted(os.listdir(out)) == [sid, "errors.jsonl"]
    manifest = (out / sid / "manifest.json").read_text()
    assert json.loads(manifest)["input"] == str(folder / hostile)
    for text in (done.stdout, done.stderr, manifest):
        assert secret not in text
