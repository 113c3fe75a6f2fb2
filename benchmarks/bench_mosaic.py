"""The mosaic's memory and CPU by output bands and the COG's compression threads.

For each count of output bands in ``--bands`` (multiples of the 8 default features:
source bands x 8), writes one ``--size`` square scene's tiles as the pipeline saves
them (``--tile`` cores; float32 random values rounded to hundredths: the memory does
not depend on the values, the CPU seconds do), then writes its mosaic
(``write_mosaic``, the default codec) in a child process per setting, after one child
not counted: one compression thread per core (``--cores``, default the cores this
process may use), as the COG copy ran with GDAL's ``ALL_CPUS`` before, against the
threads the memory budget allows (``transforms.io.cog.compression_threads``). Each
child reports its peak memory beyond what it held just before the mosaic (its VmHWM
reset through ``/proc/self/clear_refs``), its CPU and wall seconds.

``--copy-cache-mib`` sets GDAL's block cache for the COG copy in every child
(``transforms.io.cog.COPY_CACHE_BYTES``; 128 gives what the copy had before it was
set apart from the rest of the mosaic's 128 MiB).

``--threads 1 2 4`` measures instead what the COG copy itself holds with each of
these thread counts: each child also reports the copy's own peak beyond what the
mosaic held when the copy started (VmHWM reset again there), printed in the COG's
blocks (512² x bands x 4 bytes) beside ``transforms.io.cog.copy_blocks``, the model
``compression_threads`` plans with.

``--cores 16`` gives the thread counts of a 16-vCPU worker on fewer cores: the peak
memory is what such a worker's mosaic holds; CPU and wall seconds are this machine's
(the threads share its cores).

Usage: python -m benchmarks.bench_mosaic [--size 2048] [--bands 8 32 64] [--cores 16]
       [--copy-cache-mib 16] [--threads 1 2 3 4 8]
"""

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np
import rasterio
from rasterio.transform import from_origin

from benchmarks.common import header
from glcm._compile import usable_cores
from transforms.io import cog
from transforms.io.cog import (bytes_per_block, compression_threads, copy_blocks,
                               save_tile_bands, write_mosaic)
from transforms.io.raster import scene_info
from transforms.layout import band_names
from transforms.plan import tiles_for
from transforms.records import DEFAULT_FEATURES, BandSource, TileResult, TileTask


def _status_gib(field):
    """A /proc/self/status memory line (VmRSS, VmHWM) in GiB; NaN where absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return float("nan")


def write_tiles(folder, size, tile, n_sources):
    """The tile files of a ``size``² scene of ``n_sources`` bands, as the pipeline
    saves them: (path of a pickle of write_mosaic's arguments, output bands)."""
    os.makedirs(folder, exist_ok=True)
    source = os.path.join(folder, "scene.tif")
    with rasterio.open(source, "w", driver="GTiff", height=size, width=size,
                       count=n_sources, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(0, 0, 10, 10), tiled=True):
        pass  # only its size, bands and georeferencing are used
    info = scene_info(source)
    sources = tuple(BandSource(source, b + 1) for b in range(n_sources))
    n_features = len(DEFAULT_FEATURES)
    rng = np.random.default_rng(n_sources)
    results = []
    for key in tiles_for("bench", size, size, tile, 0):
        for b in range(n_sources):
            path = os.path.join(folder, f"t{key.key.row}_{key.key.col}_{b}.npy")
            core = rng.random((key.core_height, key.core_width, n_features), np.float32)
            save_tile_bands(path, np.round(core * 100, 2))
            task = TileTask(None, info, sources, b, key, 0.0, 1.0, 0)
            results.append(TileResult(task, key.core_row, key.core_col, path))
    names = band_names(sources, DEFAULT_FEATURES)
    arguments = os.path.join(folder, "mosaic-arguments.pkl")
    with open(arguments, "wb") as f:
        pickle.dump((info, names, n_features, results), f)
    return arguments, len(names)


def child(arguments, threads, copy_cache_bytes):
    """Writes the mosaic of ``arguments`` with ``threads`` threads and a COG copy cache
    of ``copy_cache_bytes``; prints a JSON line."""
    cog.COPY_CACHE_BYTES = copy_cache_bytes  # this child process only
    with open(arguments, "rb") as f:
        info, names, n_features, results = pickle.load(f)
    before = _status_gib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS, so the peak below is the mosaic's
        reset = True
    except OSError:
        reset = False
    copy_peaks = []  # (peak before the copy, the copy's own peak beyond its start)
    if reset:
        def measured(copy):
            def measured_copy(*args, **kwargs):
                earlier = _status_gib("VmHWM")
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                start = _status_gib("VmRSS")
                result = copy(*args, **kwargs)
                copy_peaks.append((earlier, _status_gib("VmHWM") - start))
                return result
            return measured_copy

        # this child process only: the COG copy is GDAL's COG driver, or the own
        # encoder for the ZSTD codecs (the default)
        rasterio.shutil.copy = measured(rasterio.shutil.copy)
        cog._encode_cog = measured(cog._encode_cog)
    cpu, wall = time.process_time(), time.perf_counter()
    out = os.path.join(os.path.dirname(arguments), "features.tif")
    write_mosaic(out, info, names, n_features, results, threads=threads)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    beyond = copy_gib = None
    if reset:
        # The copy reset the peak: the larger of the one before it and the one since.
        earlier = copy_peaks[0][0] if copy_peaks else 0.0
        beyond = max(earlier, _status_gib("VmHWM")) - before
        copy_gib = copy_peaks[0][1] if copy_peaks else None
    print(json.dumps({"beyond_gib": beyond, "copy_gib": copy_gib, "cpu": cpu,
                      "wall": wall}))
    os.remove(out)


def measure(arguments, threads, copy_cache_bytes):
    """A child's figures for ``threads`` threads: dict beyond_gib, cpu, wall."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_mosaic", "--child",
                           arguments, str(threads), str(copy_cache_bytes)],
                          check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_copy_rows(arguments, bands, thread_counts, copy_cache):
    """--threads: the COG copy's own peak for each thread count, in the COG's blocks,
    beside the model's count (``copy_blocks``)."""
    block = bytes_per_block(bands)
    measure(arguments, 1, copy_cache)  # not counted, as in print_budget_row
    for threads in thread_counts:
        m = measure(arguments, threads, copy_cache)
        if m["copy_gib"] is None:
            copy = "(no peak: /proc/self/clear_refs not writable)"
        else:
            copy = (f"{m['copy_gib']:.2f} GiB, "
                    f"{m['copy_gib'] * 2 ** 30 / block:.1f}")
        whole = "-" if m["beyond_gib"] is None else f"{m['beyond_gib']:.2f} GiB"
        print(f"{bands} | {threads} | {copy} | {copy_blocks(threads)} | "
              f"{whole}, {m['cpu']:.1f}, {m['wall']:.1f}", flush=True)


def print_budget_row(arguments, bands, cores, copy_cache):
    """One thread per core against the threads the budget allows: one table row."""
    budget = compression_threads(bytes_per_block(bands), cores)
    # A first child pays for pages the machine hands back to its host and for a cold
    # start: run once, not counted.
    measure(arguments, budget, copy_cache)
    rows = [(threads, measure(arguments, threads, copy_cache))
            for threads in (cores, budget)]
    cells = [f"{t} | {m['beyond_gib']:.2f} GiB, {m['cpu']:.1f}, {m['wall']:.1f}"
             if m["beyond_gib"] is not None else
             f"{t} | (no peak: /proc/self/clear_refs not writable), "
             f"{m['cpu']:.1f}, {m['wall']:.1f}" for t, m in rows]
    peaks = [m["beyond_gib"] for _, m in rows]
    ratio = (f"{peaks[1] / peaks[0]:.2f}x" if None not in peaks and peaks[0] > 0
             else "-")
    print(f"{bands} | {cells[0]} | {cells[1]} | {ratio}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--bands", type=int, nargs="+", default=[8, 32, 64],
                        help="output bands (multiples of 8: source bands x 8 features)")
    parser.add_argument("--cores", type=int, default=None,
                        help="the cores whose thread counts to use (default: this "
                             "process's)")
    parser.add_argument("--copy-cache-mib", type=float, default=None,
                        help="GDAL's block cache for the COG copy, MiB (default "
                             f"{cog.COPY_CACHE_BYTES / 2 ** 20:g}, the pipeline's)")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="instead: the COG copy's own peak with each of these "
                             "thread counts, in the COG's blocks, against "
                             "transforms.io.cog.copy_blocks")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    copy_cache = (cog.COPY_CACHE_BYTES if args.copy_cache_mib is None
                  else int(args.copy_cache_mib * 2 ** 20))
    if copy_cache < 2 ** 20:
        parser.error("--copy-cache-mib must be >= 1")
    n_features = len(DEFAULT_FEATURES)
    if any(b < n_features or b % n_features for b in args.bands):
        parser.error(f"--bands must be multiples of {n_features}")
    cores = usable_cores() if args.cores is None else args.cores
    if cores < 1:
        parser.error("--cores must be >= 1")
    if args.threads is not None and min(args.threads) < 1:
        parser.error("--threads must be >= 1")
    counted = (f"threads {' '.join(map(str, args.threads))}" if args.threads
               else f"thread counts of {cores} cores")
    header(f"the mosaic's memory: {args.size}² scenes, tile {args.tile}, default codec, "
           f"{counted} (this machine: {usable_cores()} cores), "
           f"COG copy cache {copy_cache / 2 ** 20:g} MiB")
    if args.threads is not None:
        print("bands | threads | the copy's own peak: GiB, the COG's blocks | "
              "copy_blocks (the model) | whole mosaic beyond the process, CPU-s, wall-s")
    else:
        print("bands | threads: one per core | peak beyond the process, CPU-s, wall-s | "
              "threads: budget | peak beyond, CPU-s, wall-s | peak ratio (budget / "
              "per core)")
    with tempfile.TemporaryDirectory(prefix="bench-mosaic-") as work:
        for bands in args.bands:
            folder = os.path.join(work, f"b{bands}")
            arguments, _ = write_tiles(folder, args.size, args.tile, bands // n_features)
            if args.threads is not None:
                print_copy_rows(arguments, bands, args.threads, copy_cache)
            else:
                print_budget_row(arguments, bands, cores, copy_cache)
            for name in os.listdir(folder):
                os.remove(os.path.join(folder, name))


if __name__ == "__main__":
    main()
