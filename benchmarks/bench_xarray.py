"""glcm.xarray on Dask (a LocalCluster of worker processes) vs in memory.

One float32 band (``--size`` square, tiled brick texture), default pipeline features,
window 7, levels 32, percentile:2,98; Dask chunks of ``--chunk`` rows and columns.
Usage: python -m benchmarks.bench_xarray [--size 2048] [--chunk 512] [--workers 2]
"""

import argparse
import time

import numpy as np
import xarray as xr
from skimage import data

import glcm.xarray as gx
from benchmarks.common import header

FEATURES = ["contrast", "dissimilarity", "homogeneity", "asm", "entropy", "correlation",
            "mean", "variance"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    header("glcm.xarray: Dask vs in memory")
    reps = args.size // 512 + 1
    image = np.tile(data.brick(), (reps, reps))[:args.size, :args.size].astype(np.float32)
    da = xr.DataArray(image, dims=("y", "x"))
    pixels = image.size

    gx.texture_map(da[:256, :256], FEATURES)  # compile outside the timing
    start = time.perf_counter()
    eager = gx.texture_map(da, FEATURES)
    memory_s = time.perf_counter() - start

    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        lazy = gx.texture_map(da.chunk({"y": args.chunk, "x": args.chunk}), FEATURES)
        lazy.compute()  # warm-up: workers import TensorFlow and compile
        start = time.perf_counter()
        computed = lazy.compute()
        dask_s = time.perf_counter() - start
    same = np.array_equal(computed.values, eager.values, equal_nan=True)
    print(f"{args.size}x{args.size} float32, {len(FEATURES)} features, window 7, levels 32")
    print(f"in memory (this process)        {memory_s:7.2f} s  {pixels / memory_s:10.0f} px/s")
    print(f"Dask, {args.workers} worker processes, {args.chunk}² chunks "
          f"{dask_s:7.2f} s  {pixels / dask_s:10.0f} px/s  "
          f"({memory_s / dask_s:.2f}x the in-memory rate; identical: {same})")


if __name__ == "__main__":
    main()
