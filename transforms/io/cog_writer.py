"""A Cloud-Optimized GeoTIFF writer for float32 mosaics compressed with ZSTD.

GDAL's COG driver compresses through libtiff, whose floating-point predictor
(TIFF's predictor 3: each row's bytes regrouped by significance, then differenced)
is a loop over single bytes: on the mosaic of a 3072² scene of 8 features it cost
about as much as ZSTD itself (docs/performance-history.md, "An own COG encoder").
Here the predictor is a few numpy array operations per block, ZSTD is the
``zstandard`` package (both release the GIL, so blocks are encoded in threads), and
the file is laid out as GDAL's COG driver lays it out:

- the TIFF (or BigTIFF) header, then GDAL's "ghost" structural metadata, which tells
  GDAL-based readers the file is a COG (``LAYOUT=COG`` in its ``IMAGE_STRUCTURE``);
- every IFD (full resolution first, then each overview, larger first) with its
  tag values, before any image data;
- the tiles, the smallest overview's first and the full resolution's last, each row
  of tiles left to right, each tile preceded by its size (4 bytes) and followed by
  a copy of its last 4 bytes (``BLOCK_LEADER``/``BLOCK_TRAILER`` of the ghost).

Georeferencing (the GeoTIFF tags), band descriptions (``GDAL_METADATA``) and the
nodata value (``GDAL_NODATA``) are the tags GDAL writes for them, taken from a 1x1
GeoTIFF the caller has GDAL write with the same settings (:func:`tiff_tags`): their
encoding (CRS to GeoKeys above all) stays GDAL's.

References
----------
.. [1] TIFF Revision 6.0 (1992), sections 2 (structure), 14 (differencing predictor),
   15 (tiles); Adobe Photoshop TIFF Technical Note 3 (1995, floating-point predictor).
.. [2] BigTIFF file format, https://www.awaresystems.be/imaging/tiff/bigtiff.html
.. [3] GDAL COG driver, "File format details"; OGC Cloud Optimized GeoTIFF
   Standard 1.0 (OGC 21-026).
"""

import collections
import concurrent.futures
import dataclasses
import struct
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import zstandard

__all__ = ["GEOREFERENCE_TAGS", "Level", "float_predictor", "tiff_tags", "write_cog"]

# TIFF tags.
NEW_SUBFILE_TYPE, IMAGE_WIDTH, IMAGE_LENGTH, BITS_PER_SAMPLE = 254, 256, 257, 258
COMPRESSION, PHOTOMETRIC, SAMPLES_PER_PIXEL, PLANAR_CONFIG = 259, 262, 277, 284
PREDICTOR, TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS = 317, 322, 323, 324
TILE_BYTE_COUNTS, EXTRA_SAMPLES, SAMPLE_FORMAT = 325, 338, 339
GDAL_NODATA = 42113
# What GDAL writes for a raster's place on Earth and its bands' metadata: pixel
# scale, tie points, transformation, GeoKeys and their double and ASCII parameters,
# GDAL_METADATA (band descriptions). Full resolution only, as GDAL writes them.
GEOREFERENCE_TAGS = (33550, 33922, 34264, 34735, 34736, 34737, 42112)
ZSTD_COMPRESSION = 50000  # the code libtiff and GDAL use
# TIFF field types a GeoTIFF's tags use: code -> bytes of one value (BYTE, ASCII,
# SHORT, LONG, RATIONAL, UNDEFINED, FLOAT, DOUBLE, LONG8).
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 11: 4, 12: 8, 16: 8}
SHORT, LONG, LONG8 = 3, 4, 16

# GDAL's structural metadata ("ghost area"), as its COG driver writes it.
_GHOST_BODY = ("LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
               "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ")
GHOST = (f"GDAL_STRUCTURAL_METADATA_SIZE={len(_GHOST_BODY):06d} bytes\n"
         f"{_GHOST_BODY}").encode("ascii")
# A classic TIFF addresses 4 GiB; above this many bytes of uncompressed tiles the file
# is a BigTIFF (as GDAL's BIGTIFF=IF_SAFER decides from the uncompressed size).
CLASSIC_LIMIT = 2 ** 32 - 2 ** 25


@dataclasses.dataclass(frozen=True)
class Level:
    """One resolution of the COG: its size in pixels (full resolution first)."""

    height: int
    width: int

    def tiles(self, tile: int) -> Tuple[int, int]:
        """(rows, columns) of ``tile``-square tiles covering it."""
        return -(-self.height // tile), -(-self.width // tile)


def float_predictor(block: np.ndarray, out: np.ndarray = None,
                    scratch: np.ndarray = None) -> np.ndarray:
    """TIFF's floating-point predictor applied to a pixel-interleaved tile.

    For each row of ``block`` (h, w, bands) float32, the row's ``w * bands`` values
    are split into their bytes, most significant first, all values' first bytes then
    all their second bytes and so on; each byte then becomes its difference (modulo
    256) with the byte ``bands`` places before it, the same band's byte of the
    previous pixel [1]_. Most significant bytes vary slowly across a row, so the
    differences are mostly small and compress well.

    Returns (h, 4 * w * bands) uint8 (``out`` where given; ``scratch``, of the same
    shape, holds the regrouped bytes), what libtiff's decoder turns back into the row.
    With ``scratch`` given, ``out`` may be ``block``'s own memory: every byte is
    regrouped into ``scratch`` before ``out`` is written.
    """
    height, width, bands = block.shape
    raw = np.ascontiguousarray(block, dtype="<f4").view(np.uint8)
    raw = raw.reshape(height, width * bands, 4)
    row_bytes = 4 * width * bands
    planes = np.empty((height, row_bytes), np.uint8) if scratch is None else scratch
    out = np.empty((height, row_bytes), np.uint8) if out is None else out
    by_significance = planes.reshape(height, 4, width * bands)
    for significance in range(4):  # the 4 bytes of a float32, most significant first
        by_significance[:, significance] = raw[:, :, 3 - significance]
    out[:, :bands] = planes[:, :bands]
    np.subtract(planes[:, bands:], planes[:, :-bands], out=out[:, bands:])
    return out


# Rows of a tile predicted at a time: the predictor's scratch per thread is this
# many rows of a tile, not a whole tile (64 bands: 8 MiB instead of 128).
PREDICTOR_ROWS = 64
# A tile of at most this many bytes (16 bands of 512²: two source bands' 8 features)
# is compressed in one call, its predicted bytes whole: ZSTD then reads them where
# they are. A stream copies what it is given into its own window and matches against
# that copy, which cost 15-17 % more CPU for the same bytes with 8 and 16 bands
# (docs/performance-history.md, "Compressed in one call"). Larger tiles are
# streamed: not measured in one call, where each tile's compressed bytes would be
# memory fresh from the OS (glibc maps allocations above 32 MiB anew each time).
ONE_SHOT_BYTES = 16 << 20


class _Encoder:
    """Predicts and compresses tiles in threads: a ZSTD context and the predictor's
    scratch rows per thread (a context is not safe to share between threads; buffers
    used again spare the OS fresh pages for every tile). A tile is predicted in place,
    :data:`PREDICTOR_ROWS` rows at a time; one of at most :data:`ONE_SHOT_BYTES` is
    then compressed whole in one call, a larger one streamed as one ZSTD frame into
    the caller's output buffer (a fresh one per tile made the OS supply and clear
    about 23,000 pages more per 3072² scene)."""

    def __init__(self, tile: int, bands: int, predictor: int, level: int):
        self.tile, self.bands, self.predictor, self.level = tile, bands, predictor, level
        self.one_shot = tile * tile * bands * 4 <= ONE_SHOT_BYTES
        self._local = threading.local()

    def __call__(self, pixels: np.ndarray, output: "_Output"):
        """The bytes of one tile, ``pixels`` (tile, tile, bands) float32, contiguous
        (with the predictor it then holds the predicted bytes): a bytes object where
        the tile is compressed in one call, else a view of ``output`` (emptied
        first)."""
        local = self._local
        if getattr(local, "compressor", None) is None:
            local.compressor = zstandard.ZstdCompressor(level=self.level)
            if self.predictor == 3:
                local.scratch = np.empty(
                    (min(PREDICTOR_ROWS, self.tile), 4 * self.tile * self.bands), np.uint8)
        if self.predictor == 3:
            # Each chunk's bytes are regrouped into scratch before any is written
            # back: the chunk's own rows take its predicted bytes.
            predicted = pixels.view(np.uint8).reshape(self.tile, -1)
            rows = len(local.scratch)
            for top in range(0, self.tile, rows):
                chunk = pixels[top:top + rows]
                float_predictor(chunk, predicted[top:top + len(chunk)],
                                local.scratch[:len(chunk)])
        if self.one_shot:
            return local.compressor.compress(pixels)
        output.size = 0
        with local.compressor.stream_writer(output, size=pixels.nbytes,
                                            closefd=False) as stream:
            stream.write(pixels)
        return output.view()


class _Output:
    """A tile's compressed bytes, written by ZSTD into memory kept for the next tile
    (grown when a tile needs more; pages the OS supplies only as they are written)."""

    def __init__(self, capacity: int):
        self.buffer = np.empty(capacity, np.uint8)
        self.size = 0

    def write(self, data) -> int:
        chunk = np.frombuffer(data, np.uint8)
        end = self.size + chunk.size
        if end > self.buffer.size:
            self.buffer = np.concatenate([self.buffer[:self.size],
                                          np.empty(end - self.size, np.uint8)])
        self.buffer[self.size:end] = chunk
        self.size = end
        return chunk.size

    def flush(self) -> None:
        """Nothing to flush: ZSTD's stream writer calls it."""

    def view(self) -> memoryview:
        """The tile's bytes."""
        return memoryview(self.buffer[:self.size])


def tiff_tags(tiff: bytes) -> Dict[int, Tuple[int, int, bytes]]:
    """The first IFD's tags of a little-endian classic TIFF held in ``tiff``: tag ->
    (field type, count, value bytes)."""
    if tiff[:4] != b"II*\x00":
        raise ValueError("expected a little-endian classic TIFF (as GDAL writes a small "
                         f"GeoTIFF), found the header {tiff[:4]!r}")
    (ifd,) = struct.unpack_from("<I", tiff, 4)
    (count,) = struct.unpack_from("<H", tiff, ifd)
    tags = {}
    for entry in range(count):
        tag, kind, n, inline = struct.unpack_from("<HHI4s", tiff, ifd + 2 + 12 * entry)
        if kind not in TYPE_SIZES:
            raise ValueError(f"TIFF tag {tag} has a field type ({kind}) this writer "
                             "does not know")
        size = TYPE_SIZES[kind] * n
        if size <= 4:
            value = inline[:size]
        else:
            (at,) = struct.unpack("<I", inline)
            value = tiff[at:at + size]
        tags[tag] = (kind, n, bytes(value))
    return tags


def _short_or_long(value: int) -> Tuple[int, int, bytes]:
    return (SHORT, 1, struct.pack("<H", value)) if value < 2 ** 16 else (
        LONG, 1, struct.pack("<I", value))


def _shorts(values: Sequence[int]) -> Tuple[int, int, bytes]:
    return SHORT, len(values), struct.pack(f"<{len(values)}H", *values)


def _level_tags(level: Level, overview: bool, bands: int, tile: int, predictor: int,
                n_tiles: int, big: bool, extra: Dict[int, Tuple[int, int, bytes]]):
    """Every tag of one level's IFD; the tile offsets and byte counts zero, filled in
    once the tiles are written."""
    offset_type, offset_size = (LONG8, 8) if big else (LONG, 4)
    tags = dict(extra)
    tags.update({
        IMAGE_WIDTH: _short_or_long(level.width),
        IMAGE_LENGTH: _short_or_long(level.height),
        BITS_PER_SAMPLE: _shorts([32] * bands),
        COMPRESSION: _shorts([ZSTD_COMPRESSION]),
        PHOTOMETRIC: _shorts([1]),  # min-is-black: bands are not colours
        SAMPLES_PER_PIXEL: _shorts([bands]),
        PLANAR_CONFIG: _shorts([1]),  # pixel-interleaved, as GDAL's compressed COGs
        PREDICTOR: _shorts([predictor]),
        TILE_WIDTH: _shorts([tile]),
        TILE_LENGTH: _shorts([tile]),
        TILE_OFFSETS: (offset_type, n_tiles, bytes(offset_size * n_tiles)),
        TILE_BYTE_COUNTS: (LONG, n_tiles, bytes(4 * n_tiles)),
        SAMPLE_FORMAT: _shorts([3] * bands),  # IEEE floating point
    })
    if bands > 1:
        tags[EXTRA_SAMPLES] = _shorts([0] * (bands - 1))  # unspecified data
    if overview:
        tags[NEW_SUBFILE_TYPE] = (LONG, 1, struct.pack("<I", 1))  # reduced resolution
    return tags


def _ifd_bytes(tags, at: int, big: bool):
    """(bytes of the IFD at file offset ``at`` with its out-of-line values after it,
    {tag: file offset of its value}, file offset of its next-IFD pointer)."""
    entry_size, inline, count_format = (20, 8, "<Q") if big else (12, 4, "<H")
    head = 8 if big else 2
    values_at = at + head + entry_size * len(tags) + inline
    entries, values, where = [], bytearray(), {}
    for tag in sorted(tags):
        kind, n, value = tags[tag]
        if len(value) <= inline:
            where[tag] = at + head + entry_size * len(entries) + (entry_size - inline)
            field = value.ljust(inline, b"\x00")
        else:
            if (values_at + len(values)) % 2:
                values += b"\x00"  # values start on a word boundary
            where[tag] = values_at + len(values)
            field = struct.pack("<Q" if big else "<I", where[tag])
            values += value
        entries.append(struct.pack("<HHQ" if big else "<HHI", tag, kind, n) + field)
    ifd = struct.pack(count_format, len(tags)) + b"".join(entries) + bytes(inline)
    return ifd + bytes(values), where, at + head + entry_size * len(tags)


def write_cog(path: str, levels: Sequence[Level],
              read_block: Callable[[int, int, int, np.ndarray], object], bands: int,
              georeference: Dict[int, Tuple[int, int, bytes]],
              nodata: Optional[bytes] = None,
              predictor: int = 3, zstd_level: int = 1, tile: int = 512,
              threads: int = 1, bigtiff: Optional[bool] = None) -> None:
    """Writes a float32 COG of ``bands`` bands compressed with ZSTD to ``path``.

    Args:
      path: the local file to write.
      levels: the full resolution, then each overview, larger first.
      read_block: ``read_block(level, row, col, out)`` fills ``out``, a (bands, h, w)
        float32 view, with the pixels of the tile at (row, col) of ``levels[level]``
        (in tiles; h and w smaller at the right and bottom edges, where the rest of
        the tile is zeros).
      bands: bands of every level.
      georeference: the full resolution's extra tags, such as
        :data:`GEOREFERENCE_TAGS` from :func:`tiff_tags` (tag -> (type, count, value)).
      nodata: ``GDAL_NODATA``'s value (ASCII, NUL-terminated), on every level; None
        for none.
      predictor: 3 (floating point, [1]_) or 1 (none).
      zstd_level: ZSTD's compression level.
      tile: the tiles' side, a multiple of 16.
      threads: threads that encode tiles (reading stays in the calling thread).
      bigtiff: a BigTIFF, or a classic TIFF; by default a BigTIFF where the tiles
        uncompressed exceed :data:`CLASSIC_LIMIT` bytes (what compresses them least
        still fits a classic TIFF).
    """
    if predictor not in (1, 3):
        raise ValueError(f"predictor must be 1 (none) or 3 (floating point), got "
                         f"{predictor}")
    if tile < 16 or tile % 16:
        raise ValueError(f"tile must be a positive multiple of 16, got {tile}")
    if not levels or bands < 1 or threads < 1:
        raise ValueError(f"need at least one level, band and thread, got {len(levels)}, "
                         f"{bands}, {threads}")
    grid = [level.tiles(tile) for level in levels]
    raw_bytes = sum(rows * cols for rows, cols in grid) * tile * tile * bands * 4
    big = raw_bytes > CLASSIC_LIMIT if bigtiff is None else bool(bigtiff)
    header_size = 16 if big else 8
    at = first_ifd = header_size + len(GHOST) + (header_size + len(GHOST)) % 2
    header = struct.pack("<2sHHHQ", b"II", 43, 8, 0, first_ifd) if big else struct.pack(
        "<2sHI", b"II", 42, first_ifd)
    extra_nodata = {} if nodata is None else {
        GDAL_NODATA: (2, len(nodata), nodata)}
    ifds, places = [], []
    for index, (level, (rows, cols)) in enumerate(zip(levels, grid)):
        tags = _level_tags(level, index > 0, bands, tile, predictor, rows * cols, big,
                           {**extra_nodata, **(georeference if index == 0 else {})})
        ifd, where, next_at = _ifd_bytes(tags, at, big)
        ifds.append((at, ifd, next_at))
        places.append(where)
        at += len(ifd) + len(ifd) % 2
    encode = _Encoder(tile, bands, predictor, zstd_level)
    offsets: List[List[int]] = [[] for _ in levels]
    sizes: List[List[int]] = [[] for _ in levels]
    with open(path, "wb") as f:
        f.write(header)
        f.write(GHOST)
        for index, (ifd_at, ifd, next_at) in enumerate(ifds):
            f.seek(ifd_at)
            f.write(ifd)
            following = ifds[index + 1][0] if index + 1 < len(ifds) else 0
            f.seek(next_at)
            f.write(struct.pack("<Q" if big else "<I", following))
        f.seek(at)
        # The smallest overview first, the full resolution last (GDAL's COG order:
        # a reader of a zoomed-out view reads the start of the file only).
        order = [(index, row, col) for index in reversed(range(len(levels)))
                 for row in range(grid[index][0]) for col in range(grid[index][1])]
        _write_tiles(f, order, levels, read_block, encode, threads, offsets, sizes,
                     big)
        for index, where in enumerate(places):
            f.seek(where[TILE_OFFSETS])
            f.write(struct.pack(f"<{len(offsets[index])}{'Q' if big else 'I'}",
                                *offsets[index]))
            f.seek(where[TILE_BYTE_COUNTS])
            f.write(struct.pack(f"<{len(sizes[index])}I", *sizes[index]))


def _write_tiles(f, order, levels, read_block, encode, threads, offsets, sizes,
                 big) -> None:
    """Reads, encodes (in ``threads`` threads, a few tiles ahead) and writes the tiles
    of ``order`` at the end of ``f``, noting each one's offset and size. The tiles
    are read into a few buffers used again and again."""
    limit = 2 ** 64 if big else 2 ** 32
    tile, bands = encode.tile, encode.bands
    ahead = threads + 1  # tiles being encoded, and one read ahead
    # Room for a tile that does not compress at all, and ZSTD's frame around it.
    capacity = tile * tile * bands * 4 + 2 ** 17
    free = [(np.empty((tile, tile, bands), np.float32),
             None if encode.one_shot else _Output(capacity)) for _ in range(ahead)]
    tiles = iter(order)
    pending = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:

        def submit():
            """Reads the next tile, if any, and queues it for encoding."""
            following = next(tiles, None)
            if following is None:
                return
            index, row, col = following
            level, (pixels, output) = levels[index], free.pop()
            height = min(tile, level.height - row * tile)
            width = min(tile, level.width - col * tile)
            if (height, width) != (tile, tile):
                pixels[height:] = 0
                pixels[:, width:] = 0
            read_block(index, row, col, pixels.transpose(2, 0, 1)[:, :height, :width])
            pending.append((index, pixels, output, pool.submit(encode, pixels, output)))

        for _ in range(ahead):
            submit()
        while pending:
            index, pixels, output, future = pending.popleft()
            data = future.result()
            at = f.tell()
            if at + 4 + len(data) + 4 > limit:
                raise ValueError("the compressed tiles exceed what a classic TIFF "
                                 "addresses (4 GiB)")
            f.write(struct.pack("<I", len(data)))
            f.write(data)
            f.write(data[-4:])
            offsets[index].append(at + 4)
            sizes[index].append(len(data))
            del data
            free.append((pixels, output))
            submit()
