"""Writing rasters: the per-scene Cloud-Optimized GeoTIFF mosaic, the class map of a
model's predictions, and their quicklook PNGs.

All are written to local files in a scratch folder; the finish step commits them
whole (a rename, or an upload that becomes visible only when complete), so a reader
never sees a partial ``features.tif``.

The mosaic reads the saved tiles where they are: :func:`save_tile_bands` stores each
band of a tile as one contiguous run of a ``.npy`` file, a VRT places them, and GDAL
averages the overviews from it, with no full-size copy of the scene in between (for
the ZSTD codecs one pass per group of bands, the groups in threads, each without
Python's GIL: :mod:`transforms.io.overviews`). The COG of the ZSTD codecs is then
written by :mod:`transforms.io.cog_writer` (its blocks read from the tiles' files and
the overviews, predicted with numpy, compressed in threads); that of the others by
GDAL's COG driver.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Optional, Sequence
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.errors
import rasterio.io
import rasterio.shutil
from affine import Affine
from rasterio._env import get_gdal_config, set_gdal_config
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window

from glcm._compile import usable_cores
from transforms.io import cog_writer, storage
from transforms.io.overviews import build_overviews
from transforms.records import DEFAULTS, SceneInfo, TileResult

# GDAL's block cache while a mosaic is built, in bytes (set by gdal_cache, below):
# GDAL's default, 5 % of the RAM, fills with blocks the mosaic reads or writes once;
# a bounded cache is as fast (README, "Benchmarks").
MOSAIC_CACHE_BYTES = 128 * 2 ** 20
# GDAL's block cache during the COG copy alone: the copy reads each block of the
# mosaic's VRT and overviews once and writes each of the COG's blocks once, so a
# cache there only holds blocks that are not read again. 16 MiB instead of the 128
# above: 0.1-0.3 GiB less peak for 8-104 output bands, CPU seconds within their
# spread (docs/performance-history.md, "The mosaic's memory with many bands").
COPY_CACHE_BYTES = 16 * 2 ** 20
# GDAL's block cache size is one per process, while rasterio.Env keeps its other
# options per thread and restores the size a thread saw on entry when it leaves: two
# mosaics in threads of one process (Dataflow runs one SDK process per worker) set
# and restored it under each other, and a COG copy meant to hold 16 MiB ran with the
# 1.2 GiB default another thread's exit restored. So the mosaics' sizes are kept
# here: each thread's latest request, the largest of them applied while any runs.
_CACHE_LOCK = threading.Lock()
_CACHE_ASKED: dict = {}  # thread -> bytes, for the threads in a mosaic step now
_CACHE_BEFORE: list = []  # the size before the first of them


@contextlib.contextmanager
def gdal_cache(size: int):
    """GDAL's block cache at ``size`` bytes for this thread's step, within a process
    whose threads may run other mosaic steps at the same time: the size applied is
    the largest any of those threads asks for now (a nested request replaces its
    thread's outer one until it ends), and once none runs, the size from before."""
    if size < 1:
        raise ValueError(f"size must be >= 1 byte, got {size}")
    me = threading.get_ident()
    with _CACHE_LOCK:
        outer = _CACHE_ASKED.get(me)
        if not _CACHE_ASKED:
            _CACHE_BEFORE[:] = [get_gdal_config("GDAL_CACHEMAX")]
        _CACHE_ASKED[me] = size
        set_gdal_config("GDAL_CACHEMAX", max(_CACHE_ASKED.values()))
    try:
        yield
    finally:
        with _CACHE_LOCK:
            if outer is None:
                del _CACHE_ASKED[me]
            else:
                _CACHE_ASKED[me] = outer
            set_gdal_config("GDAL_CACHEMAX", max(_CACHE_ASKED.values()) if _CACHE_ASKED
                            else _CACHE_BEFORE[0])


# How the mosaic's overviews (what zoomed-out viewers and the quicklook read) are made.
OVERVIEW_RESAMPLING = "AVERAGE"
# The COG driver's default block size, which also ends its overview levels.
COG_BLOCK = 512
# --cog-compression: the COG's codec and its settings (float32 features). Level 1:
# higher levels cost time for little on float features (figures in
# docs/performance.md). Every one is read by GDAL 3.x and QGIS. "zstd-fast" leaves
# out the floating-point predictor: a third less CPU for the COG copy, files
# 12-14 % larger (for CPU-bound workers whose outputs are not kept long).
CODECS = {
    "deflate": dict(compress="DEFLATE", predictor="3", level=1),
    "zstd": dict(compress="ZSTD", predictor="3", level=1),
    "zstd-fast": dict(compress="ZSTD", predictor="1", level=1),
    "lzw": dict(compress="LZW", predictor="3"),
    "none": dict(compress="NONE"),
}
# What a COG copy holds, in the COG's blocks. A compressed COG is pixel-interleaved, so
# one block holds every band: 512² x bands x 4 bytes, 8 MiB for 8 float32 features,
# 64 MiB for 64. Measured on 32-104 bands (python -m benchmarks.bench_mosaic --bands
# 8 32 64 104 --threads 1 2 3 4 8; docs/performance-history.md, "What the COG copy
# holds"):
# 3.9-5.1 blocks with one thread, where GDAL compresses in the calling thread;
# 9.9-10.5 with two, 11.5-13.0 with three, 14.1-16.2 with four, 21.7-22.3 with eight:
# GDAL queues one job more than it has threads, each with copies of its block.
# The own encoder of the ZSTD codecs (cog_writer) holds less from 64 bands on
# (3.1-16.3 blocks with 1-8 threads) and 6.3-20.4 for 8 bands (5.6-21.7 with each
# block compressed in one call; 16 bands in one call 2.9-15.9), where the tile rows
# it keeps (16 MiB) are two blocks: the model is kept as the bound for both.
COPY_BLOCKS_ONE_THREAD = 5
COPY_BLOCKS_QUEUE = 7
COPY_BLOCKS_PER_THREAD = 2
# The most one COG copy may hold, in bytes, when it has more than one thread. One
# thread per core ("ALL_CPUS") made the mosaic's memory grow with cores x bands: 64
# output bands took 2.3 GiB beyond the process with 16 threads. This budget keeps a
# scene of 8 source bands (64 output bands) in one thread: its pipeline run on 2 cores
# peaked at 1.65-1.69 GiB instead of 1.95-2.03 with two and took 10-15 % more wall
# time, its mosaic running alone on the machine at the end (docs/performance.md).
COMPRESSION_BUDGET_BYTES = 512 * 2 ** 20
# The rows of saved tiles the own encoder keeps for the next block of the same row of
# blocks (_TileRows): two tiles of 8 features, 512 rows of 1024 columns.
TILE_ROWS_BYTES = 32 * 2 ** 20


def bytes_per_block(bands: int, itemsize: int = 4) -> int:
    """Bytes of one of the COG's blocks (:data:`COG_BLOCK`² pixels) holding ``bands``
    bands of ``itemsize`` bytes: a compressed COG is pixel-interleaved, so each block
    holds every band (float32 features by default)."""
    if bands < 1 or itemsize < 1:
        raise ValueError(f"bands and itemsize must be >= 1, got {bands} and {itemsize}")
    return COG_BLOCK ** 2 * bands * itemsize


def copy_blocks(threads: int) -> int:
    """The COG's blocks a COG copy with ``threads`` compression threads holds at most:
    :data:`COPY_BLOCKS_ONE_THREAD` with one, else :data:`COPY_BLOCKS_QUEUE` +
    :data:`COPY_BLOCKS_PER_THREAD` x ``threads`` (measured, see above)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if threads == 1:
        return COPY_BLOCKS_ONE_THREAD
    return COPY_BLOCKS_QUEUE + COPY_BLOCKS_PER_THREAD * threads


def compression_threads(block_bytes: int, cores: Optional[int] = None,
                        budget: int = COMPRESSION_BUDGET_BYTES) -> int:
    """Threads for a COG copy whose blocks hold ``block_bytes`` each: the most, up to
    one per usable core (``cores``, by default those this process may use), whose
    copy holds at most ``budget`` bytes (:func:`copy_blocks` x ``block_bytes``); one
    where not even two fit (GDAL then compresses in the calling thread, the least
    memory a copy can hold, whatever the budget)."""
    if block_bytes < 1:
        raise ValueError(f"block_bytes must be >= 1, got {block_bytes}")
    cores = usable_cores() if cores is None else cores
    fits = (budget // block_bytes - COPY_BLOCKS_QUEUE) // COPY_BLOCKS_PER_THREAD
    return max(1, min(cores, fits))


def write_mosaic(path: str, info: SceneInfo, names: Sequence[str], n_features: int,
                 tiles: Iterable[TileResult],
                 compression: str = DEFAULTS["cog_compression"],
                 threads: Optional[int] = None) -> None:
    """Assembles tile files into a local Cloud-Optimized GeoTIFF, one tile at a time.

    GDAL's block cache is :data:`MOSAIC_CACHE_BYTES`, :data:`COPY_CACHE_BYTES` for
    the COG copy, or more while other threads' mosaics ask for more
    (:func:`gdal_cache`: the size is the process's).

    Args:
      path: the local file to write (in a scratch folder; the caller commits it).
      info: the input's size, CRS and transform (kept as they are).
      names: the output band names, in (band, feature) order
        (:func:`transforms.layout.band_names`).
      n_features: features per source band (the bands of each saved tile).
      tiles: every tile and band's saved core, placed at its (row, col) in output
        pixels (block cells in block mode).
      compression: a key of :data:`CODECS` (the names of
        :data:`transforms.records.COMPRESSIONS`).
      threads: GDAL's compression threads for the COG copy; by default
        :func:`compression_threads` for the COG's blocks (one per core, within
        :data:`COMPRESSION_BUDGET_BYTES`).
    """
    if threads is None:
        threads = compression_threads(bytes_per_block(len(names)))
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    # GDAL_ONE_BIG_READ: a raw band (the tiles, _tile_vrt) reads each request's rows in
    # one read instead of row by row through the block cache: 16 bands of a 2700x3900
    # scene, overviews and COG copy 3.3-3.4 user CPU-s against 3.7-4.7
    # (docs/performance-history.md, "A mosaic without the raw intermediate").
    with gdal_cache(MOSAIC_CACHE_BYTES), rasterio.Env(GDAL_ONE_BIG_READ="YES"):
        _write_mosaic(path, info, names, n_features, tiles, CODECS[compression], threads)


def save_tile_bands(uri: str, maps) -> None:
    """Saves a tile's core ``maps`` (h, w, F) where :func:`write_mosaic` reads it: a
    float32 ``.npy`` of the bands one after the other, (F, h, w), so that each band is
    one contiguous run of the file, which GDAL reads as a raw band in place
    (:func:`_tile_vrt`) instead of the mosaic copying every tile once more."""
    storage.save_npy(uri, np.moveaxis(maps, -1, 0), dtype=np.float32)


def _local_tile(uri: str, work: str) -> str:
    """A local path of the saved tile ``uri``: itself, or a copy of a gs:// object
    in ``work``."""
    if not storage.is_gcs(uri):
        return uri
    local = os.path.join(work, os.path.basename(uri))
    with open(local, "wb") as f:
        f.write(storage.read_bytes(uri))
    return local


def _tile_vrt(npy: str, core: np.memmap, n_features: int) -> str:
    """Writes ``npy.vrt`` beside a tile saved by :func:`save_tile_bands` (``core``, its
    memory map): one raw band per feature, at its offset in the file (see
    :func:`_write_tile_vrt`)."""
    bands = core.shape[0] if core.ndim == 3 else 0
    if core.dtype != np.dtype("<f4") or bands != n_features or not core.flags.c_contiguous:
        raise ValueError(f"{npy}: a tile of {n_features} float32 bands saved band after "
                         f"band was expected, found {core.dtype} {core.shape} (saved by "
                         f"another version? run again with a new output folder)")
    return _write_tile_vrt(npy, core.offset, *core.shape)


def _write_tile_vrt(npy: str, offset: int, bands: int, height: int, width: int,
                    group: int = 0) -> str:
    """Writes a VRT of the tile saved in ``npy`` (``bands`` float32 planes of height x
    width from ``offset`` on): ``npy.vrt``, or ``npy.GROUP.vrt`` for the overview
    pass of band group ``group`` > 0. Beside the file and named relative to it, as
    GDAL requires of a raw band's file by default from 3.12 on
    (``GDAL_VRT_RAWRASTERBAND_ALLOWED_SOURCE``). GDAL shares one open file per name
    between the raw bands of every dataset (``CPLOpenShared``), so a group's VRT
    names the file its own way (``./`` ``group`` times before it): passes in threads
    that read one file through one handle read each other's rows (seen as wrong
    overview values in about one run in four)."""
    plane = height * width * 4
    name = "./" * group + escape(os.path.basename(npy))
    vrt = npy + (f".{group}.vrt" if group else ".vrt")
    with open(vrt, "w") as f:
        f.write(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">')
        for index in range(bands):
            f.write(f'<VRTRasterBand dataType="Float32" band="{index + 1}" '
                    f'subClass="VRTRawRasterBand"><SourceFilename relativeToVRT="1">'
                    f'{name}</SourceFilename><ImageOffset>{offset + index * plane}'
                    f'</ImageOffset><PixelOffset>4</PixelOffset><LineOffset>{width * 4}'
                    f'</LineOffset><ByteOrder>LSB</ByteOrder></VRTRasterBand>')
        f.write("</VRTDataset>")
    return vrt


def _mosaic_vrt(path: str, info: SceneInfo, names: Sequence[str], n_features: int,
                placed, nodata: bool, bands: Optional[range] = None) -> None:
    """Writes the mosaic as a VRT at ``path``: each tile VRT's ``n_features`` bands,
    in order, are the output bands from ``first`` on, placed at the tile's (row,
    col); ``placed`` has one (tile VRT, first, height, width, row, col) per tile.
    With ``bands`` (0-based output bands), the VRT holds those bands only."""
    band_sources = [[] for _ in names]
    for tile_vrt, first, height, width, row, col in placed:
        for band in range(1, n_features + 1):
            band_sources[first + band - 1].append(
                f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(tile_vrt)}'
                f'</SourceFilename><SourceBand>{band}</SourceBand><SrcRect xOff="0" '
                f'yOff="0" xSize="{width}" ySize="{height}"/><DstRect xOff="{col}" '
                f'yOff="{row}" xSize="{width}" ySize="{height}"/></SimpleSource>')
    # Its blocks are the COG's: the copy reads each block of each band once.
    with open(path, "w") as f:
        f.write(f'<VRTDataset rasterXSize="{info.width}" rasterYSize="{info.height}">')
        if info.crs:
            f.write(f"<SRS>{escape(CRS.from_user_input(info.crs).to_wkt())}</SRS>")
        transform = Affine(*info.transform)
        if not transform.is_identity:  # an input without a transform keeps none
            f.write("<GeoTransform>" + ", ".join(repr(float(v)) for v in
                                                transform.to_gdal()) + "</GeoTransform>")
        kept = range(len(names)) if bands is None else bands
        for index, (name, sources) in enumerate(
                ((names[b], band_sources[b]) for b in kept), start=1):
            f.write(f'<VRTRasterBand dataType="Float32" band="{index}" '
                    f'blockXSize="{COG_BLOCK}" blockYSize="{COG_BLOCK}">'
                    f"<Description>{escape(name)}</Description>"
                    + ("<NoDataValue>nan</NoDataValue>" if nodata else "")
                    + "".join(sources) + "</VRTRasterBand>")
        f.write("</VRTDataset>")


def _write_mosaic(path, info, names, n_features, tiles, codec, threads) -> None:
    """The body of :func:`write_mosaic`, inside its GDAL settings.

    The tiles are not copied into a raw intermediate: a VRT places them, GDAL averages
    the overviews from it into a ``.ovr`` file beside it, and the COG copy reads both.
    Four 3072² scenes through the pipeline wrote 2.62 GiB of files instead of 3.74,
    with 1.3-2.8 s less system CPU per run and the same user CPU within the cores'
    drift: a page a file write fills costs the OS more than GDAL reading a VRT costs
    (docs/performance-history.md, "A mosaic without the raw intermediate").
    """
    work = os.path.dirname(os.path.abspath(path))
    vrt = path + ".vrt"
    scratch = [vrt, vrt + ".ovr"]
    try:
        placed, saved = [], []
        finite = True  # every tile's float32 sum is finite: no NaN, no inf, no overflow
        for result in tiles:
            npy = _local_tile(result.path, work)
            if npy != result.path:
                scratch.append(npy)
            core = np.load(npy, mmap_mode="r")  # (F, h, w); only the header is read
            tile_vrt = _tile_vrt(npy, core, n_features)
            scratch.append(tile_vrt)
            placed.append((tile_vrt, result.task.band_index * n_features, core.shape[1],
                           core.shape[2], result.row, result.col))
            saved.append((npy, core.offset) + placed[-1][1:])
            # A NaN anywhere makes the sum NaN; inf, or values so large that float32
            # sums overflow, make it infinite: either way no faster overviews below.
            finite = finite and bool(np.isfinite(np.sum(core)))
            del core
        # Overviews average (NaN skipped): the COG driver's default, cubic, overshoots
        # and put impossible values in them (negative contrast, ASM above 1);
        # averaging keeps every overview value inside the band's range. Built here,
        # the levels the COG driver would choose, so that the COG copy compresses each
        # block once (its own overview pass wrote and read a temporary file: 6.3 ->
        # 4.6 CPU-s for 3072² x 8 bands with DEFLATE, docs/performance.md).
        factors = overview_factors(info.height, info.width)
        # Nothing to skip: GDAL averages faster, in float32, without a nodata value
        # (3072² x 8 bands: 0.17-0.24 CPU-s against 0.55-0.68), the same means to
        # float32 rounding (docs/performance.md). The COG keeps NaN as its nodata.
        _mosaic_vrt(vrt, info, names, n_features, placed, nodata=not (finite and factors))
        zstd = codec["compress"] == "ZSTD"
        overview_vrts, groups = [vrt], [range(len(names))]
        with warnings.catch_warnings():
            # an input without CRS/transform keeps none; the manifest says so
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            if factors:
                # The COG is pixel-interleaved and marked as a COG whatever the codec,
                # "none" included (tested). GDAL's pass is one core's work: for the
                # own encoder, which reads the overviews group by group, the bands
                # are split in groups, each group's pass in a thread of its own.
                if zstd:
                    groups = _band_groups(len(names), threads)
                if len(groups) > 1:
                    overview_vrts = [
                        _group_vrt(vrt, index, bands, info, names, n_features, saved,
                                   nodata=not finite, scratch=scratch)
                        for index, bands in enumerate(groups)]
                    with ThreadPoolExecutor(len(groups)) as pool:
                        list(pool.map(functools.partial(_overviews, factors=factors),
                                      overview_vrts))
                else:
                    _overviews(vrt, factors)
                if finite:
                    _mosaic_vrt(vrt, info, names, n_features, placed, nodata=True)
            # Compressed once, here, in ``threads`` threads.
            with gdal_cache(COPY_CACHE_BYTES):
                if zstd:
                    _encode_cog(vrt, path, len(factors), codec, threads, saved,
                                n_features, list(zip(overview_vrts, groups)))
                else:
                    rasterio.shutil.copy(vrt, path, driver="COG", **codec,
                                         overviews="FORCE_USE_EXISTING" if factors
                                         else "NONE", BIGTIFF="IF_SAFER",
                                         num_threads=str(threads))
    finally:
        for name in scratch:
            if os.path.exists(name):
                os.remove(name)


def _band_groups(bands: int, threads: int) -> list:
    """The output bands in ``threads`` contiguous groups at most (as even as
    possible, none empty): one overview pass per group, in its own thread."""
    n = max(1, min(bands, threads))
    size, extra = divmod(bands, n)
    starts = [k * size + min(k, extra) for k in range(n + 1)]
    return [range(starts[k], starts[k + 1]) for k in range(n)]


def _group_vrt(vrt: str, index: int, bands: range, info: SceneInfo,
               names: Sequence[str], n_features: int, saved, nodata: bool,
               scratch: list) -> str:
    """Writes ``VRT.INDEX.vrt``, the mosaic's output ``bands`` of group ``index`` for
    its own overview pass, from the tiles (``saved``) that hold any of them: the
    first group through the tiles' own VRTs, each other group through VRTs of its
    own (:func:`_write_tile_vrt`). Every file written, and the ``.ovr`` the pass
    will write, is added to ``scratch``."""
    group_vrt = f"{vrt}.{index}.vrt"
    placed = []
    for npy, offset, first, height, width, row, col in saved:
        if first + n_features <= bands.start or first >= bands.stop:
            continue  # none of the group's bands in this tile
        if index == 0:
            tile_vrt = npy + ".vrt"
        else:
            tile_vrt = _write_tile_vrt(npy, offset, n_features, height, width,
                                       group=index)
            scratch.append(tile_vrt)
        placed.append((tile_vrt, first, height, width, row, col))
    scratch.extend([group_vrt, group_vrt + ".ovr"])
    _mosaic_vrt(group_vrt, info, names, n_features, placed, nodata=nodata, bands=bands)
    return group_vrt


def _overviews(vrt: str, factors: Sequence[int]) -> None:
    """GDAL's average overviews of ``vrt`` at ``factors``, in a ``.ovr`` beside it,
    band after band in the COG's blocks, as the raw intermediate's were (2.3-2.6
    CPU-s for 3072² x 8 bands against 2.8-3.0 pixel-interleaved). In the calling
    thread's GDAL settings, so set here: the threads of a pool have none of the
    caller's."""
    with rasterio.Env(GDAL_ONE_BIG_READ="YES", INTERLEAVE_OVERVIEW="BAND",
                      GDAL_TIFF_OVR_BLOCKSIZE=str(COG_BLOCK)):
        build_overviews(vrt, factors, Resampling[OVERVIEW_RESAMPLING.lower()])


def _encode_cog(vrt: str, path: str, n_overviews: int, codec: dict, threads: int,
                saved, n_features: int, overview_vrts) -> None:
    """The COG of the mosaic's VRT written by :mod:`transforms.io.cog_writer`, which
    predicts and compresses its blocks (ZSTD codecs only): the full resolution's
    blocks read from the saved tiles themselves (``saved``: one (``.npy``, offset of
    its data, first output band, height, width, row, col) per tile), each of the
    ``n_overviews`` overviews' blocks read by GDAL from the ``.ovr`` beside each VRT
    of ``overview_vrts`` (one (VRT, range of its output bands) per band group).

    Through the VRT GDAL reads a raw band a row at a time (a read and a seek per row of
    every band of every block); here a block reads each band of each tile it needs
    with one read of the rows it needs (:class:`_TileRows`).
    The georeferencing, band descriptions and nodata tags are those GDAL writes for
    the VRT's settings, taken from a 1x1 GeoTIFF it writes in memory."""
    side = COG_BLOCK
    # The tiles that reach into each of the full resolution's blocks.
    by_block: dict = {}
    for tile in saved:
        _, _, _, height, width, row, col = tile
        for block_row in range(row // side, (row + height - 1) // side + 1):
            for block_col in range(col // side, (col + width - 1) // side + 1):
                by_block.setdefault((block_row, block_col), []).append(tile)
    tile_rows = _TileRows(n_features)
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(rasterio.open(vrt))
        # per overview level, (dataset, first band, end band) of each band group
        overviews = [[(stack.enter_context(rasterio.open(group_vrt, overview_level=k)),
                       bands.start, bands.stop) for group_vrt, bands in overview_vrts]
                     for k in range(n_overviews)]
        profile = dict(driver="GTiff", width=1, height=1, count=src.count,
                       dtype="float32", nodata=src.nodata)
        if src.crs:
            profile["crs"] = src.crs
        if not src.transform.is_identity:  # none set: GDAL writes no georeferencing
            profile["transform"] = src.transform
        with rasterio.io.MemoryFile() as memory:
            with memory.open(**profile) as template:
                template.descriptions = src.descriptions
            tags = cog_writer.tiff_tags(memory.read())
        georeference = {tag: tags[tag] for tag in cog_writer.GEOREFERENCE_TAGS
                        if tag in tags}
        nodata = tags.get(cog_writer.GDAL_NODATA, (None, None, None))[2]
        fill = np.float32(np.nan if src.nodata is not None else 0)
        levels = [cog_writer.Level(src.height, src.width)] + [
            cog_writer.Level(level_sources[0][0].height, level_sources[0][0].width)
            for level_sources in overviews]

        def read_block(level, block_row, block_col, out):
            _, height, width = out.shape
            top, left = block_row * side, block_col * side
            if level:
                for source, first, end in overviews[level - 1]:
                    source.read(out=out[first:end],
                                window=Window(left, top, width, height))
                return
            pieces = []
            for npy, offset, first, tile_height, tile_width, row, col in by_block.get(
                    (block_row, block_col), ()):
                r0, r1 = max(top, row), min(top + height, row + tile_height)
                c0, c1 = max(left, col), min(left + width, col + tile_width)
                pieces.append((npy, offset, tile_height, tile_width, r0 - row, r1 - row,
                               c0 - col, c1 - col, out[first:first + n_features,
                                                       r0 - top:r1 - top,
                                                       c0 - left:c1 - left]))
            if sum(piece[-1].size for piece in pieces) < out.size:
                out[...] = fill  # a band or pixel without a tile, as the VRT reads it
            for npy, offset, tile_height, tile_width, r0, r1, c0, c1, target in pieces:
                target[...] = tile_rows.read(npy, offset, tile_height, tile_width,
                                             r0, r1)[:, :, c0:c1]

        cog_writer.write_cog(path, levels, read_block, src.count, georeference, nodata,
                             predictor=int(codec["predictor"]), zstd_level=codec["level"],
                             tile=side, threads=threads)


class _TileRows:
    """Reads rows of the saved tiles' bands into buffers used again and again.

    A tile saved by :func:`save_tile_bands` holds its bands one after the other, so
    a range of rows of one band, at the tile's full width, is one run of its file:
    one ``preadv`` per band straight into a buffer. The latest reads are kept, up to
    :data:`TILE_ROWS_BYTES`, for the next block of the same row of blocks (a tile
    of 1024 columns serves two blocks of 512). Reading the files rather than mapping
    them keeps what the process holds to these buffers: a mapped page that was read
    counts as resident until it is unmapped (mapping a 3072² scene's tiles for the
    whole COG made the pipeline's peak 1.91 GiB instead of 1.60, and a 10980² scene's
    tiles are 3.9 GB)."""

    def __init__(self, n_features: int, budget: Optional[int] = None):
        self.n_features = n_features
        self.budget = TILE_ROWS_BYTES if budget is None else budget
        self._kept = collections.OrderedDict()  # (npy, first, last) -> rows read
        self._spare: list = []  # buffers no longer kept, to be used again

    def read(self, npy: str, offset: int, height: int, width: int, first: int,
             last: int) -> np.ndarray:
        """Rows ``first`` to ``last`` of every band of the (F, ``height``, ``width``)
        float32 tile whose data start at ``offset`` in ``npy``: (F, rows, width),
        valid until the reads after it need its memory."""
        key = (npy, first, last)
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        rows = last - first
        size = self.n_features * rows * width
        while self._kept and (len(self._kept) + 1) * size * 4 > self.budget:
            self._spare.append(self._kept.popitem(last=False)[1])
        fits = [i for i, spare in enumerate(self._spare) if spare.size >= size]
        buffer = self._spare.pop(fits[0]) if fits else np.empty(size, np.float32)
        out = buffer.reshape(-1)[:size].reshape(self.n_features, rows, width)
        with open(npy, "rb", buffering=0) as f:
            for band in range(self.n_features):
                at = offset + (band * height + first) * width * 4
                if os.preadv(f.fileno(), [out[band]], at) != rows * width * 4:
                    raise ValueError(f"{npy}: band {band + 1} ends before row {last} "
                                     f"(a tile cut short? run again with a new output "
                                     f"folder)")
        self._kept[key] = out
        self._spare = self._spare[-1:]  # one spare at most: the rest is let go
        return out


def overview_factors(height: int, width: int, block: int = COG_BLOCK) -> list:
    """The overview factors GDAL's COG driver makes by itself (halving until the
    image fits in one block): 2, 4, ... while the previous level exceeds a block."""
    factors, size, factor = [], max(height, width), 1
    while size > block:
        factor, size = factor * 2, -(-size // 2)
        factors.append(factor)
    return factors


def write_quicklook(path: str, mosaic: str, max_side: int = 512) -> None:
    """PNG of up to three feature bands as RGB (2-98 % stretch), from a decimated
    read of the COG's overviews; both paths local."""
    with rasterio.open(mosaic) as src:
        scale = max(1.0, max(src.height, src.width) / max_side)
        shape = (max(1, int(src.height / scale)), max(1, int(src.width / scale)))
        indexes = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
        data = src.read(indexes, out_shape=(3,) + shape)
    rgb = np.zeros(data.shape, np.uint8)
    alpha = np.isfinite(data).all(axis=0)
    for k in range(3):
        values = data[k][np.isfinite(data[k])]
        if values.size:
            lo, hi = np.percentile(values, [2, 98])
            scaled = (data[k] - lo) / (hi - lo if hi > lo else 1.0)
            rgb[k] = np.clip(np.nan_to_num(scaled) * 255, 0, 255).astype(np.uint8)
    with warnings.catch_warnings():
        # a quicklook is a picture, not georeferenced on purpose
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="PNG", height=shape[0], width=shape[1],
                           count=4, dtype="uint8") as dst:
            dst.write(rgb, [1, 2, 3])
            dst.write(alpha.astype(np.uint8) * 255, 4)


# classes.tif's value where a pixel has no prediction (a NaN in any output).
NO_CLASS = 255
# Rows of the predictions read at once while the class map is built: bounded memory
# whatever the scene's size.
CLASS_ROWS = 512
# The first class colours: distinct and readable on maps (Tableau's 10, then more).
_PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
            (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127),
            (188, 189, 34), (23, 190, 207))


def class_colours(n: int) -> dict:
    """A colour table for ``n`` classes: {class: (r, g, b, 255)}, and
    :data:`NO_CLASS` transparent black. Beyond the palette, hues spaced by the golden
    ratio."""
    import colorsys

    table = {}
    for k in range(n):
        if k < len(_PALETTE):
            rgb = _PALETTE[k]
        else:
            r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.65, 0.9)
            rgb = (int(r * 255), int(g * 255), int(b * 255))
        table[k] = rgb + (255,)
    table[NO_CLASS] = (0, 0, 0, 0)
    return table


def write_classes(path: str, predictions: str, classes: Sequence[str]) -> None:
    """The class map of a local predictions COG as a local COG: uint8 arg-max over
    the bands (the first on ties), :data:`NO_CLASS` (nodata) where any band is NaN;
    band description ``class``, the class names as tags ``CLASS_<k>``, a colour
    table, nearest-neighbour overviews. Read :data:`CLASS_ROWS` rows at a time."""
    plain = path + ".plain.tif"
    with warnings.catch_warnings(), gdal_cache(MOSAIC_CACHE_BYTES):
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(predictions) as src:
            profile = dict(driver="GTiff", height=src.height, width=src.width, count=1,
                           dtype="uint8", nodata=NO_CLASS, crs=src.crs,
                           transform=src.transform, tiled=True, blockxsize=COG_BLOCK,
                           blockysize=COG_BLOCK, BIGTIFF="IF_SAFER")
            with rasterio.open(plain, "w", **profile) as dst:
                dst.set_band_description(1, "class")
                dst.update_tags(1, **{f"CLASS_{k}": name for k, name in enumerate(classes)})
                dst.write_colormap(1, class_colours(len(classes)))
                for row in range(0, src.height, CLASS_ROWS):
                    window = Window(0, row, src.width, min(CLASS_ROWS, src.height - row))
                    values = src.read(window=window)  # (K, rows, W)
                    known = np.isfinite(values).all(axis=0)
                    best = np.argmax(np.where(known, values, 0.0), axis=0)
                    dst.write(np.where(known, best, NO_CLASS).astype(np.uint8), 1,
                              window=window)
        rasterio.shutil.copy(plain, path, driver="COG", compress="DEFLATE", level=6,
                             overviews="AUTO", resampling="NEAREST", BIGTIFF="IF_SAFER",
                             num_threads=str(compression_threads(
                                 bytes_per_block(1, itemsize=1))))
    os.remove(plain)


def write_class_quicklook(path: str, classes: str, max_side: int = 512) -> None:
    """PNG of a class map in its colours (transparent where there is no class), from
    a decimated read of its overviews; both paths local."""
    with rasterio.open(classes) as src:
        scale = max(1.0, max(src.height, src.width) / max_side)
        shape = (max(1, int(src.height / scale)), max(1, int(src.width / scale)))
        data = src.read(1, out_shape=shape)
        colours = src.colormap(1)
    lookup = np.zeros((256, 4), np.uint8)
    for value, rgba in colours.items():
        lookup[value] = rgba
    rgba = np.moveaxis(lookup[data], -1, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="PNG", height=shape[0], width=shape[1],
                           count=4, dtype="uint8") as dst:
            dst.write(rgba)
