"""Scenes of many sizes: the pipeline with the examples' shared shapes against each
scene's own.

A tile shape the texture kernel has not run on compiles it once per worker process.
Writes ``--scenes`` single-band uint8 GeoTIFFs of random sizes between ``--min`` and
``--max`` pixels a side (scikit-image's brick, grass and gravel side by side, cut at
random places: clips of an area of interest, as a user's collection has them), then
runs ``python -m pipeline`` on all of them in a child process per setting, the two
settings alternating ``--repeat`` times:

- ``own``: every scene's examples padded to its own tile core plus the halo, as
  before the ladder (``transforms.plan.SHARED_SHAPE_EXTRA_PIXELS`` set to -1 in that
  child);
- ``shared``: the default, the cores of scenes of small tiles rounded up to the
  ladder's rungs (``transforms.plan.example_cores``) for the first scene of each
  size in the process, each later scene of a size seen before in its own
  (``transforms.read.ExampleShapes``). ``--min`` = ``--max`` measures a collection
  of one size, the ladder's worst case: one compilation more.

Prints the distinct example shapes and padded pixels of three rules (each scene's
own, the CPU's shared shapes, an accelerator's: ``ExampleShapes(accelerator=True)``,
which pads until the padding would pay a compilation), then for each run the child's
CPU and wall seconds around the pipeline's run (imports excluded), the pixel rate and
the child's peak memory; then the ratio of the medians and whether the two settings'
feature COGs are equal. Default features, window 7, 32 levels. ``--plan-only``
writes blank (all-zero, compressed) scenes of the sizes asked for, which can be as
large as real scenes, and prints the three rules' shapes and padding without running
the pipeline (this machine has no GPU to run the accelerator's rule on).

Usage: python -m benchmarks.bench_shapes [--scenes 24] [--min 200] [--max 800]
       [--repeat 1] [--seed 7] [--plan-only]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import rasterio
from rasterio.transform import from_origin

from benchmarks.common import header
from transforms.io import storage
from transforms.layout import scenes_for
from transforms.plan import plan_scene
from transforms.read import ExampleShapes, own_shape
from transforms.records import Scene, TextureParams


def write_clips(folder, n, smallest, largest, seed):
    """``n`` uint8 GeoTIFFs of random sizes in ``folder``: [(path, height, width)]."""
    from skimage import data

    textures = np.concatenate([data.brick(), data.grass(), data.gravel()], axis=1)
    textures = np.tile(textures, (-(-largest // textures.shape[0]),
                                  -(-largest // textures.shape[1])))
    rng = np.random.default_rng(seed)
    clips = []
    for index in range(n):
        height, width = (int(v) for v in rng.integers(smallest, largest + 1, 2))
        row = int(rng.integers(0, textures.shape[0] - height + 1))
        col = int(rng.integers(0, textures.shape[1] - width + 1))
        path = os.path.join(folder, f"clip{index:03d}.tif")
        with rasterio.open(path, "w", driver="GTiff", height=height, width=width,
                           count=1, dtype="uint8", crs="EPSG:32633",
                           transform=from_origin(500000, 4000000, 10, 10)) as dst:
            dst.write(textures[row:row + height, col:col + width], 1)
        clips.append((path, height, width))
    return clips


def write_blanks(folder, n, smallest, largest, seed):
    """``n`` uint8 GeoTIFFs of random sizes in ``folder``, all zero and
    DEFLATE-compressed (a few kB each, whatever their size): enough to plan them.
    Returns [(height, width)]."""
    rng = np.random.default_rng(seed)
    sizes = []
    for index in range(n):
        height, width = (int(v) for v in rng.integers(smallest, largest + 1, 2))
        with rasterio.open(os.path.join(folder, f"clip{index:03d}.tif"), "w",
                           driver="GTiff", height=height, width=width, count=1,
                           dtype="uint8", crs="EPSG:32633", compress="deflate",
                           tiled=True, transform=from_origin(500000, 4000000, 10, 10)):
            pass  # never written: GDAL fills the blocks with zeros
        sizes.append((height, width))
    return sizes


def example_shapes(inputs, rule):
    """(distinct shapes, pixels of the examples, pixels padded beyond each scene's own
    shape) of the rasters in ``inputs``, scene by scene through one process's rule:
    ``own`` (each scene's own shape), ``shared`` (``transforms.read.ExampleShapes``,
    the CPU's), ``accelerator`` (``ExampleShapes(accelerator=True)``, a GPU's)."""
    params = TextureParams.create()
    shapes = {"own": own_shape, "shared": ExampleShapes(),
              "accelerator": ExampleShapes(accelerator=True)}[rule]
    found = [Scene("", uri, fp) for uri, fp in storage.match(os.path.join(inputs, "*.tif"))]
    seen, pixels, padded = set(), 0, 0
    with tempfile.TemporaryDirectory(prefix="bench-shapes-plan-") as out:
        for scene in scenes_for(found):
            tasks = plan_scene(scene, params, out)[1]
            own, shape = own_shape(tasks[0], params), shapes(tasks[0], params)
            seen.add(shape)
            pixels += len(tasks) * shape[0] * shape[1]
            padded += len(tasks) * (shape[0] * shape[1] - own[0] * own[1])
    return seen, pixels, padded


def plan_report(inputs):
    """Prints what each rule compiles and pads for the rasters in ``inputs``."""
    print("rule | distinct shapes (compilations per process) | example M px | "
          "padded beyond each scene's own shape")
    for rule in ("own", "shared", "accelerator"):
        seen, pixels, padded = example_shapes(inputs, rule)
        print(f"{rule} | {len(seen)} | {pixels / 1e6:.1f} | {padded / 1e6:.1f} M px "
              f"({padded / max(pixels - padded, 1):.1%})", flush=True)


def child(setting, inputs, output):
    """Runs the pipeline in this process with ``setting``; prints a JSON line."""
    import transforms.plan

    if setting == "own":
        transforms.plan.SHARED_SHAPE_EXTRA_PIXELS = -1  # this child process only
    from pipeline.run import main

    cpu, wall = time.process_time(), time.perf_counter()
    summary = main([f"--input={inputs}", f"--output={output}"])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = None if summary.peak_memory is None else summary.peak_memory / 2 ** 30
    print(json.dumps({"cpu": cpu, "wall": wall, "exit": summary.exit_code, "peak": peak}))


def measure(setting, inputs, output):
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_shapes", "--child",
                           setting, inputs, output], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"the {setting} run failed with status {done.returncode}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["exit"] != 0:
        raise SystemExit(f"the {setting} run's pipeline exited with {figures['exit']}")
    if figures["peak"] is None:  # its /proc does not say (some sandboxed kernels)
        figures["peak"] = float("nan")
    return figures


def compare(first, second):
    """(scenes whose features are equal bit for bit, scenes, largest difference
    relative to the band's largest magnitude)."""
    equal, worst, names = 0, 0.0, sorted(os.listdir(first))
    names = [n for n in names if os.path.isdir(os.path.join(first, n))]
    for name in names:
        with rasterio.open(os.path.join(first, name, "features.tif")) as a, \
                rasterio.open(os.path.join(second, name, "features.tif")) as b:
            x, y = a.read(), b.read()
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            return equal, len(names), float("inf")
        equal += bool(np.array_equal(x, y, equal_nan=True))
        scale = np.nanmax(np.abs(x), axis=(1, 2), keepdims=True)
        scale = np.where(scale > 0, scale, 1.0)
        difference = np.abs(x - y) / scale
        worst = max(worst, float(np.nanmax(difference)) if difference.size else 0.0)
    return equal, len(names), worst


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--min", type=int, default=200)
    parser.add_argument("--max", type=int, default=800)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plan-only", action="store_true",
                        help="plan blank scenes of those sizes under each rule (own, "
                             "the CPU's shared shapes, an accelerator's) and print the "
                             "compilations and padding; run nothing")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if not 1 <= args.min <= args.max:
        parser.error(f"--min and --max: 1 <= min <= max, got {args.min} and {args.max}")
    if args.plan_only:
        header("example shapes planned for scenes of many sizes, by rule")
        with tempfile.TemporaryDirectory(prefix="bench-shapes-") as inputs:
            sizes = write_blanks(inputs, args.scenes, args.min, args.max, args.seed)
            print(f"{len(sizes)} scenes of {args.min}-{args.max} pixels a side, "
                  f"{sum(h * w for h, w in sizes) / 1e6:.1f} M px")
            plan_report(inputs)
        return
    header("pipeline on scenes of many sizes: shared example shapes against each "
           "scene's own")
    with tempfile.TemporaryDirectory(prefix="bench-shapes-") as work:
        inputs = os.path.join(work, "in")
        os.makedirs(inputs)
        clips = write_clips(inputs, args.scenes, args.min, args.max, args.seed)
        pixels = sum(h * w for _, h, w in clips)
        print(f"{len(clips)} scenes of {args.min}-{args.max} pixels a side, "
              f"{pixels / 1e6:.2f} M px; the example shapes (scenes in order):")
        plan_report(inputs)
        print("setting | round | CPU-s | wall s | M px/s | peak GiB", flush=True)
        runs = {"own": [], "shared": []}
        for round_ in range(1, args.repeat + 1):
            for setting in ("own", "shared"):
                output = os.path.join(work, f"{setting}{round_}")
                os.sync()  # the last run's files written out before this one
                m = measure(setting, inputs, output)
                runs[setting].append(m)
                print(f"{setting} | {round_} | {m['cpu']:.1f} | {m['wall']:.1f} | "
                      f"{pixels / m['wall'] / 1e6:.3f} | {m['peak']:.2f}", flush=True)
        cpu = {s: statistics.median(m["cpu"] for m in runs[s]) for s in runs}
        wall = {s: statistics.median(m["wall"] for m in runs[s]) for s in runs}
        print(f"shared against own (medians): CPU {cpu['own'] / cpu['shared']:.2f}x less, "
              f"wall {wall['own'] / wall['shared']:.2f}x less")
        equal, scenes, worst = compare(os.path.join(work, "own1"),
                                       os.path.join(work, "shared1"))
        print(f"features: {equal} of {scenes} scenes equal bit for bit; largest "
              f"difference {worst:.1e} of the band's largest magnitude")


if __name__ == "__main__":
    main()
