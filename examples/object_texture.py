"""Texture per object: segment a scene, then one exact GLCM feature vector per segment,
three ways (in memory, xarray, the pipeline on polygons), and a picture.

The scene is a patchwork of scikit-image's textures (brick, grass, gravel, ...); SLIC
segments it into superpixels. Each segment's co-occurrence matrix counts only the
pixel pairs whose two pixels lie in that segment, so a segment's texture does not
leak into its neighbour's. The segments are then written as polygons (GeoPackage) and
the pipeline computes the same numbers from them, tile by tile.

Usage: python examples/object_texture.py [--side 128] [--segments 300] [--out DIR]
       [--figure docs/objects_example.png]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import rasterio
import skimage.data
import xarray as xr
from rasterio.transform import Affine
from skimage.segmentation import find_boundaries, slic

import glcm
import glcm.xarray

TEXTURES = ("brick", "grass", "gravel")
GEO = Affine(10, 0, 500000, 0, -10, 4200000)
LEVELS = 32
FEATURES = ["contrast", "entropy", "homogeneity", "correlation"]


def patchwork(side: int) -> tuple:
    """A 3 x 3 patchwork of textures (a Latin square of brick, grass and gravel),
    each ``side`` pixels square, uint8, and which texture lies where."""
    kinds = (np.arange(3)[:, None] + np.arange(3)[None, :]) % 3
    image = np.zeros((3 * side, 3 * side), np.uint8)
    truth = np.zeros(image.shape, np.int32)
    for r in range(3):
        for c in range(3):
            texture = getattr(skimage.data, TEXTURES[kinds[r, c]])()
            block = (slice(r * side, (r + 1) * side), slice(c * side, (c + 1) * side))
            image[block] = texture[:side, :side]
            truth[block] = kinds[r, c]
    return image, truth


def segment(image: np.ndarray, n_segments: int) -> np.ndarray:
    """SLIC superpixels, labels 1..n."""
    return slic(image.astype(float) / 255, n_segments=n_segments, compactness=0.08,
                channel_axis=None, start_label=1).astype(np.int32)


def colour(values: np.ndarray) -> np.ndarray:
    """A dark-blue -> green -> yellow ramp; NaN grey."""
    anchors = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98],
                        [253, 231, 37]], float)
    finite = np.isfinite(values)
    lo, hi = np.nanpercentile(values, [2, 98]) if finite.any() else (0, 1)
    t = np.clip((np.nan_to_num(values) - lo) / max(hi - lo, 1e-12), 0, 1) * 4
    k = np.minimum(t.astype(int), 3)
    rgb = anchors[k] + (anchors[k + 1] - anchors[k]) * (t - k)[..., None]
    rgb[~finite] = 128
    return rgb.astype(np.uint8)


def write_figure(path: str, image, labels, ids, values) -> None:
    """PNG: the scene with the segment borders, and the segments coloured by their
    entropy."""
    left = np.repeat(image[..., None], 3, axis=2)
    left[find_boundaries(labels)] = (255, 60, 60)
    per_pixel = np.full(labels.shape, np.nan)
    inside = labels > 0
    per_pixel[inside] = values[np.searchsorted(ids, labels[inside]), 1]
    right = colour(per_pixel)
    right[find_boundaries(labels)] = 0
    gap = np.full((image.shape[0], 8, 3), 255, np.uint8)
    picture = np.concatenate([left, gap, right], axis=1)
    with rasterio.open(path, "w", driver="PNG", height=picture.shape[0],
                       width=picture.shape[1], count=3, dtype="uint8") as dst:
        dst.write(np.moveaxis(picture, 2, 0))


def write_inputs(folder: str, image, labels) -> tuple:
    """The scene as a GeoTIFF and the segments as polygons (GeoPackage)."""
    import geopandas
    import shapely
    from rasterio import features as rio_features

    scene = os.path.join(folder, "scene.tif")
    with rasterio.open(scene, "w", driver="GTiff", height=image.shape[0],
                       width=image.shape[1], count=1, dtype="uint8", crs="EPSG:32633",
                       transform=GEO) as dst:
        dst.write(image[None])
    shapes = [(shapely.geometry.shape(g), int(v)) for g, v in rio_features.shapes(
        labels, mask=labels > 0, transform=GEO)]
    frame = geopandas.GeoDataFrame({"segment": [v for _, v in shapes]},
                                   geometry=[g for g, _ in shapes], crs="EPSG:32633")
    polygons = os.path.join(folder, "segments.gpkg")
    frame.dissolve("segment").reset_index().to_file(polygons, driver="GPKG")
    return scene, polygons


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=128, help="pixels per texture patch")
    parser.add_argument("--segments", type=int, default=300)
    parser.add_argument("--out", default=None, help="folder for the pipeline run")
    parser.add_argument("--figure", default=None, help="PNG of segments and entropy")
    args = parser.parse_args(argv)
    image, truth = patchwork(args.side)
    labels = segment(image, args.segments)
    codes, _ = glcm.quantize(image, LEVELS, 0, 256)

    # 1. In memory: one call for every segment.
    start = time.perf_counter()
    ids, values = glcm.object_features(np.asarray(codes), labels, FEATURES, levels=LEVELS)
    print(f"{len(ids)} segments of a {image.shape[0]}x{image.shape[1]} scene: "
          f"{time.perf_counter() - start:.2f} s")
    majority = np.array([np.bincount(truth[labels == i], minlength=3).argmax() for i in ids])
    result = {"ids": ids, "values": values, "entropy_by_texture": {
        TEXTURES[k]: float(np.nanmean(values[majority == k, 1])) for k in range(3)
        if (majority == k).any()}}
    for k in range(3):
        chosen = values[majority == k]
        if len(chosen):
            print(f"  segments mostly {TEXTURES[k]:<6}: entropy {np.nanmean(chosen[:, 1]):.2f} "
                  f"+- {np.nanstd(chosen[:, 1]):.2f}, contrast "
                  f"{np.nanmean(chosen[:, 0]):.1f}")

    # 2. xarray (lazy with Dask when the arrays are chunked): the same numbers.
    da = xr.DataArray(image, dims=("y", "x"))
    table = glcm.xarray.object_features(da, xr.DataArray(labels, dims=("y", "x")),
                                        FEATURES, levels=LEVELS, quantize="fixed:0,256")
    result["xarray_difference"] = float(np.nanmax(np.abs(table.values - values)))
    print(f"glcm.xarray.object_features: largest difference {result['xarray_difference']}")

    # 3. The pipeline, on polygons of the segments, tile by tile.
    if args.out:
        import geopandas

        from pipeline.run import main as pipeline

        os.makedirs(args.out, exist_ok=True)
        scene, polygons = write_inputs(args.out, image, labels)
        summary = pipeline([f"--input={scene}", f"--output={args.out}/output",
                            "--mode=objects", f"--objects={polygons}", "--object-id=segment",
                            f"--features={','.join(FEATURES)}", f"--levels={LEVELS}",
                            "--quantize=fixed:0,256", "--tile=128"])
        rows = geopandas.read_parquet(os.path.join(args.out, "output", "scene",
                                                   "objects.parquet")).sort_values("segment")
        got = rows[[f"b1_{f}" for f in FEATURES]].to_numpy(np.float64)
        result["pipeline_difference"] = float(np.nanmax(np.abs(got - values) / np.maximum(
            1.0, np.abs(values))))
        result["pipeline_done"] = summary.done
        print(f"pipeline: {len(rows)} rows, largest difference (relative) "
              f"{result['pipeline_difference']:.1e}")
    if args.figure:
        write_figure(args.figure, image, labels, ids, values)
        print(f"figure: {args.figure}")
    return result


if __name__ == "__main__":
    main()
