"""Per-pixel GLCM texture maps, without a GLCM per window.

Each feature is computed by one of three mechanisms (:data:`MECHANISMS`), each run
only for the features that need it:

- ``box_sums`` (:class:`glcm._box_sums.BoxMoments`): features that are expectations
  of (i, j) or their moments: window sums of per-anchor maps, O(window) per pixel;
  second moments centred on the window's centre value for float32 precision, third
  and fourth moments of i + j and the variance of |i - j| from float64 sums of
  integer powers (exact integers);
- ``sliding_histograms`` (:class:`glcm._sliding_histograms.SlidingCounts`): count
  features (asm, entropies, imc): Σ m² and Σ m ln m of the window's key counts kept
  up to date as the window moves along a row, O(window) per pixel, in exact integers;
- ``gathered_windows`` (:class:`glcm._gathered_windows.WindowStatistics`): joint_max
  (every pair's key against every other's, O(window⁴)), max_correlation (the
  window's GLCM, levels² per pixel: slow, but exact), and the higher moments where
  the backend has no float64 (JAX without ``jax_enable_x64``: two passes over the
  window's pairs, O(window²)).

Apart from max_correlation, cost grows with pixels x window, never with levels² per
pixel. ``docs/features.md`` gives the definitions.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from glcm._box_sums import BoxMoments, added
from glcm._compile import (chunk_threads, float64_available, is_tracing, jit_when_eager,
                           map_in_threads, on_accelerator)
from glcm._gathered_windows import WindowStatistics, gather_windows
from glcm._inputs import WindowPairs, checked_inputs, level_codes, neighbour_codes
from glcm._sliding_histograms import SlidingCounts
from glcm.features import (BOX_SUMS, BY_NAME, GATHERED_WINDOWS, REGISTRY,
                           SLIDING_HISTOGRAMS, resolve_features)
from glcm.validation import DEFAULT_ANGLES, check_padding, check_window, texture_halo

# Feature -> the mechanism that computes it in texture_map (from the registry; tests
# check that each mechanism implements its features).
MECHANISMS = {f.name: f.mechanism for f in REGISTRY}
# The class that implements each mechanism's features (its FEATURES attribute).
IMPLEMENTATIONS = {BOX_SUMS: BoxMoments, SLIDING_HISTOGRAMS: SlidingCounts,
                   GATHERED_WINDOWS: WindowStatistics}


def mechanism_of(name):
    """The mechanism that computes ``name`` here: :data:`MECHANISMS`, except that the
    higher moments need float64 box sums and fall back to gathered windows without
    float64 (JAX by default)."""
    if BY_NAME[name].float64 and not float64_available():
        return GATHERED_WINDOWS
    return MECHANISMS[name]

# Elements (pixels x window pairs x offsets) of one chunk: bounds peak memory.
CHUNK_ELEMENTS = 1 << 25
# Widest chunk: the sliding histograms take one step per column, vectorized over
# the chunk's rows, so a wide chunk (with fewer rows) takes more, smaller steps
# (4096 columns: 4 strips of 1024; a 1032-column pipeline tile: one strip).
STRIP_COLUMNS = 1280
# Fewest output rows of a chunk split only to keep every thread busy (a small
# image): each chunk recomputes a margin of window + 2 x distance rows.
MIN_SPLIT_ROWS = 64
# An image of at most BUCKETED_SIDE on both sides is padded up to multiples of
# SHAPE_BUCKET (invalid pixels, cropped after), so that small images of nearby sizes
# share one compiled kernel: compiling costs 3-4 CPU-s per shape, computing 256²
# about 0.1. Larger images keep their exact shape: the pipeline's tiles and Dask's
# chunks (256 or more plus their halo) share one each, and padding would cost every
# call of it (262 -> 288 is a fifth more pixels).
SHAPE_BUCKET = 32
BUCKETED_SIDE = 256
# On an accelerator the chunks are narrow column strips stacked along the batch axis,
# as many per kernel call as ACCELERATOR_CHUNK_ELEMENTS allows: the sliding
# histograms' column loop runs one step (a few small kernel launches) per column, so
# a strip's width, not the image's, sets the number of steps, and each step does
# more work at once. The budget's temporaries (a few GiB, see texture_map) fit a
# 16 GB GPU.
ACCELERATOR_STRIP_COLUMNS = 256
ACCELERATOR_CHUNK_ELEMENTS = 1 << 28


def texture_map(images, features, window=7, *, levels, distances=(1,),
                angles=DEFAULT_ANGLES, symmetric=True, average=True, mask=None,
                threads=None, padding="same"):
    """Per-pixel GLCM features of the window centred on every pixel.

    The value at (r, c) equals ``graycoprops(graycomatrix(patch))`` where ``patch`` is
    the window x window neighbourhood centred on (r, c), clipped at the image border,
    with a normalized (and by default symmetric) GLCM. With ``average=True`` each
    feature is computed per offset and averaged over the offsets that have at least
    one valid pair in the window (as Earth Engine's ``average``).

    Parameters
    ----------
    images : int array (batch, H, W) or (batch, H, W, 1)
        Grey levels in [0, levels) (see :func:`glcm.quantize`).
    features : str or sequence of str
        Names or aliases from :data:`glcm.FEATURES`, in the output order.
    window : int
        Odd window size, 3..63.
    levels : int
        Number of grey levels.
    distances, angles : sequences
        As :func:`glcm.graycomatrix` (angles in radians, scikit-image's convention).
    symmetric : bool
        Count (i, j) and (j, i) (default True).
    average : bool
        Average over offsets (default) or keep them.
    mask : bool array (batch, H, W), optional
        False marks invalid pixels: their pairs do not count and their output is NaN.
    threads : int, optional
        Chunks computed at once (eager calls only). Default: the usable CPU cores
        (affinity, capped by a cgroup CPU quota) when TensorFlow computes on the
        CPU, else 1 (on JAX it must be 1). The chunks are made smaller in
        proportion, so memory does not grow with it.
    padding : {"same", "valid"}
        ``"same"`` (default): a value for every pixel, windows clipped at the image
        border. ``"valid"``: values only for the pixels at least ``halo =
        glcm.texture_halo(window, distances)`` from every border, the outer ``halo``
        pixels being read as the windows' context only (a tile read with its halo).
        The values are those of ``"same"`` on the same input, cropped by ``halo`` on
        every side, but the cropped border is never computed: a 1024² tile read with
        a halo of 4 computes 1024² maps instead of 1032².

    Returns
    -------
    float32 (batch, H, W, n_features), or (batch, H, W, n_distances * n_angles,
    n_features) with ``average=False`` (offsets in (distance, angle) row-major order);
    H - 2 halo and W - 2 halo with ``padding="valid"``.
    NaN where the centre pixel is invalid or the window has no valid pair.

    Raises
    ------
    ValueError
        ``padding`` is neither ``"same"`` nor ``"valid"``; with ``"valid"``, an image
        side of at most ``2 * halo`` (no pixel has its whole context).

    Notes
    -----
    Memory: eagerly, the image is processed in chunks (column strips of at most
    ``STRIP_COLUMNS`` and as many rows as fit) whose largest temporaries hold about
    ``CHUNK_ELEMENTS`` = 2**25 values in all threads together (box-filtered maps,
    one count histogram per row and offset, or window² gathered pairs per pixel),
    whatever the image size. On a GPU or TPU the chunks are instead column strips of
    at most ``ACCELERATOR_STRIP_COLUMNS`` = 256, stacked along the batch axis, as many
    per kernel call as keep about ``ACCELERATOR_CHUNK_ELEMENTS`` = 2**28 values: the
    count features' column loop then takes a strip's width of steps instead of the
    image's (4.5 times the pixel rate of one chunk per call on an H200; the device
    held 1.7 GiB at most for a 4096² image). Beyond that, peak memory is the input,
    the chunks' float32 outputs and the joined output (twice H x W x n_features x 4
    bytes), plus one padded int32 copy of the input.
    Inside a caller's ``tf.function``/``jax.jit`` (e.g. the ``TextureMap`` layer) the
    whole input is one chunk, so feed it tiles.

    Compilation: an eager call compiles its chunk's kernel once per shape and
    configuration. Images of at most ``BUCKETED_SIDE`` = 256 on both sides are padded
    with invalid pixels to multiples of ``SHAPE_BUCKET`` = 32 (the output is cropped;
    the values are those of the exact shape up to float32 rounding), so small images
    of nearby sizes (edge tiles, windows of a scene) share one compiled kernel.

    Examples
    --------
    >>> import numpy as np, glcm
    >>> image = np.random.default_rng(0).integers(0, 8, (1, 32, 32))
    >>> maps = glcm.texture_map(image, ["contrast", "ent"], window=5, levels=8)
    >>> tuple(maps.shape)
    (1, 32, 32, 2)
    """
    window = check_window(window)
    names = resolve_features(features)
    images, mask, levels, distances, angles, offsets = checked_inputs(
        images, mask, levels, distances, angles)
    static = dict(names=names, window=window, levels=levels, offsets=offsets,
                  symmetric=bool(symmetric), average=bool(average))
    margin = _margin(window, offsets)
    # "valid": the input's own outer pixels are the kernel's margin, none padded.
    cut = _valid_cut(check_padding(padding), images.shape, window, distances, margin)
    codes = level_codes(images, levels, mask)  # -1 = invalid
    batch, height, width = images.shape[0], images.shape[1], images.shape[2]
    eager = all(d is not None for d in (batch, height, width)) and not is_tracing([codes])
    if not eager:
        return _texture_kernel(_with_margin(codes, margin, cut), **static)
    if cut is not None:  # the output's size: the input less its halo (cut + margin)
        height, width = (side - 2 * (cut + margin) for side in (height, width))
    # Chunks of one shape (the last ones padded), so the kernel compiles once; as even
    # as possible, so padding wastes less than one row or column per chunk. Column
    # strips keep wide images as fast as narrow ones: the sliding histograms step
    # along the columns, vectorized over a chunk's rows. The column loop runs on one
    # core, so chunks run in threads (one per core), each with its share of memory.
    threads = chunk_threads(threads)
    plan_args = (*bucketed(height, width), names, batch, window, levels, len(offsets))
    if threads == 1 and on_accelerator():
        n_rows, rows, n_cols, cols, per_call = stacked_chunk_plan(*plan_args)
    else:
        n_rows, rows, n_cols, cols = chunk_plan(*plan_args, threads)
        per_call = 1
    # The margin and the last chunks' filling padded in one copy.
    padded = _with_margin(codes, margin, cut,
                          (n_rows * rows - height, n_cols * cols - width))
    if n_rows == n_cols == 1 and (rows, cols) == (height, width):
        return _texture_kernel(padded, **static)
    corners = [(r0, c0) for r0 in range(0, n_rows * rows, rows)
               for c0 in range(0, n_cols * cols, cols)]

    def chunk(corner):
        r0, c0 = corner
        return padded[:, r0:r0 + rows + 2 * margin, c0:c0 + cols + 2 * margin]

    if per_call > 1:
        done = _stacked_calls([chunk(corner) for corner in corners], per_call, static)
    else:
        done = map_in_threads(lambda corner: _texture_kernel(chunk(corner), **static),
                              corners, min(threads, len(corners)))
    return _joined(done, corners, n_cols, height, width)


def _joined(done, corners, n_cols, height, width):
    """The chunks' outputs (row-major, at ``corners``) as one map of height x width.

    The padding is cut off the edge chunks before they are joined, and a row of one
    chunk is not joined at all, so the output is copied once (a large image's output
    dominates memory, on a GPU especially).
    """
    def cropped(out, corner):
        r0, c0 = corner
        rows = max(0, min(out.shape[1], height - r0))
        cols = max(0, min(out.shape[2], width - c0))
        return out if (rows, cols) == tuple(out.shape[1:3]) else out[:, :rows, :cols]

    done = [cropped(out, corner) for out, corner in zip(done, corners)]
    rows = [done[first:first + n_cols] for first in range(0, len(done), n_cols)]
    rows = [row[0] if len(row) == 1 else ops.concatenate(row, axis=2) for row in rows]
    return rows[0] if len(rows) == 1 else ops.concatenate(rows, axis=1)


def chunk_plan(height, width, names, batch, window, levels, n_offsets, threads=1):
    """(n_rows, rows, n_cols, cols): the chunks an eager ``texture_map`` call runs.

    Column strips of at most ``STRIP_COLUMNS``, rows so that ``threads`` chunks at
    once hold about ``CHUNK_ELEMENTS`` values, and with several threads, a chunk
    count that fills whole rounds (no thread idles while a last chunk runs); a small
    input is split into at least ``threads`` chunks of at least ``MIN_SPLIT_ROWS``
    rows.
    """
    n_cols, cols = _even_split(width, STRIP_COLUMNS)
    most_rows = _chunk_rows(names, batch, cols, window, levels, n_offsets,
                            CHUNK_ELEMENTS // threads)
    n_rows, rows = _even_split(height, most_rows)
    if threads > 1 and n_rows * n_cols < threads:
        # Small input: split its rows so that every thread has a chunk (one chunk
        # would run on one core), as long as chunks keep MIN_SPLIT_ROWS rows.
        wanted = math.ceil(threads / n_cols)
        n_rows = max(n_rows, min(wanted, height // MIN_SPLIT_ROWS))
        n_rows, rows = _even_split(height, math.ceil(height / n_rows))
    elif threads > 1 and n_rows * n_cols > 1:
        step = threads // math.gcd(threads, n_cols)  # rows per whole round
        n_rows = math.ceil(n_rows / step) * step
        n_rows, rows = _even_split(height, math.ceil(height / n_rows))
    return n_rows, rows, n_cols, cols


def stacked_chunk_plan(height, width, names, batch, window, levels, n_offsets):
    """(n_rows, rows, n_cols, cols, per_call): the chunks an eager ``texture_map`` call
    runs on an accelerator, ``per_call`` of them stacked along the batch axis in each
    kernel call.

    Column strips of at most ``ACCELERATOR_STRIP_COLUMNS``, as many rows as fit, and
    as many chunks per call as keep one call's temporaries within
    ``ACCELERATOR_CHUNK_ELEMENTS`` values, in calls of equal size (one compiled shape).
    """
    n_cols, cols = _even_split(width, ACCELERATOR_STRIP_COLUMNS)
    per_row = _elements_per_row(names, batch, cols, window, levels, n_offsets)
    n_rows, rows = _even_split(height, max(1, ACCELERATOR_CHUNK_ELEMENTS // per_row))
    chunks = n_rows * n_cols
    per_call = min(chunks, max(1, ACCELERATOR_CHUNK_ELEMENTS // (per_row * rows)))
    per_call = math.ceil(chunks / math.ceil(chunks / per_call))  # calls of equal size
    return n_rows, rows, n_cols, cols, per_call


def _stacked_calls(chunks, per_call, static):
    """The kernel's output for every chunk, ``per_call`` chunks stacked along the
    batch axis per call; the last call is filled up with invalid chunks, so that every
    call has the shape compiled for the first."""
    n_chunks = len(chunks)
    n_calls = math.ceil(n_chunks / per_call)
    filler = ops.full_like(chunks[0], -1)
    chunks = chunks + [filler] * (n_calls * per_call - n_chunks)
    done = []
    for first in range(0, len(chunks), per_call):
        out = _texture_kernel(ops.concatenate(chunks[first:first + per_call], axis=0),
                              **static)
        done.extend(ops.split(out, per_call, axis=0))
    return done[:n_chunks]


def bucketed(height, width):
    """The (height, width) an eager call plans its chunks for: a small image's
    (both sides at most :data:`BUCKETED_SIDE`) rounded up to multiples of
    :data:`SHAPE_BUCKET`, a larger one's as it is."""
    if max(height, width) > BUCKETED_SIDE:
        return height, width
    return tuple(-(-side // SHAPE_BUCKET) * SHAPE_BUCKET for side in (height, width))


def _even_split(size, most):
    """(n, length): ``size`` in n pieces of at most ``most``, as even as possible."""
    n = max(1, math.ceil(size / max(1, most)))
    return n, math.ceil(size / n)


def _chunk_rows(names, batch, width, window, levels, n_offsets, budget=None):
    """Output rows per chunk so that the largest temporaries hold about ``budget``
    (default CHUNK_ELEMENTS) values: the largest of what each mechanism in use says
    it holds per row (its ``elements_per_row``; box sums always run)."""
    per_row = _elements_per_row(names, batch, width, window, levels, n_offsets)
    budget = CHUNK_ELEMENTS if budget is None else budget
    return max(1, budget // per_row)


def _elements_per_row(names, batch, width, window, levels, n_offsets):
    """The largest temporaries' values per output row of a chunk ``width`` wide: the
    largest of what each mechanism in use holds (box sums always run)."""
    wanted = {BOX_SUMS: []}
    for name in names:
        wanted.setdefault(mechanism_of(name), []).append(name)
    return max(1, max(IMPLEMENTATIONS[mechanism].elements_per_row(
        mechanism_names, batch, width, window, levels, n_offsets)
        for mechanism, mechanism_names in wanted.items()))


def _margin(window, offsets):
    reach = max(max(abs(dr), abs(dc)) for dr, dc in offsets)
    return window // 2 + reach


def _valid_cut(padding, shape, window, distances, margin):
    """None for ``padding="same"``; for ``"valid"``, the rows and columns cut from
    every side of the input before the kernel's ``margin``: the halo of
    :func:`glcm.texture_halo` less the margin the offsets need (it can be less)."""
    if padding == "same":
        return None
    halo = texture_halo(window, distances)
    sides = [side for side in shape[1:3] if side is not None]
    if sides and min(sides) <= 2 * halo:
        raise ValueError(
            f"padding='valid' needs images larger than 2 x the halo ({2 * halo} pixels "
            f"for window {window}, distances {tuple(distances)}) on both sides, got "
            f"{shape[1]}x{shape[2]}: read a larger tile, or use padding='same'")
    return halo - margin


def _with_margin(codes, margin, cut, filling=(0, 0)):
    """``codes`` with the kernel's ``margin`` around the output region, and ``filling``
    (rows, columns) of invalid pixels after it: the margin padded with invalid pixels
    (``cut`` None, "same") or the input's own border, ``cut`` pixels beyond it taken
    off ("valid")."""
    if cut is None:
        before, after = margin, (margin + filling[0], margin + filling[1])
    else:
        if cut:
            codes = codes[:, cut:-cut, cut:-cut]
        before, after = 0, filling
    if before == 0 and after == (0, 0):
        return codes
    return ops.pad(codes, [[0, 0], [before, after[0]], [before, after[1]]],
                   constant_values=-1)


@jit_when_eager(min_size=0)  # chunks share one shape: compiled once, reused
def _texture_kernel(padded, *, names, window, levels, offsets, symmetric, average):
    """Features for the centre region of ``padded`` (codes, -1 invalid, padded by the
    window radius + the largest offset on every side)."""
    offsets_np = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    n_off = len(offsets_np)
    m = _margin(window, offsets)
    reach = m - window // 2
    h_pad, w_pad = padded.shape[1], padded.shape[2]
    out_h, out_w = h_pad - 2 * m, w_pad - 2 * m
    batch = ops.shape(padded)[0]

    # Every anchor of the region the windows cover, with its pair's codes per offset.
    region_h, region_w = out_h + window - 1, out_w + window - 1
    reference = padded[:, reach:reach + region_h, reach:reach + region_w][..., None]
    neighbour = ops.reshape(neighbour_codes(padded, offsets_np), (batch, n_off, h_pad, w_pad))
    neighbour = neighbour[:, :, reach:reach + region_h, reach:reach + region_w]
    neighbour = ops.moveaxis(neighbour, 1, -1)  # (B, rh, rw, K)
    valid = ops.logical_and(reference >= 0, neighbour >= 0)
    centre_value = padded[:, m:m + out_h, m:m + out_w]

    pairs = WindowPairs(reference, neighbour, valid, centre_value, window, offsets_np,
                        levels, symmetric)
    wanted = {mechanism: [n for n in names if mechanism_of(n) == mechanism]
              for mechanism in IMPLEMENTATIONS}
    # Box sums always run: their pair count n says where a window has no pair.
    box = BoxMoments(pairs)
    values = {name: getattr(box, name)() for name in wanted[BOX_SUMS]}
    if wanted[SLIDING_HISTOGRAMS]:
        counts = SlidingCounts(pairs, wanted[SLIDING_HISTOGRAMS])
        values.update(counts.features(box, wanted[SLIDING_HISTOGRAMS]))
    if wanted[GATHERED_WINDOWS]:
        stats = gather_windows(pairs, box.n)
        values.update({name: getattr(stats, name)() for name in wanted[GATHERED_WINDOWS]})
    has_pairs = box.n > 0  # (B, h, w, K)
    centre_valid = centre_value >= 0
    stacked = ops.stack([values[name] for name in names], axis=-1)  # (B, h, w, K, F)
    if not average:
        ok = ops.logical_and(has_pairs, centre_valid[..., None])
        return ops.where(ok[..., None], stacked, float("nan"))
    # Mean over the offsets with a pair, written out per offset: XLA runs this in one
    # pass, faster than NaN-masked sums over the offset axis. All features at once:
    # per feature, it was a fifth of the kernel's ops, which tracing and compiling
    # every new shape cost (docs/performance.md).
    count = added(ops.cast(has_pairs[..., k], "float32") for k in range(n_off))
    ok = ops.logical_and(count > 0, centre_valid)
    count = ops.maximum(count, 1.0)
    total = added(ops.where(has_pairs[..., k, None], stacked[..., k, :], 0.0)
                  for k in range(n_off))
    return ops.where(ok[..., None], total / count[..., None], float("nan"))
