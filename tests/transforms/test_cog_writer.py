"""The own COG encoder: checked against libtiff's predictor, GDAL's reading and the
layout of GDAL's own COG driver."""

import struct
import zlib

import numpy as np
import pytest
import rasterio
import rasterio.io
import rasterio.shutil
import tifffile
from rasterio.transform import from_origin

from transforms.io import cog_writer
from transforms.io.cog_writer import Level, float_predictor, tiff_tags, write_cog

TILE = 32
CRS = "EPSG:32633"
TRANSFORM = from_origin(500000.0, 4200000.0, 10.0, 10.0)


def _values(rng, shape):
    """float32 values of many magnitudes and signs, with NaN, infinities and zeros."""
    values = (rng.standard_normal(shape) * 10.0 ** rng.integers(-8, 8, shape)).astype(
        np.float32)
    flat = values.reshape(-1)
    picks = rng.choice(flat.size, size=flat.size // 20, replace=False)
    flat[picks[0::4]] = np.nan
    flat[picks[1::4]] = np.inf
    flat[picks[2::4]] = -np.inf
    flat[picks[3::4]] = 0.0
    return values


def _levels_of(full, count=3):
    """(bands, h, w) arrays: ``full`` and its 2x, 4x... reductions, ``count`` in all
    (any values: the writer stores what it is given)."""
    return [np.ascontiguousarray(full[:, ::2 ** k, ::2 ** k]) for k in range(count)]


def _georeference(bands, names):
    """GDAL's georeferencing, band description and NaN nodata tags, from a 1x1
    GeoTIFF it writes in memory (as the mosaic takes them)."""
    with rasterio.io.MemoryFile() as memory:
        with memory.open(driver="GTiff", width=1, height=1, count=bands, dtype="float32",
                         crs=CRS, transform=TRANSFORM, nodata=np.nan) as dst:
            dst.descriptions = names
        tags = tiff_tags(memory.read())
    georeference = {t: tags[t] for t in cog_writer.GEOREFERENCE_TAGS if t in tags}
    return georeference, tags[cog_writer.GDAL_NODATA][2]


def _write(path, arrays, tile=TILE, **kwargs):
    names = [f"band{b}" for b in range(arrays[0].shape[0])]
    georeference, nodata = _georeference(len(names), names)

    def read_block(level, row, col, out):
        _, height, width = out.shape
        out[...] = arrays[level][:, row * tile:row * tile + height,
                                 col * tile:col * tile + width]

    write_cog(path, [Level(*a.shape[1:]) for a in arrays], read_block, len(names),
              georeference, nodata, tile=tile, **kwargs)
    return names


def test_float_predictor_is_libtiffs(tmp_path):
    # GDAL writes the tiles with DEFLATE and libtiff's floating-point predictor;
    # inflated, each tile is what float_predictor makes of the same pixels.
    rng = np.random.default_rng(0)
    data = _values(rng, (3, 2 * TILE, 3 * TILE))
    path = str(tmp_path / "deflate.tif")
    with rasterio.open(path, "w", driver="GTiff", width=3 * TILE, height=2 * TILE,
                       count=3, dtype="float32", tiled=True, blockxsize=TILE,
                       blockysize=TILE, interleave="pixel", compress="deflate",
                       predictor=3) as dst:
        dst.write(data)
    with tifffile.TiffFile(path) as tif, open(path, "rb") as f:
        page = tif.pages[0]
        assert page.predictor == 3 and page.planarconfig == 1
        for index, (at, size) in enumerate(zip(page.dataoffsets, page.databytecounts)):
            row, col = divmod(index, 3)
            f.seek(at)
            stored = np.frombuffer(zlib.decompress(f.read(size)), np.uint8)
            pixels = data[:, row * TILE:(row + 1) * TILE, col * TILE:(col + 1) * TILE]
            ours = float_predictor(np.ascontiguousarray(pixels.transpose(1, 2, 0)))
            np.testing.assert_array_equal(ours.reshape(-1), stored)


@pytest.mark.parametrize("predictor", [3, 1])
@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("streamed", [False, True])
def test_gdal_reads_every_level_back(tmp_path, monkeypatch, predictor, bigtiff,
                                     streamed):
    # Edges that do not fill a tile, three levels, NaN and infinities: GDAL reads
    # every value back at every level, with the georeferencing, the band names and
    # NaN as nodata, and takes the file for a COG. Tiles compressed in one call or
    # streamed (larger tiles), predicted a few rows at a time (not a divisor of the
    # tile's rows).
    monkeypatch.setattr(cog_writer, "PREDICTOR_ROWS", 12)
    if streamed:
        monkeypatch.setattr(cog_writer, "ONE_SHOT_BYTES", 0)
    rng = np.random.default_rng(predictor + 2 * bigtiff)
    arrays = _levels_of(_values(rng, (4, 100, 70)))
    path = str(tmp_path / "ours.tif")
    names = _write(path, arrays, predictor=predictor, bigtiff=bigtiff, threads=2)
    with open(path, "rb") as f:
        assert f.read(4) == (b"II+\x00" if bigtiff else b"II*\x00")
    with rasterio.open(path) as src:
        structure = src.tags(ns="IMAGE_STRUCTURE")
        assert structure["LAYOUT"] == "COG" and structure["COMPRESSION"] == "ZSTD"
        assert structure["INTERLEAVE"] == "PIXEL"
        assert structure.get("PREDICTOR", "1") == str(predictor)
        assert src.crs == rasterio.crs.CRS.from_user_input(CRS)
        assert src.transform == TRANSFORM and np.isnan(src.nodata)
        assert list(src.descriptions) == names and src.overviews(1) == [2, 4]
        np.testing.assert_array_equal(src.read(), arrays[0])
    for level in (1, 2):
        with rasterio.open(path, overview_level=level - 1) as src:
            np.testing.assert_array_equal(src.read(), arrays[level])


def test_layout_is_gdals_cog(tmp_path):
    # The same pixels through GDAL's COG driver: every IFD has the same tags and
    # values but for where the tiles are; in both, the IFDs come before the tiles,
    # the smallest overview's tiles first, each tile after its size and before a
    # copy of its last 4 bytes.
    # (GDAL's smallest block is 128: four levels of 520x304.)
    rng = np.random.default_rng(7)
    arrays = _levels_of(rng.random((3, 520, 304), dtype=np.float32), 4)
    ours = str(tmp_path / "ours.tif")
    names = _write(ours, arrays, tile=128)
    source = str(tmp_path / "source.tif")
    with rasterio.open(source, "w", driver="GTiff", width=304, height=520, count=3,
                       dtype="float32", crs=CRS, transform=TRANSFORM,
                       nodata=np.nan) as dst:
        dst.write(arrays[0])
        dst.descriptions = names
    theirs = str(tmp_path / "theirs.tif")
    rasterio.shutil.copy(source, theirs, driver="COG", compress="ZSTD", predictor="3",
                         level=1, blocksize="128", overviews="AUTO",
                         resampling="NEAREST")
    where = (cog_writer.TILE_OFFSETS, cog_writer.TILE_BYTE_COUNTS)
    with tifffile.TiffFile(ours) as a, tifffile.TiffFile(theirs) as b:
        assert len(a.pages) == len(b.pages) == 4
        for mine, gdals in zip(a.pages, b.pages):
            assert {t.code for t in mine.tags} == {t.code for t in gdals.tags}
            for tag in mine.tags:
                if tag.code not in where:
                    assert tag.value == gdals.tags[tag.code].value, tag.name
    for path in (ours, theirs):
        with tifffile.TiffFile(path) as tif, open(path, "rb") as f:
            content = f.read()
            ifds_end = max(page.offset for page in tif.pages)
            starts = []
            for page in reversed(tif.pages):  # smallest overview first
                assert min(page.dataoffsets) > ifds_end
                assert list(page.dataoffsets) == sorted(page.dataoffsets)
                starts.append(page.dataoffsets[0])
                for at, size in zip(page.dataoffsets, page.databytecounts):
                    assert struct.unpack_from("<I", content, at - 4)[0] == size
                    assert content[at + size:at + size + 4] == content[at + size - 4:
                                                                      at + size]
            assert starts == sorted(starts)
            assert content[8:8 + len(cog_writer.GHOST)] == cog_writer.GHOST


def test_bigtiff_by_size():
    # Classic up to the limit, BigTIFF beyond it, from the tiles' uncompressed bytes.
    assert cog_writer.CLASSIC_LIMIT < 2 ** 32
    tiles = cog_writer.CLASSIC_LIMIT // (512 * 512 * 4)
    assert Level(512, 512 * tiles).tiles(512) == (1, tiles)


def test_bad_arguments_are_refused(tmp_path):
    arrays = _levels_of(np.zeros((1, 40, 40), np.float32))
    with pytest.raises(ValueError, match="predictor must be 1"):
        _write(str(tmp_path / "a.tif"), arrays, predictor=2)
    with pytest.raises(ValueError, match="multiple of 16"):
        write_cog(str(tmp_path / "b.tif"), [Level(40, 40)], None, 1, {}, tile=20)
    with pytest.raises(ValueError, match="classic TIFF"):
        tiff_tags(b"MM\x00*" + bytes(16))


def test_tile_rows_read_what_was_saved_whatever_is_kept(tmp_path):
    # Rows of saved tiles (bands one after the other) read through the buffers the
    # mosaic keeps: the same values as the files, with room for none, one or many
    # kept reads (a budget below one read, then above several), a read asked twice
    # from what was kept, and a tile cut short refused.
    from transforms.io.cog import _TileRows, save_tile_bands
    rng = np.random.default_rng(11)
    tiles = {}
    for name, (height, width) in {"a": (40, 24), "b": (33, 17), "c": (40, 24)}.items():
        maps = rng.random((height, width, 3), dtype=np.float32)
        path = str(tmp_path / f"{name}.npy")
        save_tile_bands(path, maps)
        tiles[path] = (np.load(path, mmap_mode="r").offset, maps.transpose(2, 0, 1))
    asks = [(p, first, last) for p in tiles for first, last in ((0, 16), (16, 33), (5, 6))]
    for budget in (1, 3 * 16 * 24 * 4 * 2, 2 ** 20):
        rows = _TileRows(3, budget)
        for path, first, last in asks + asks[::-1]:
            offset, bands = tiles[path]
            got = rows.read(path, offset, bands.shape[1], bands.shape[2], first, last)
            np.testing.assert_array_equal(got, bands[:, first:last])
    path = str(tmp_path / "a.npy")
    with open(path, "r+b") as f:
        f.truncate(tiles[path][0] + 3 * 40 * 24 * 4 - 100)
    with pytest.raises(ValueError, match="band 3 ends before row 40"):
        _TileRows(3).read(path, tiles[path][0], 40, 24, 30, 40)
