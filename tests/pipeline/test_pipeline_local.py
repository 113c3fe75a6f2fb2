"""Real pipelines on the DirectRunner over GeoTIFFs written here."""

import json
import logging
import os
import re
import tempfile

import numpy as np
import pytest
import rasterio
import tifffile
from rasterio.transform import Affine

import glcm
from pipeline.build import Seams
from pipeline.run import ElapsedFormatter, main
from pipeline.sample import make_sample
from tests.beam_util import accelerator_of_leaves, graph_of, hints_under
from transforms.errors import ERRORS_TAG
from transforms.plan import core_size
from transforms.texture import TextureModelHandler

FEATURES = ["contrast", "entropy", "correlation", "mean"]


def write_tif(path, array, transform, nodata=None, crs="EPSG:32633"):
    with rasterio.open(path, "w", driver="GTiff", height=array.shape[1],
                       width=array.shape[2], count=array.shape[0], dtype=array.dtype.name,
                       crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(array)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(0)
    u8 = (np.cumsum(rng.integers(0, 9, (1, 61, 83)), axis=2) % 256).astype(np.uint8)
    write_tif(folder / "u8.tif", u8, Affine(10, 0, 300000, 0, -10, 5000000))
    f32 = rng.normal(0, 1, (1, 50, 47)).astype(np.float32)
    f32[0, :5] = np.nan
    write_tif(folder / "f32 nodata.tif", f32, Affine(2.5, 0, 10, 0, -4.0, 20),
              nodata=float("nan"))
    u16 = rng.integers(0, 4000, (2, 33, 70)).astype(np.uint16)
    write_tif(folder / "multi.tif", u16, Affine(30, 0, 0, 0, -15, 0))
    return folder


def run(inputs, output, *extra, seams=Seams()):
    argv = [f"--input={i}" for i in inputs] + [
        f"--output={output}", f"--features={','.join(FEATURES)}", "--window=5",
        "--distances=1,2", "--levels=16", "--tile=24", *extra]
    return main(argv, seams=seams)


def test_pipeline_outputs_match_texture_map(scenes, tmp_path, capsys):
    out = tmp_path / "out"
    with open("/proc/self/status") as status:
        held_before = [int(line.split()[1]) * 1024 for line in status
                       if line.startswith("VmRSS:")][0]
    summary = run([str(scenes)], out)
    assert (summary.exit_code, summary.done, summary.new, summary.changed,
            summary.skipped, summary.failures) == (0, 3, 3, 0, 0, ())
    # the printed line says the same, then where the time went, step by step
    captured = capsys.readouterr()
    printed = captured.out
    assert ("scenes done: 3 (new: 3, changed: 0), skipped (already finished): 0, "
            "failure records: 0") in printed
    assert list(summary.step_seconds) == ["discover", "plan", "read", "texture", "save",
                                          "finish"]
    assert summary.step_seconds["texture"] > 0
    assert re.search(r"^steps: discover [\d.]+ s, plan [\d.]+ s, read [\d.]+ s, "
                     r"texture [\d.]+ s( \([\d.]+ of them waiting for the model\))?, "
                     r"save [\d.]+ s, finish [\d.]+ s", printed, re.M)
    assert 0 <= summary.texture_wait_seconds <= summary.step_seconds["texture"]
    # progress on stderr, each line with the seconds since the run's clock started
    progress = re.findall(r"^\[glcm \+(\d+\.\d) s\] (.+)$", captured.err, re.M)
    assert sum(line.endswith("writing the mosaic") for _, line in progress) == 3
    elapsed = [float(seconds) for seconds, _ in progress]
    assert elapsed == sorted(elapsed) and 0 < elapsed[-1] <= summary.seconds + 0.1
    # and the process's peak memory: at least what it held before the run
    assert summary.peak_memory >= held_before > 0
    shown = re.search(r"^peak memory \(this process\): ([\d.]+) GiB$", printed, re.M)
    assert shown and shown.group(1) == f"{summary.peak_memory / 2 ** 30:.2f}"
    assert (out / "errors.jsonl").read_text() == ""
    for name, sid in [("u8.tif", "u8"), ("f32 nodata.tif", "f32_nodata"),
                      ("multi.tif", "multi")]:
        folder = out / sid
        manifest = json.loads((folder / "manifest.json").read_text())
        timings = manifest["timings"]
        assert {"plan_seconds", "read_seconds", "texture_seconds", "texture_wait_seconds",
                "save_seconds", "mosaic_seconds"} <= set(timings)
        assert 0 <= timings["texture_wait_seconds"] <= timings["texture_seconds"]
        with rasterio.open(scenes / name) as src, rasterio.open(folder / "features.tif") as dst:
            assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
            assert dst.dtypes[0] == "float32" and np.isnan(dst.nodata)
            assert dst.descriptions == tuple(f"b{b}_{f}" for b in range(1, src.count + 1)
                                             for f in FEATURES)
            assert manifest["input"] == str(scenes / name)
            assert manifest["band_names"] == list(dst.descriptions)
            for b in range(1, src.count + 1):
                data = src.read(b, masked=True)
                vmin, vmax = manifest["quantization"][str(b)]
                valid = ~np.ma.getmaskarray(data) & np.isfinite(data.data)
                q, ok = glcm.quantize(data.data[None].astype(np.float64), 16, vmin, vmax,
                                      mask=valid[None])
                want = np.asarray(glcm.texture_map(q, FEATURES, 5, levels=16,
                                                   distances=[1, 2], mask=ok))[0]
                got = np.moveaxis(dst.read(list(range((b - 1) * 4 + 1, b * 4 + 1))), 0, -1)
                # seamless across tiles (24 does not divide any side) and borders
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert manifest["params"]["window"] == 5 and manifest["pixels"] > 0
        assert "tensorflow" in manifest["versions"] and manifest["fingerprint"]
        png = (folder / "quicklook.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert sorted(os.listdir(folder)) == ["features.tif", "manifest.json",
                                              "quicklook.png"]  # no scratch left

    # rerun: everything skipped; --force recomputes
    summary = run([str(scenes)], out)
    assert (summary.exit_code, summary.done, summary.skipped) == (0, 0, 3)
    summary = run([str(scenes / "u8.tif")], out, "--force")
    assert (summary.exit_code, summary.done, summary.new, summary.changed,
            summary.skipped) == (0, 1, 0, 0, 0)


def test_missing_file_is_recorded_and_fail_on_error(scenes, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{scenes / 'u8.tif'}\n{scenes / 'nope.tif'}\n")
    out = tmp_path / "out"
    assert run([f"@{listing}"], out, "--fail-on-error").exit_code == 1
    records = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert records == [{"uri": str(scenes / "nope.tif"), "scene_id": None,
                        "stage": "discover", "error": "FileNotFoundError",
                        "message": "file not found: check the path in the input list"}]
    assert (out / "u8" / "features.tif").exists()


@pytest.mark.parametrize("flag, message", [
    ("--window=4", "--window: window must be an odd integer in 3..63"),
    ("--levels=1", "--levels: levels must be >= 2"),
    ("--levels=65537", "--levels: levels must be <= 65536"),
    ("--distances=1.5", "--distances: distances must be positive integers"),
    ("--features=contrast,nope", "unknown GLCM feature 'nope'"),
    ("--quantize=percentile:98,2", "LO < HI"),
    ("--bands=0", "1-based"),
])
def test_bad_flags_rejected_before_work(scenes, tmp_path, capsys, flag, message):
    out = tmp_path / "never"
    summary = main([f"--input={scenes}", f"--output={out}", flag])
    assert summary.exit_code == 2 and message in summary.error
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_refused_run_leaves_no_temporary_folder(tmp_path, monkeypatch, capsys):
    # Beam makes a folder for every pipeline and removes it only when it runs; a run
    # refused while its graph is built (here: no --input) must remove it too
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    summary = main([f"--output={tmp_path / 'never'}"])
    assert summary.exit_code == 2 and summary.error.startswith("no --input given")
    assert list(temp.iterdir()) == []


def test_sample_job(tmp_path, capsys):
    paths = make_sample(str(tmp_path / "sample"))
    assert len(paths) == 4
    out = tmp_path / "out"
    summary = main([f"--input={tmp_path / 'sample'}", f"--output={out}", "--tile=512"])
    assert (summary.exit_code, summary.done, summary.failures) == (0, 4, ())
    for sid in ["brick", "grass", "gravel_nodata", "camera_2band"]:
        assert (out / sid / "features.tif").exists() and (out / sid / "quicklook.png").exists()
    with rasterio.open(out / "gravel_nodata" / "features.tif") as dst:
        first = dst.read(1)
    assert np.isnan(first[:12]).all() and np.isfinite(first[20:, :300]).all()


def test_block_mode(scenes, tmp_path):
    out = tmp_path / "out"
    block = 8
    assert run([str(scenes / "f32 nodata.tif")], out, "--mode=block",
               f"--block={block}").exit_code == 0
    manifest = json.loads((out / "f32_nodata" / "manifest.json").read_text())
    with rasterio.open(scenes / "f32 nodata.tif") as src, \
            rasterio.open(out / "f32_nodata" / "features.tif") as dst:
        assert dst.shape == (-(-src.height // block), -(-src.width // block))
        assert dst.transform == src.transform @ Affine.scale(block, block)
        assert dst.crs == src.crs
        data = src.read(1, masked=True)
        got = np.moveaxis(dst.read(), 0, -1)
    vmin, vmax = manifest["quantization"]["1"]
    valid = ~np.ma.getmaskarray(data) & np.isfinite(data.data)
    q, ok = glcm.quantize(data.data.astype(np.float64), 16, vmin, vmax, mask=valid)
    q, ok = np.asarray(q), np.asarray(ok)
    for r in range(got.shape[0]):
        for c in range(got.shape[1]):
            cell = (slice(r * block, (r + 1) * block), slice(c * block, (c + 1) * block))
            P = glcm.graycomatrix(q[cell][None], [1, 2], glcm.DEFAULT_ANGLES, 16,
                                  symmetric=True, mask=ok[cell][None])
            values = np.asarray(glcm.graycoprops(P, FEATURES))[0]  # (D, A, F)
            want = np.nanmean(values.reshape(-1, len(FEATURES)), axis=0) \
                if np.isfinite(values).any() else np.full(len(FEATURES), np.nan)
            np.testing.assert_allclose(got[r, c], want, rtol=1e-5, atol=1e-5)
    # the first block row saw only 3 valid rows (5 are nodata), the last column of
    # blocks only 7 pixels: both were compared above
    assert got.shape[:2] == (7, 6)
    # Tiles of at most 40 pixels: cores as even as possible in whole blocks, taller
    # than wide here; the same cells.
    assert core_size(data.shape[0], 40, block) != core_size(data.shape[1], 40, block)
    again = tmp_path / "again"
    assert run([str(scenes / "f32 nodata.tif")], again, "--mode=block", f"--block={block}",
               "--tile=40").exit_code == 0
    with rasterio.open(again / "f32_nodata" / "features.tif") as dst:
        np.testing.assert_allclose(np.moveaxis(dst.read(), 0, -1), got, rtol=1e-6,
                                   atol=1e-7)


def test_required_gpu_missing_is_refused_before_work(scenes, tmp_path, capsys):
    out = tmp_path / "never"
    summary = run([str(scenes / "u8.tif")], out, "--accelerator=required")
    assert summary.exit_code == 2 and "sees no GPU" in summary.error
    assert "sees no GPU" in capsys.readouterr().err
    assert not out.exists()


def test_input_that_matches_nothing(tmp_path, capsys):
    summary = run([str(tmp_path / "nothing" / "*.tif")], tmp_path / "out")
    assert summary.exit_code == 2 and summary.error.startswith("--input: no raster matched")
    [record] = summary.failures
    assert (record.stage, record.error) == ("discover", "NoRasterMatched")


def test_cog_compression_changes_the_codec_not_the_values(scenes, tmp_path):
    default = run([f"{scenes}/u8.tif"], tmp_path / "out")
    assert default.done == 1
    with rasterio.open(tmp_path / "out" / "u8" / "features.tif") as a:
        assert a.compression.name == "zstd"
        values = a.read()
    # (codec, TIFF compression, TIFF predictor: 3 floating point, 1 none)
    for codec, compression, predictor in (("zstd", "zstd", 3), ("zstd-fast", "zstd", 1),
                                          ("deflate", "deflate", 3), ("lzw", "lzw", 3),
                                          ("none", "none", 1)):
        other = tmp_path / "out" if codec == "zstd" else tmp_path / codec
        if codec != "zstd":
            assert run([f"{scenes}/u8.tif"], other, f"--cog-compression={codec}").done == 1
        with rasterio.open(other / "u8" / "features.tif") as b:
            assert (b.compression.name if b.compression else "none") == compression
            assert b.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            np.testing.assert_array_equal(b.read(), values)
        with tifffile.TiffFile(other / "u8" / "features.tif") as tif:
            assert int(tif.pages[0].predictor) == predictor, codec
    # the codec changes no value: a rerun with another codec skips the scene
    again = run([f"{scenes}/u8.tif"], tmp_path / "out", "--cog-compression=deflate")
    assert (again.done, again.skipped) == (0, 1)
    bad = run([f"{scenes}/u8.tif"], tmp_path / "out", "--cog-compression=jpeg")
    assert bad.exit_code == 2 and "--cog-compression" in bad.error


class CountingHandler(TextureModelHandler):
    """The texture model handler, counting the tiles of each model call."""

    calls = []

    def run_inference(self, batch, model, inference_args=None):
        self.calls.append(len(batch))
        return super().run_inference(batch, model, inference_args)


def counting_handler(params, accelerator, tiles_per_call):
    return CountingHandler(params.spec, tiles_per_call, accelerator)


def test_tiles_per_call_batches_the_tiles_not_the_values(scenes, tmp_path):
    counting = Seams(model_handler=counting_handler)
    inputs = [f"{scenes}/u8.tif", f"{scenes}/multi.tif"]
    CountingHandler.calls.clear()
    assert run(inputs, tmp_path / "one", seams=counting).done == 2
    tiles, CountingHandler.calls[:] = len(CountingHandler.calls), []
    assert tiles >= 6
    assert run(inputs, tmp_path / "three", "--tiles-per-call=3", seams=counting).done == 2
    calls = CountingHandler.calls
    assert sum(calls) == tiles and max(calls) == 3 and len(calls) < tiles
    for scene in ("u8", "multi"):
        with rasterio.open(tmp_path / "one" / scene / "features.tif") as a, \
                rasterio.open(tmp_path / "three" / scene / "features.tif") as b:
            one, three = a.read(), b.read()
        # entropy (a count feature) is an exact integer sum: the same bits
        np.testing.assert_array_equal(three[1::len(FEATURES)], one[1::len(FEATURES)])
        np.testing.assert_allclose(three, one, rtol=1e-6, atol=1e-6)
    bad = run(inputs[:1], tmp_path / "bad", "--tiles-per-call=0")
    assert bad.exit_code == 2 and bad.error.startswith("--tiles-per-call: give at least 1")


def test_an_accelerators_shared_shapes_change_no_value(scenes, tmp_path, monkeypatch):
    # On a GPU the read step pads every scene's examples to the ladder's shapes (a
    # compilation costs more there than the padding): the same features, bit for bit,
    # as the CPU's rule, which keeps these scenes' own shapes.
    import transforms.read
    from transforms.read import ExampleShapes, own_shape

    given = []

    class Recorded(ExampleShapes):
        def __call__(self, task, params):
            shape = super().__call__(task, params)
            given.append((own_shape(task, params), shape))
            return shape

    assert run([str(scenes)], tmp_path / "cpu").done == 3
    assert not given  # the CPU's rule, this process's own
    monkeypatch.setattr(transforms.read, "example_shapes",
                        lambda accelerator: Recorded(accelerator=True))
    assert run([str(scenes)], tmp_path / "gpu").done == 3
    assert given and all(shape != mine and shape[0] >= mine[0] and shape[1] >= mine[1]
                         for mine, shape in given)
    for scene in ("u8", "f32_nodata", "multi"):
        with rasterio.open(tmp_path / "cpu" / scene / "features.tif") as a, \
                rasterio.open(tmp_path / "gpu" / scene / "features.tif") as b:
            np.testing.assert_array_equal(b.read(), a.read())


GPU_HINT = "type:nvidia-l4;count:1;install-nvidia-driver;machine_type:g2-standard-8"


def test_tile_accelerator_puts_only_the_tile_steps_on_gpu_workers(scenes, tmp_path):
    from pipeline.options import TextureOptions

    inputs = [f"{scenes}/u8.tif", f"{scenes}/multi.tif"]
    plain = run(inputs, tmp_path / "plain")
    fitted = run(inputs, tmp_path / "fitted", f"--tile-accelerator={GPU_HINT}")
    assert (plain.done, fitted.done, fitted.failures) == (2, 2, ())
    # every scene finished at the end of the run, off the tile steps: same outputs
    for scene in ("u8", "multi"):
        with rasterio.open(tmp_path / "plain" / scene / "features.tif") as a, \
                rasterio.open(tmp_path / "fitted" / scene / "features.tif") as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.descriptions == b.descriptions
    hints = accelerator_of_leaves(TextureOptions([
        f"--input={scenes}", f"--output={tmp_path / 'graph'}",
        f"--tile-accelerator={GPU_HINT}"]))
    for step in ("Read", "Texture", "TextureResults", "WriteTile"):
        assert hints_under(hints, step) and set(hints_under(hints, step).values()) == {
            GPU_HINT}, step
    for step in ("Discover", "Plan", "Finish", "WriteErrors"):
        assert hints_under(hints, step) and set(hints_under(hints, step).values()) == {
            None}, step
    assert not hints_under(hints, "FinishAfterLastTile")  # no mosaic on the GPU workers
    # without the flag: no hint anywhere, and the early finish is there
    plain_hints = accelerator_of_leaves(TextureOptions([
        f"--input={scenes}", f"--output={tmp_path / 'graph'}"]))
    assert set(plain_hints.values()) == {None}
    assert any(name.startswith("FinishAfterLastTile") for name in plain_hints)


def test_the_tiles_maps_travel_with_a_coder_that_sizes_them_without_a_pickle(scenes,
                                                                             tmp_path):
    from apache_beam.coders import TupleCoder
    from apache_beam.runners.pipeline_context import PipelineContext

    from pipeline.options import TextureOptions
    from transforms.texture import TextureOutcomeCoder

    graph = graph_of(TextureOptions([f"--input={scenes}",
                                     f"--output={tmp_path / 'graph'}"]))
    context = PipelineContext(graph.components)
    producers = {t.unique_name: t for t in graph.components.transforms.values()}
    for step in ("Texture", "TextureResults"):
        main = [pcoll for tag, pcoll in producers[step].outputs.items()
                if tag != ERRORS_TAG]
        assert len(main) == 1, (step, producers[step].outputs)
        coder = context.coders.get_by_id(graph.components.pcollections[main[0]].coder_id)
        assert isinstance(coder, TupleCoder), (step, coder)
        assert isinstance(coder.coders()[1], TextureOutcomeCoder), (step, coder)


@pytest.mark.parametrize("flags, message", [
    (["--tile-accelerator=type:nvidia-l4"], "positive count"),
    (["--tile-accelerator=count:1;install-nvidia-driver"], "name the GPU type"),
    (["--tile-accelerator=type:nvidia-l4;count:0"], "positive count"),
    ([f"--tile-accelerator={GPU_HINT}",
      "--experiments=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"],
     "drop the worker_accelerator experiment"),
    ([f"--tile-accelerator={GPU_HINT}",
      "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1"],
     "drop the worker_accelerator experiment"),
])
def test_tile_accelerator_refused_before_work(scenes, tmp_path, capsys, flags, message):
    out = tmp_path / "never"
    summary = main([f"--input={scenes}", f"--output={out}", *flags])
    assert summary.exit_code == 2 and message in summary.error, summary.error
    assert "--tile-accelerator" in capsys.readouterr().err
    assert not out.exists()


def test_progress_lines_say_the_seconds_since_the_run_started():
    formatter = ElapsedFormatter(start=1000.0)
    record = logging.LogRecord("glcm", logging.INFO, __file__, 1, "%s: done", ("a",),
                               None)
    record.created = 1012.34
    assert formatter.format(record) == "[glcm +12.3 s] a: done"
    record.created = 999.0  # a line logged before the run's clock started
    assert formatter.format(record) == "[glcm +0.0 s] a: done"
