"""Where one pipeline run's CPU goes, by the code that ran, from Linux ``perf`` samples:
the share of the kernel's pixel rate and the CPU beyond the kernel without
subtracting a kernel run made minutes apart.

``bench_feed`` subtracts ``texture_map``'s CPU seconds, measured in its own process,
from the pipeline's: on cores whose speed drifts by 15-70 % within minutes, that
difference carries most of a round's noise. Here both come from samples: the
pipeline's child and a kernel child each run under ``perf record`` (CPU clock, every
thread), and each sample is put in one class by the library it fell in. The kernel
itself is the code XLA compiled for it (anonymous executable memory: perf's ``JIT``
samples). Called as the pipeline calls it (the texture model on the first scene's
tiles, warm), the kernel spends a share ``s`` of its CPU there and the rest in XLA's
runtime, glibc's allocator, Python and TensorFlow around it; so the pipeline's kernel
CPU is its compiled-code seconds / ``s``, on the cores of that very run, and the
rest of the run's CPU is what it spends beyond the kernel.

Prints, for the pipeline's run:

- CPU seconds per class in its phases: start-up (before its clock starts: imports),
  head (to its first tile computed: the model, compiling the first tile shape), body
  (to its last tile computed), tail (the last mosaic, quicklook, manifest, exit);
- the kernel's CPU-us/px during the run (its compiled-code seconds / ``s`` per
  pixel: how fast these cores ran it then), the CPU-us/px beyond it (start-up
  excluded, as ``bench_feed``), the latter also scaled to cores on which the kernel
  costs 0.95 CPU-us/px (the goals'), by the same run's own kernel speed;
- the same for the body alone, its pixels those of the kernel's work in it;
- the share of the kernel's pixel rate: the pipeline's pixels over its own seconds,
  against the same pixels at the kernel's CPU from this run spread over as many cores
  as the kernel child kept busy; for the whole run (its own summary seconds) and for
  its body (first tile to last: what a long-lived worker sees between scenes).

What it cannot do: a sample's class is its innermost library, so glibc's allocator
and copies are charged to no one caller (in the kernel child they are part of the
share ``s``); ``s`` is measured on the first scene's tile shape and holds for
scenes of that shape: smaller tiles spend less of their CPU in the compiled code
(86-88 % for 1032² tiles here, 78-85 % for 776²), so scenes of other sizes in one
run make the split approximate. It needs ``perf``
(Linux), allowed to sample the user's own processes
(``/proc/sys/kernel/perf_event_paranoid`` at 2 or less); without it, it stops and
says why.

Usage: python -m benchmarks.bench_profile [--scenes 4] [--size 3072] [--tile 1024]
       [--frequency 99]
       python -m benchmarks.bench_profile --inputs SCENE.tif ... [--tile ...]
"""

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.bench_feed import (REFERENCE_KERNEL_US_PX, add_scene_arguments,
                                   at_reference, bench_scene, check_scene_arguments,
                                   own_summary, pipeline_command, planned,
                                   scene_paths, timeline)
from benchmarks.common import header, pipeline_peak_gib
from transforms.read import ExampleShapes

# The classes a sample is put in, by its library (and, in glibc, its function).
KERNEL = "kernel (XLA-compiled code)"
CLASSES = (KERNEL, "XLA / TensorFlow runtime", "Python", "OS kernel",
           "glibc allocator", "glibc other (copies)", "ZSTD", "numpy", "GDAL / libtiff",
           "other")
# glibc's allocator functions (malloc, free and their inner parts).
ALLOCATOR = re.compile(r"malloc|free|memalign|consolidate|unlink_chunk|_int_|tcache")
# One line of ``perf script -F tid,time,period,ip,sym,dso``: time in seconds (the
# clock perf recorded with), the sample's period in ns, the symbol (C++ names hold
# spaces and parentheses) and the library, in the line's last parentheses.
SAMPLE_LINE = re.compile(r"^\s*\d+\s+([\d.]+):\s+(\d+)\s+\S+\s+(.*)\s+\(([^()]*)\)\s*$")
# What a child prints on stdout to mark a moment on perf's clock (CLOCK_MONOTONIC).
MARK = re.compile(r"^mark (\w+) ([\d.]+)$", re.M)

# The kernel child: the pipeline's texture model on the first scene's first tiles (as
# the read step makes them), after one warm call; the marks bound the timed calls.
KERNEL_CHILD = """import gc, sys
gc.disable()
from benchmarks.bench_profile import kernel_calls
gc.enable()
gc.freeze()
kernel_calls(*sys.argv[1:])
"""
# The pipeline's child: ``python -m pipeline`` (its imports as ``pipeline.__main__``
# makes them, the collector frozen after them, and again at the end as it does), with
# a mark when its own clock starts (the progress lines' +S s and the summary's seconds
# count from it).
PIPELINE_CHILD = """import gc, sys, time
import pipeline.__main__
import pipeline.run as run
configure = run.configure_logging
def marked(verbose, start):
    print(f"mark started {time.monotonic() - (time.time() - start):.6f}", flush=True)
    return configure(verbose, start)
run.configure_logging = marked
code = run.main(sys.argv[1:]).exit_code
gc.freeze()
sys.exit(code)
"""
# Tiles of the first scene the kernel child computes (each about 1 s here).
KERNEL_TILES = 6


def sample_class(symbol: str, library: str) -> str:
    """The class of a sample in ``symbol`` of ``library`` (as perf names them)."""
    name = os.path.basename(library)
    if (name.startswith("perf-") and name.endswith(".map")) or "[JIT]" in library \
            or "//anon" in library or library.startswith("[anon"):
        return KERNEL
    if "kernel" in library and library.startswith("["):
        return "OS kernel"
    if "tensorflow" in name or "xla" in name:
        return "XLA / TensorFlow runtime"
    if name.startswith("libpython") or re.match(r"python3(\.\d+)?$", name):
        return "Python"
    if name.startswith(("libc.so", "libc-")):
        return "glibc allocator" if ALLOCATOR.search(symbol) else "glibc other (copies)"
    if name.startswith("ld-linux"):
        return "glibc other (copies)"
    if "zstd" in name or "zstandard" in library:
        return "ZSTD"
    if "multiarray" in name or "numpy" in library:
        return "numpy"
    if "gdal" in name or "tiff" in name or "rasterio" in library:
        return "GDAL / libtiff"
    return "other"


def parse_samples(text: str):
    """[(time s, CPU seconds, class)] of ``perf script`` output (see SAMPLE_LINE)."""
    samples = []
    for line in text.splitlines():
        found = SAMPLE_LINE.match(line)
        if found:
            at, period, symbol, library = found.groups()
            samples.append((float(at), int(period) * 1e-9, sample_class(symbol, library)))
    return samples


def by_class(samples, start=float("-inf"), end=float("inf")):
    """CPU seconds per class of the samples in [start, end)."""
    seconds = collections.Counter()
    for at, cpu, kind in samples:
        if start <= at < end:
            seconds[kind] += cpu
    return seconds


def kernel_calls(path, tile, count):
    """The kernel child's work (:data:`KERNEL_CHILD`): the pipeline's texture model on
    the first ``count`` tiles of the scene at ``path``, read as the pipeline reads
    them, one call each, after a warm call; marks around the timed calls."""
    from transforms.read import read_example
    from transforms.texture import TextureModelHandler

    with tempfile.TemporaryDirectory() as folder:
        params, tasks = planned(path, plan_flags(int(tile)), folder)
    tasks = tasks[:int(count)]
    examples = [read_example(task, params) for task in tasks]
    handler = TextureModelHandler(params.spec)
    model = handler.load_model()
    handler.run_inference(examples[:1], model)  # compiles the tile shape
    print(f"mark kernel_start {time.monotonic():.6f}", flush=True)
    for example in examples:
        handler.run_inference([example], model)
    print(f"mark kernel_end {time.monotonic():.6f}", flush=True)


def perf_run(command, data, frequency, env):
    """``command`` under ``perf record`` (CPU clock at ``frequency`` Hz, CLOCK_MONOTONIC
    timestamps) into ``data``: (its stdout, its stderr, its samples)."""
    recorded = subprocess.run(
        ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(frequency), "-k",
         "CLOCK_MONOTONIC", "-o", data, "--", *command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if recorded.returncode != 0:
        raise RuntimeError(f"{command[:3]}... under perf exited with "
                           f"{recorded.returncode}; the end of its stderr:\n"
                           f"{recorded.stderr[-3000:]}")
    script = subprocess.run(["perf", "script", "-i", data, "-F",
                             "tid,time,period,ip,sym,dso"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            check=True)
    return recorded.stdout, recorded.stderr, parse_samples(script.stdout)


def marks(stdout):
    """{name: time on perf's clock} of a child's marks."""
    return {name: float(at) for name, at in MARK.findall(stdout)}


def perf_problem():
    """Why ``perf`` cannot sample this user's processes here, or None."""
    if shutil.which("perf") is None:
        return "perf is not installed (Debian/Ubuntu: apt install linux-perf)"
    try:
        with open("/proc/sys/kernel/perf_event_paranoid") as f:
            level = int(f.read())
    except (OSError, ValueError):
        return None
    if level > 2:
        return (f"/proc/sys/kernel/perf_event_paranoid is {level}: perf may not sample "
                f"even your own processes; 2 allows it (sysctl "
                f"kernel.perf_event_paranoid=2)")
    return None


def print_table(phases, pixels):
    """CPU seconds per class and phase, with each class's CPU-us/px after start-up."""
    names = list(phases)
    print(f"  {'CPU seconds':28s}" + "".join(f"{name:>10s}" for name in names)
          + f"{'us/px*':>9s}")
    for kind in CLASSES:
        row = [phases[name][kind] for name in names]
        after = sum(row) - phases[names[0]][kind]
        print(f"  {kind:28s}" + "".join(f"{value:10.2f}" for value in row)
              + f"{after / pixels * 1e6:9.3f}")
    totals = [sum(phases[name].values()) for name in names]
    print(f"  {'all':28s}" + "".join(f"{value:10.2f}" for value in totals)
          + f"{(sum(totals) - totals[0]) / pixels * 1e6:9.3f}")
    print("  * CPU-us per pixel after start-up")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    add_scene_arguments(parser)
    parser.add_argument("--frequency", type=int, default=99,
                        help="perf's samples per second of CPU (default 99)")
    args = parser.parse_args()
    what = check_scene_arguments(parser, args)
    if args.frequency < 1:
        parser.error("--frequency must be >= 1")
    problem = perf_problem()
    if problem:
        sys.exit(f"bench_profile needs perf: {problem}")
    header(f"where the pipeline's CPU goes (perf at {args.frequency} Hz): {what}, tile "
           f"{args.tile}, default features, window 7, 32 levels")
    with tempfile.TemporaryDirectory(prefix="bench-profile-",
                                     ignore_cleanup_errors=True) as work:
        run(args, work)


def run(args, work):
    """Every measurement of :func:`main`, with scenes, outputs and perf data under
    ``work``."""
    paths = scene_paths(args, work)
    shapes = ExampleShapes()
    scenes = [bench_scene(path, plan_flags(args.tile), os.path.join(work, "plan", str(k)),
                          f"scene{k}", shapes) for k, path in enumerate(paths)]
    pixels = sum(scene.pixels for scene in scenes)
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true")  # as run_local.sh

    stdout, _, samples = perf_run(
        [sys.executable, "-c", KERNEL_CHILD, scenes[0].path, str(args.tile),
         str(KERNEL_TILES)], os.path.join(work, "kernel.data"), args.frequency, env)
    at = marks(stdout)
    kernel = by_class(samples, at["kernel_start"], at["kernel_end"])
    kernel_cpu = sum(kernel.values())
    if kernel[KERNEL] <= 0:
        raise RuntimeError(
            "no sample of the kernel child fell in XLA-compiled code: this perf names "
            "anonymous code otherwise than sample_class expects ('/tmp/perf-PID.map', "
            "'[JIT] tid', '//anon'); classes seen: " + ", ".join(
                f"{kind} {seconds:.1f} s" for kind, seconds in kernel.most_common()))
    share = kernel[KERNEL] / kernel_cpu
    kernel_cores = kernel_cpu / (at["kernel_end"] - at["kernel_start"])
    print(f"kernel child (the texture model on {KERNEL_TILES} tiles of "
          f"{os.path.basename(scenes[0].path)}, warm): {kernel_cpu:.2f} CPU-s, "
          f"{100 * share:.1f} % of it in the compiled code, {kernel_cores:.2f} cores busy")
    print("  " + ", ".join(f"{kind} {100 * seconds / kernel_cpu:.1f} %"
                           for kind, seconds in kernel.most_common() if seconds > 0))

    out = os.path.join(work, "out")
    stdout, stderr, samples = perf_run(
        pipeline_command(paths, out, plan_flags(args.tile), entry=("-c", PIPELINE_CHILD)),
        os.path.join(work, "pipeline.data"), args.frequency, env)
    started = marks(stdout)["started"]
    _, seconds = own_summary(stdout)
    times = timeline(stderr)
    if times is None:
        raise RuntimeError("the pipeline logged no tile computed: nothing to profile")
    first, last, _ = times
    edges = {"start-up": (float("-inf"), started),
             "head": (started, started + first),
             "body": (started + first, started + last),
             "tail": (started + last, float("inf"))}
    phases = {name: by_class(samples, *edge) for name, edge in edges.items()}
    print(f"pipeline child ({len(paths)} scene(s), {pixels / 1e6:.1f} M px): "
          f"{seconds:.1f} s by its own summary, first tile at +{first:.1f} s, last "
          f"at +{last:.1f} s; peak {pipeline_peak_gib(stdout):.2f} GiB")
    print_table(phases, pixels)

    after = sum(sum(phases[name].values()) for name in ("head", "body", "tail"))
    kernel_in_run = sum(phases[name][KERNEL] for name in phases) / share
    kernel_us = kernel_in_run / pixels * 1e6
    beyond_us = (after - kernel_in_run) / pixels * 1e6
    print(f"kernel in the run: {kernel_in_run:.1f} CPU-s, {kernel_us:.2f} CPU-us/px "
          f"(compiled-code seconds / {share:.3f})")
    print(f"beyond the kernel, start-up excluded: {beyond_us:.2f} CPU-us/px; at the "
          f"goals' speed (kernel {REFERENCE_KERNEL_US_PX}): "
          f"{at_reference(beyond_us, kernel_us):.2f}")
    whole = kernel_in_run / kernel_cores / seconds
    print(f"share of the kernel's pixel rate: whole run {100 * whole:.0f} % (its own "
          f"{seconds:.1f} s against the kernel's {kernel_in_run / kernel_cores:.1f} s "
          f"on {kernel_cores:.2f} cores)")
    body_seconds = last - first
    body_kernel = phases["body"][KERNEL] / share
    if body_seconds <= 0 or body_kernel <= 0:
        print("body: none (the first tile computed was the last)")
        return
    body_pixels_share = body_kernel / kernel_in_run  # of the run's kernel work
    body = body_kernel / kernel_cores / body_seconds
    body_us = (sum(phases["body"].values()) - body_kernel) / (
        pixels * body_pixels_share) * 1e6
    print(f"body (first tile to last, {body_seconds:.1f} s, "
          f"{100 * body_pixels_share:.0f} % of the kernel's work): {100 * body:.0f} % "
          f"of the kernel's rate, {body_us:.2f} CPU-us/px beyond the kernel; at the "
          f"goals' speed {at_reference(body_us, kernel_us):.2f}")


def plan_flags(tile):
    """The flags ``bench_feed``'s planning and ``pipeline_command`` read: ``tile``, the
    pipeline's defaults otherwise."""
    return argparse.Namespace(tile=tile, cog_compression="zstd", tiles_per_call=1)


if __name__ == "__main__":
    main()
