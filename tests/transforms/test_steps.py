"""Each step of the graph on its own, on Beam's TestPipeline: its outputs, its error
records, and the timings it passes on. Real GeoTIFFs; faults come through seams."""

import apache_beam as beam
import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from tests.beam_util import run_step
from transforms.errors import ERRORS_TAG
from transforms.finish import FinishScenes
from transforms.io import storage
from transforms.layout import read_manifest, scenes_for
from transforms.plan import SKIPPED_TAG, PlanScenes
from transforms.io.raster import TileWindows
from transforms.read import (ExampleShapes, ReadTiles, SpreadTiles, read_example,
                             tile_shape)
from transforms.records import Scene, TextureFailure, TextureOutput, TextureParams
from transforms.save import SaveTiles
from transforms.texture import (TextureModelHandler, TextureOutcomeCoder, TextureResults,
                                TileModelHandler)

RUN = "20261201T000000-0123abcd"


@pytest.fixture
def scene(tmp_path):
    path = tmp_path / "scene.tif"
    data = np.random.default_rng(0).integers(0, 200, (1, 40, 50)).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", height=40, width=50, count=1,
                       dtype="uint8", crs="EPSG:32632",
                       transform=Affine(10, 0, 600000, 0, -10, 5000000)) as dst:
        dst.write(data)
    [found] = scenes_for([Scene("", uri, fp) for uri, fp in storage.match(str(path))])
    return found


PARAMS = TextureParams.create(features="contrast,mean", window=3, levels=8, tile=25)


def broken_read(uri, band, tile):
    raise ValueError(f"injected: {uri} band {band} is corrupt")


def test_plan_step_emits_tasks_and_records(scene, tmp_path):
    out = str(tmp_path / "out")
    missing = Scene("ghost", str(tmp_path / "ghost.tif"), "0-0")
    found = run_step([scene, missing], PlanScenes(PARAMS, out, False),
                     ("tasks", ERRORS_TAG, SKIPPED_TAG))
    assert len(found["tasks"]) == 4 and found[SKIPPED_TAG] == []
    assert {t.n_tasks for t in found["tasks"]} == {4}
    assert all(t.plan_seconds > 0 for t in found["tasks"])
    [record] = found[ERRORS_TAG]
    assert (record.scene_id, record.stage) == ("ghost", "plan")
    assert "cannot be opened as a raster" in record.message


def test_read_step_passes_read_time_and_records_a_failing_reader(scene, tmp_path):
    from transforms.plan import plan_scene

    _, tasks = plan_scene(scene, PARAMS, str(tmp_path / "out"))
    found = run_step(tasks[:2], ReadTiles(PARAMS), ("examples", ERRORS_TAG))
    assert len(found["examples"]) == 2 and found[ERRORS_TAG] == []
    # cores of 25 (29 with the halo), or the ladder's first rung, 64, for the first
    # scene of that size in this process (ExampleShapes); the same for every tile
    sides = {example["codes"].shape for _, example in found["examples"]}
    assert len(sides) == 1 and sides <= {(29, 29), (64 + 2 * PARAMS.halo,) * 2}
    assert all(example["read_seconds"] >= 0 for _, example in found["examples"])
    # a reader that fails with bad data: one record per tile, not retried
    found = run_step(tasks[:2], ReadTiles(PARAMS, read_tile=broken_read),
                     ("examples", ERRORS_TAG))
    assert found["examples"] == []
    assert [(r.stage, r.error) for r in found[ERRORS_TAG]] == [("read", "ValueError")] * 2
    assert "injected" in found[ERRORS_TAG][0].message


class NoBackendOps:
    """Stands in for keras.ops: any use fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the read step called keras.ops.{name}: on a GPU worker "
                             f"that is a round trip to the device")


def test_read_step_quantizes_on_the_host(scene, tmp_path, monkeypatch):
    import glcm
    import glcm.quantization
    from transforms.io.raster import read_tile
    from transforms.plan import plan_scene

    _, tasks = plan_scene(scene, PARAMS, str(tmp_path / "out"))
    task = tasks[-1]  # the corner tile: padded on two sides
    values, valid = read_tile(task.source.uri, task.source.band, task.tile)
    codes, ok = glcm.quantize(values, PARAMS.levels, task.vmin, task.vmax, mask=valid,
                              host=True)
    monkeypatch.setattr(glcm.quantization, "ops", NoBackendOps())
    example = read_example(task, PARAMS)
    h, w = codes.shape
    np.testing.assert_array_equal(example["codes"][:h, :w], codes)
    np.testing.assert_array_equal(example["valid"][:h, :w], ok)
    assert not example["valid"][h:].any() and not example["valid"][:, w:].any()
    assert example["codes"].dtype == np.int32 and example["valid"].dtype == bool


def test_scenes_of_nearby_sizes_read_examples_of_one_shape(tmp_path):
    # Pixel mode pads small tiles to a shared shape (one compiled kernel for scenes of
    # both sizes), invalid beyond the scene; a later scene of a size seen before keeps
    # its own (a collection of one size compiles its own shape instead of padding
    # every scene); block mode keeps each scene's own (it cuts the example into blocks).
    from transforms.plan import plan_scene

    params = TextureParams.create(features="contrast", window=3, levels=8)
    block = TextureParams.create(features="contrast", levels=8, mode="block", block=8)
    shapes = ExampleShapes()
    shared = (64 + 2 * params.halo,) * 2
    got = {}
    for name, height, width in [("a", 40, 50), ("b", 57, 33), ("c", 40, 50)]:
        path = tmp_path / f"{name}.tif"
        data = np.random.default_rng(height).integers(0, 200, (1, height, width))
        with rasterio.open(path, "w", driver="GTiff", height=height, width=width,
                           count=1, dtype="uint8", crs="EPSG:32632",
                           transform=Affine(10, 0, 600000, 0, -10, 5000000)) as dst:
            dst.write(data.astype(np.uint8))
        [scene] = scenes_for([Scene("", u, fp) for u, fp in storage.match(str(path))])
        [task] = plan_scene(scene, params, str(tmp_path / "out"))[1]
        example = read_example(task, params, shapes=shapes)
        got[name] = example["codes"].shape
        inside = np.zeros(example["valid"].shape, bool)  # the scene, after the halo
        inside[params.halo:params.halo + height, params.halo:params.halo + width] = True
        np.testing.assert_array_equal(example["valid"], inside)
        assert tile_shape(task, params) == shared
        [block_task] = plan_scene(scene, block, str(tmp_path / "block"))[1]
        assert read_example(block_task, block, shapes=shapes)["codes"].shape == (
            -(-height // 8) * 8, -(-width // 8) * 8)
        if name == "a":
            first = task
    assert got == {"a": shared, "b": shared, "c": (48 + 2 * params.halo, 64 + 2 * params.halo)}
    assert read_example(first, params, shapes=shapes)["codes"].shape == shared  # kept


def _first_task(tmp_path, name, height, width, params):
    """The first TileTask of a uint8 GeoTIFF of height x width written for the test."""
    from transforms.plan import plan_scene

    path = tmp_path / f"{name}.tif"
    data = np.random.default_rng(height * width).integers(0, 200, (1, height, width))
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=1,
                       dtype="uint8", crs="EPSG:32632",
                       transform=Affine(10, 0, 600000, 0, -10, 5000000)) as dst:
        dst.write(data.astype(np.uint8))
    [scene] = scenes_for([Scene("", u, fp) for u, fp in storage.match(str(path))])
    return plan_scene(scene, params, str(tmp_path / "out" / name))[1][0]


def test_on_an_accelerator_scenes_take_the_ladder_until_their_padding_pays_a_compilation(
        tmp_path, monkeypatch):
    # A compilation costs a GPU far more than padding: the ladder's shape whatever a
    # scene's own padding (here none allowed on the CPU), until the scenes of one size
    # have been padded by the budget; then that size's own shape. A scene keeps its
    # shape; another size has its own account; a scene padded beyond the budget alone
    # takes its own shape at once.
    import transforms.plan
    from transforms.read import ladder_shape, own_shape

    params = TextureParams.create()
    monkeypatch.setattr(transforms.plan, "SHARED_SHAPE_EXTRA_PIXELS", 0)
    tasks = {name: _first_task(tmp_path, name, h, w, params)
             for name, h, w in [("a", 150, 170), ("b", 150, 170), ("c", 150, 170),
                                ("d", 100, 120), ("e", 150, 170)]}
    own, (ladder, extra) = own_shape(tasks["a"], params), ladder_shape(tasks["a"], params)
    assert own == (168, 184) and ladder == (200, 200)
    assert extra == 200 * 200 - 168 * 184
    assert tile_shape(tasks["a"], params) == own  # the CPU's rule pads none of them
    shapes = ExampleShapes(accelerator=True, budget=2 * extra + extra // 2)
    got = {name: shapes(task, params) for name, task in tasks.items()}
    assert got == {"a": ladder, "b": ladder, "c": own, "d": (136, 136), "e": own}
    assert shapes(tasks["a"], params) == ladder and shapes(tasks["c"], params) == own
    assert read_example(tasks["b"], params, shapes=shapes)["codes"].shape == ladder
    alone = ExampleShapes(accelerator=True, budget=extra - 1)
    assert alone(tasks["b"], params) == own
    # The CPU's rule, for comparison: nothing padded with no padding allowed.
    assert {ExampleShapes()(task, params) for task in tasks.values()} == {
        own, own_shape(tasks["d"], params)}


def test_a_padding_account_keeps_each_key_within_its_budget():
    # Rent or buy, shared by the read step's shapes and the texture step's filling:
    # padding is granted per key until the next grant would pass the budget; a
    # refused grant is not counted; threads at once never overspend.
    from concurrent.futures import ThreadPoolExecutor

    from transforms.plan import PaddingAccount

    account = PaddingAccount(100)
    assert [account.pad("a", 40) for _ in range(3)] == [True, True, False]
    assert account.pad("a", 20) and not account.pad("a", 1)  # 40 + 40 + 20 = 100
    assert account.pad("b", 100) and not account.pad("c", 101)
    shared = PaddingAccount(1000)
    with ThreadPoolExecutor(8) as pool:
        granted = list(pool.map(lambda _: shared.pad("k", 3), range(2000)))
    assert sum(granted) == 333


def test_the_read_step_shares_shapes_as_its_texture_step_computes():
    from transforms.read import ACCELERATOR_EXAMPLE_SHAPES, EXAMPLE_SHAPES, example_shapes
    from transforms.texture import visible_gpus

    assert example_shapes("none") is EXAMPLE_SHAPES
    for accelerator in ("optional", "required"):
        expected = ACCELERATOR_EXAMPLE_SHAPES if visible_gpus() else EXAMPLE_SHAPES
        assert example_shapes(accelerator) is expected
    assert ACCELERATOR_EXAMPLE_SHAPES.accelerator and not EXAMPLE_SHAPES.accelerator


def test_texture_of_an_example_does_not_depend_on_its_padding(tmp_path):
    # The first scene of a size is padded to the ladder's rung, later ones to their
    # own shape: the core's features must be the same bits either way.
    import glcm
    from transforms.plan import plan_scene
    from transforms.read import own_shape
    from transforms.records import DEFAULT_FEATURES

    path = tmp_path / "clip.tif"
    rng = np.random.default_rng(3)
    data = (np.cumsum(rng.integers(0, 5, (1, 150, 170)), axis=2) % 256).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", height=150, width=170, count=1,
                       dtype="uint8", crs="EPSG:32632", nodata=0,
                       transform=Affine(10, 0, 600000, 0, -10, 5000000)) as dst:
        dst.write(data)
    [scene] = scenes_for([Scene("", u, fp) for u, fp in storage.match(str(path))])
    params = TextureParams.create()
    [task] = plan_scene(scene, params, str(tmp_path / "out"))[1]
    own, shared = own_shape(task, params), tile_shape(task, params)
    assert own == (168, 184) and shared == (200, 200)
    cores = []
    for shape in (shared, own):
        example = read_example(task, params, shapes=lambda t, p, shape=shape: shape)
        maps = np.asarray(glcm.texture_map(example["codes"][None], DEFAULT_FEATURES,
                                           params.window, levels=params.levels,
                                           mask=example["valid"][None]))[0]
        cores.append(maps[params.halo:params.halo + 150, params.halo:params.halo + 170])
    assert np.isfinite(cores[0]).mean() > 0.5
    np.testing.assert_array_equal(cores[0], cores[1])


# Windows decoded by CountingWindows, as (uri, window) keys (one process: the
# DirectRunner runs the steps in this one).
_DECODED = []


class CountingWindows(TileWindows):
    """The default reader, noting each window it decodes for every band at once."""

    def __call__(self, uri, band, tile):
        key = (uri, tile.read_row, tile.read_col)
        if key != self._key_seen:
            _DECODED.append(key)
        self._key_seen = key
        return super().__call__(uri, band, tile)

    _key_seen = None


class SpreadThenRead(beam.PTransform):
    """SpreadTiles, then ReadTiles with :class:`CountingWindows`, as the graph has
    them."""

    def expand(self, tasks):
        read = (tasks | SpreadTiles() | beam.ParDo(ReadTiles(
            PARAMS, read_tile=CountingWindows())).with_outputs(ERRORS_TAG, main="examples"))
        return {"examples": read.examples, ERRORS_TAG: read[ERRORS_TAG]}


def test_spread_tiles_reads_a_tiles_bands_together(tmp_path):
    path = tmp_path / "three.tif"
    data = np.random.default_rng(1).integers(0, 200, (3, 40, 50)).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", height=40, width=50, count=3,
                       dtype="uint8", crs="EPSG:32632", interleave="pixel",
                       transform=Affine(10, 0, 600000, 0, -10, 5000000)) as dst:
        dst.write(data)
    [scene] = scenes_for([Scene("", uri, fp) for uri, fp in storage.match(str(path))])
    from transforms.plan import plan_scene

    _, tasks = plan_scene(scene, PARAMS, str(tmp_path / "out"))
    assert len(tasks) == 12  # 4 tiles x 3 bands, in band order
    shuffled = [tasks[k] for k in np.random.default_rng(2).permutation(len(tasks))]
    _DECODED.clear()
    found = run_step(shuffled, SpreadThenRead())
    assert found[ERRORS_TAG] == []
    assert sorted(_DECODED) == sorted(set(_DECODED)) and len(_DECODED) == 4
    got = {(t.tile.key, t.band_index): e for t, e in found["examples"]}
    assert len(got) == 12
    for task in tasks:  # the values band by band
        want = read_example(task, PARAMS)
        for name in ("codes", "valid"):
            np.testing.assert_array_equal(got[task.tile.key, task.band_index][name],
                                          want[name])


def test_texture_results_turn_failures_into_records(scene, tmp_path):
    from transforms.plan import plan_scene

    _, tasks = plan_scene(scene, PARAMS, str(tmp_path / "out"))
    maps = np.zeros((31, 31, 2), np.float32)
    found = run_step([(tasks[0], TextureOutput(maps, 0.1, 0.2)),
                      (tasks[1], TextureFailure("RuntimeError", "out of memory"))],
                     TextureResults(), ("maps", ERRORS_TAG))
    assert [t for t, _ in found["maps"]] == [tasks[0]]
    [record] = found[ERRORS_TAG]
    assert (record.stage, record.error, record.message) == ("texture", "RuntimeError",
                                                            "out of memory")


def test_save_and_finish_steps_keep_each_scenes_step_times(scene, tmp_path):
    from transforms.plan import plan_scene

    out = str(tmp_path / "out")
    _, tasks = plan_scene(scene, PARAMS, out)
    side = PARAMS.tile_size + 2 * PARAMS.halo
    computed = [(task, TextureOutput(np.full((side, side, 2), k, np.float32), 0.5, 2.0,
                                     0.75))
                for k, task in enumerate(tasks)]
    saved = run_step(computed, SaveTiles(PARAMS, out, RUN), ("saved", ERRORS_TAG))
    assert saved[ERRORS_TAG] == [] and len(saved["saved"]) == 4
    results = [result for _, result in saved["saved"]]
    assert all(dict(r.timings)["texture"] == 2.0 for r in results)
    # a scene whose tiles are not all there: a mosaic record, nothing written
    partial = run_step([(scene.scene_id, results[:3])], FinishScenes(PARAMS, out, RUN),
                       ("done", ERRORS_TAG))
    assert partial["done"] == [] and partial[ERRORS_TAG][0].stage == "mosaic"
    assert "1 of 4 tiles failed" in partial[ERRORS_TAG][0].message
    assert read_manifest(out, scene.scene_id) is None
    done = run_step([(scene.scene_id, results)], FinishScenes(PARAMS, out, RUN),
                    ("done", ERRORS_TAG))
    assert done == {"done": [scene.scene_id], ERRORS_TAG: []}
    timings = read_manifest(out, scene.scene_id).timings
    assert timings["read_seconds"] == pytest.approx(2.0)  # 4 tiles x 0.5
    assert timings["texture_seconds"] == pytest.approx(8.0)
    assert timings["texture_wait_seconds"] == pytest.approx(3.0)  # of those 8
    assert timings["plan_seconds"] > 0 and timings["save_seconds"] > 0
    assert timings["mosaic_seconds"] > 0


def test_the_cog_codec_is_recorded_but_never_changes_the_digest():
    from transforms.io.cog import CODECS
    from transforms.records import COMPRESSIONS, ModelRef, ObjectsRef

    assert sorted(CODECS) == sorted(COMPRESSIONS)  # the choices and their settings

    model = ModelRef("m.keras", "1-2", "abcd", channels=1, outputs=3, halo=4)
    polygons = ObjectsRef("p.gpkg", "id", "1-2", "ef01", 10, "EPSG:4326")
    for base in (dict(), dict(model=model), dict(mode="objects", objects=polygons)):
        default = TextureParams.create(**base)
        deflate = TextureParams.create(cog_compression="deflate", **base)
        assert deflate.digest() == default.digest()
        assert "cog_compression" not in default.to_json()
        if not base.get("objects"):  # objects mode writes no COG
            assert deflate.to_json()["cog_compression"] == "deflate"
    with pytest.raises(ValueError, match="COG compression must be one of") as refused:
        TextureParams.create(cog_compression="jpeg")
    assert refused.value.parameter == "cog_compression"


class Unpicklable(np.ndarray):
    """Maps that cannot be pickled: sizing them must not try."""

    def __reduce_ex__(self, protocol):
        raise AssertionError("pickled")


def test_texture_outcomes_round_trip_and_are_sized_without_a_pickle():
    coder = TextureOutcomeCoder()
    maps = np.random.default_rng(0).random((40, 30, 8), dtype=np.float32)
    output, failure = TextureOutput(maps, 0.25, 1.5), TextureFailure("MemoryError", "tile")
    decoded = coder.decode(coder.encode(output))
    np.testing.assert_array_equal(decoded.maps, maps)
    assert (decoded.read_seconds, decoded.texture_seconds) == (0.25, 1.5)
    assert coder.decode(coder.encode(failure)) == failure
    # the estimate is the encoded size to within the allowance, never below it
    encoded = len(coder.encode(output))
    assert encoded <= coder.estimate_size(output) <= encoded + coder.OVERHEAD_BYTES
    assert coder.estimate_size(failure) == len(coder.encode(failure))
    # sized from the array alone: maps that cannot be pickled are sized all the same
    unpicklable = TextureOutput(maps.view(Unpicklable))
    assert coder.estimate_size(unpicklable) == maps.nbytes + coder.OVERHEAD_BYTES
    with pytest.raises(AssertionError, match="pickled"):
        coder.encode(unpicklable)


class InstantModel(TextureModelHandler):
    """The texture model handler with a model that costs nothing, for the handler's
    own bookkeeping."""

    def load_model(self):
        return lambda inputs: np.zeros(
            inputs[0].shape[:1] + self.map_size(*inputs[0].shape[1:])
            + (len(self.spec.features),), np.float32)


def test_texture_step_counts_the_wait_for_the_model_apart(scene, tmp_path):
    """A tile that waits for another thread's model call: its texture seconds include
    the wait, and its wait seconds say how much of them it was."""
    import threading

    from transforms import texture
    from transforms.plan import plan_scene

    _, tasks = plan_scene(scene, PARAMS, str(tmp_path / "out"))
    handler = TileModelHandler(InstantModel(PARAMS.spec))
    model = handler.load_model()
    examples = [(task, read_example(task, PARAMS)) for task in tasks[:2]]
    [(_, alone)] = handler.run_inference(examples[:1], model)
    assert alone.texture_seconds >= 0 and alone.wait_seconds < 0.2
    held, release = threading.Event(), threading.Event()

    def other_call():  # another thread's model call, 0.5 s long
        with texture.model_turn("CPU"):
            held.set()
            release.wait(5)

    other = threading.Thread(target=other_call)
    other.start()
    held.wait(5)
    threading.Timer(0.5, release.set).start()
    outputs = handler.run_inference(examples, model)
    other.join()
    for _, out in outputs:  # two tiles in one call share its seconds
        assert out.wait_seconds >= 0.2
        assert out.texture_seconds >= out.wait_seconds
    assert texture.take_waited() == 0.0  # the call took its own tally
