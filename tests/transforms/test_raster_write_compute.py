"""transforms.io.raster, transforms.io.cog and transforms.texture on their own, with
real GeoTIFFs written here."""

import dataclasses
import math
import threading
import warnings

import numpy as np
import pytest
import rasterio
import rasterio.errors
import rasterio.shutil
import tifffile
from rasterio._env import get_gdal_config
from rasterio.enums import Interleaving
from rasterio.transform import Affine

import glcm
from glcm._compile import usable_cores
from transforms.io.cog import (COG_BLOCK, COMPRESSION_BUDGET_BYTES, bytes_per_block,
                               compression_threads, copy_blocks, gdal_cache,
                               overview_factors, save_tile_bands, write_mosaic,
                               write_quicklook)
from transforms.io import raster, storage
from transforms.io.raster import (RasterError, TileWindows, check_bands, quantization_range,
                                  read_tile, scene_info)
from transforms.layout import band_names
from transforms.plan import tiles_for
from transforms.records import (DEFAULT_FEATURES, DEFAULTS, BandSource, TileResult,
                                TileTask)
from transforms.texture import BlockModelHandler, TextureModelHandler

GEO = Affine(20, 0, 400000, 0, -30, 6000000)


@pytest.fixture
def masked_scene(tmp_path):
    """Float32 2-band scene: nodata -9999 in band 1, an internal mask, NaN in band 2."""
    rng = np.random.default_rng(0)
    data = rng.normal(100, 10, (2, 50, 60)).astype(np.float32)
    data[0, :4] = -9999
    data[1, 10:12, 20:30] = np.nan
    path = tmp_path / "masked.tif"
    with rasterio.open(path, "w", driver="GTiff", height=50, width=60, count=2,
                       dtype="float32", crs="EPSG:3035", transform=GEO,
                       nodata=-9999) as dst:
        dst.write(data)
    return str(path), data


def test_scene_info_and_bands(masked_scene, tmp_path):
    path, _ = masked_scene
    info = scene_info(path)
    assert (info.height, info.width, info.count, info.dtype) == (50, 60, 2, "float32")
    assert info.transform == tuple(GEO)[:6] and info.nodata == -9999 and info.warnings == []
    assert check_bands(path, info, None) == (1, 2)
    assert check_bands(path, info, (2,)) == (2,)
    with pytest.raises(ValueError, match=r"has 2 band\(s\), not \[3\]: choose bands in 1..2"):
        check_bands(path, info, (1, 3))
    (tmp_path / "junk.tif").write_bytes(b"II*\x00junk")
    with pytest.raises(RasterError, match="cannot be opened as a raster"):
        scene_info(str(tmp_path / "junk.tif"))


def test_quantization_range_ignores_invalid_pixels(masked_scene, tmp_path):
    path, data = masked_scene
    band1 = data[0][data[0] != -9999].astype(np.float64)
    assert quantization_range(path, 1, ("minmax", ())) == (band1.min(), band1.max())
    lo, hi = quantization_range(path, 1, ("percentile", (2.0, 98.0)))
    np.testing.assert_allclose([lo, hi], np.percentile(band1, [2, 98]))
    band2 = data[1][np.isfinite(data[1])].astype(np.float64)
    assert quantization_range(path, 2, ("minmax", ())) == (band2.min(), band2.max())
    assert quantization_range(path, 2, ("fixed", (0.0, 5.0))) == (0.0, 5.0)
    const = tmp_path / "const.tif"
    with rasterio.open(const, "w", driver="GTiff", height=5, width=5, count=1,
                       dtype="uint8") as dst:
        dst.write(np.full((1, 5, 5), 9, np.uint8))
    assert quantization_range(str(const), 1, ("minmax", ())) == (9.0, 10.0)


def test_read_tile_windows_masks_and_padding(masked_scene):
    path, data = masked_scene
    tiles = tiles_for("masked", 50, 60, 16, 3)
    for tile in tiles:
        values, valid = read_tile(path, 2, tile)
        assert values.shape == valid.shape == (tile.core_height + 6, tile.core_width + 6)
        # the scene's pixels, where they exist, at the core + halo position
        for r in range(values.shape[0]):
            for c in range(0, values.shape[1], 5):
                sr, sc = tile.core_row - 3 + r, tile.core_col - 3 + c
                inside = 0 <= sr < 50 and 0 <= sc < 60
                if not inside:
                    assert not valid[r, c]
                elif np.isnan(data[1, sr, sc]):
                    assert not valid[r, c]
                else:
                    assert valid[r, c] and values[r, c] == data[1, sr, sc]
    values, valid = read_tile(path, 1, tiles[0])
    assert not valid[3:7].any() and valid[7:, 3:].all()  # nodata rows 0-3 of band 1


def test_tile_windows_decode_a_pixel_interleaved_window_once(masked_scene, tmp_path,
                                                            monkeypatch):
    path, _ = masked_scene  # two bands, pixel-interleaved (GTiff's default)
    tiles = tiles_for("masked", 50, 60, 16, 3)
    expected = {(band, k): read_tile(path, band, tile)
                for band in (1, 2) for k, tile in enumerate(tiles)}
    reader = TileWindows()
    for k, tile in enumerate(tiles):  # the same values as band by band
        for band in (2, 1):
            for got, want in zip(reader(path, band, tile), expected[band, k]):
                np.testing.assert_array_equal(got, want)
    with pytest.raises(RasterError, match=r"has 2 band\(s\): there is no band 3"):
        reader(path, 3, tiles[-1])
    # a tile's second band comes from the window decoded with its first: the file
    # can be gone by then; the next tile reads the file again
    moved = tmp_path / "moved.tif"
    reader.clear()
    reader(path, 1, tiles[0])
    rasterio.shutil.copy(path, moved)
    rasterio.shutil.delete(path)
    for got, want in zip(reader(path, 2, tiles[0]), expected[2, 0]):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(RasterError, match="cannot be opened"):
        reader(path, 1, tiles[1])
    # a band-interleaved file, or a window over the limit, is read band by band
    banded = str(tmp_path / "banded.tif")
    rasterio.shutil.copy(moved, banded, interleave="band")
    over = str(tmp_path / "over.tif")
    rasterio.shutil.copy(moved, over)
    with rasterio.open(banded) as src:
        assert src.interleaving == Interleaving.band
    for name in (banded, over):
        if name == over:
            monkeypatch.setattr(raster, "MAX_WINDOW_BYTES", 16)
        reader.clear()
        for got, want in zip(reader(name, 1, tiles[0]), expected[1, 0]):
            np.testing.assert_array_equal(got, want)
        rasterio.shutil.delete(name)
        with pytest.raises(RasterError, match="cannot be opened"):
            reader(name, 2, tiles[0])


def test_internal_mask_is_honoured(tmp_path):
    path = tmp_path / "mask.tif"
    data = np.arange(400, dtype=np.uint16).reshape(1, 20, 20)
    mask = np.full((20, 20), 255, np.uint8)
    mask[5:8, 5:8] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", height=20, width=20, count=1,
                           dtype="uint16", crs="EPSG:4326",
                           transform=Affine(0.1, 0, 0, 0, -0.1, 0)) as dst:
            dst.write(data)
            dst.write_mask(mask)
    [tile] = tiles_for("mask", 20, 20, 20, 0)
    _, valid = read_tile(str(path), 1, tile)
    np.testing.assert_array_equal(valid, mask > 0)


def test_mosaic_is_a_cog_with_band_names(tmp_path, masked_scene):
    path, _ = masked_scene
    info = scene_info(path)
    features = ["contrast", "mean"]
    rng = np.random.default_rng(1)
    full = rng.random((2, 50, 60, 2)).astype(np.float32)  # (band, H, W, F)
    sources = (BandSource(path, 1), BandSource(path, 2))
    tiles = []
    for tile in tiles_for("masked", 50, 60, 16, 0):
        for b in range(2):
            core = full[b, tile.core_row:tile.core_row + tile.core_height,
                        tile.core_col:tile.core_col + tile.core_width]
            uri = str(tmp_path / f"t{tile.key.row}_{tile.key.col}_{b}.npy")
            save_tile_bands(uri, core)
            task = TileTask(None, info, sources, b, tile, 0.0, 1.0, 0)
            tiles.append(TileResult(task, tile.core_row, tile.core_col, uri))
    mosaic = str(tmp_path / "features.tif")
    write_mosaic(mosaic, info, band_names(sources, features), len(features), tiles)
    with rasterio.open(mosaic) as src:
        assert src.descriptions == tuple(band_names(sources, features)) == (
            "b1_contrast", "b1_mean", "b2_contrast", "b2_mean")
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.compression.name == "zstd" and np.isnan(src.nodata)
        assert (src.crs.to_epsg(), src.transform) == (3035, GEO)
        got = src.read()
    np.testing.assert_array_equal(got, np.moveaxis(full, -1, 1).reshape(4, 50, 60))
    png = str(tmp_path / "q.png")
    write_quicklook(png, mosaic)
    with rasterio.open(png) as q:
        assert q.count == 4 and q.dtypes[0] == "uint8" and q.read(4).all()


def _mosaic_of(tmp_path, path, full, features, compression=DEFAULTS["cog_compression"],
               name="features.tif", leave_out=(), threads=None):
    """``name`` (a mosaic of ``compression``) of ``full`` (H, W, F) as one source band
    of ``path``'s scene resized to H x W, saved as the pipeline saves tiles (520², four
    for 1040²), but for the tiles whose (row, col) are in ``leave_out``."""
    height, width = full.shape[:2]
    info = dataclasses.replace(scene_info(path), height=height, width=width)
    sources = (BandSource(path, 1),)
    tiles = []
    for tile in tiles_for("big", height, width, 520, 0):
        core = full[tile.core_row:tile.core_row + tile.core_height,
                    tile.core_col:tile.core_col + tile.core_width]
        if (tile.key.row, tile.key.col) in leave_out:
            continue
        uri = str(tmp_path / f"t{tile.key.row}_{tile.key.col}.npy")
        save_tile_bands(uri, core)
        task = TileTask(None, info, sources, 0, tile, 0.0, 1.0, 0)
        tiles.append(TileResult(task, tile.core_row, tile.core_col, uri))
    mosaic = str(tmp_path / name)
    write_mosaic(mosaic, info, band_names(sources, features), len(features), tiles,
                 compression, threads=threads)
    return mosaic


def test_tiles_are_read_in_place_and_nothing_is_left_beside_them(tmp_path, masked_scene):
    # A tile is saved band after band (each band one run of the file, which GDAL reads
    # as a raw band); the mosaic places the tiles with a VRT and leaves no scratch:
    # no VRT, no overview file, beside the COG or the tiles.
    path, _ = masked_scene
    full = np.random.default_rng(3).random((1040, 1040, 2), dtype=np.float32)
    full[100:300, 700:900] = np.nan  # overviews skip NaN
    saved = tmp_path / "t0_0.npy"
    save_tile_bands(str(saved), full[:520, :520])
    np.testing.assert_array_equal(np.load(saved), np.moveaxis(full[:520, :520], -1, 0))
    saved.unlink()
    mosaic = _mosaic_of(tmp_path, path, full, ["contrast", "mean"])
    with rasterio.open(mosaic) as src:
        np.testing.assert_array_equal(src.read(), np.moveaxis(full, -1, 0))
        assert src.overviews(1) == [2, 4]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["features.tif", "masked.tif", "t0_0.npy", "t0_1.npy", "t1_0.npy",
                    "t1_1.npy"]


@pytest.mark.parametrize("codec", ["none", "deflate", "zstd-fast"])
@pytest.mark.parametrize("leave_out", [(), ((1, 0),)])
def test_every_codec_keeps_the_same_values(tmp_path, masked_scene, codec, leave_out):
    # The overviews are averaged once, before the COG is compressed: GDAL's COG
    # driver (none, deflate) and the own encoder of the zstd codecs store the same
    # values bit for bit at every level, in a pixel-interleaved COG, a missing tile's
    # pixels included (the nodata value, NaN, as the VRT reads them).
    path, _ = masked_scene
    full = np.random.default_rng(5).random((1100, 1100, 2), dtype=np.float32)
    default = _mosaic_of(tmp_path, path, full, ["contrast", "mean"], leave_out=leave_out)
    other = _mosaic_of(tmp_path, path, full, ["contrast", "mean"], codec, f"{codec}.tif",
                       leave_out=leave_out)
    with rasterio.open(default) as a, rasterio.open(other) as b:
        for src in (a, b):
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert src.interleaving == Interleaving.pixel
        assert a.overviews(1) == b.overviews(1) == [2, 4]
        assert a.descriptions == b.descriptions and a.crs == b.crs
        assert a.transform == b.transform and str(a.nodata) == str(b.nodata)
        values = a.read()
        np.testing.assert_array_equal(values, b.read())
        expected = full.transpose(2, 0, 1).copy()
        for tile in tiles_for("big", 1100, 1100, 520, 0):
            if (tile.key.row, tile.key.col) in leave_out:  # read as the nodata value
                expected[:, tile.core_row:tile.core_row + tile.core_height,
                         tile.core_col:tile.core_col + tile.core_width] = np.nan
        assert np.isnan(expected).any() == bool(leave_out)
        np.testing.assert_array_equal(values, expected)
        for factor in a.overviews(1):
            shape = (2, -(-1100 // factor), -(-1100 // factor))
            np.testing.assert_array_equal(a.read(out_shape=shape), b.read(out_shape=shape))


def test_gdal_cache_is_the_largest_any_thread_asks_for_while_any_runs():
    # GDAL's block cache size is the process's: a thread's mosaic step must neither
    # shrink it under another's nor restore, on leaving, a size that another thread's
    # step replaced.
    before = get_gdal_config("GDAL_CACHEMAX")
    entered, leave = threading.Event(), threading.Event()

    def other():
        with gdal_cache(128 * 2 ** 20):
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert entered.wait(10)
    with gdal_cache(16 * 2 ** 20):
        assert get_gdal_config("GDAL_CACHEMAX") == 128 * 2 ** 20  # the other's, larger
        leave.set()
        thread.join()
        assert get_gdal_config("GDAL_CACHEMAX") == 16 * 2 ** 20  # now this one's alone
        with gdal_cache(8 * 2 ** 20):  # nested: replaces this thread's request
            assert get_gdal_config("GDAL_CACHEMAX") == 8 * 2 ** 20
        assert get_gdal_config("GDAL_CACHEMAX") == 16 * 2 ** 20
    assert get_gdal_config("GDAL_CACHEMAX") == before
    with pytest.raises(ValueError, match="size must be >= 1"):
        with gdal_cache(0):
            pass


def test_mosaics_in_threads_of_one_process(tmp_path, masked_scene):
    # Two scenes finishing in two threads at once: each mosaic is the one written
    # alone, and GDAL's cache size is what it was before, once both are done.
    path, _ = masked_scene
    before = get_gdal_config("GDAL_CACHEMAX")
    fulls = [np.random.default_rng(seed).random((1040, 1040, 2), dtype=np.float32)
             for seed in (7, 8)]
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
    mosaics = [None, None]

    def write(k):
        mosaics[k] = _mosaic_of(folders[k], path, fulls[k], ["contrast", "mean"])

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for mosaic, full in zip(mosaics, fulls):
        with rasterio.open(mosaic) as src:
            np.testing.assert_array_equal(src.read(), np.moveaxis(full, -1, 0))
    assert get_gdal_config("GDAL_CACHEMAX") == before


def test_mosaic_refuses_a_tile_saved_another_way(tmp_path, masked_scene):
    # A tile saved pixel by pixel (h, w, F), as before band-after-band tiles: a clear
    # error naming the file, and no scratch left behind.
    path, _ = masked_scene
    info = dataclasses.replace(scene_info(path), height=20, width=30)
    sources = (BandSource(path, 1),)
    uri = str(tmp_path / "t0_0.npy")
    storage.save_npy(uri, np.zeros((20, 30, 2), np.float32))
    [tile] = tiles_for("old", 20, 30, 32, 0)
    result = TileResult(TileTask(None, info, sources, 0, tile, 0.0, 1.0, 0), 0, 0, uri)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="t0_0.npy: a tile of 2 float32 bands saved band "
                                         "after band was expected"):
        write_mosaic(str(out / "features.tif"), info, ["a", "b"], 2, [result])
    assert list(out.iterdir()) == [] and not list(tmp_path.glob("*.vrt"))


def test_mosaic_of_a_scene_without_georeferencing_has_none(tmp_path):
    # No CRS and no transform in the input (identity): none in the COG either.
    path = str(tmp_path / "plain.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", height=600, width=40, count=1,
                           dtype="uint8") as dst:
            dst.write(np.zeros((1, 600, 40), np.uint8))
        info = scene_info(path)
        assert info.crs is None and Affine(*info.transform).is_identity
        full = np.random.default_rng(4).random((600, 40, 1), dtype=np.float32)
        mosaic = _mosaic_of(tmp_path, path, full, ["asm"])
        with rasterio.open(mosaic) as src:
            assert src.crs is None and src.transform.is_identity
            assert src.overviews(1) == [2]
            np.testing.assert_array_equal(src.read(1), full[..., 0])
    # no GeoTIFF georeferencing tag at all (ModelPixelScale, ModelTiepoint,
    # ModelTransformation, GeoKeyDirectory)
    with tifffile.TiffFile(mosaic) as tif:
        assert not {33550, 33922, 34264, 34735} & {tag.code for tag in tif.pages[0].tags}


def test_mosaic_overviews_average_and_stay_in_range(tmp_path, masked_scene):
    # Big enough for overviews (the COG's 512 blocks); features in [0, 1], as ASM or
    # homogeneity, with holes: each overview pixel is the mean of the valid pixels
    # under it, never outside the band's range (cubic overshoots: negative ASM).
    path, _ = masked_scene
    size = 1040
    rng = np.random.default_rng(3)
    full = (rng.random((size, size, 1)) > 0.5).astype(np.float32)  # sharp edges
    full[100:140, 200:260] = np.nan
    mosaic = _mosaic_of(tmp_path, path, full, ["asm"])
    with rasterio.open(mosaic) as src:
        assert src.overviews(1)[0] == 2
        half = src.read(1, out_shape=(size // 2, size // 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN 2x2 cells
        want = np.nanmean(full[..., 0].reshape(size // 2, 2, size // 2, 2), axis=(1, 3))
    np.testing.assert_allclose(half, want, rtol=1e-6, atol=1e-7)
    assert np.nanmin(half) >= 0 and np.nanmax(half) <= 1
    # The overviews built beside the mosaic's VRT are those the COG driver makes by
    # itself (its AUTO levels, its average), bit for bit.
    with rasterio.open(mosaic) as src:
        profile = dict(src.profile, driver="GTiff")
        values = src.read()
    plain = str(tmp_path / "plain.tif")
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(values)
    auto = str(tmp_path / "auto.tif")
    rasterio.shutil.copy(plain, auto, driver="COG", compress="DEFLATE", predictor="3",
                         overviews="AUTO", resampling="AVERAGE")
    with rasterio.open(mosaic) as ours, rasterio.open(auto) as theirs:
        assert ours.overviews(1) == theirs.overviews(1) == [2, 4]
        for factor in ours.overviews(1):
            shape = (1, size // factor, size // factor)
            np.testing.assert_array_equal(ours.read(out_shape=shape),
                                          theirs.read(out_shape=shape))


@pytest.mark.parametrize("special", [None, "nan", "huge"])
def test_mosaic_overviews_with_and_without_nan(tmp_path, masked_scene, special):
    # Without a NaN anywhere GDAL averages on its faster path (float32 sums); with
    # one, even a single pixel in one tile of four, NaN is skipped, and values whose
    # float32 sum would overflow are averaged as they are. Either way each overview
    # pixel is the mean of the valid pixels under it, to float32 rounding.
    path, _ = masked_scene
    size = 1040
    full = np.random.default_rng(5).normal(0, 1, (size, size, 2)).astype(np.float32)
    if special == "nan":
        full[101, 201, 1] = np.nan  # its 2x2 cell keeps the mean of the other three
    elif special == "huge":
        full[100:102, 200:202, 0] = 3e38  # a float32 sum of two is already inf
    mosaic = _mosaic_of(tmp_path, path, full, ["contrast", "correlation"])
    with rasterio.open(mosaic) as src:
        assert np.isnan(src.nodata) and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(src.read(), np.moveaxis(full, -1, 0))
        half = src.read(out_shape=(2, size // 2, size // 2))
    cells = np.moveaxis(full, -1, 0).reshape(2, size // 2, 2, size // 2, 2)
    want = np.nanmean(cells.astype(np.float64), axis=(2, 4))
    assert np.isfinite(half).all()
    # within two float32 steps of the largest value summed
    scale = np.spacing(np.nanmax(np.abs(cells), axis=(2, 4)))
    assert np.all(np.abs(half - want) <= 2 * scale)


@pytest.mark.parametrize("nan", [False, True])
def test_overviews_by_band_group_in_threads_are_those_of_one_pass(tmp_path, masked_scene,
                                                                  nan):
    # With several compression threads the own encoder's overviews are built group of
    # bands by group, each group's pass in a thread of its own, every group's VRT
    # naming the tiles' files its own way (GDAL shares one open file per name, and
    # passes reading one file through one handle read each other's rows). The COG
    # is the same, byte for byte, as with one thread and one pass, with NaN (the
    # nodata path) or without, however the five bands are grouped; nothing is left
    # beside it. Repeated: the race this guards against showed in one run in four.
    path, _ = masked_scene
    features = ["contrast", "mean", "asm", "entropy", "correlation"]
    full = np.random.default_rng(9).normal(0, 1, (1100, 1100, 5)).astype(np.float32)
    if nan:
        full[300:420, 10:900, 2] = np.nan
    one = _mosaic_of(tmp_path, path, full, features, name="one.tif", threads=1)
    with open(one, "rb") as f:
        want = f.read()
    for threads in (2, 3, 5, 8, 2, 3):
        grouped = _mosaic_of(tmp_path, path, full, features, name="grouped.tif",
                             threads=threads)
        with open(grouped, "rb") as f:
            assert f.read() == want, threads
    with rasterio.open(one) as src:
        assert src.overviews(1) == [2, 4]
    left = {p.name for p in tmp_path.iterdir()} - {"one.tif", "grouped.tif", "masked.tif"}
    assert all(name.endswith(".npy") for name in left), sorted(left)


@pytest.mark.parametrize("bands, threads", [(1, 1), (1, 4), (8, 2), (8, 3), (5, 8),
                                            (64, 16), (7, 7)])
def test_band_groups_cover_the_bands_in_order(bands, threads):
    from transforms.io.cog import _band_groups
    groups = _band_groups(bands, threads)
    assert len(groups) == min(bands, threads)
    assert [b for group in groups for b in group] == list(range(bands))
    assert max(map(len, groups)) - min(map(len, groups)) <= 1


@pytest.mark.parametrize("bands, cores, want", [
    (8, 2, 2), (8, 16, 16), (16, 16, 12), (32, 16, 4), (40, 16, 2), (64, 2, 1),
    (64, 16, 1), (104, 16, 1), (1, 64, 64), (1, 1, 1)])
def test_compression_threads_within_the_budget(bands, cores, want):
    # A compressed COG block holds every band (512² float32 each); with t >= 2 threads
    # the copy holds 7 + 2t of them, within 512 MiB.
    assert compression_threads(bytes_per_block(bands), cores) == want


def test_bytes_per_block_is_a_cog_block_of_every_band():
    assert bytes_per_block(8) == COG_BLOCK * COG_BLOCK * 8 * 4 == 8 * 2 ** 20
    assert bytes_per_block(1, itemsize=1) == COG_BLOCK ** 2
    with pytest.raises(ValueError, match="bands and itemsize"):
        bytes_per_block(0)


def test_copy_blocks_follow_the_measured_model():
    assert copy_blocks(1) == 5
    assert [copy_blocks(t) for t in (2, 3, 4, 8)] == [11, 13, 15, 23]
    with pytest.raises(ValueError, match="threads"):
        copy_blocks(0)


def test_compression_threads_are_the_most_the_budget_and_cores_allow():
    rng = np.random.default_rng(4)
    for block, cores in zip(rng.integers(1, 2 ** 28, 200), rng.integers(1, 129, 200)):
        block, cores = int(block), int(cores)
        threads = compression_threads(block, cores)
        assert 1 <= threads <= cores
        # more than one thread only within the budget ...
        budget = COMPRESSION_BUDGET_BYTES
        assert threads == 1 or copy_blocks(threads) * block <= budget
        # ... and no more would fit
        assert threads == cores or copy_blocks(threads + 1) * block > budget
    assert 1 <= compression_threads(1) <= usable_cores()
    with pytest.raises(ValueError, match="block_bytes"):
        compression_threads(0)


def test_mosaic_of_many_bands_keeps_its_values(tmp_path):
    # 9 source bands x 8 features: 72 MiB blocks; two threads would hold 11 of them,
    # over the budget, so GDAL compresses in one thread. The values are those saved.
    height, width, n_sources = 530, 520, 9
    path = str(tmp_path / "nine.tif")
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width,
                       count=n_sources, dtype="uint8", crs="EPSG:3035",
                       transform=GEO) as dst:
        dst.write(np.zeros((n_sources, height, width), np.uint8))
    info = scene_info(path)
    sources = tuple(BandSource(path, b + 1) for b in range(n_sources))
    n_features = len(DEFAULT_FEATURES)
    full = np.random.default_rng(6).random((n_sources, height, width, n_features),
                                           dtype=np.float32)
    tiles = []
    for tile in tiles_for("nine", height, width, 256, 0):
        for b in range(n_sources):
            uri = str(tmp_path / f"t{tile.key.row}_{tile.key.col}_{b}.npy")
            save_tile_bands(uri, full[b, tile.core_row:tile.core_row + tile.core_height,
                                       tile.core_col:tile.core_col + tile.core_width])
            task = TileTask(None, info, sources, b, tile, 0.0, 1.0, 0)
            tiles.append(TileResult(task, tile.core_row, tile.core_col, uri))
    assert compression_threads(bytes_per_block(n_sources * n_features)) == 1
    mosaic = str(tmp_path / "features.tif")
    write_mosaic(mosaic, info, band_names(sources, DEFAULT_FEATURES), n_features, tiles)
    with rasterio.open(mosaic) as src:
        assert src.count == 72 and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.overviews(1) == [2]
        np.testing.assert_array_equal(
            src.read(), np.moveaxis(full, -1, 1).reshape(72, height, width))


@pytest.mark.parametrize("height, width", [(300, 200), (512, 512), (513, 40), (1025, 3000),
                                           (4096, 4096)])
def test_overview_levels_are_the_cog_drivers_own(tmp_path, height, width):
    plain, cog = str(tmp_path / "plain.tif"), str(tmp_path / "cog.tif")
    with rasterio.open(plain, "w", driver="GTiff", height=height, width=width, count=1,
                       dtype="uint8") as dst:
        dst.write(np.zeros((1, height, width), np.uint8))
    rasterio.shutil.copy(plain, cog, driver="COG", overviews="AUTO")
    with rasterio.open(cog) as src:
        assert overview_factors(height, width) == src.overviews(1)


def test_model_handlers_equal_the_core(tmp_path):
    rng = np.random.default_rng(2)
    angles = [0.0, math.pi / 2]
    codes = rng.integers(0, 8, (2, 40, 40)).astype(np.int32)
    valid = rng.random((2, 40, 40)) > 0.1
    examples = [{"codes": codes[k], "valid": valid[k]} for k in range(2)]
    handler = TextureModelHandler(glcm.TextureSpec(["contrast", "entropy"], 5, 8, [1],
                                                   angles))
    maps = handler.run_inference(examples, handler.load_model())
    # The example's halo (window 5, distance 1: 3 pixels) feeds the windows only: the
    # maps are those of the whole example without its border.
    core = (slice(None), slice(3, -3), slice(3, -3))
    want = np.asarray(glcm.texture_map(codes, ["contrast", "entropy"], 5, levels=8,
                                       angles=angles, mask=valid))[core]
    np.testing.assert_allclose(np.stack(maps), want, rtol=1e-6, atol=1e-6)

    # Tiles of scenes of different sizes in one batch: each keeps its own shape.
    wide = {"codes": codes[0, :24], "valid": valid[0, :24]}
    mixed = handler.run_inference([examples[0], wide, examples[1]], handler.load_model())
    assert [m.shape for m in mixed] == [(34, 34, 2), (18, 34, 2), (34, 34, 2)]
    assert [m.shape[:2] for m in mixed] == [handler.map_size(*e["codes"].shape)
                                           for e in (examples[0], wide, examples[1])]
    np.testing.assert_allclose(np.stack([mixed[0], mixed[2]]), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mixed[1], np.asarray(glcm.texture_map(
        codes[:1, :24], ["contrast", "entropy"], 5, levels=8, angles=angles,
        mask=valid[:1, :24]))[0][core[1:]], rtol=1e-6, atol=1e-6)

    block = BlockModelHandler(glcm.TextureSpec(["contrast"], 3, 8, [1], angles), 8)
    cells = block.run_inference([examples[0], wide, examples[1]], block.load_model())
    assert [c.shape for c in cells] == [(5, 5, 1), (3, 5, 1), (5, 5, 1)]
    assert block.map_size(24, 40) == (3, 5)
    for out, k, rows in ((cells[2], 1, slice(8, 16)), (cells[1], 0, slice(16, 24))):
        P = glcm.graycomatrix(codes[k, rows, 16:24][None], [1], angles, 8, symmetric=True,
                              mask=valid[k, rows, 16:24][None])
        np.testing.assert_allclose(out[rows.start // 8, 2, 0], np.nanmean(
            np.asarray(glcm.graycoprops(P, "contrast"))), rtol=1e-6)


def test_on_a_gpu_short_batches_are_filled_so_each_shape_compiles_once(monkeypatch):
    # Every batch size compiles the kernel again; on a GPU that costs seconds while a
    # tile costs hundredths, so a short batch (the last of a bundle, a batch split by
    # shape) is filled with invalid tiles up to --tiles-per-call, whose maps are
    # dropped. On the CPU the batch stays as it is. Either way the same maps.
    import transforms.texture

    rng = np.random.default_rng(4)
    shapes = [(20, 20), (20, 20), (24, 20), (20, 20)]
    examples = [{"codes": rng.integers(0, 8, s).astype(np.int32),
                 "valid": rng.random(s) > 0.1} for s in shapes]

    def called_with(handler):
        model, sizes = handler.load_model(), []

        def spy(inputs):
            sizes.append(tuple(inputs[0].shape))
            return model(inputs)

        return handler.run_inference(examples, spy), sizes

    for cls, args in ((TextureModelHandler, ()), (BlockModelHandler, (4,))):
        spec = glcm.TextureSpec(["contrast", "entropy"], 3, 8)
        on_cpu, cpu_sizes = called_with(cls(spec, *args, max_batch_size=4))
        with monkeypatch.context() as patch:
            patch.setattr(transforms.texture, "compute_device", lambda accelerator: "GPU (x)")
            on_gpu, gpu_sizes = called_with(cls(spec, *args, max_batch_size=4))
        if cls is TextureModelHandler:
            assert cpu_sizes == [(3, 20, 20), (1, 24, 20)]
            assert gpu_sizes == [(4, 20, 20), (4, 24, 20)]
        else:  # the blocks of the batch's tiles in one call: 25 and 30 per tile
            assert cpu_sizes == [(3 * 25, 4, 4), (30, 4, 4)]
            assert gpu_sizes == [(4 * 25, 4, 4), (4 * 30, 4, 4)]
        assert len(on_gpu) == len(on_cpu) == 4
        for a, b in zip(on_gpu, on_cpu):
            np.testing.assert_array_equal(a, b)


def test_on_a_gpu_the_filling_stops_where_it_would_pay_a_compilation(monkeypatch):
    # Rent or buy: short batches of one tile shape and size are filled until their
    # filling has computed the budget's pixels in vain, then called as they are (that
    # size compiled once), so a run of small bundles is not mostly filling. Each
    # (shape, size) has its own account; the maps are the same either way.
    import transforms.texture

    rng = np.random.default_rng(5)
    tile = {"codes": rng.integers(0, 8, (20, 20)).astype(np.int32),
            "valid": rng.random((20, 20)) > 0.1}
    monkeypatch.setattr(transforms.texture, "ACCELERATOR_SHAPE_EXTRA_PIXELS", 2 * 3 * 400)
    monkeypatch.setattr(transforms.texture, "compute_device", lambda accelerator: "GPU (x)")
    spec = glcm.TextureSpec(["contrast", "entropy"], 3, 8)
    handler = TextureModelHandler(spec, max_batch_size=4)
    model, sizes = handler.load_model(), []

    def spy(inputs):
        sizes.append(inputs[0].shape[0])
        return model(inputs)

    alone = None
    for batch in ([tile], [tile], [tile], [tile, tile], [tile], [tile] * 4, [tile, tile]):
        maps = handler.run_inference(batch, spy)
        assert len(maps) == len(batch)
        alone = maps[0] if alone is None else alone
        for values in maps:
            np.testing.assert_array_equal(values, alone)
    # one tile: filled twice (3 tiles = 1,200 pixels each), then as it is; two tiles:
    # their own account (800 pixels each), filled both times
    assert sizes == [4, 4, 1, 4, 1, 4, 4]
    monkeypatch.setattr(transforms.texture, "compute_device", lambda accelerator: "CPU:0")
    on_cpu = TextureModelHandler(spec, max_batch_size=4)
    np.testing.assert_array_equal(on_cpu.run_inference([tile], on_cpu.load_model())[0],
                                  alone)


def test_a_required_gpu_that_is_missing_fails_at_start_up():
    # this machine has no GPU: "required" must refuse, the others compute on the CPU
    from transforms.texture import AcceleratorError, compute_device

    with pytest.raises(AcceleratorError, match="accelerator=required, but"):
        compute_device("required")
    assert compute_device("optional") == compute_device("none") == "CPU"
    with pytest.raises(ValueError, match="accelerator must be one of"):
        compute_device("sometimes")
    handler = TextureModelHandler(glcm.TextureSpec(["contrast"], 3, 8, [1], [0.0]),
                                  accelerator="required")
    with pytest.raises(AcceleratorError):
        handler.load_model()


def test_band_sources_name_the_output_bands():
    assert [(s.name, s.label) for s in (
        BandSource("a.tif", 2), BandSource("nir.tif", 1, "nir"),
        BandSource("visual.tif", 3, "visual", single=False))] == [
            ("b2", "2"), ("nir", "nir"), ("visual_b3", "visual:3")]
    assert band_names([BandSource("nir.tif", 1, "nir")], ["contrast", "mean"]) == [
        "nir_contrast", "nir_mean"]
