"""texture_map: this project vs a scikit-image per-window loop vs a numpy fast_glcm.

1024x1024 image, window 7, levels 32, distance 1, four angles averaged, eight
features. The alternatives run on crops and are scaled to the full image (their
cost is linear in pixels). Then scaling with window size and levels.
With ``--profile SIZE [SIZE ...]``, instead: where texture_map's time goes, per
feature alone and per mechanism (box sums, sliding histograms, gathered windows),
with the chunks it ran in, at each size (warm: compile time excluded).
Then the same GLCM features as Orfeo ToolBox's HaralickTextureExtraction ("simple"
set, one offset), and OTB itself when ``otbcli_HaralickTextureExtraction`` is on the
PATH.
Usage: python -m benchmarks.bench_texture [--size 1024] [--no-scaling] [--otb-size 2048]
       python -m benchmarks.bench_texture --profile 1024 4096
"""

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
import warnings

import numpy as np
from scipy.ndimage import uniform_filter
from skimage import data
from skimage.feature import graycomatrix as sk_graycomatrix
from skimage.feature import graycoprops as sk_graycoprops

import glcm
from benchmarks.common import best_of, header, peak_rss_gib
from glcm import texture
from glcm._compile import chunk_threads

FEATURES = ["contrast", "dissimilarity", "homogeneity", "asm", "entropy", "correlation",
            "mean", "variance"]
SK_NAMES = ["contrast", "dissimilarity", "homogeneity", "ASM", "entropy", "correlation",
            "mean", "variance"]
ANGLES = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
OFFSETS = [(0, 1), (1, 1), (1, 0), (1, -1)]


def image(size, levels):
    tile = np.tile(data.brick(), (size // 512 + 1, size // 512 + 1))[:size, :size]
    q, _ = glcm.quantize(tile[None], levels, 0, 256)
    return np.asarray(q)


def skimage_window_loop(img, window, levels):
    h = window // 2
    H, W = img.shape
    for r in range(H):
        for c in range(W):
            patch = img[max(0, r - h):r + h + 1, max(0, c - h):c + h + 1].astype(np.uint8)
            P = sk_graycomatrix(patch, [1], ANGLES, levels, symmetric=True, normed=True)
            for name in SK_NAMES:
                sk_graycoprops(P, name).mean()


def numpy_fast_glcm(img, window, levels):
    """The widespread "fast_glcm": one mask per (i, j) level pair, box-filtered."""
    H, W = img.shape
    out = np.zeros((len(FEATURES), H, W))
    for dr, dc in OFFSETS:
        shifted = np.full_like(img, -1)
        rs, cs = slice(max(0, -dr), H - max(0, dr)), slice(max(0, -dc), W - max(0, dc))
        rd, cd = slice(max(0, dr), H - max(0, -dr)), slice(max(0, dc), W - max(0, -dc))
        shifted[rs, cs] = img[rd, cd]
        glcm_maps = np.zeros((levels, levels, H, W), np.float32)
        for i in range(levels):
            mi = img == i
            for j in range(levels):
                glcm_maps[i, j] = uniform_filter(
                    (mi & (shifted == j)).astype(np.float32), window)
        glcm_maps += glcm_maps.transpose(1, 0, 2, 3)
        glcm_maps /= np.maximum(glcm_maps.sum(axis=(0, 1)), 1e-12)
        i = np.arange(levels)[:, None, None, None]
        j = np.arange(levels)[None, :, None, None]
        mean = (glcm_maps * i).sum((0, 1))
        var = (glcm_maps * (i - mean) ** 2).sum((0, 1))
        out[0] += (glcm_maps * (i - j) ** 2).sum((0, 1))
        out[1] += (glcm_maps * np.abs(i - j)).sum((0, 1))
        out[2] += (glcm_maps / (1 + (i - j) ** 2)).sum((0, 1))
        out[3] += (glcm_maps ** 2).sum((0, 1))
        out[4] += -(glcm_maps * np.log(glcm_maps + 1e-12)).sum((0, 1))
        out[5] += (glcm_maps * (i - mean) * (j - mean)).sum((0, 1)) / np.maximum(var, 1e-12)
        out[6] += mean
        out[7] += var
    return out / len(OFFSETS)


# Orfeo ToolBox's "simple" Haralick set, one offset (right neighbour), window 7, 32
# levels over 0..255; ours: the same GLCM features (OTB's 8th, Haralick correlation,
# has no counterpart here).
OTB = "otbcli_HaralickTextureExtraction"
OTB_FEATURES = ["asm", "entropy", "correlation", "homogeneity", "contrast",
                "cluster_shade", "cluster_prominence"]


def otb_comparison(size=2048):
    """texture_map against OTB's HaralickTextureExtraction on the same uint8 image;
    OTB is skipped (and said so) when its command is not on the PATH."""
    tile = np.tile(data.brick(), (size // 512 + 1, size // 512 + 1))[:size, :size]
    q, _ = glcm.quantize(tile[None], 32, 0, 256)
    q = np.asarray(q)
    ours = best_of(lambda: np.asarray(glcm.texture_map(
        q, OTB_FEATURES, 7, levels=32, distances=[1], angles=[0])), repeat=1)
    print(f"OTB workload: {size}x{size} uint8, window 7, 32 levels over 0..255, one offset "
          f"(right neighbour), features {','.join(OTB_FEATURES)}")
    print(f"{'texture_map (this project)':30s} {ours:10.2f} s  {size * size / ours:12.0f} px/s")
    exe = shutil.which(OTB)
    if exe is None:
        print(f"{OTB} is not on the PATH: OTB not measured")
        return
    import rasterio  # the benchmark's input file only
    import rasterio.errors

    work = tempfile.mkdtemp(prefix="bench-otb-")
    try:
        path = os.path.join(work, "image.tif")
        with warnings.catch_warnings():  # a plain image: no georeferencing needed
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path, "w", driver="GTiff", height=size, width=size,
                               count=1, dtype="uint8") as dst:
                dst.write(tile[None])
        command = [exe, "-in", path, "-channel", "1", "-texture", "simple",
                   "-parameters.xrad", "3", "-parameters.yrad", "3",
                   "-parameters.xoff", "1", "-parameters.yoff", "0",
                   "-parameters.min", "0", "-parameters.max", "255",
                   "-parameters.nbbin", "32", "-out", os.path.join(work, "otb.tif")]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        otb_s = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cores = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / otb_s
    print(f"{'Orfeo ToolBox (C++)':30s} {otb_s:10.2f} s  {size * size / otb_s:12.0f} px/s  "
          f"this project is {otb_s / ours:8.1f}x faster (OTB used {cores:.1f} cores)")


def chunk_layout(size, names, window, levels):
    """(row chunks, column strips, rows x columns per chunk) texture_map uses; on an
    accelerator, with the chunks stacked per kernel call after a slash."""
    if chunk_threads() == 1 and texture.on_accelerator():
        n_rows, rows, n_cols, cols, per_call = texture.stacked_chunk_plan(
            size, size, names, 1, window, levels, len(OFFSETS))
        return n_rows, n_cols, f"{rows}x{cols}/{per_call}"
    n_rows, rows, n_cols, cols = texture.chunk_plan(
        size, size, names, 1, window, levels, len(OFFSETS), chunk_threads())
    return n_rows, n_cols, f"{rows}x{cols}"


def profile(sizes, window=7, levels=32):
    """Seconds per feature alone and per mechanism, warm, at each size."""
    groups = {mechanism: [f for f in FEATURES if glcm.MECHANISMS[f] == mechanism]
              for mechanism in sorted(set(glcm.MECHANISMS[f] for f in FEATURES))}
    runs = [(name, glcm.MECHANISMS[name], [name]) for name in FEATURES]
    runs += [(f"all {m} ({len(g)})", m, g) for m, g in groups.items()]
    runs += [(f"all {len(FEATURES)} features", "-", FEATURES)]
    for size in sizes:
        img = image(size, levels)
        print(f"profile {size}x{size}, window {window}, levels {levels}, 4 offsets "
              f"averaged (warm, best of 1 after a warm-up call)")
        print(f"{'features':34s} {'mechanism':20s} {'seconds':>8s} {'px/s':>10s} "
              f"{'chunks':>7s} {'chunk':>14s} {'s/chunk':>8s}")
        for label, mechanism, names in runs:
            seconds = best_of(lambda: np.asarray(
                glcm.texture_map(img, names, window, levels=levels)), repeat=1)
            n_rows, n_cols, shape = chunk_layout(size, names, window, levels)
            n = n_rows * n_cols
            print(f"{label:34s} {mechanism:20s} {seconds:8.3f} {size * size / seconds:10.0f} "
                  f"{n:7d} {shape:>14s} {seconds / n:8.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--profile", type=int, nargs="+", default=None, metavar="SIZE")
    parser.add_argument("--otb-size", type=int, default=2048)
    args = parser.parse_args()
    if args.profile:
        header("texture_map profile")
        profile(args.profile)
        return
    header("texture_map")
    size, window, levels = args.size, 7, 32
    img = image(size, levels)
    pixels = size * size

    def ours():
        np.asarray(glcm.texture_map(img, FEATURES, window, levels=levels))

    ours_s = best_of(ours, repeat=1)
    ours_peak = peak_rss_gib()
    crop = img[0, :64, :64]
    start = time.perf_counter()
    skimage_window_loop(crop, window, levels)
    sk_s = (time.perf_counter() - start) * pixels / crop.size
    crop = img[0, :128, :128]
    start = time.perf_counter()
    numpy_fast_glcm(crop, window, levels)
    fast_s = (time.perf_counter() - start) * pixels / crop.size
    print(f"{size}x{size}, window {window}, levels {levels}, distance 1, 4 angles "
          f"averaged, {len(FEATURES)} features")
    for name, seconds in [("texture_map (this project)", ours_s),
                          ("scikit-image window loop*", sk_s),
                          ("numpy fast_glcm*", fast_s)]:
        print(f"{name:30s} {seconds:10.2f} s  {pixels / seconds:12.0f} px/s  "
              f"this project is {seconds / ours_s:8.1f}x faster")
    print("* measured on a 64x64 (skimage) / 128x128 (fast_glcm) crop, scaled to the "
          "image by pixel count")
    print(f"peak RSS of this process after texture_map: {ours_peak:.2f} GiB")
    otb_comparison(args.otb_size)
    if args.no_scaling:
        return
    crop = image(256, 256)
    print("scaling on 256x256 (seconds, 8 features):")
    for w in (3, 7, 15, 31):
        q = crop // 8
        t = best_of(lambda: np.asarray(glcm.texture_map(q, FEATURES, w, levels=32)), 1)
        print(f"  window {w:2d}, levels 32: {t:7.2f} s")
    for L in (8, 32, 64, 256):
        q = crop // (256 // L)
        t = best_of(lambda: np.asarray(glcm.texture_map(q, FEATURES, 7, levels=L)), 1)
        print(f"  window  7, levels {L:3d}: {t:7.2f} s")


if __name__ == "__main__":
    main()
