"""Scene naming, the discovery step on Beam's test pipeline, and tiling (the tiling
test runs the real texture math)."""

import functools
import os

import numpy as np
import pytest

from apache_beam.testing.util import assert_that

import glcm
from tests.beam_util import local_pipeline
from transforms.discover import NO_MATCH_ERROR, DiscoverScenes
from transforms.layout import scene_id_for, unique_scene_ids
from transforms.plan import (SHARED_SHAPE_EXTRA_PIXELS, core_size, example_cores,
                             ladder_side, tiles_for)
from transforms.records import Scene, TileKey


@pytest.mark.parametrize("uri, expected", [
    ("RGB.byte.tif", "RGB.byte"),
    ("/data/a b/scène 1.tif", "sc_ne_1"),
    ("gs://bucket/x/..tif", "scene"),
    ("../../etc/passwd", "passwd"),
    ("x/$(rm -rf ~);.tif", "__rm_-rf____"),
    (".hidden.tiff", "hidden"),
    ("noext", "noext"),
])
def test_scene_id_is_safe(uri, expected):
    sid = scene_id_for(uri)
    assert sid == expected
    assert "/" not in sid and not sid.startswith(".")


def test_unique_ids_are_deterministic():
    uris = ["b/scene.tif", "a/scene.tif", "a/scene.tiff", "c/other.tif"]
    ids = unique_scene_ids(uris)
    assert len(set(ids)) == 4
    assert ids[1] == "scene"  # first in sorted order keeps the plain name
    assert ids == unique_scene_ids(list(reversed(uris)))[::-1]
    assert all(i.startswith("scene-") for i in (ids[0], ids[2]))


def touch(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


_FOUND = {}  # what the matchers saw (module level: the runner pickles them by name)


def _keep(name, elements):
    _FOUND[name] = list(elements)


def discovered(patterns, assets=()):
    """Runs the real discovery step (DiscoverScenes) on Beam's test pipeline (in this
    process); returns (scenes, error records) as it emitted them."""
    _FOUND.clear()
    with local_pipeline() as p:
        out = p | DiscoverScenes(patterns, assets)
        assert_that(out["scenes"], functools.partial(_keep, "scenes"), label="Scenes")
        assert_that(out["errors"], functools.partial(_keep, "errors"), label="Errors")
    return sorted(_FOUND["scenes"], key=lambda s: s.uri), _FOUND["errors"]


def test_discover_globs_directories_lists(tmp_path):
    d = str(tmp_path)
    a = touch(f"{d}/in/a.tif")
    b = touch(f"{d}/in/b.tiff", b"xyz")
    touch(f"{d}/in/notes.txt")
    c = touch(f"{d}/other/c.tif")
    listing = touch(f"{d}/list.txt",
                    f"# inputs\n{c}\n\n  # indented\n{d}/missing.tif\n{a}\n".encode())
    scenes, problems = discovered([f"{d}/in", f"{d}/in/*.tif", f"@{listing}"])
    assert [s.uri for s in scenes] == sorted([a, b, c])  # sorted, deduplicated
    assert [s.scene_id for s in scenes] == ["a", "b", "c"]
    assert [(r.uri, r.stage, r.error) for r in problems] == [
        (f"{d}/missing.tif", "discover", "FileNotFoundError")]
    assert "file not found" in problems[0].message
    assert scenes[1].fingerprint.startswith("3-")  # size-mtime
    assert isinstance(scenes[0], Scene) and hash(scenes[0])


def test_discover_names_scenes_that_share_a_file_name_uniquely(tmp_path):
    d = str(tmp_path)
    uris = [touch(f"{d}/{s}/B04.tif") for s in ("S2A_1", "S2B_2", "S2A_3")]
    scenes, problems = discovered([f"{d}/*/B04.tif"])
    assert problems == [] and [s.uri for s in scenes] == sorted(uris)
    assert [s.scene_id for s in scenes] == unique_scene_ids(sorted(uris))
    assert scenes[0].scene_id == "B04" and len({s.scene_id for s in scenes}) == 3


def test_discover_nothing_matched_is_a_clear_error(tmp_path):
    scenes, [record] = discovered([f"{tmp_path}/*.tif"])
    assert scenes == [] and record.error == NO_MATCH_ERROR
    assert "no raster matched" in record.message and record.parameter == "input"
    with pytest.raises(ValueError, match="no input given"):
        DiscoverScenes([])
    _, records = discovered([f"@{tmp_path}/nope.txt"])
    assert any("cannot read the input list" in r.message for r in records)


def test_tiles_cover_scene_once():
    tiles = tiles_for("s", 37, 23, 10, 4)
    cover = np.zeros((37, 23), int)
    for t in tiles:
        cover[t.core_row:t.core_row + t.core_height, t.core_col:t.core_col + t.core_width] += 1
        assert t.read_height + t.pad_top + t.pad_bottom == t.core_height + 8
        assert t.read_width + t.pad_left + t.pad_right == t.core_width + 8
    assert (cover == 1).all()
    assert tiles[0].key == TileKey("s", 0, 0) and tiles[-1].key == TileKey("s", 3, 2)
    with pytest.raises(ValueError, match="tile must be >= 1"):
        tiles_for("s", 5, 5, 0, 1)


def test_tile_cores_are_even_and_waste_less_than_a_quantum():
    # The fewest cores of at most `tile`, all equal but the last, multiples of the
    # quantum where the tile allows: the padded tiles compute fewer than `quantum`
    # pixels per core beyond the scene, whatever the scene's size.
    rng = np.random.default_rng(5)
    cases = [(2500, 1024, 16, 848), (10980, 1024, 16, 1008), (3072, 1024, 16, 1024),
             (500, 1024, 16, 512), (37, 10, 16, 10), (1040, 520, 16, 520)]
    cases += [(int(e), int(t), int(q), None) for e, t, q in zip(
        rng.integers(1, 20000, 300), rng.integers(1, 3000, 300),
        rng.choice([1, 8, 16, 32], 300))]
    for extent, tile, quantum, expected in cases:
        core = core_size(extent, tile, quantum)
        count = -(-extent // core)
        assert count == -(-extent // tile) and core <= tile, (extent, tile, quantum)
        if expected is not None:
            assert core == expected, (extent, tile, quantum)
        if core < tile:
            assert core % quantum == 0 and count * core - extent < count * quantum
    tiles = tiles_for("s", 2500, 1100, 1024, 3)
    assert {(t.core_height, t.core_width) for t in tiles} == {
        (848, 560), (848, 540), (804, 560), (804, 540)}
    assert tiles[-1].core_row + tiles[-1].core_height == 2500
    assert tiles[-1].core_col + tiles[-1].core_width == 1100


def test_ladder_sides_hold_the_side_within_half_again():
    assert [ladder_side(s) for s in (1, 64, 65, 96, 97, 200, 256, 257, 500, 512, 513,
                                     1000, 1024, 1025, 3000)] == [
        64, 64, 96, 96, 128, 256, 256, 384, 512, 512, 768, 1024, 1024, 1536, 3072]
    rungs = {64 * 2 ** k for k in range(10)} | {96 * 2 ** k for k in range(10)}
    for side in range(64, 20000):
        rung = ladder_side(side)
        assert rung in rungs and side <= rung <= 1.5 * side, side
    with pytest.raises(ValueError, match="side must be >= 1"):
        ladder_side(0)


def test_scenes_of_small_tiles_share_example_shapes_large_ones_keep_their_own():
    # Clips of nearby sizes (one tile each) share one example shape, so one compiled
    # kernel; a chip's own size is a rung.
    assert {example_cores(h, w, 1024, 4) for h, w in
            [(300, 420), (330, 400), (290, 390), (384, 512)]} == {(384, 512)}
    assert example_cores(512, 256, 1024, 4) == (512, 256)
    # Scenes of many tiles keep their cores: the ladder would compute millions of
    # pixels in vain (a 3072² scene's 9 tiles of 1024 + 8: 1536 + 8 is 12 M more).
    assert example_cores(3072, 3072, 1024, 4) == (1024, 1024)
    assert example_cores(10980, 10980, 1024, 4) == (1008, 1008)
    assert example_cores(2700, 3900, 1024, 4) == (912, 976)
    # A few tiles: their rungs where the scene's examples grow by at most the limit.
    # 1000 x 1500: two cores of 1008 x 752, rungs 1024 x 768, 2 x 28,672 more pixels;
    # 1100²: four cores of 560², rungs 768², 4 x 279,552 more: over the limit.
    assert example_cores(1000, 1500, 1024, 4) == (1024, 768)
    assert example_cores(1100, 1100, 1024, 4) == (560, 560)
    # The limit counts every example of the scene, its bands too: 700² has a core of
    # 704, whose rung 768 adds (776² - 712²) = 95,232 pixels an example.
    assert SHARED_SHAPE_EXTRA_PIXELS == 1 << 20
    assert example_cores(700, 700, 1024, 4, bands=11) == (768, 768)  # 1,047,552 more
    assert example_cores(700, 700, 1024, 4, bands=12) == (704, 704)  # 1,142,784: over


# tile 20: cores of 16 rows (as even as possible) by 20 columns
@pytest.mark.parametrize("tile", [7, 20])
def test_tiled_texture_map_is_seamless(tile):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 8, (45, 38))
    valid = rng.random((45, 38)) > 0.05
    window, distances = 5, [1, 2]
    names = ["contrast", "entropy", "correlation"]
    whole = np.asarray(glcm.texture_map(image[None], names, window, levels=8,
                                        distances=distances, mask=valid[None]))[0]
    halo = glcm.texture_halo(window, distances)
    mosaic = np.full(whole.shape, -1.0, np.float32)
    for t in tiles_for("s", 45, 38, tile, halo):
        read = (slice(t.read_row, t.read_row + t.read_height),
                slice(t.read_col, t.read_col + t.read_width))
        pads = ((t.pad_top, t.pad_bottom), (t.pad_left, t.pad_right))
        part = np.pad(image[read], pads)
        part_valid = np.pad(valid[read], pads)  # padding is invalid
        out = np.asarray(glcm.texture_map(part[None], names, window, levels=8,
                                          distances=distances, mask=part_valid[None]))[0]
        mosaic[t.core_row:t.core_row + t.core_height, t.core_col:t.core_col + t.core_width] = \
            out[halo:halo + t.core_height, halo:halo + t.core_width]
    np.testing.assert_allclose(mosaic, whole, rtol=1e-5, atol=1e-5)


def test_stac_items_resolve_hrefs_and_fingerprint_without_network(tmp_path):
    import json

    from transforms.io.stac import read_items, resolve_href, scene_for_item

    item = {"type": "Feature", "stac_version": "1.0.0", "id": "S2A 1/2",
            "properties": {"datetime": "2026-01-02T00:00:00Z",
                           "updated": "2026-01-03T00:00:00Z"},
            "assets": {"nir": {"href": "https://example.com/S2A/B08.tif"},
                       "red": {"href": "https://example.com/S2A/B04.tif"}}}
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    [read] = read_items(str(path))  # a single Item, not a collection
    scene = scene_for_item(read, str(path), ["red", "nir"])
    assert scene.assets == (("red", "https://example.com/S2A/B04.tif"),
                            ("nir", "https://example.com/S2A/B08.tif"))
    assert dict(scene.item) == {"id": "S2A 1/2", "datetime": "2026-01-02T00:00:00Z",
                                "collection": "None"}
    assert scene_id_for(scene.uri) == "S2A_1_2"
    # http(s) assets: the fingerprint follows the item's "updated" property
    item["properties"]["updated"] = "2026-02-01T00:00:00Z"
    assert scene_for_item(item, str(path), ["red", "nir"]).fingerprint != scene.fingerprint
    assert resolve_href("../b/x.tif", "gs://bkt/stac/items.json") == "gs://bkt/b/x.tif"
    assert resolve_href("x.tif", str(tmp_path / "items.json")) == str(tmp_path / "x.tif")
    (tmp_path / "bad.json").write_text(json.dumps({"type": "Catalog", "id": "c"}))
    with pytest.raises(ValueError, match="expected Feature or FeatureCollection"):
        read_items(str(tmp_path / "bad.json"))
