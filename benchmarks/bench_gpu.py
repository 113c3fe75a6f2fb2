"""texture_map on the default device (a GPU where there is one): values, pixel rates,
chunk plans, and glcm-cupy beside it.

Default features (8), window 7, 32 levels, distance 1, four angles averaged, images
made of scikit-image's brick tiled (no downloads). Sections, each timed warm (one
call first, which compiles; then the median of ``--repeat`` calls, each with the
input sent from and the output copied back to host memory, as the pipeline does):

1. values on the device against scikit-image's graycomatrix/graycoprops per window
   (float64) on random and real images, at border and random pixels; and the
   accelerator's stacked chunk plan against one chunk per call, on the device;
2. a pipeline tile (1024 + halo, batch 1 and 4) through the ``TextureMap`` layer in a
   Keras model, called eagerly as the pipeline's model handler calls it, with the
   device-only time beside it;
3. whole images at ``--sizes`` with the default plan;
4. chunk plans at ``--plan-size``: the CPU's (one chunk per call) and the stacked
   plan with other strip widths and budgets;
5. glcm-cupy (``glcm_cupy.glcm``, when importable) on the same images: its own
   windows (a window paired with its shifted copy) differ from scikit-image's, so
   only its rates are compared;
6. the CPU alternatives of ``bench_texture`` (a scikit-image per-window loop, a numpy
   fast_glcm) on this machine's CPU, against texture_map on the default device.

Sections stop being started once ``--budget-s`` seconds have passed. On a machine
without a GPU it measures the CPU (sections 4 and 5 then say little). With JAX, start
it with ``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296`` too
(see docs/performance.md, "On a GPU"); it prints which allocator settings it ran with.
Usage: python -m benchmarks.bench_gpu [--sizes 4096 10980] [--plan-size 4096]
       [--repeat 5] [--budget-s 400] [--skip 4 5]
       python -m benchmarks.bench_gpu --trace 4096   (JAX: where the device's time goes)
"""

import argparse
import contextlib
import os
import statistics
import time

import keras
import numpy as np
from skimage import data
from skimage.feature import graycomatrix as sk_graycomatrix
from skimage.feature import graycoprops as sk_graycoprops

import glcm
from benchmarks.common import header
from glcm import texture

FEATURES = ["contrast", "dissimilarity", "homogeneity", "asm", "entropy", "correlation",
            "mean", "variance"]
SK_NAMES = ["contrast", "dissimilarity", "homogeneity", "ASM", "entropy", "correlation",
            "mean", "variance"]
ANGLES = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
WINDOW, LEVELS = 7, 32
TILE = 1024 + 2 * 4  # the pipeline's default tile and halo (window // 2 + distance)


def brick_image(height, width, levels=LEVELS, batch=1):
    reps = (height // 512 + 1, width // 512 + 1)
    tile = np.tile(data.brick(), reps)[:height, :width]
    return np.repeat((tile.astype(np.int32) * levels // 256)[None], batch, axis=0)


def device_name():
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return f"jax {jax.__version__} on {device.platform}: {device.device_kind}"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"tensorflow {tf.__version__} on {'GPU ' + str(gpus) if gpus else 'CPU'}"


def device_peak_gib():
    """The device allocator's high-water mark (JAX on a GPU), else None."""
    if keras.backend.backend() != "jax":
        return None
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2 ** 30


def timed(fn, repeat):
    """(first call's seconds, median of ``repeat`` more)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


@contextlib.contextmanager
def chunk_settings(stacked=None, strip=None, budget=None):
    """texture_map's chunk plan changed for a measurement, restored after."""
    saved = (texture.on_accelerator, texture.ACCELERATOR_STRIP_COLUMNS,
             texture.ACCELERATOR_CHUNK_ELEMENTS)
    if stacked is not None:
        texture.on_accelerator = lambda: stacked
    if strip is not None:
        texture.ACCELERATOR_STRIP_COLUMNS = strip
    if budget is not None:
        texture.ACCELERATOR_CHUNK_ELEMENTS = budget
    try:
        yield
    finally:
        (texture.on_accelerator, texture.ACCELERATOR_STRIP_COLUMNS,
         texture.ACCELERATOR_CHUNK_ELEMENTS) = saved


def reference_features(image, r, c):
    """scikit-image's features of the window at (r, c), clipped at the border, averaged
    over the four angles (float64)."""
    h = WINDOW // 2
    patch = image[max(0, r - h):r + h + 1, max(0, c - h):c + h + 1].astype(np.uint8)
    P = sk_graycomatrix(patch, [1], ANGLES, LEVELS, symmetric=True, normed=True)
    return np.array([sk_graycoprops(P, name)[0].mean() for name in SK_NAMES])


def check_values(rng):
    """Largest error against scikit-image, relative to each feature's spread."""
    images = [rng.integers(0, LEVELS, (203, 301)),
              brick_image(203, 301)[0],
              (data.camera()[:203, :301].astype(np.int32) * LEVELS) // 256]
    worst = np.zeros(len(FEATURES))
    for image in images:
        out = np.asarray(glcm.texture_map(image[None], FEATURES, WINDOW, levels=LEVELS))[0]
        H, W = image.shape
        pixels = [(0, 0), (H - 1, W - 1), (0, W - 1), (H - 1, 0), (H // 2, 2)]
        pixels += [(int(rng.integers(H)), int(rng.integers(W))) for _ in range(60)]
        ref = np.array([reference_features(image, r, c) for r, c in pixels])
        got = np.array([out[r, c] for r, c in pixels])
        scale = np.maximum(np.abs(ref).max(axis=0), 1e-12)
        worst = np.maximum(worst, np.abs(got - ref).max(axis=0) / scale)
    return worst


def check_plans(size):
    """Largest difference between the stacked plan and one chunk per call."""
    image = brick_image(size, size)
    with chunk_settings(stacked=True):
        stacked = np.asarray(glcm.texture_map(image, FEATURES, WINDOW, levels=LEVELS))
    with chunk_settings(stacked=False):
        one = np.asarray(glcm.texture_map(image, FEATURES, WINDOW, levels=LEVELS))
    counts = [FEATURES.index("asm"), FEATURES.index("entropy")]
    return (float(np.abs(stacked - one).max()),
            bool(np.array_equal(stacked[..., counts], one[..., counts])))


def tile_rates(repeat):
    """The pipeline's per-tile call: TextureMap in a Keras model, called eagerly, the
    halo read as context only (``padding="valid"``, the pipeline's since 2026-12-07;
    the figures of "On a GPU" before that computed the halo's maps too)."""
    from glcm.layers import TextureMap

    layer = TextureMap(FEATURES, WINDOW, LEVELS, padding="valid")
    codes_in = keras.Input((None, None), dtype="int32")
    valid_in = keras.Input((None, None), dtype="bool")
    model = keras.Model([codes_in, valid_in], layer(codes_in, mask=valid_in))
    rows = []
    for batch in (1, 4):
        codes = brick_image(TILE, TILE, batch=batch)
        valid = np.ones(codes.shape, bool)
        first, host = timed(lambda: np.asarray(model([codes, valid])), repeat)
        sent = [keras.ops.convert_to_tensor(codes), keras.ops.convert_to_tensor(valid)]
        _, device = timed(lambda: keras.ops.sum(model(sent)[..., 0, 0]).__array__(), repeat)
        rows.append((batch, first, host, device, batch * (TILE - 8) ** 2))
    return rows


def image_rate(size, repeat):
    image = brick_image(size, size)
    first, seconds = timed(lambda: np.asarray(
        glcm.texture_map(image, FEATURES, WINDOW, levels=LEVELS)), repeat)
    return first, seconds


def glcm_cupy_rate(size, repeat):
    """glcm_cupy.glcm on a (size, size, 1) image of 32 levels, window 7 (radius 3),
    four directions, its 7 default features (no entropy); output (size - 8)²."""
    import cupy as cp
    from glcm_cupy import glcm as cupy_glcm

    image = cp.asarray(brick_image(size, size)[0][..., None].astype(np.float32))

    def run():
        out = cupy_glcm(image, radius=3, bin_from=LEVELS, bin_to=LEVELS, verbose=False)
        cp.cuda.Device().synchronize()
        return out

    return timed(run, repeat)


def cpu_alternatives(repeat, size=1024):
    """bench_texture's scikit-image window loop (64² crop) and numpy fast_glcm (128²
    crop), scaled to a size² image by pixel count, against texture_map on size²."""
    from benchmarks.bench_texture import numpy_fast_glcm, skimage_window_loop

    image = brick_image(size, size)
    _, ours = image_rate(size, repeat)
    print(f"  texture_map {size}²: {ours:.3f} s, {size * size / ours / 1e6:.1f} M px/s")
    for name, fn, crop in (("scikit-image window loop", skimage_window_loop, 64),
                           ("numpy fast_glcm", numpy_fast_glcm, 128)):
        start = time.perf_counter()
        fn(image[0, :crop, :crop], WINDOW, LEVELS)
        seconds = (time.perf_counter() - start) * size * size / crop ** 2
        print(f"  {name:26s} {seconds:9.1f} s for {size}² (a {crop}² crop, scaled): "
              f"texture_map is {seconds / ours:,.0f}x faster", flush=True)
    print("  seed layer: not measured here (TensorFlow only)")


def trace_summary(size, directory="/tmp/bench_gpu_trace"):
    """JAX only: one warm ``texture_map`` call at size² under ``jax.profiler.trace``;
    prints how long the device was busy against the call's span, and its largest
    operations by total time."""
    import collections
    import glob
    import gzip
    import json
    import shutil

    import jax

    image = brick_image(size, size)

    def call():
        np.asarray(glcm.texture_map(image, FEATURES, WINDOW, levels=LEVELS))

    call()
    shutil.rmtree(directory, ignore_errors=True)
    with jax.profiler.trace(directory, create_perfetto_trace=True):
        call()
    [path] = glob.glob(f"{directory}/**/*.trace.json.gz", recursive=True)
    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    processes = {e["pid"]: e.get("args", {}).get("name", "") for e in events
                 if e.get("ph") == "M" and e.get("name") == "process_name"}
    spans = [e for e in events if e.get("ph") == "X"]
    device = [e for e in spans if "/device:" in processes.get(e["pid"], "")]
    if not device:
        print("  no device operations in the trace (no accelerator?)")
        return
    first = min(e["ts"] for e in spans)
    last = max(e["ts"] + e.get("dur", 0) for e in spans)
    busy = collections.Counter()
    for e in device:
        busy[e["name"][:60]] += e.get("dur", 0)
    print(f"  {size}²: device busy {sum(busy.values()) / 1e3:.1f} ms of the traced "
          f"{(last - first) / 1e3:.1f} ms ({len(device)} device operations); largest:")
    for name, microseconds in busy.most_common(8):
        print(f"    {microseconds / 1e3:8.2f} ms  {name}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 10980])
    parser.add_argument("--plan-size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=400.0)
    parser.add_argument("--cupy-sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--skip", type=int, nargs="+", default=[], metavar="SECTION",
                        help="sections (1-6) not to run")
    parser.add_argument("--trace", type=int, default=None, metavar="SIZE",
                        help="JAX only: instead, trace one size² call with JAX's profiler "
                             "and print where the device's time went")
    args = parser.parse_args()
    header("texture_map on the default device")
    if args.trace:
        trace_summary(args.trace)
        return
    start = time.perf_counter()

    def section(title):
        if int(title.split(".")[0]) in args.skip:
            return False
        elapsed = time.perf_counter() - start
        if elapsed > args.budget_s:
            print(f"\n## {title}: not started ({elapsed:.0f} s > --budget-s)", flush=True)
            return False
        print(f"\n## {title}  (t = {elapsed:.0f} s)", flush=True)
        return True

    print(f"device: {device_name()}; accelerator plan: {texture.on_accelerator()}; "
          f"strip {texture.ACCELERATOR_STRIP_COLUMNS}, budget "
          f"2^{texture.ACCELERATOR_CHUNK_ELEMENTS.bit_length() - 1} elements", flush=True)
    # glibc reads these at process start; they decide whether each output copied back
    # to the host lands in reused memory or in fresh pages (docs/performance.md)
    print("glibc allocator: " + ", ".join(
        f"{name}={os.environ.get(name, 'unset')}"
        for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")), flush=True)
    rng = np.random.default_rng(0)
    if section("1. values against scikit-image (float64), and the two plans"):
        worst = check_values(rng)
        for name, err in zip(FEATURES, worst):
            print(f"  {name:14s} largest error / feature's largest value: {err:.1e}")
        diff, counts_equal = check_plans(1024)
        print(f"  stacked plan vs one chunk per call, 1024²: largest difference {diff:.1e}; "
              f"asm and entropy bit-identical: {counts_equal}", flush=True)
    if section("2. pipeline tile through TextureMap in a Keras model (eager)"):
        print(f"  {'batch':>5s} {'first s':>8s} {'host s':>8s} {'device s':>9s} "
              f"{'M px/s host':>12s} {'M px/s device':>14s}")
        for batch, first, host, device, pixels in tile_rates(args.repeat):
            print(f"  {batch:5d} {first:8.2f} {host:8.3f} {device:9.3f} "
                  f"{pixels / host / 1e6:12.1f} {pixels / device / 1e6:14.1f}", flush=True)
    if section("3. whole images, default plan"):
        for size in args.sizes:
            if not section(f"3. {size}x{size}"):
                break
            first, seconds = image_rate(size, max(1, args.repeat // 2))
            peak = device_peak_gib()
            print(f"  {size}²: first call {first:.2f} s, then {seconds:.3f} s: "
                  f"{size * size / seconds / 1e6:.1f} M px/s; device peak so far "
                  f"{'-' if peak is None else f'{peak:.1f} GiB'}", flush=True)
    if section(f"4. chunk plans at {args.plan_size}²"):
        # the CPU's plan last: on a GPU its many sequential steps may take long
        plans = [(f"stacked, strips {strip}, budget 2^{bits}",
                  dict(stacked=True, strip=strip, budget=1 << bits))
                 for strip, bits in ((64, 28), (128, 28), (256, 28), (512, 28), (256, 27),
                                     (256, 29), (256, 30))]
        plans += [("one chunk per call (the CPU's plan)", dict(stacked=False))]
        for label, settings in plans:
            if not section(f"4. {label}"):
                break
            with chunk_settings(**settings):
                plan = (texture.stacked_chunk_plan if texture.on_accelerator()
                        else texture.chunk_plan)(args.plan_size, args.plan_size, FEATURES,
                                                 1, WINDOW, LEVELS, 4)
                repeat = max(1, args.repeat // 2) if settings["stacked"] else 1
                first, seconds = image_rate(args.plan_size, repeat)
            peak = device_peak_gib()
            print(f"  plan {plan}: first {first:.2f} s, then {seconds:.3f} s, "
                  f"{args.plan_size ** 2 / seconds / 1e6:.1f} M px/s; device peak so far "
                  f"{'-' if peak is None else f'{peak:.1f} GiB'}", flush=True)
    if section("5. glcm-cupy"):
        try:
            import glcm_cupy  # noqa: F401
        except ImportError as error:
            print(f"  not measured: {error}")
            args.cupy_sizes = []
        for size in args.cupy_sizes:
            if not section(f"5. glcm-cupy {size}x{size}"):
                break
            first, seconds = glcm_cupy_rate(size, max(1, args.repeat // 2))
            ours_first, ours = image_rate(size, max(1, args.repeat // 2))
            print(f"  {size}²: glcm-cupy first {first:.2f} s, then {seconds:.3f} s "
                  f"({(size - 8) ** 2 / seconds / 1e6:.2f} M px/s); texture_map "
                  f"{ours:.3f} s ({size * size / ours / 1e6:.1f} M px/s): "
                  f"{(size * size / ours) / ((size - 8) ** 2 / seconds):.1f}x",
                  flush=True)
    if section("6. the CPU alternatives on this machine, against texture_map here"):
        cpu_alternatives(args.repeat)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
