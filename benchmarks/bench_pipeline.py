"""The pipeline on the DirectRunner vs texture_map called directly, same scene.

Writes one uint8 GeoTIFF (``--size`` square, tiled textures), then measures in this
run: ``python -m pipeline`` in a child process (its wall time and the peak memory its
summary reports, VmHWM), then texture_map on the whole scene in this process (up to 8192).
Default features, window 7, levels 32.
Usage: python -m benchmarks.bench_pipeline [--size 4096] [--tile 1024]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import rasterio
from rasterio.transform import from_origin
from skimage import data

import glcm
from benchmarks.common import header, pipeline_peak_gib
from transforms.records import DEFAULT_FEATURES


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tile", type=int, default=1024)
    args = parser.parse_args()
    header("pipeline vs texture_map")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-", ignore_cleanup_errors=True) as work:
        run(args, work)


def run(args, work):
    """Every measurement of :func:`main`, with its scene and outputs under ``work``."""
    size = args.size
    path = os.path.join(work, "scene.tif")
    reps = size // 512 + 1
    with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=1,
                       dtype="uint8", crs="EPSG:32633", tiled=True, blockxsize=512,
                       blockysize=512, transform=from_origin(0, 0, 10, 10)) as dst:
        for r0 in range(0, size, 512):  # written in strips: never the whole scene
            strip = np.tile(data.brick(), (1, reps))[:min(512, size - r0), :size]
            dst.write(strip[None], window=((r0, r0 + strip.shape[0]), (0, size)))
    features = list(DEFAULT_FEATURES)
    pixels = size * size
    # The pipeline first, while this process is small; its summary reports its own
    # peak memory (VmHWM: a child's ru_maxrss can count the pages it was forked with).
    command = [sys.executable, "-m", "pipeline",
               f"--input={path}", f"--output={os.path.join(work, 'out')}",
               f"--tile={args.tile}", "--direct_num_workers=0",
               "--direct_running_mode=multi_threading"]
    # The pipeline's own allocator, as run_local.sh and the worker image set it.
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true")
    start = time.perf_counter()
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, env=env, text=True)
    pipe_s = time.perf_counter() - start
    peak = pipeline_peak_gib(done.stdout)
    raw_s = None
    if size <= 8192:
        with rasterio.open(path) as src:
            image = src.read(1)
        q, valid = glcm.quantize(image[None], 32, *np.percentile(image, [2, 98]))
        start = time.perf_counter()
        np.asarray(glcm.texture_map(q, features, 7, levels=32, mask=valid))
        raw_s = time.perf_counter() - start
        del image, q, valid
    print(f"scene {size}x{size} uint8, tile {args.tile}, features {DEFAULT_FEATURES}")
    if raw_s is not None:
        print(f"texture_map directly      {raw_s:8.1f} s  {pixels / raw_s:10.0f} px/s")
    print(f"pipeline (DirectRunner)   {pipe_s:8.1f} s  {pixels / pipe_s:10.0f} px/s  "
          f"(process start, TF import and compilation included)")
    if raw_s is not None:
        print(f"pipeline keeps {raw_s / pipe_s:.0%} of the direct pixels/s")
    print(f"pipeline peak RSS: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
