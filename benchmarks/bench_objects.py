"""GLCM features per object: glcm.object_features vs a careful per-object numpy loop.

A 2048x2048 uint8 scene (scikit-image's textures tiled) quantized to 32 levels and a
Voronoi segmentation into about 4,000 objects; distance 1, four angles averaged,
symmetric; the eight default pipeline features. The loop finds every object's
bounding box once (``scipy.ndimage.find_objects``), counts each offset's pairs with
``np.bincount`` and computes the features with scikit-image's ``graycoprops``.

With ``--pipeline``: the same kind of scene as a GeoTIFF and ``--objects`` Voronoi
polygons as GeoParquet, through ``python -m pipeline --mode objects`` in a child
process (wall time, its own peak RSS, its step seconds), against
``glcm.object_features`` on the scene's label raster in this process.

Usage: python -m benchmarks.bench_objects [--size 2048] [--objects 4000] [--levels 32]
       python -m benchmarks.bench_objects --pipeline --size 4096 --objects 100000
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage import data
from skimage.feature import graycoprops as sk_graycoprops

import glcm
from benchmarks.common import best_of, header, peak_rss_gib, pipeline_peak_gib

ANGLES = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
# glcm name -> scikit-image graycoprops name (all eight exist there, skimage >= 0.24).
FEATURES = {"contrast": "contrast", "dissimilarity": "dissimilarity",
            "homogeneity": "homogeneity", "asm": "ASM", "entropy": "entropy",
            "correlation": "correlation", "mean": "mean", "variance": "variance"}


def scene(size, levels, n_objects, seed=0):
    """Grey-level codes and a Voronoi labelling (labels 1..n) of a size² scene."""
    textures = [data.brick(), data.grass(), data.gravel(), data.camera()]
    tile = np.block([[textures[0], textures[1]], [textures[2], textures[3]]])
    reps = -(-size // tile.shape[0])
    image = np.tile(tile, (reps, reps))[:size, :size]
    codes = (image.astype(np.int32) * levels) // 256
    rng = np.random.default_rng(seed)
    seeds = rng.random((n_objects, 2)) * size
    rows, cols = np.mgrid[:size, :size]
    _, nearest = cKDTree(seeds).query(np.stack([rows.ravel(), cols.ravel()], axis=1))
    labels = (nearest + 1).reshape(size, size).astype(np.int32)
    return codes, labels


def numpy_loop(codes, labels, levels):
    """The careful loop: bounding boxes once, np.bincount per object and offset,
    scikit-image's graycoprops, averaged over the offsets with pairs."""
    offsets = glcm.validation.pixel_offsets([1], ANGLES)
    ids, rows = [], []
    for k, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        inside = labels[box] == k + 1
        c = codes[box]
        h, w = inside.shape
        P = np.zeros((levels, levels, 1, len(offsets)))
        for o, (dr, dc) in enumerate(offsets):
            r0, r1 = max(0, -dr), min(h, h - dr)
            c0, c1 = max(0, -dc), min(w, w - dc)
            both = inside[r0:r1, c0:c1] & inside[r0 + dr:r1 + dr, c0 + dc:c1 + dc]
            pair = c[r0:r1, c0:c1][both] * levels + c[r0 + dr:r1 + dr, c0 + dc:c1 + dc][both]
            P[:, :, 0, o] = np.bincount(pair, minlength=levels * levels).reshape(levels, levels)
        P = P + P.transpose(1, 0, 2, 3)
        total = P.sum(axis=(0, 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.stack([sk_graycoprops(P, name)[0] for name in FEATURES.values()], -1)
        values[total[0] == 0] = np.nan
        ids.append(k + 1)
        rows.append(np.nanmean(values, axis=0) if np.any(total) else
                    np.full(len(FEATURES), np.nan))
    return np.array(ids), np.array(rows)


def pipeline_run(args):
    """The pipeline in objects mode on one scene with ``args.objects`` polygons."""
    header(f"pipeline --mode objects: {args.size}x{args.size} uint8, {args.objects} "
           f"polygons, {args.levels} levels, 8 features, 4 angles")
    with tempfile.TemporaryDirectory(prefix="bench-objects-", ignore_cleanup_errors=True) as work:
        pipeline_in(args, work)


def pipeline_in(args, work):
    """The body of :func:`pipeline_run`, with its files under ``work``."""
    import geopandas
    import rasterio
    import shapely
    from rasterio import features as rio_features
    from rasterio.transform import from_origin

    size = args.size
    codes, _ = scene(min(size, 512), 256, 1)  # a 512² texture tile, 256 levels
    transform = from_origin(0, 0, 10, 10)
    path = os.path.join(work, "scene.tif")
    with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=1,
                       dtype="uint8", crs="EPSG:32633", tiled=True, blockxsize=512,
                       blockysize=512, transform=transform) as dst:
        reps = -(-size // codes.shape[1])
        for r0 in range(0, size, 512):  # written in strips: never the whole scene
            strip = np.tile(codes, (1, reps))[:min(512, size - r0), :size]
            dst.write(strip[None].astype(np.uint8), window=((r0, r0 + strip.shape[0]),
                                                            (0, size)))
    rng = np.random.default_rng(0)
    bounds = shapely.box(0, -10 * size, 10 * size, 0)
    points = shapely.multipoints(rng.random((args.objects, 2)) * [10 * size, -10 * size])
    cells = shapely.get_parts(shapely.voronoi_polygons(points, extend_to=bounds))
    cells = shapely.intersection(cells, bounds)
    frame = geopandas.GeoDataFrame({"cell": np.arange(len(cells))}, geometry=cells,
                                   crs="EPSG:32633")
    polygons = os.path.join(work, "cells.parquet")
    frame.to_parquet(polygons)
    names = ",".join(FEATURES)
    command = [sys.executable, "-m", "pipeline", f"--input={path}",
               f"--output={os.path.join(work, 'out')}", "--mode=objects",
               f"--objects={polygons}", "--object-id=cell",
               f"--features={names}", f"--levels={args.levels}", "--quantize=fixed:0,256",
               "--direct_num_workers=0", "--direct_running_mode=multi_threading"]
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true")  # as run_local.sh
    start = time.perf_counter()
    run = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    pipe_s = time.perf_counter() - start
    peak = pipeline_peak_gib(run.stdout)
    table = geopandas.read_parquet(os.path.join(work, "out", "scene", "objects.parquet"))
    # The same numbers in one process: the polygons do not overlap, so one label raster.
    with rasterio.open(path) as src:
        image = src.read(1)
    labels = rio_features.rasterize(zip(frame.geometry, frame.cell + 1),
                                    out_shape=image.shape, transform=transform, fill=0,
                                    dtype="int32")
    codes = (image.astype(np.int32) * args.levels) // 256
    start = time.perf_counter()
    ids, values = glcm.object_features(codes, labels, list(FEATURES), [1], ANGLES,
                                       args.levels)
    direct_s = time.perf_counter() - start
    table = table.sort_values("cell")
    got = table[[f"b1_{f}" for f in FEATURES]].to_numpy(np.float64)[np.isin(
        table.cell.to_numpy() + 1, ids)]
    difference = np.nanmax(np.abs(got - values) / np.maximum(1.0, np.abs(values)))
    print(f"rows written: {len(table)}; largest difference from the in-process call "
          f"(relative to max(1, |value|)): {difference:.1e}")
    summary = [line for line in run.stdout.splitlines() if line.startswith("steps:")]
    print(f"pipeline (child process, start-up included): {pipe_s:.1f} s, peak RSS "
          f"{peak:.2f} GiB; {summary[0] if summary else ''}")
    print(f"glcm.object_features on the label raster, this process: {direct_s:.1f} s "
          f"(pipeline / direct: {pipe_s / direct_s:.1f}x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--objects", type=int, default=4000)
    parser.add_argument("--levels", type=int, default=32)
    parser.add_argument("--pipeline", action="store_true")
    args = parser.parse_args()
    if args.pipeline:
        return pipeline_run(args)
    header(f"object features: {args.size}x{args.size}, {args.objects} objects, "
           f"{args.levels} levels, 8 features, 4 angles")
    codes, labels = scene(args.size, args.levels, args.objects)
    names = list(FEATURES)

    def ours():
        return glcm.object_features(codes, labels, names, [1], ANGLES, args.levels)

    ours_s = best_of(ours, repeat=3)
    start = time.perf_counter()
    loop_ids, loop_values = numpy_loop(codes, labels, args.levels)
    loop_s = time.perf_counter() - start
    ids, values = ours()
    assert np.array_equal(ids, loop_ids)
    # Relative where the loop's value is not near 0 (a constant object's entropy and
    # variance are 0 there and float32 rounding here, e.g. 1.5e-8), absolute anywhere.
    difference = np.abs(np.asarray(values, np.float64) - loop_values)
    sizable = np.abs(loop_values) >= 1e-3
    worst = np.nanmax(difference[sizable] / np.abs(loop_values[sizable]), initial=0.0)
    print(f"objects: {len(ids)}; largest difference from the loop: {worst:.1e} relative "
          f"(values >= 1e-3), {np.nanmax(difference):.1e} absolute")
    print(f"{'implementation':<40} {'seconds':>9} {'ratio':>8}")
    print(f"{'glcm.object_features (this project)':<40} {ours_s:9.3f} {1.0:8.1f}")
    print(f"{'numpy per-object loop (bincount+skimage)':<40} {loop_s:9.3f} "
          f"{loop_s / ours_s:7.1f}x slower")
    print(f"peak RSS {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
