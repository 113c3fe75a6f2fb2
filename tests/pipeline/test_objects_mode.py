"""Objects mode (--mode objects): per-polygon features written as GeoParquet equal an
independent count of each polygon's pairs on the whole scene (each polygon
rasterized on its own), across tile seams, overlaps, nodata and scene edges."""

import json
import os
import re

import geopandas
import numpy as np
import pytest
import rasterio
import shapely
from rasterio import features as rio_features
from rasterio.transform import Affine

import glcm
from pipeline.run import main
from tests.beam_util import accelerator_of_leaves, hints_under
from tests.glcm.reference import feature_scale, numpy_features

GEO = Affine(10, 0, 300000, 0, -10, 5000000)
FEATURES = ["contrast", "asm", "entropy", "correlation", "mean", "cluster_shade"]


def write_tif(path, array, crs="EPSG:32633"):
    with rasterio.open(path, "w", driver="GTiff", height=array.shape[1],
                       width=array.shape[2], count=array.shape[0], dtype="float32",
                       crs=crs, transform=GEO, nodata=np.nan) as dst:
        dst.write(array.astype(np.float32))


def utm_box(col0, row0, col1, row1):
    """A box over pixel columns col0..col1, rows row0..row1 (fractions allowed)."""
    (x0, y0), (x1, y1) = GEO @ (col0, row0), GEO @ (col1, row1)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def polygons():
    """UTM polygons: seams, an overlap, a hole, the scene edge, outside, a sliver."""
    shapes = {
        "field-a": utm_box(3, 2, 40, 30),                       # across seams (tile 16)
        "field-b": utm_box(20, 10, 33.5, 47.5),                  # overlaps field-a
        "ring": utm_box(42, 5, 70, 40).difference(utm_box(50, 12, 60, 30)),  # a hole
        "edge": utm_box(60, 45, 90, 70),                         # leaves the scene
        "outside": utm_box(200, 200, 220, 230),                  # no row
        "sliver": utm_box(10.6, 50.6, 10.9, 50.9),               # no pixel centre
        "multi": shapely.MultiPolygon([utm_box(2, 40, 12, 55), utm_box(30, 50, 45, 58)]),
        "triangle": shapely.Polygon([GEO @ (5, 58), GEO @ (25, 58), GEO @ (15, 44)]),
        # touching along lines through pixel centres: one layer, no pixel shared
        "west": utm_box(46, 45.5, 55.5, 60),
        "east": utm_box(55.5, 45.5, 60, 60),
    }
    return geopandas.GeoDataFrame({"parcel": list(shapes)}, geometry=list(shapes.values()),
                                  crs="EPSG:32633")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("objects")
    rng = np.random.default_rng(8)
    bands = np.stack([rng.normal(100, 30, (61, 75)), rng.gamma(2.0, 20.0, (61, 75))])
    bands[:, 20:24, 8:30] = np.nan  # nodata inside field-a
    bands[1, 40:43, 60:66] = np.nan  # one band only
    write_tif(folder / "scene.tif", bands)
    # In another CRS than the scene: reprojected per scene.
    polygons().to_crs("EPSG:4326").to_file(folder / "parcels.gpkg", driver="GPKG")
    return folder


def reference(scene_path, parcel, polygon_4326, ranges, distances, levels):
    """{band name: feature vector} and the pixel count of one polygon, computed on the
    whole scene: the polygon rasterized alone, pairs counted with numpy slicing."""
    with rasterio.open(scene_path) as src:
        values = src.read().astype(np.float64)
        crs, transform = src.crs, src.transform
    geometry = geopandas.GeoSeries([polygon_4326], crs="EPSG:4326").to_crs(crs).iloc[0]
    inside = rio_features.rasterize([(geometry, 1)], out_shape=values.shape[1:],
                                    transform=transform, fill=0, dtype="uint8") == 1
    offsets = glcm.validation.pixel_offsets(distances, np.radians([0, 45, 90, 135]))
    out, valid_counts = {}, {}
    for b, (vmin, vmax) in enumerate(ranges):
        codes, ok = glcm.quantize(values[b], levels, vmin, vmax)
        codes, ok = np.asarray(codes), np.asarray(ok) & inside
        valid_counts[b] = int(ok.sum())
        per_offset, scales = [], []
        for dr, dc in offsets:
            H, W = codes.shape
            r0, r1, c0, c1 = max(0, -dr), min(H, H - dr), max(0, -dc), min(W, W - dc)
            both = ok[r0:r1, c0:c1] & ok[r0 + dr:r1 + dr, c0 + dc:c1 + dc]
            P = np.zeros((levels, levels))
            np.add.at(P, (codes[r0:r1, c0:c1][both],
                          codes[r0 + dr:r1 + dr, c0 + dc:c1 + dc][both]), 1)
            P = P + P.T
            if P.sum():
                f = numpy_features(P)
                per_offset.append([f[name] for name in FEATURES])
                scales.append([feature_scale(P, name) for name in FEATURES])
        out[b] = ((np.mean(per_offset, axis=0), np.max(scales, axis=0)) if per_offset
                  else (np.full(len(FEATURES), np.nan), 1.0))
    return out, int(inside.sum()), valid_counts


def test_each_polygon_equals_an_independent_count_on_the_whole_scene(scene, tmp_path):
    out = tmp_path / "out"
    summary = main([f"--input={scene}/scene.tif", f"--output={out}", "--mode=objects",
                    f"--objects={scene}/parcels.gpkg", "--object-id=parcel",
                    f"--features={','.join(FEATURES)}", "--levels=16", "--distances=1,2",
                    "--tile=16"])
    assert (summary.exit_code, summary.done, summary.failures) == (0, 1, ())
    assert sorted(os.listdir(out / "scene")) == ["manifest.json", "objects.parquet"]
    table = geopandas.read_parquet(out / "scene" / "objects.parquet")
    manifest = json.loads((out / "scene" / "manifest.json").read_text())
    assert manifest["outputs"] == ["objects.parquet"]
    assert manifest["objects"]["id_field"] == "parcel" and manifest["objects"]["digest"]
    assert manifest["objects"]["rows"] == len(table) == 9
    assert table.crs.to_epsg() == 4326  # the polygons as given
    assert sorted(table.parcel) == sorted(set(polygons().parcel) - {"outside"})
    names = [f"b{b}_{f}" for b in (1, 2) for f in FEATURES]
    assert list(table.columns) == ["parcel", "geometry", "pixels", "b1_valid_pixels",
                                   "b2_valid_pixels"] + names
    ranges = [manifest["quantization"]["1"], manifest["quantization"]["2"]]
    for _, row in table.iterrows():
        expected, pixels, valid = reference(scene / "scene.tif", row.parcel, row.geometry,
                                            ranges, [1, 2], 16)
        assert row.pixels == pixels, row.parcel
        for b in (0, 1):
            assert row[f"b{b + 1}_valid_pixels"] == valid[b], row.parcel
            values, scale = expected[b]
            got = row[[f"b{b + 1}_{f}" for f in FEATURES]].to_numpy(float)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(values))
            assert np.all(np.abs(np.nan_to_num(got - values)) <= 2e-4 * scale), row.parcel
    sliver = table[table.parcel == "sliver"].iloc[0]
    assert sliver.pixels == 0 and np.isnan(sliver.b1_contrast)

    # A rerun skips the scene; changed polygons recompute it.
    again = main([f"--input={scene}/scene.tif", f"--output={out}", "--mode=objects",
                  f"--objects={scene}/parcels.gpkg", "--object-id=parcel",
                  f"--features={','.join(FEATURES)}", "--levels=16", "--distances=1,2",
                  "--tile=16"])
    assert (again.skipped, again.done) == (1, 0)
    moved = polygons()
    moved.loc[0, "geometry"] = utm_box(3, 2, 30, 30)
    moved.to_file(tmp_path / "moved.gpkg", driver="GPKG")
    changed = main([f"--input={scene}/scene.tif", f"--output={out}", "--mode=objects",
                    f"--objects={tmp_path}/moved.gpkg", "--object-id=parcel",
                    f"--features={','.join(FEATURES)}", "--levels=16", "--distances=1,2",
                    "--tile=16"])
    assert (changed.changed, changed.done) == (1, 1)


def test_tile_size_does_not_change_the_numbers(scene, tmp_path):
    tables = []
    for tile in (16, 100):
        out = tmp_path / f"out{tile}"
        summary = main([f"--input={scene}/scene.tif", f"--output={out}", "--mode=objects",
                        f"--objects={scene}/parcels.gpkg", "--object-id=parcel",
                        "--features=contrast,entropy", f"--tile={tile}"])
        assert summary.exit_code == 0 and summary.done == 1
        tables.append(geopandas.read_parquet(out / "scene" / "objects.parquet")
                      .sort_values("parcel").reset_index(drop=True))
    columns = [c for c in tables[0].columns if c != "geometry"]
    assert tables[0][columns].equals(tables[1][columns])


def test_tile_accelerator_puts_every_objects_step_on_gpu_workers(scene, tmp_path):
    from pipeline.options import TextureOptions

    hint = "type:nvidia-l4;count:1;install-nvidia-driver"
    flags = [f"--input={scene}/scene.tif", "--mode=objects",
             f"--objects={scene}/parcels.gpkg", "--object-id=parcel",
             "--features=contrast,entropy", "--tile=32"]
    tables = []
    for name, extra in (("plain", []), ("fitted", [f"--tile-accelerator={hint}"])):
        summary = main([*flags, f"--output={tmp_path / name}", *extra])
        assert summary.exit_code == 0 and summary.done == 1
        tables.append(geopandas.read_parquet(tmp_path / name / "scene" / "objects.parquet")
                      .sort_values("parcel").reset_index(drop=True))
    columns = [c for c in tables[0].columns if c != "geometry"]
    assert tables[0][columns].equals(tables[1][columns])
    hints = accelerator_of_leaves(TextureOptions(
        [*flags, f"--output={tmp_path / 'graph'}", f"--tile-accelerator={hint}"]))
    objects = {**hints_under(hints, "Read"), **hints_under(hints, "Objects")}
    assert objects and set(objects.values()) == {hint}
    assert set({**hints_under(hints, "Plan"), **hints_under(hints, "Discover")}.values()
               ) == {None}


def bad_files(folder):
    """(file, --object-id, message) for each kind of bad polygon file."""
    good = polygons()
    (folder / "notes.gpkg").write_text("not a vector file")
    dup = good.copy()
    dup.loc[1, "parcel"] = "field-a"
    dup.to_file(folder / "dup.gpkg", driver="GPKG")
    bow = good.copy()
    bow.loc[2, "geometry"] = shapely.Polygon([GEO @ (0, 0), GEO @ (10, 10), GEO @ (10, 0),
                                              GEO @ (0, 10)])
    bow.to_file(folder / "bowtie.geojson", driver="GeoJSON")
    empty = good.copy()
    empty.loc[3, "geometry"] = shapely.Polygon()
    empty.to_file(folder / "empty.gpkg", driver="GPKG")
    points = good.copy()
    points.loc[4, "geometry"] = shapely.Point(GEO @ (3, 3))
    points.to_file(folder / "points.gpkg", driver="GPKG")
    nocrs = good.set_crs(None, allow_override=True)
    nocrs.to_parquet(folder / "nocrs.parquet")
    return [
        (folder / "missing.gpkg", "parcel", "does not exist"),
        (folder / "notes.gpkg", "parcel", "is not a vector file"),
        (folder / "dup.gpkg", "parcel", "share parcel values .*'field-a'"),
        (folder / "dup.gpkg", "name", "has no field 'name'; its fields: parcel"),
        (folder / "bowtie.geojson", "parcel", "invalid geometry, first parcel='ring' "
                                              r"\(Self-intersection"),
        (folder / "empty.gpkg", "parcel", "(empty geometry|no geometry), first "
                                          "parcel='edge'"),
        (folder / "points.gpkg", "parcel", "not a polygon, first parcel='outside'"),
        (folder / "nocrs.parquet", "parcel", "has no CRS"),
    ]


def test_bad_polygon_files_are_refused_before_any_tile(scene, tmp_path, capsys):
    for path, field, message in bad_files(tmp_path):
        summary = main([f"--input={scene}/scene.tif", f"--output={tmp_path}/out",
                        "--mode=objects", f"--objects={path}", f"--object-id={field}"])
        assert summary.exit_code == 2, path
        flag = "--object-id" if "field" in message or "share" in message else "--objects"
        assert summary.error.startswith(flag), summary.error
        assert str(path) in summary.error
        assert re.search(message, summary.error), summary.error
        assert not (tmp_path / "out" / "scene").exists()


@pytest.mark.parametrize("flags, message", [
    (["--mode=objects"], "--objects: mode objects computes one texture vector"),
    (["--objects=x.gpkg", "--object-id=parcel"], "--objects: polygons are read in mode "
                                                  "objects only"),
    (["--mode=objects", "--objects=x.gpkg"], "--object-id: name the field"),
    (["--object-id=parcel"], "--object-id: the id field is the polygons'"),
])
def test_flags_that_do_not_go_together(scene, tmp_path, flags, message):
    summary = main([f"--input={scene}/scene.tif", f"--output={tmp_path}/out"] + flags)
    assert summary.exit_code == 2 and summary.error.startswith(message), summary.error


def test_a_scene_without_crs_is_an_error_record(scene, tmp_path):
    write_tif(tmp_path / "nocrs.tif", np.ones((1, 20, 20)), crs=None)
    summary = main([f"--input={tmp_path}/nocrs.tif", f"--output={tmp_path}/out",
                    "--mode=objects", f"--objects={scene}/parcels.gpkg",
                    "--object-id=parcel"])
    assert summary.done == 0 and len(summary.failures) == 1
    assert "has no CRS" in summary.failures[0].message


def local_run(scene, out, objects, *extra):
    return main([f"--input={scene}/scene.tif", f"--output={out}", "--mode=objects",
                 f"--objects={objects}", "--object-id=parcel",
                 "--features=contrast,homogeneity,entropy", "--tile=24", *extra])


def test_polygons_and_scenes_on_cloud_storage(scene, bucket, tmp_path):
    """A Shapefile (with its sidecars) on gs:// is read at launch and by the workers;
    the GeoParquet goes back to gs:// and equals a local run's."""
    from transforms.io import storage

    polygons().to_file(tmp_path / "parcels.shp")
    gs = f"gs://{bucket}"
    for name in os.listdir(tmp_path):
        if name.startswith("parcels."):
            storage.write_bytes(f"{gs}/vectors/{name}", (tmp_path / name).read_bytes())
    storage.write_bytes(f"{gs}/in/scene.tif", (scene / "scene.tif").read_bytes())
    summary = main([f"--input={gs}/in/scene.tif", f"--output={gs}/out", "--mode=objects",
                    f"--objects={gs}/vectors/parcels.shp", "--object-id=parcel",
                    "--features=contrast,homogeneity,entropy", "--tile=24"])
    assert (summary.exit_code, summary.done, summary.failures) == (0, 1, ())
    assert local_run(scene, tmp_path / "out", tmp_path / "parcels.shp").done == 1
    (tmp_path / "got.parquet").write_bytes(
        storage.read_bytes(f"{gs}/out/scene/objects.parquet"))
    got = geopandas.read_parquet(tmp_path / "got.parquet")
    expected = geopandas.read_parquet(tmp_path / "out" / "scene" / "objects.parquet")
    assert got.drop(columns="geometry").equals(expected.drop(columns="geometry"))
    manifest = json.loads(storage.read_bytes(f"{gs}/out/scene/manifest.json"))
    assert manifest["objects"]["uri"] == f"{gs}/vectors/parcels.shp"
    (tmp_path / "parcels.dbf").unlink()
    broken = local_run(scene, tmp_path / "out2", tmp_path / "parcels.shp")
    assert broken.exit_code == 2 and "parcels.dbf is missing" in broken.error


@pytest.mark.slow  # two SDK worker processes, each importing TensorFlow
def test_multi_processing_workers_equal_one_process(scene, tmp_path):
    summary = local_run(scene, tmp_path / "mp", scene / "parcels.gpkg",
                        "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert (summary.exit_code, summary.done, summary.failures) == (0, 1, ())
    assert local_run(scene, tmp_path / "one", scene / "parcels.gpkg").done == 1
    got, expected = (geopandas.read_parquet(tmp_path / f / "scene" / "objects.parquet")
                     .sort_values("parcel").reset_index(drop=True) for f in ("mp", "one"))
    assert got.drop(columns="geometry").equals(expected.drop(columns="geometry"))
