"""STAC input: an ItemCollection written here, assets on local disk and on the
storage emulator, read as the bands of one scene per item. No network access."""

import json

import numpy as np
import rasterio
from rasterio.transform import Affine

import glcm
from pipeline.run import main
from transforms.io import storage

FLAGS = ["--features=contrast,mean", "--window=5", "--levels=16", "--tile=32"]
GEO = Affine(10, 0, 500000, 0, -10, 4000000)


def tif_bytes(path, seed, shape=(40, 50), transform=GEO):
    rng = np.random.default_rng(seed)
    data = (np.cumsum(rng.integers(0, 7, shape), axis=1) % 300).astype(np.uint16)
    with rasterio.open(path, "w", driver="GTiff", height=shape[0], width=shape[1],
                       count=1, dtype="uint16", crs="EPSG:32633", transform=transform) as dst:
        dst.write(data[None])
    return data


def item(item_id, assets, when="2026-11-01T10:10:29Z"):
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id,
            "collection": "sentinel-2-l2a", "geometry": None,
            "properties": {"datetime": when},
            "assets": {name: {"href": href, "type": "image/tiff"}
                       for name, href in assets.items()}}


def expected(data, manifest, key):
    vmin, vmax = manifest["quantization"][key]
    q, ok = glcm.quantize(data[None].astype(np.float64), 16, vmin, vmax)
    return np.asarray(glcm.texture_map(q, ["contrast", "mean"], 5, levels=16, mask=ok))[0]


def test_stac_item_collection_local_and_gcs_assets(bucket, tmp_path):
    gs = f"gs://{bucket}"
    folder = tmp_path / "stac"
    (folder / "a").mkdir(parents=True)
    local_nir = tif_bytes(folder / "a" / "nir.tif", 1)
    local_red = tif_bytes(folder / "a" / "red.tif", 2)
    remote = {}
    for name, seed in (("nir", 3), ("red", 4)):
        remote[name] = tif_bytes(tmp_path / f"{name}.tif", seed)
        storage.write_bytes(f"{gs}/b/{name}.tif", (tmp_path / f"{name}.tif").read_bytes())
    tif_bytes(tmp_path / "coarse.tif", 5, shape=(20, 25),
              transform=Affine(20, 0, 500000, 0, -20, 4000000))
    collection = {"type": "FeatureCollection", "features": [
        item("S2B_T33UUP_2026-11-01:0", {"nir": "a/nir.tif", "red": "./a/red.tif"}),
        item("remote", {"nir": f"{gs}/b/nir.tif", "red": f"{gs}/b/red.tif"},
             "2026-11-02T10:00:00Z"),
        item("no-red", {"nir": "a/nir.tif", "swir": "a/red.tif"}),
        item("gone", {"nir": "a/missing.tif", "red": "a/red.tif"}),
        item("two-grids", {"nir": "a/nir.tif", "red": str(tmp_path / "coarse.tif")}),
    ]}
    items = folder / "items.json"
    items.write_text(json.dumps(collection))
    out = tmp_path / "out"

    summary = main([f"--input={items}", "--asset=nir", "--asset=red",
                    f"--output={out}", *FLAGS])
    assert (summary.exit_code, summary.done, summary.new) == (0, 2, 2)
    failures = {f.scene_id: f for f in summary.failures}
    assert sorted(failures) == ["gone", "no-red", "two-grids"]
    assert failures["no-red"].stage == "discover"
    assert "has no asset 'red'; its assets: nir, swir" in failures["no-red"].message
    assert "a/missing.tif" in failures["gone"].message and "not found" in \
        failures["gone"].message
    assert failures["two-grids"].stage == "plan"
    assert "not on the same grid" in failures["two-grids"].message

    for sid, nir, red, hrefs, when in (
            ("S2B_T33UUP_2026-11-01_0", local_nir, local_red,
             {"nir": str(folder / "a" / "nir.tif"), "red": str(folder / "a" / "red.tif")},
             "2026-11-01T10:10:29Z"),
            ("remote", remote["nir"], remote["red"],
             {"nir": f"{gs}/b/nir.tif", "red": f"{gs}/b/red.tif"}, "2026-11-02T10:00:00Z")):
        manifest = json.loads((out / sid / "manifest.json").read_text())
        assert manifest["item"]["assets"] == hrefs
        assert manifest["item"]["datetime"] == when
        assert manifest["item"]["id"] in ("S2B_T33UUP_2026-11-01:0", "remote")
        assert manifest["input"] == f"{items}#{manifest['item']['id']}"
        with rasterio.open(out / sid / "features.tif") as src:
            assert src.descriptions == ("nir_contrast", "nir_mean", "red_contrast",
                                        "red_mean")
            assert (src.transform, src.crs.to_epsg()) == (GEO, 32633)
            got = np.moveaxis(src.read(), 0, -1)
        np.testing.assert_allclose(got[..., :2], expected(nir, manifest, "nir"),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[..., 2:], expected(red, manifest, "red"),
                                   rtol=1e-5, atol=1e-5)

    # a rerun skips both; the same collection on gs:// with relative hrefs there
    summary = main([f"--input={items}", "--asset=nir,red", f"--output={out}", *FLAGS])
    assert (summary.done, summary.skipped) == (0, 2)
    storage.write_bytes(f"{gs}/items.json", json.dumps({"type": "FeatureCollection",
        "features": [item("on-gcs", {"nir": "b/nir.tif", "red": "b/red.tif"})]}).encode())
    summary = main([f"--input={gs}/items.json", "--asset=red", f"--output={gs}/out",
                    *FLAGS])
    assert (summary.exit_code, summary.done, summary.failures) == (0, 1, ())
    manifest = json.loads(storage.read_bytes(f"{gs}/out/on-gcs/manifest.json"))
    assert manifest["item"]["assets"] == {"red": f"{gs}/b/red.tif"}


def test_stac_file_without_asset_is_a_record(tmp_path):
    items = tmp_path / "items.json"
    items.write_text(json.dumps(item("x", {"nir": "nir.tif"})))
    summary = main([f"--input={items}", f"--output={tmp_path / 'out'}", *FLAGS])
    [nothing, record] = sorted(summary.failures, key=lambda f: f.error)
    assert record.message.startswith("--asset: ") and \
        "is a STAC file: name the assets to read as bands" in record.message
    assert summary.exit_code == 2 and nothing.error == "NoRasterMatched"
