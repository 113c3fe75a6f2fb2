"""Model mode (--model): a trained Keras model applied tile by tile equals the model
applied to the whole scene; classes, manifests, reruns and refusals."""

import json
import os

import keras
import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

import glcm
from pipeline.run import main
from transforms.io.cog import NO_CLASS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def write_tif(path, array, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", height=array.shape[1],
                       width=array.shape[2], count=array.shape[0], dtype=array.dtype.name,
                       crs="EPSG:32633", transform=Affine(10, 0, 300000, 0, -10, 5000000),
                       nodata=nodata) as dst:
        dst.write(array)


def texture_model(seed=0, classes=3):
    """Quantize -> TextureMap (window 5, distances 1, 2) -> Dense softmax."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 1))
    codes = glcm.layers.Quantize(16, 0.0, 255.0)(x)
    maps = glcm.layers.TextureMap(["contrast", "entropy", "mean"], window=5, levels=16,
                                  distances=[1, 2])(codes)
    scaled = keras.layers.Rescaling(0.05)(maps)
    return keras.Model(x, keras.layers.Dense(classes, activation="softmax")(scaled))


def mixed_model(seed=1):
    """Two bands: a dilated convolution, texture of the first band, pooling, merged,
    a 1x1 convolution: halo = 2 (conv) + 3 (texture: window 3, distance 2) + 1
    (pool 3) = 6 on the longest path."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 2))
    smooth = keras.layers.Conv2D(2, 3, padding="same", dilation_rate=2)(x)
    codes = glcm.layers.Quantize(8, [-200.0, -200.0], [400.0, 400.0])(smooth)
    maps = glcm.layers.TextureMap(["asm", "homogeneity"], window=3, levels=8,
                                  distances=[2])(codes)
    pooled = keras.layers.AveragePooling2D(3, strides=1, padding="same")(maps)
    merged = keras.layers.Concatenate()([keras.layers.Rescaling(0.01)(x), pooled])
    y = keras.layers.Conv2D(4, 1)(keras.layers.BatchNormalization()(merged))
    return keras.Model(x, keras.layers.Softmax()(y))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(3)
    one = rng.integers(0, 256, (1, 53, 71)).astype(np.float32)
    one[0, 10:14, 20:30] = np.nan  # nodata inside
    one[0, :, -1] = np.nan  # and along an edge
    write_tif(folder / "one.tif", one, nodata=float("nan"))
    two = rng.integers(0, 300, (3, 45, 38)).astype(np.uint16)
    two[:, 30:33, 5:9] = 0
    write_tif(folder / "two.tif", two, nodata=0)
    return folder


def whole_scene(model, path, bands=None):
    with rasterio.open(path) as src:
        data = src.read(bands, masked=True).astype(np.float32)
    values = np.where(np.ma.getmaskarray(data), np.nan, data.data)
    values = np.where(np.isfinite(values), values, np.nan)
    return np.asarray(model(np.moveaxis(values, 0, -1)[None], training=False))[0]


def read(path):
    """(values (H, W, bands), the dataset's header: descriptions, nodata, tags,
    colour table)."""
    with rasterio.open(path) as src:
        header = dict(descriptions=src.descriptions, nodata=src.nodata, tags=src.tags(1),
                      colormap=src.colormap(1) if src.count == 1 and
                      src.dtypes[0] == "uint8" else None)
        return np.moveaxis(src.read(), 0, -1), header


def test_tiles_equal_the_whole_scene_and_classes_are_the_arg_max(scenes, tmp_path):
    model = texture_model()
    path = tmp_path / "texture.keras"
    model.save(path)
    out = tmp_path / "out"
    summary = main([f"--input={scenes}/one.tif", f"--output={out}", f"--model={path}",
                    "--classes=water,forest,urban", "--tile=16"])
    assert (summary.exit_code, summary.done, summary.failures) == (0, 1, ())
    folder = out / "one"
    assert sorted(os.listdir(folder)) == ["classes.tif", "manifest.json",
                                          "predictions.tif", "quicklook.png"]
    expected = whole_scene(keras.saving.load_model(path), scenes / "one.tif")
    got, src = read(folder / "predictions.tif")
    assert src["descriptions"] == ("water", "forest", "urban")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    classes, src = read(folder / "classes.tif")
    assert src["nodata"] == NO_CLASS and src["descriptions"] == ("class",)
    assert src["tags"]["CLASS_2"] == "urban" and src["colormap"][0][3] == 255
    known = np.isfinite(got).all(axis=-1)
    np.testing.assert_array_equal(classes[..., 0],
                                  np.where(known, np.argmax(np.nan_to_num(got), -1), 255))
    assert (classes == NO_CLASS).any() and (classes != NO_CLASS).any()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"]["halo"] == 4 and manifest["model"]["halo_derived"]
    assert manifest["model"]["digest"] and manifest["band_names"] == [
        "water", "forest", "urban"]
    assert manifest["outputs"] == ["predictions.tif", "classes.tif", "quicklook.png"]
    assert manifest["quantization"] == {}


def test_a_mixed_model_on_selected_bands_with_its_derived_halo(scenes, tmp_path):
    model = mixed_model()
    assert glcm.model_halo(model) == 6
    path = tmp_path / "mixed.keras"
    model.save(path)
    out = tmp_path / "out"
    # three tiles per model call (of one shape: edge tiles are smaller) give the
    # values of the whole scene too
    summary = main([f"--input={scenes}/two.tif", f"--output={out}", f"--model={path}",
                    "--bands=3,1", "--tile=16", "--tiles-per-call=3"])
    assert (summary.exit_code, summary.done, summary.failures) == (0, 1, ())
    assert sorted(os.listdir(out / "two")) == ["manifest.json", "predictions.tif",
                                               "quicklook.png"]
    expected = whole_scene(keras.saving.load_model(path), scenes / "two.tif", [3, 1])
    got, src = read(out / "two" / "predictions.tif")
    assert src["descriptions"] == ("p0", "p1", "p2", "p3")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(got).any()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_a_changed_model_recomputes_the_scene(scenes, tmp_path):
    path = tmp_path / "m.keras"
    texture_model(seed=0).save(path)
    out = tmp_path / "out"
    argv = [f"--input={scenes}/one.tif", f"--output={out}", f"--model={path}",
            "--tile=32"]
    assert main(argv).new == 1
    assert (main(argv).skipped, main(argv).done) == (1, 0)
    texture_model(seed=5).save(path)
    summary = main(argv)
    assert (summary.changed, summary.skipped) == (1, 0)
    expected = whole_scene(keras.saving.load_model(path), scenes / "one.tif")
    got, _ = read(out / "one" / "predictions.tif")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_a_model_whose_halo_cannot_be_derived_needs_model_halo(scenes, tmp_path, capsys):
    keras.utils.set_random_seed(0)
    x = keras.Input((None, None, 1))
    y = keras.layers.Conv2D(2, 3, padding="valid")(keras.layers.ZeroPadding2D(1)(x))
    path = tmp_path / "padded.keras"
    keras.Model(x, y).save(path)
    argv = [f"--input={scenes}/one.tif", f"--output={tmp_path}/out", f"--model={path}",
            "--tile=16"]
    assert main(argv).exit_code == 2
    err = capsys.readouterr().err
    assert "--model-halo:" in err and "ZeroPadding2D" in err
    summary = main(argv + ["--model-halo=1"])
    assert (summary.exit_code, summary.done) == (0, 1)
    manifest = json.loads((tmp_path / "out" / "one" / "manifest.json").read_text())
    assert (manifest["model"]["halo"], manifest["model"]["halo_derived"]) == (1, False)


@pytest.mark.parametrize("case,flag,words", [
    ("missing", "--model", "does not exist"),
    ("not_keras", "--model", "is not a Keras model file"),
    ("fixed_size", "--model", "tiles come in any size"),
    ("vector_output", "--model", "needs (batch, H, W, K)"),
    ("classes", "--classes", "2 class name(s) given"),
    ("bands", "--bands", "takes 1 channel(s), but 2 band(s) are selected"),
    ("block", "--mode", "cannot be combined with a model"),
])
def test_bad_models_are_refused_before_any_tile(scenes, tmp_path, capsys, case, flag,
                                                words):
    path = tmp_path / "m.keras"
    extra = []
    if case == "not_keras":
        path.write_text("not a model")
    elif case == "fixed_size":
        x = keras.Input((32, 32, 1))
        keras.Model(x, keras.layers.Dense(2)(x)).save(path)
    elif case == "vector_output":
        x = keras.Input((None, None, 1))
        keras.Model(x, keras.layers.GlobalAveragePooling2D()(x)).save(path)
    elif case != "missing":
        texture_model().save(path)
        extra = {"classes": ["--classes=a,b"], "bands": ["--bands=1,1"],
                 "block": ["--mode=block"]}[case]
    out = tmp_path / "out"
    summary = main([f"--input={scenes}/one.tif", f"--output={out}", f"--model={path}",
                    *extra])
    assert summary.exit_code == 2
    err = capsys.readouterr().err
    assert f"{flag}:" in err and words in err
    if flag == "--model":
        assert str(path) in err  # names the file
    assert not (out / "one").exists()


def test_a_scene_with_other_bands_than_the_model_is_a_record(scenes, tmp_path):
    path = tmp_path / "m.keras"
    texture_model().save(path)
    out = tmp_path / "out"
    summary = main([f"--input={scenes}", f"--output={out}", f"--model={path}",
                    "--tile=32"])
    assert (summary.done, len(summary.failures)) == (1, 1)
    record = summary.failures[0]
    assert record.stage == "plan" and record.scene_id == "two"
    assert record.message.startswith("--bands: ") and "3 selected band(s)" in record.message


def test_a_model_on_cloud_storage_maps_scenes_on_cloud_storage(scenes, bucket, tmp_path):
    """The model is read from gs:// (at launch to check it, on the workers to run it),
    like the scenes; outputs go back to gs:// and equal a local run's."""
    from transforms.io import storage

    local = tmp_path / "m.keras"
    texture_model(seed=2).save(local)
    gs = f"gs://{bucket}"
    storage.write_bytes(f"{gs}/models/m.keras", local.read_bytes())
    storage.write_bytes(f"{gs}/in/one.tif", (scenes / "one.tif").read_bytes())
    argv = ["--classes=a,b,c", "--tile=24"]
    summary = main([f"--input={gs}/in/one.tif", f"--output={gs}/out",
                    f"--model={gs}/models/m.keras", *argv])
    assert (summary.exit_code, summary.done, summary.failures) == (0, 1, ())
    assert main([f"--input={scenes}/one.tif", f"--output={tmp_path}/out",
                 f"--model={local}", *argv]).done == 1
    for name in ("predictions.tif", "classes.tif"):
        with rasterio.Env(**storage.gdal_options(gs)), rasterio.open(
                f"{gs}/out/one/{name}") as src:
            got = src.read()
        np.testing.assert_array_equal(got, read(tmp_path / "out" / "one" / name)[0]
                                      .transpose(2, 0, 1))
    manifest = json.loads(storage.read_bytes(f"{gs}/out/one/manifest.json"))
    blob = storage.client().bucket(bucket).get_blob("models/m.keras")
    assert manifest["model"]["uri"] == f"{gs}/models/m.keras"
    assert manifest["model"]["fingerprint"] == f"{blob.size}-{blob.generation}"


@pytest.mark.slow  # two SDK worker processes, each importing TensorFlow
def test_multi_processing_workers_load_the_model_and_equal_the_whole_scene(scenes,
                                                                           tmp_path):
    path = tmp_path / "mixed.keras"
    mixed_model().save(path)
    out = tmp_path / "out"
    summary = main([f"--input={scenes}/two.tif", f"--output={out}", f"--model={path}",
                    "--bands=2,3", "--tile=16", "--direct_running_mode=multi_processing",
                    "--direct_num_workers=2"])
    assert (summary.exit_code, summary.done, summary.failures) == (0, 1, ())
    expected = whole_scene(keras.saving.load_model(path), scenes / "two.tif", [2, 3])
    got, _ = read(out / "two" / "predictions.tif")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    manifest = json.loads((out / "two" / "manifest.json").read_text())
    assert sum(manifest["workers"].values()) == manifest["tiles"] == 9


def test_model_calls_stack_the_tiles_of_one_shape():
    from transforms.records import ModelRef
    from transforms.texture import KerasFileModelHandler

    model = texture_model()
    rng = np.random.default_rng(3)
    shapes = [(20, 24, 1), (20, 24, 1), (17, 24, 1), (20, 24, 1)]
    tiles = [rng.uniform(0, 255, shape).astype(np.float32) for shape in shapes]
    tiles[1][3:5, 2:9] = np.nan
    handler = KerasFileModelHandler(ModelRef("m.keras", "", "0", 1, 3, 4),
                                    max_batch_size=4)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 4, "max_batch_size": 4}
    calls = []

    def counted(values, training):
        calls.append(values.shape[0])
        return model(values, training=training)

    out = handler.run_inference([{"values": tile} for tile in tiles], counted)
    assert calls == [3, 1]  # one call per shape, in the order of first appearance
    for tile, got in zip(tiles, out):
        np.testing.assert_allclose(got, np.asarray(model(tile[None], training=False))[0],
                                   rtol=1e-5, atol=1e-6, equal_nan=True)
    wrong = KerasFileModelHandler(ModelRef("m.keras", "", "0", 1, 5, 4))
    with pytest.raises(ValueError, match=r"returned \(20, 24, 3\) for a tile of "
                                         r"\(20, 24, 1\); expected \(20, 24, 5\)"):
        wrong.run_inference([{"values": tiles[0]}], counted)
