"""How well the pipeline feeds its kernel: several scenes through ``python -m
pipeline`` against ``texture_map`` on the same scenes in one warm process.

Writes ``--scenes`` uint8 GeoTIFFs of ``--size`` square (scikit-image textures, each
scene another mix), or takes your own rasters (``--inputs``: any size, data type and
number of bands, nodata as the pipeline reads it; every band, as the pipeline's
default), and prints what filling memory fresh from the OS costs here (on a
virtual machine that hands idle memory back to its host, many times more after a few
seconds with it free: the children's system CPU varies with it), then in this run:

1. the pipeline in a child process (default flags, DirectRunner with one thread per
   core): its wall time, its own pixel rate (its summary), its CPU seconds (user +
   system, from the kernel's accounting of the child), its peak RSS (VmHWM, from its
   summary), the seconds per step summed over its scenes (from the manifests), its
   timeline (from its progress lines: when its first tile was computed, its last,
   and its last scene done; what the whole run pays once and the steady state does
   not) and ``import pipeline.__main__`` in another child (the start-up's share: the
   imports as ``python -m pipeline`` makes them; where jax is installed, once more
   with jax made unimportable, since ``import tensorflow`` loads it and a worker has
   none);
2. ``texture_map`` on each band of each scene in this process, quantized with the
   range the pipeline plans for it, in pieces of at most 4096² (the whole scene up to
   that: memory bounded whatever the scene's size), after a warm-up call on each
   piece shape: wall and CPU seconds (the kernel), run right before the pipeline's
   run and again right after it, the two runs' mean taken;
3. the pipeline's own steps on the first scene's tiles, one after the other in this
   process (CPU seconds, every thread of the process): reading and quantizing each
   tile, saving each tile's core (the pipeline's texture model's output for it,
   computed outside the clock), and the COG mosaic from the saved tiles; what they
   cost beyond the kernel without Beam around them;
4. ``texture_map`` on 512² and 1024² crops, warm (best of 3 each, the sizes
   alternating): the small-input rate ratio.

Before each timed part the page cache's dirty pages are written out (``os.sync``):
a pipeline run leaves gigabytes to write back, and the OS's threads that write them
run on the same cores as whatever is timed next.

The cores' speed is probed before and after each of the three runs (the kernel, the
pipeline, the kernel; ``texture_map``'s CPU-us/px on the 512² ``brick`` image,
warm): how far apart the four probes are, a round whose probes differ by more than
10 % flagged. On shared cores that drift within minutes, the subtraction of a kernel
run from a pipeline run on cores of another speed is where most of a round's noise
comes from: the kernel's two runs around the pipeline's cancel a drift that is even
across the three; the probes show the rest, they cannot remove it.

Prints the share of the kernel's pixel rate the pipeline keeps, the CPU-microseconds
per pixel the pipeline spends beyond the kernel (with and without start-up; also
scaled to cores on which the kernel costs 0.95 CPU-us/px, those the goals were set
on, since these cores' speed moves by up to 2x between days), and
what that caps a worker's rate at for a given number of vCPUs; of the CPU beyond the
kernel, how much the OS kernel spent (the child's system CPU less the kernel run's),
and the bytes the pipeline wrote to files (its output blocks by the kernel's
accounting): on a VM that hands idle memory back to its host, each new page a file
write puts in the page cache costs the writer many times what it costs on a bare
machine.

Right fitting (``run_dataflow.sh --mosaic-machine-type``: the mosaics on CPU workers):
the pipeline runs once more with ``--tile-accelerator``, which makes every scene wait
for the run's last tile; the child's CPU seconds when its first mosaic starts (its
log line, its /proc CPU counters read every 50 ms), less start-up and the kernel, are
what the GPU workers would spend beyond the kernel (the DirectRunner ignores the hint
itself: one process runs both kinds of steps, one after the other).

Steady state (what a long-lived worker sees, with start-up, the kernel's compilation
and the last scene's lone mosaic paid once): the pipeline also runs on the first
scene alone, and the difference between the two runs is charged to the other
scenes: their pixels over the extra wall time against the kernel's rate, and the
extra CPU seconds less the kernel's CPU seconds on those scenes, per pixel. The
right-fitted run gets the same: once more on the first scene alone, the difference
of the CPU seconds up to the first mosaic charged to the other scenes. And since that
is a difference between a child and a kernel run minutes apart, on cores whose speed
drifts, the right-fitted pipeline also runs (on every scene, then the first alone)
with a kernel that costs nothing (each tile's maps are fixed, cut from the kernel's
real maps of a 1024² corner of the first scene, copied into fresh memory as a GPU's
output would be; no kernel compiled or run): its CPU seconds up to the first mosaic,
difference of the two runs, per pixel of scenes 2..N, are the GPU workers' tile steps
with nothing subtracted.

The whole pipeline also runs with that kernel-free model, on every scene and then on
the first alone, without right fitting: every step, the mosaics included, on one
worker. Its pixel rate by the clock (scenes 2..N: the difference of the two runs)
is what these cores feed a GPU that keeps up; the cores it kept busy show what waits
(a scene's mosaic starts after its last tile, and parts of it run on one thread).

Scenes of different sizes have tiles of different shapes, and the pipeline compiles
the kernel once per shape (2-4 CPU-s here, a few tiles' worth): in the steady state
that is charged to scenes 2..N. Where they have shapes the first scene's tiles do not,
the steady state is also printed without it (the kernel compiled for each scene's
tile shape in this process, a first call less a warm one): what a long-lived worker
that has seen those sizes before spends.

Pixels are counted as the pipeline counts them: height x width x bands, per scene.

Usage: python -m benchmarks.bench_feed [--scenes 4] [--size 3072] [--tile 1024]
       [--cog-compression zstd] [--tiles-per-call 1] [--repeat 1] [--skip-small]
       python -m benchmarks.bench_feed --inputs SCENE.tif SCENE.tif ... [--tile ...]
"""

import argparse
import dataclasses
import glob
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import rasterio
from rasterio.transform import from_origin
from skimage import data

import glcm
from glcm._compile import usable_cores
from benchmarks.common import fresh_memory_cost, header, pipeline_peak_gib
from pipeline.options import TextureOptions, params_from
from transforms.io.cog import write_mosaic
from transforms.layout import band_names
from transforms.io.raster import read_tile
from transforms.plan import core_size, plan_scene, tiles_for
from transforms.read import ExampleShapes, read_example
from transforms.records import DEFAULT_FEATURES, Scene
from transforms.save import save_tile
from transforms.texture import TextureModelHandler

TEXTURES = ("brick", "grass", "gravel", "camera")
# A child's own peak RSS in kB (its wait4 ru_maxrss can be its parent's, from the fork),
# as the pipeline's summary reads it (pipeline.run, already imported by then); nan
# where its /proc does not say, as pipeline_peak_gib.
PRINT_PEAK = ("from pipeline.run import peak_memory\npeak = peak_memory()\n"
              "print('nan' if peak is None else peak // 1024)")
STEPS = ("plan_seconds", "read_seconds", "texture_seconds", "texture_wait_seconds",
         "save_seconds", "mosaic_seconds")
# The kernel's reference run takes a scene in pieces of at most this side (the whole
# scene up to it), so that its memory is bounded whatever the scene's size.
KERNEL_PIECE = 4096
# The kernel's CPU-us/px on the cores the goals were set on (2026-12-02:
# 0.95). These cores' speed moves by up to 2x between days, and the CPU beyond the
# kernel moves with it: scaled to that speed, rounds of different days compare.
REFERENCE_KERNEL_US_PX = 0.95


@dataclasses.dataclass(frozen=True)
class BenchScene:
    """A scene as the pipeline plans it: its size and, per band, where the band is
    read and the quantization range the pipeline gives it."""

    path: str
    height: int
    width: int
    dtype: str
    bands: tuple  # ((uri, band, vmin, vmax), ...), in the pipeline's band order
    tile_shape: tuple  # the shape of every texture example of the scene

    @property
    def pixels(self) -> int:
        """Pixels as the pipeline's summary counts them: height x width x bands."""
        return self.height * self.width * len(self.bands)


def planned(path, args, folder, scene_id="bench"):
    """(params, tasks): the pipeline's plan of the scene at ``path`` with this run's
    flags (every band, every tile), its outputs under ``folder`` (empty, so nothing
    counts as finished)."""
    params = params_from(TextureOptions([
        f"--input={path}", f"--output={folder}", f"--tile={args.tile}",
        f"--cog-compression={args.cog_compression}"]))
    return params, plan_scene(Scene(scene_id, path, "-"), params, folder)[1]


def bench_scene(path, args, folder, scene_id, shapes):
    """The :class:`BenchScene` of ``path``, from the pipeline's plan; its examples'
    shape from ``shapes`` (an :class:`~transforms.read.ExampleShapes` that has seen
    the scenes before it, as one pipeline process has)."""
    params, tasks = planned(path, args, folder, scene_id)
    bands = {task.band_index: (task.source.uri, task.source.band, task.vmin, task.vmax)
             for task in tasks}
    info = tasks[0].info
    return BenchScene(path, info.height, info.width, info.dtype,
                      tuple(bands[k] for k in sorted(bands)), shapes(tasks[0], params))


def write_scene(path, size, seed):
    """A size² uint8 GeoTIFF of tiled textures, written in strips."""
    tile = np.concatenate([getattr(data, TEXTURES[(seed + k) % 4])()[:512, :512]
                           for k in range(4)], axis=1)  # 512 x 2048
    with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=1,
                       dtype="uint8", crs="EPSG:32633", tiled=True, blockxsize=512,
                       blockysize=512, transform=from_origin(0, 0, 10, 10)) as dst:
        reps = -(-size // tile.shape[1])
        for r0 in range(0, size, 512):
            strip = np.roll(np.tile(tile, (1, reps)), 97 * seed, axis=1)
            strip = strip[:min(512, size - r0), :size]
            dst.write(strip[None], window=((r0, r0 + strip.shape[0]), (0, size)))


def stderr_tail(stderr, lines=40):
    """The end of a child's stderr (a temporary file), for an error message."""
    stderr.seek(0)
    return "".join(stderr.readlines()[-lines:])


def run_child(command, env):
    """(wall seconds, CPU seconds user + system, of which system, stdout, bytes it
    wrote to files, stderr) of a child process; the bytes are its output blocks by
    the kernel's accounting (pages of files it dirtied, deleted ones included). Its
    stderr goes to a temporary file (a pipe nobody reads could fill and stall it);
    when it fails, the end of that is printed with the error."""
    with tempfile.TemporaryFile("w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,
                                   text=True, env=env)
        stdout = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"{command[:3]}... exited with {process.returncode}; the "
                               f"end of its stderr:\n{stderr_tail(stderr)}")
        stderr.seek(0)
        stderr_text = stderr.read()
    return (wall, usage.ru_utime + usage.ru_stime, usage.ru_stime, stdout,
            usage.ru_oublock * 512, stderr_text)


def pipeline_command(paths, out, args, *flags, entry=("-m", "pipeline")):
    """``python -m pipeline`` (or ``python ENTRY...``) on ``paths`` (one ``--input``
    each), DirectRunner with one thread per core."""
    return [sys.executable, *entry, *(f"--input={path}" for path in paths),
            f"--output={out}", f"--tile={args.tile}",
            f"--cog-compression={args.cog_compression}",
            f"--tiles-per-call={args.tiles_per_call}", *flags,
            "--direct_num_workers=0", "--direct_running_mode=multi_threading"]


def pipeline_run(paths, out, args, env):
    """The pipeline on ``paths`` in a child: (wall, CPU, system CPU, its own rate, its
    own seconds, peak RSS GiB, bytes written to files, its :func:`timeline`)."""
    settle()
    wall, cpu, system, stdout, written, stderr_text = run_child(
        pipeline_command(paths, out, args), env)
    return (wall, cpu, system, *own_summary(stdout), pipeline_peak_gib(stdout), written,
            timeline(stderr_text))


# A progress line of the pipeline: "[glcm +S s] message", S seconds on its own clock.
PROGRESS_LINE = re.compile(r"^\[glcm \+(\d+(?:\.\d+)?) s\] (.*)$", re.M)
# How the lines end that say a tile was computed (transforms.save), and what the line
# says that ends a scene (transforms.finish, transforms.objects).
TILE_COMPUTED = " computed"
SCENE_DONE = ": done -> "


def timeline(stderr):
    """(first tile computed, last tile computed, last scene done), in seconds on the
    run's own clock, from its progress lines; None where it logged no tile."""
    lines = [(float(seconds), message) for seconds, message in PROGRESS_LINE.findall(
        stderr)]
    tiles = [seconds for seconds, message in lines if message.endswith(TILE_COMPUTED)]
    done = [seconds for seconds, message in lines if SCENE_DONE in message]
    if not tiles or not done:
        return None
    return min(tiles), max(tiles), max(done)


def own_summary(stdout):
    """(pixels/s, seconds) of the summary a local pipeline run prints."""
    own = re.search(r"([\d,]+) pixels/s over ([\d.]+) s", stdout)
    return float(own.group(1).replace(",", "")), float(own.group(2))


# The log line that starts a scene's mosaic (transforms.finish.finish_scene).
MOSAIC_STARTS = "tiles saved; writing the mosaic"
# What run_dataflow.sh --mosaic-machine-type passes; the DirectRunner ignores the
# hint itself, not what it changes in the graph (no mosaic before the run's last tile).
TILE_GPU = "type:nvidia-l4;count:1;install-nvidia-driver"


def cpu_seconds_of(pid):
    """User + system CPU seconds of a running process (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fitted_run(paths, out, args, env, command=None):
    """The pipeline with ``--tile-accelerator`` in a child (``command``, default
    ``python -m pipeline``): (CPU seconds when the first mosaic started, CPU seconds
    in all). Every scene is then finished after the last tile is saved, so the first
    figure is what the GPU workers of a right-fitted job would spend (start-up,
    discovery, planning, read, texture, save), the rest what the mosaic workers
    would."""
    settle()
    if command is None:
        command = pipeline_command(paths, out, args, f"--tile-accelerator={TILE_GPU}")
    with tempfile.TemporaryFile("w+") as stderr, tempfile.TemporaryFile("w+") as stdout:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True,
                                   env=env)
        before_mosaics, status, usage = None, None, None
        while status is None:
            if before_mosaics is None:
                cpu = cpu_seconds_of(process.pid)  # read first: at most one poll late
                stderr.seek(0)
                if MOSAIC_STARTS in stderr.read():
                    before_mosaics = cpu
            pid, code, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                status, usage = code, rusage
            else:
                time.sleep(0.05)
        if os.waitstatus_to_exitcode(status) != 0 or before_mosaics is None:
            raise RuntimeError(f"the right-fitted pipeline failed or wrote no mosaic; "
                               f"the end of its stderr:\n{stderr_tail(stderr)}")
    return before_mosaics, usage.ru_utime + usage.ru_stime


# Where the kernel-free children find the maps they hand back: an .npy of real texture
# maps (rows, columns, features) float32 that the benchmark computed once
# (:func:`write_free_maps`), so that the mosaic compresses what it would compress.
FREE_MAPS_VARIABLE = "BENCH_FEED_FREE_MAPS"
FREE_MAPS_SIDE = 1024


class CopiedMapsHandler(TextureModelHandler):
    """The texture model handler with a kernel that costs nothing: every call hands
    back fixed maps of the model's output shape in fresh host memory, as a GPU's
    output copied back to the host (``np.asarray`` of a device array) would be. No
    kernel is compiled or run in the process; the rest of the pipeline runs as it is.
    The maps are real ones, repeated to the shape, where :data:`FREE_MAPS_VARIABLE`
    names them (their values matter to the mosaic's compression only), else random."""

    class MapsByShape(dict):
        """The "model": maps per input shape, made on first use (a dict subclass:
        Beam keeps models by weak reference), and the real maps they are cut from
        (``source``, or None)."""

        source = None

    def load_model(self):
        model = self.MapsByShape()
        path = os.environ.get(FREE_MAPS_VARIABLE)
        if path:
            model.source = np.load(path)
        return model

    def _predict(self, model, codes, valid):
        shape = self.map_size(*codes.shape[1:])
        if shape not in model:
            model[shape] = maps_of_shape(model.source, shape, len(self.spec.features))
        return np.stack([model[shape]] * codes.shape[0])


def maps_of_shape(source, shape, n_features):
    """(rows, columns, ``n_features``) float32 maps of ``shape``: ``source`` repeated
    over it and cut to it, or random values where ``source`` is None."""
    if source is None:
        return np.random.default_rng(0).random(shape + (n_features,), dtype=np.float32)
    reps = (-(-shape[0] // source.shape[0]), -(-shape[1] // source.shape[1]), 1)
    return np.ascontiguousarray(np.tile(source, reps)[:shape[0], :shape[1]])


def write_free_maps(scene, features, path, side=FREE_MAPS_SIDE):
    """Writes the kernel's maps of the top-left ``side``² of ``scene``'s first band
    to ``path`` (.npy), for the kernel-free children (:data:`FREE_MAPS_VARIABLE`)."""
    codes, valid = next(kernel_pieces(scene))
    maps = kernel(codes[:, :side, :side], valid[:, :side, :side], features)
    np.save(path, np.ascontiguousarray(maps[0], dtype=np.float32))


def copied_maps_handler(params, accelerator="optional", tiles_per_call=1):
    """The model-handler seam (:class:`pipeline.build.Seams`) that makes a
    :class:`CopiedMapsHandler`."""
    return CopiedMapsHandler(params.spec, tiles_per_call)


# python -m pipeline, as pipeline/__main__.py runs it, with the kernel-free handler
KERNEL_FREE_CHILD = """import gc, sys
gc.disable()
from pipeline.build import Seams
from pipeline.run import main
from benchmarks.bench_feed import copied_maps_handler
gc.enable()
gc.freeze()
code = main(sys.argv[1:], seams=Seams(model_handler=copied_maps_handler)).exit_code
gc.freeze()
sys.exit(code)
"""


def kernel_free_run(paths, out, args, env):
    """CPU seconds up to the first mosaic of the right-fitted pipeline whose kernel
    costs nothing (:class:`CopiedMapsHandler`): what a GPU worker's CPUs spend on
    the tile steps, without subtracting a kernel measured elsewhere."""
    command = pipeline_command(paths, out, args, f"--tile-accelerator={TILE_GPU}",
                               entry=("-c", KERNEL_FREE_CHILD))
    return fitted_run(paths, out, args, env, command)[0]


def kernel_free_whole_run(paths, out, args, env):
    """The whole pipeline with a kernel that costs nothing, in a child: every step on
    this one worker, the mosaics included, as on a GPU worker without
    ``--mosaic-machine-type`` whose GPU keeps up. (CPU seconds, its own seconds)."""
    settle()
    _, cpu, _, stdout, _, _ = run_child(
        pipeline_command(paths, out, args, entry=("-c", KERNEL_FREE_CHILD)), env)
    return cpu, own_summary(stdout)[1]


def kernel(codes, valid, features, padding="same"):
    """``texture_map`` with the pipeline's default window and levels, on the host
    (``padding="valid"`` for a tile read with its halo, as the pipeline's)."""
    return np.asarray(glcm.texture_map(codes, features, 7, levels=32, mask=valid,
                                       padding=padding))


class CoreSpeed:
    """The cores' speed now: ``texture_map``'s CPU-us/px on the 512² ``brick`` image,
    warm, the median of five calls (about 1.5 CPU-s; a single call is now and then
    half as slow again, a sustained drift moves the median).

    These shared cores drift by 20-30 % within minutes: the kernel's CPU seconds
    subtracted from the pipeline's are those of cores faster or slower than the
    pipeline had, even in runs right before and after it. Taken before and after
    each run, the probe shows how far they drifted. It does not
    correct for it: the speed also moves during a run (scaling the kernel's figures
    by the probes' means widened the spread of two rounds: 0.33-0.54 CPU-us/px beyond
    the kernel against 0.50-0.52)."""

    def __init__(self, features):
        codes, valid = glcm.quantize(np.asarray(data.brick())[None, :512, :512], 32, 0,
                                     256)
        self.codes, self.valid = np.asarray(codes), np.asarray(valid)
        self.features = features
        kernel(self.codes, self.valid, features)  # compiled: warm

    def __call__(self):
        seconds = []
        for _ in range(5):
            start = time.process_time()
            kernel(self.codes, self.valid, self.features)
            seconds.append(time.process_time() - start)
        return float(np.median(seconds)) / self.codes.size * 1e6


def kernel_pieces(scene):
    """(codes, valid) of every band of ``scene`` in pieces of at most
    :data:`KERNEL_PIECE` per side, each (1, h, w) and padded as invalid to one shape
    per scene, quantized with the range the pipeline plans for the band."""
    pieces = tiles_for(scene.path, scene.height, scene.width, KERNEL_PIECE, 0)
    shape = piece_shape(scene)
    for uri, band, vmin, vmax in scene.bands:
        for piece in pieces:
            values, valid = read_tile(uri, band, piece)
            codes, ok = glcm.quantize(values, 32, vmin, vmax, mask=valid)
            pad = ((0, shape[0] - values.shape[0]), (0, shape[1] - values.shape[1]))
            yield (np.pad(np.asarray(codes), pad).astype(np.int32)[None],
                   np.pad(np.asarray(ok), pad)[None])


def piece_shape(scene):
    """The one shape of ``scene``'s kernel pieces (:func:`kernel_pieces`)."""
    return (core_size(scene.height, KERNEL_PIECE), core_size(scene.width, KERNEL_PIECE))


def warm_kernel(scenes, features):
    """Compiles the kernel for every piece shape of ``scenes``: the kernel's run is
    warm, as a long-lived worker's would be."""
    for shape in sorted({piece_shape(scene) for scene in scenes}):
        codes = np.zeros((1,) + shape, np.int32)
        kernel(codes, np.ones(codes.shape, bool), features)


def compile_costs(scenes, features):
    """(wall, CPU) seconds of compiling the kernel for each scene's tile shape, in
    scene order, as the pipeline's first tile of a new shape pays it: a first call
    less a warm one on that shape; nothing for a shape compiled before."""
    costs = []
    for scene in scenes:
        codes = np.zeros((1,) + scene.tile_shape, np.int32)
        valid = np.ones(codes.shape, bool)
        times = []
        for _ in range(2):
            w0, c0 = time.perf_counter(), time.process_time()
            kernel(codes, valid, features, padding="valid")
            times.append((time.perf_counter() - w0, time.process_time() - c0))
        costs.append(tuple(max(0.0, first - warm) for first, warm in zip(*times)))
    return costs


def kernels(scenes, features):
    """:func:`kernel_run` on the first scene, then on the others: (first scene's
    wall, CPU, system; the others' wall, CPU, system) seconds."""
    return kernel_run(scenes[:1], features) + kernel_run(scenes[1:], features)


def kernel_run(scenes, features):
    """(wall, CPU, of which system) seconds of texture_map on every band of every
    scene (:func:`kernel_pieces`), warm; reading and quantizing outside the clock."""
    wall = cpu = system = 0.0
    for scene in scenes:
        for codes, valid in kernel_pieces(scene):
            w0, c0, s0 = time.perf_counter(), time.process_time(), os.times().system
            kernel(codes, valid, features)
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
            system += os.times().system - s0
    return wall, cpu, system


def steps_alone(path, args, folder):
    """CPU seconds of the pipeline's read, save and mosaic steps on one scene's tiles
    (every band), each step over all tiles in this process (no Beam): {step: CPU-s}.
    Each tile's maps, the pipeline's texture model's output for it, are computed
    between its read and its save, outside the clock (one tile's maps at a time: no
    copy of the scene)."""
    params, tasks = planned(path, args, folder)
    handler = TextureModelHandler(params.spec)
    model = handler.load_model()
    cpu, results = {"read": 0.0, "save": 0.0}, []
    for task in tasks:
        start = time.process_time()
        example = read_example(task, params)
        cpu["read"] += time.process_time() - start
        maps = handler.run_inference([example], model)[0]
        start = time.process_time()
        results.append(save_tile(task, maps, params, folder, "bench"))
        cpu["save"] += time.process_time() - start
    del model
    info = tasks[0].info
    start = time.process_time()
    write_mosaic(os.path.join(folder, "features.tif"), info,
                 band_names(tasks[0].sources, params.features), len(params.features),
                 results, params.cog_compression)
    cpu["mosaic"] = time.process_time() - start
    return cpu


def small_rates(features, rounds=3):
    """texture_map pixel rates on 512² and 1024² crops of brick, warm: the best of
    ``rounds`` calls each, the two sizes alternating (so that a slow spell of these
    shared cores does not fall on one size only)."""
    image = np.tile(data.brick(), (2, 2))
    inputs = {}
    for side in (512, 1024):
        codes, valid = glcm.quantize(image[None, :side, :side], 32, 0, 256)
        codes, valid = inputs[side] = np.asarray(codes), np.asarray(valid)
        kernel(codes, valid, features)  # compiled: warm
    best = dict.fromkeys(inputs, float("inf"))
    for _ in range(rounds):
        for side, (codes, valid) in inputs.items():
            best[side] = min(best[side], _timed(lambda: kernel(codes, valid, features)))
    return {side: side * side / seconds for side, seconds in best.items()}


def settle():
    """Writes the page cache's dirty pages out before a timed part: the gigabytes a
    pipeline run leaves to write back would otherwise be written, by the OS's threads
    on the same cores, during whatever is timed next."""
    os.sync()


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(args, work, scenes, features, env, import_cpu, repeat, compiling,
            core_speed):
    """One round: the kernel on every scene, the pipeline on them, the kernel again,
    then the pipeline on the first scene alone and the other runs; prints them and
    returns the ratios. The kernel's figures are the mean of its two runs, right
    before and right after the pipeline's: a drift of the cores' speed that is even
    across the three cancels out. ``core_speed``: a :class:`CoreSpeed`, taken before
    and after each of the three runs."""
    paths = [scene.path for scene in scenes]
    pixels = sum(scene.pixels for scene in scenes)
    out = os.path.join(work, f"out{repeat}")
    settle()
    speeds = [core_speed()]
    kernel_runs = [kernels(scenes, features)]
    speeds.append(core_speed())
    settle()
    wall, cpu, system, own_rate, own_seconds, peak, written, times = pipeline_run(
        paths, out, args, env)
    speeds.append(core_speed())
    settle()
    kernel_runs.append(kernels(scenes, features))
    speeds.append(core_speed())
    # (first scene's wall, CPU, system; the other scenes' wall, CPU, system): means
    first_wall, first_cpu, first_system, rest_wall, rest_cpu, rest_system = (
        sum(values) / 2 for values in zip(*kernel_runs))
    if len(paths) > 1:  # the steady state's reference: the first scene alone
        one_wall, one_cpu, _, _, _, _, _, _ = pipeline_run(
            paths[:1], os.path.join(work, f"one{repeat}"), args, env)
    steps = dict.fromkeys(STEPS, 0.0)
    manifests = glob.glob(os.path.join(out, "*", "manifest.json"))
    if len(manifests) != len(paths):
        raise RuntimeError(f"the pipeline finished {len(manifests)} of {len(paths)} "
                           f"scenes: see {out}/errors.jsonl")
    for manifest in manifests:
        with open(manifest) as f:
            timings = json.load(f)["timings"]
        for step in STEPS:
            steps[step] += timings.get(step, 0.0)
    tiles_cpu, fitted_cpu = fitted_run(paths, os.path.join(work, f"fit{repeat}"), args,
                                       env)
    if len(paths) > 1:  # its steady state's reference: the first scene alone
        one_tiles_cpu, _ = fitted_run(paths[:1], os.path.join(work, f"fitone{repeat}"),
                                      args, env)
        free_cpu = kernel_free_run(paths, os.path.join(work, f"free{repeat}"), args, env)
        free_one_cpu = kernel_free_run(paths[:1], os.path.join(work, f"freeone{repeat}"),
                                       args, env)
    free_whole = kernel_free_whole_run(paths, os.path.join(work, f"freewhole{repeat}"),
                                       args, env)
    free_whole_one = kernel_free_whole_run(  # the first scene alone, for steady state
        paths[:1], os.path.join(work, f"freewholeone{repeat}"), args, env
    ) if len(paths) > 1 else None
    settle()
    alone = steps_alone(paths[0], args, os.path.join(work, f"alone{repeat}"))
    kernel_wall, kernel_cpu = first_wall + rest_wall, first_cpu + rest_cpu
    kernel_rate = pixels / kernel_wall
    beyond = (cpu - kernel_cpu) / pixels * 1e6
    beyond_no_start = (cpu - import_cpu - kernel_cpu) / pixels * 1e6
    walls = [k[0] + k[3] for k in kernel_runs]
    cpus = [k[1] + k[4] for k in kernel_runs]
    print(f"kernel (texture_map, this process, warm; the mean of a run right before the "
          f"pipeline's and one right after): {kernel_wall:.1f} s wall ({walls[0]:.1f} "
          f"before, {walls[1]:.1f} after), {kernel_cpu:.1f} CPU-s ({cpus[0]:.1f} before, "
          f"{cpus[1]:.1f} after): {kernel_rate / 1e6:.2f} M px/s, "
          f"{kernel_cpu / pixels * 1e6:.2f} CPU-us/px")
    print(f"pipeline (child): {wall:.1f} s wall ({own_seconds:.1f} s by its own summary, "
          f"{own_rate / 1e6:.2f} M px/s), {cpu:.1f} CPU-s ({system:.1f} of them in the "
          f"OS kernel: file writes and reads, page faults), peak RSS {peak:.2f} GiB")
    # Every page a file write dirties is memory for the page cache, and a page the
    # machine's host took back is supplied again at the writer's expense.
    print(f"  files written by it: {written / 2 ** 30:.2f} GiB, {written / pixels:.0f} "
          f"bytes per pixel (tiles, the mosaic's overviews, the COG)")
    print("  seconds per step, summed over scenes (manifests): " + ", ".join(
        f"{k.replace('_seconds', '')} {v:.1f}" for k, v in steps.items()))
    if times is not None:
        # What the whole run pays once and the steady state does not: the wait for the
        # first tile, and the last mosaic, which has the cores to itself.
        first, last, done = times
        print(f"  its timeline (progress lines, its own clock): first tile computed at "
              f"+{first:.1f} s (the model loaded, the first tile shape compiled, the "
              f"tile computed), last tile at +{last:.1f} s, last scene done at "
              f"+{done:.1f} s: {first + done - last:.1f} s of its {own_seconds:.1f} "
              f"before the first tile and after the last")
    print(f"pipeline / kernel pixel rate: {own_rate / kernel_rate:.0%} by its own "
          f"summary, {pixels / wall / kernel_rate:.0%} by the child's wall time")
    system_beyond = (system - first_system - rest_system) / pixels * 1e6
    print(f"CPU beyond the kernel: {beyond:.2f} CPU-us/px with start-up, "
          f"{beyond_no_start:.2f} without; in the OS kernel {system_beyond:.2f} (the "
          f"child's system CPU, start-up's included, less texture_map's "
          f"{first_system + rest_system:.1f} s)")
    kernel_us_px = kernel_cpu / pixels * 1e6
    reference_us_px = at_reference(beyond_no_start, kernel_us_px)
    print(f"  at the goals' reference speed (the kernel at {REFERENCE_KERNEL_US_PX} "
          f"CPU-us/px, here {kernel_us_px:.2f}): {reference_us_px:.2f} CPU-us/px without "
          f"start-up")
    # A difference between runs holds the cores' drift between them; the mean of the
    # two kernel runs cancels an even drift only.
    drift = max(speeds) / min(speeds) - 1
    print(f"the cores' speed (texture_map on a 512² image, warm, CPU-us/px): "
          f"{speeds[0]:.2f} before the first kernel run, {speeds[1]:.2f} before the "
          f"pipeline's, {speeds[2]:.2f} after it, {speeds[3]:.2f} after the second "
          f"kernel run: {drift:.0%} apart"
          + (" (more than 10 %: this round's ratios carry that much noise)"
             if drift > 0.1 else ""))
    scene_pixels = scenes[0].pixels
    alone_us_px = sum(alone.values()) / scene_pixels * 1e6
    mosaic_us_px = alone["mosaic"] / scene_pixels * 1e6
    print("steps alone on the first scene's tiles (this process, no Beam), CPU-s: "
          + ", ".join(f"{k} {v:.2f}" for k, v in alone.items())
          + f": {alone_us_px:.2f} CPU-us/px, of which the mosaic {mosaic_us_px:.2f}")
    fitted_us_px = (tiles_cpu - import_cpu - kernel_cpu) / pixels * 1e6
    print(f"right-fitted (--tile-accelerator: every mosaic after the run's last tile): "
          f"{tiles_cpu:.1f} CPU-s until the first mosaic started, {fitted_cpu:.1f} in "
          f"all; the tile steps (discovery, planning, read, texture, save; start-up "
          f"excluded) {fitted_us_px:.2f} CPU-us/px beyond the kernel: what the GPU "
          f"workers would spend; the mosaics {(fitted_cpu - tiles_cpu) / pixels * 1e6:.2f}"
          f" CPU-us/px on the job's own workers")
    figures = {"share": own_rate / kernel_rate, "us_px": beyond_no_start,
               "system_us_px": system_beyond, "files_b_px": written / pixels,
               "fitted_us_px": fitted_us_px,
               "peak_gib": peak, "steps_us_px": alone_us_px,
               "mosaic_us_px": mosaic_us_px, "core_drift": drift,
               "reference_us_px": reference_us_px}
    if len(paths) > 1:
        rest = pixels - scenes[0].pixels
        steady_rate = rest / (wall - one_wall)
        figures["steady_share"] = steady_rate / (rest / rest_wall)
        figures["steady_us_px"] = (cpu - one_cpu - rest_cpu) / rest * 1e6
        print(f"steady state (scenes 2..{len(paths)}: this run less the first scene "
              f"alone, {one_wall:.1f} s wall, {one_cpu:.1f} CPU-s): "
              f"{steady_rate / 1e6:.2f} M px/s, {figures['steady_share']:.0%} of the "
              f"kernel's rate on them; {figures['steady_us_px']:.2f} CPU-us/px beyond "
              f"the kernel, {figures['steady_us_px'] - alone_us_px:.2f} of them beyond "
              f"the steps alone (Beam, the tiles' halos and whatever the steps cost "
              f"more inside the pipeline)")
        figures["steady_reference_us_px"] = at_reference(figures["steady_us_px"],
                                                         rest_cpu / rest * 1e6)
        print(f"  at the goals' reference speed: "
              f"{figures['steady_reference_us_px']:.2f} CPU-us/px beyond the kernel")
        # The same difference for the right-fitted tile steps: start-up and the
        # kernel's compilation for the tiles' shape are paid once per worker.
        figures["fitted_steady_us_px"] = (tiles_cpu - one_tiles_cpu - rest_cpu) / rest * 1e6
        print(f"right-fitted steady state (the same scenes, the first scene's right-fitted "
              f"run alone took {one_tiles_cpu:.1f} CPU-s to its mosaic): "
              f"{figures['fitted_steady_us_px']:.2f} CPU-us/px beyond the kernel on the "
              f"GPU workers")
        # Scenes of other sizes than the first have tiles of other shapes, and each
        # new shape compiles the kernel once per worker: a long-lived worker has
        # compiled them before, so the steady state without it is what it sees.
        compile_wall = sum(seconds for seconds, _ in compiling[1:])
        compile_cpu = sum(cpu_seconds for _, cpu_seconds in compiling[1:])
        figures["warm_steady_share"] = (rest / (wall - one_wall - compile_wall)) / (
            rest / rest_wall)
        figures["warm_steady_us_px"] = figures["steady_us_px"] - compile_cpu / rest * 1e6
        figures["warm_fitted_steady_us_px"] = (figures["fitted_steady_us_px"]
                                               - compile_cpu / rest * 1e6)
        if compile_cpu > 0.1:
            print(f"  without compiling the kernel for the other scenes' tile shapes "
                  f"({compile_cpu:.1f} CPU-s, {compile_wall:.1f} s wall, measured in this "
                  f"process; a long-lived worker pays each shape once): "
                  f"{figures['warm_steady_share']:.0%} of the kernel's rate, "
                  f"{figures['warm_steady_us_px']:.2f} CPU-us/px beyond it; right-fitted "
                  f"{figures['warm_fitted_steady_us_px']:.2f}")
        # No kernel to subtract: the tile steps' own CPU, scenes 2..N.
        figures["free_steady_us_px"] = (free_cpu - free_one_cpu) / rest * 1e6
        print(f"right-fitted with a kernel that costs nothing (maps copied, as a GPU "
              f"hands them back): {free_cpu:.1f} CPU-s to the first mosaic, "
              f"{free_one_cpu:.1f} for the first scene alone: "
              f"{figures['free_steady_us_px']:.2f} CPU-us/px for the tile steps of "
              f"scenes 2..{len(paths)}")
    else:
        figures["steady_us_px"] = figures["warm_steady_us_px"] = beyond_no_start
        figures["steady_reference_us_px"] = figures["reference_us_px"]
        figures["fitted_steady_us_px"] = figures["warm_fitted_steady_us_px"] = fitted_us_px
        figures["free_steady_us_px"] = float("nan")  # needs a second scene
    figures.update(free_whole_figures(free_whole, free_whole_one, pixels,
                                      pixels - scenes[0].pixels, import_cpu))
    return figures


def free_whole_figures(whole, one, pixels, rest, import_cpu):
    """Prints and returns the feed rate of the kernel-free whole runs (``whole`` on
    every scene, ``one`` on the first alone or None; each (CPU, own seconds)):
    the pixel rate by the pipeline's own seconds and the cores it kept busy, start-up
    excluded, and the same for scenes 2..N (the difference of the two runs)."""
    cpu, own_seconds = whole
    cores = usable_cores()
    figures = {"free_whole_mpx_s": pixels / own_seconds / 1e6,
               "free_whole_busy": (cpu - import_cpu) / own_seconds}
    print(f"the whole pipeline on one worker with a kernel that costs nothing (the "
          f"mosaics included; maps copied from real ones): "
          f"{figures['free_whole_mpx_s']:.2f} M px/s over its own {own_seconds:.1f} s, "
          f"{figures['free_whole_busy']:.2f} of {cores} cores busy (start-up excluded)")
    if one is None:
        figures["free_whole_steady_mpx_s"] = figures["free_whole_mpx_s"]
        figures["free_whole_steady_busy"] = figures["free_whole_busy"]
        return figures
    # By the runs' own seconds: the children's start-up varies by more than a small
    # scene's run takes.
    seconds = own_seconds - one[1]
    if seconds <= 0:
        print(f"  steady state: the run on the first scene alone took as long "
              f"({one[1]:.1f} s): use more or larger scenes")
        figures["free_whole_steady_mpx_s"] = figures["free_whole_steady_busy"] = float("nan")
        return figures
    figures["free_whole_steady_mpx_s"] = rest / seconds / 1e6
    figures["free_whole_steady_busy"] = (cpu - one[0]) / seconds
    print(f"  steady state (this run less the first scene alone, its own {one[1]:.1f} s): "
          f"{figures['free_whole_steady_mpx_s']:.2f} M px/s, "
          f"{figures['free_whole_steady_busy']:.2f} of {cores} cores busy: "
          f"{figures['free_whole_steady_mpx_s'] / cores:.2f} M px/s per core, what "
          f"these cores feed a GPU that keeps up")
    return figures


def at_reference(us_px, kernel_us_px):
    """``us_px`` CPU-us/px beyond the kernel on cores where the kernel costs
    ``kernel_us_px``, scaled to :data:`REFERENCE_KERNEL_US_PX` (as if the work beyond
    the kernel sped up or slowed down with it)."""
    return us_px * REFERENCE_KERNEL_US_PX / kernel_us_px


def add_scene_arguments(parser, inputs_help=""):
    """The scenes' flags, shared with ``bench_profile``: ``--scenes`` and ``--size``
    (synthetic scenes) or ``--inputs`` (the user's rasters), and ``--tile``."""
    parser.add_argument("--scenes", type=int, default=None,
                        help="synthetic scenes to write (default 4)")
    parser.add_argument("--size", type=int, default=None,
                        help="their side in pixels (default 3072)")
    parser.add_argument("--inputs", nargs="+", metavar="RASTER", default=None,
                        help="your own local rasters instead (GeoTIFF/COG; every band, "
                             "as the pipeline's default" + inputs_help + ")")
    parser.add_argument("--tile", type=int, default=1024)


def check_scene_arguments(parser, args):
    """Checks and completes the flags of :func:`add_scene_arguments` (``--inputs``
    absolute, sorted as the pipeline sorts scenes, each once; the synthetic scenes'
    defaults) and says what the scenes are; stops with the parser's error where they
    are wrong."""
    if args.inputs is not None:
        if args.scenes is not None or args.size is not None:
            parser.error("--inputs takes the scenes as they are: leave out --scenes and "
                         "--size")
        # In the pipeline's order (it sorts scenes by URI), each once.
        args.inputs = sorted({os.path.abspath(path) for path in args.inputs})
        missing = [path for path in args.inputs if not os.path.isfile(path)]
        if missing:
            parser.error(f"--inputs: no such file: {', '.join(missing)}")
        return f"{len(args.inputs)} scene(s) given"
    args.scenes = 4 if args.scenes is None else args.scenes
    args.size = 3072 if args.size is None else args.size
    if args.scenes < 1 or args.size < 64:
        parser.error("--scenes must be >= 1 and --size >= 64")
    return f"{args.scenes} scenes of {args.size}² uint8"


def scene_paths(args, work):
    """The scenes' files: ``--inputs``, or the synthetic scenes written under
    ``work``."""
    if args.inputs is not None:
        return args.inputs
    paths = [os.path.join(work, f"scene{k}.tif") for k in range(args.scenes)]
    for k, path in enumerate(paths):
        write_scene(path, args.size, k)
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    add_scene_arguments(parser, "; at least two for the steady state")
    parser.add_argument("--cog-compression", default="zstd",
                        help="the pipeline's --cog-compression (default zstd, as the "
                             "pipeline's)")
    parser.add_argument("--tiles-per-call", type=int, default=1,
                        help="the pipeline's --tiles-per-call (default 1, as the "
                             "pipeline's; run_dataflow.sh asks 4 on GPU workers)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of pipeline and kernel runs; with more than one, "
                             "the median and range of each figure too (these shared "
                             "cores vary by 20-30 %% from one run to the next)")
    parser.add_argument("--skip-small", action="store_true",
                        help="skip the 512²/1024² texture_map comparison")
    args = parser.parse_args()
    what = check_scene_arguments(parser, args)
    if args.tiles_per_call < 1:
        parser.error("--tiles-per-call must be >= 1")
    header(f"feeding the kernel: {what}, default features, window 7, 32 levels, tile "
           f"{args.tile}, {args.tiles_per_call} tile(s) per call, COG "
           f"{args.cog_compression}")
    # Scenes and pipeline outputs (gigabytes at large sizes): removed at the end,
    # also when a run fails or is interrupted.
    with tempfile.TemporaryDirectory(prefix="bench-feed-", ignore_cleanup_errors=True) as work:
        run(args, work)


def run(args, work):
    """Every measurement of :func:`main`, with scenes and outputs under ``work``."""
    paths = scene_paths(args, work)
    # As the pipeline plans them (size, bands, quantization ranges); a raster it
    # cannot read stops here, with its reason.
    example_shapes = ExampleShapes()  # one pipeline process's, scene by scene
    scenes = [bench_scene(path, args, os.path.join(work, "plan", str(k)), f"scene{k}",
                          example_shapes) for k, path in enumerate(paths)]
    for scene in scenes:
        print(f"  {scene.path}: {scene.height}x{scene.width}, {len(scene.bands)} "
              f"band(s) of {scene.dtype}")
    pixels = sum(scene.pixels for scene in scenes)
    features = list(DEFAULT_FEATURES)
    warm, idle = fresh_memory_cost()
    print(f"memory from the OS: {warm:.2f} system-s/GiB to fill right after freeing as "
          f"much, {idle:.2f} after 5 s with it free"
          + (" (this machine hands idle memory back to its host: the children's system "
             "CPU below varies with it)" if idle > 3 * warm else ""))
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true")  # as run_local.sh
    # python -m pipeline's start-up, its main() aside (its imports, as it makes them)
    import_wall, import_cpu, _, import_peak, _, _ = run_child(
        [sys.executable, "-c", "import pipeline.__main__\n" + PRINT_PEAK], env)
    print(f"pixels (x bands): {pixels:,}; the pipeline's start-up (its imports, as "
          f"python -m pipeline makes them): {import_wall:.1f} s wall, {import_cpu:.1f} "
          f"CPU-s")
    if (importlib.util.find_spec("jax") is not None
            and keras.backend.backend() == "tensorflow"):
        # TensorFlow's own import pulls in jax where it is installed (a test dependency
        # here, absent from the worker image): the pipeline's figures include it.
        _, no_jax_cpu, _, no_jax_peak, _, _ = run_child(
            [sys.executable, "-c", "import sys\nsys.modules['jax'] = None\n"
             "import pipeline.__main__\n" + PRINT_PEAK], env)
        print(f"  jax is installed here and `import tensorflow` imports it: "
              f"{(float(import_peak) - float(no_jax_peak)) / 1024:.0f} MB of peak RSS and "
              f"{import_cpu - no_jax_cpu:.1f} CPU-s of start-up that a worker image "
              f"without jax does not pay")
    # The tiles' compilations first: a tile's chunks can have the shape of the
    # reference's pieces' (a 1024² core's and a 3072² scene's: 256 x 1024 and its
    # margin), which the pipeline's process still compiles once.
    compiling = compile_costs(scenes, features)
    warm_kernel(scenes, features)  # the kernel's run is warm: compiled on its shapes
    shapes = sorted({scene.tile_shape for scene in scenes})
    print(f"the pipeline's tiles: {len(shapes)} shape(s) ("
          + ", ".join(f"{h}x{w}" for h, w in shapes)
          + f"); compiling the kernel for them here: "
          + ", ".join(f"{cpu:.1f}" for _, cpu in compiling) + " CPU-s, scene by scene")
    # The kernel-free children hand back real maps (the mosaic compresses them).
    env[FREE_MAPS_VARIABLE] = os.path.join(work, "free_maps.npy")
    write_free_maps(scenes[0], features, env[FREE_MAPS_VARIABLE])
    core_speed = CoreSpeed(features)
    figures = []
    for repeat in range(args.repeat):
        if args.repeat > 1:
            print(f"-- repeat {repeat + 1} of {args.repeat}")
        figures.append(measure(args, work, scenes, features, env, import_cpu, repeat,
                               compiling, core_speed))
    rounds = {name: [f[name] for f in figures] for name in figures[0]}  # name: per round
    if args.repeat > 1:
        print(f"-- median (least-most) of {args.repeat} repeats: " + ", ".join(
            f"{name} {np.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
            for name, values in rounds.items()))
    # What a long-lived worker sees: its tile shapes compiled before (the steady state
    # itself where every scene's tiles have the first one's shape).
    steady = float(np.median(rounds["warm_steady_us_px"]))
    if steady <= 0:
        print("  the steady state is below this run's noise: use more or larger scenes")
        steady = float(np.median(rounds["us_px"]))
    for vcpus in (4, 8, 16):
        print(f"  a {vcpus}-vCPU worker's CPUs alone cap it near "
              f"{vcpus / max(steady, 1e-9):.0f} M px/s")
    # Right fitting (run_dataflow.sh --mosaic-machine-type) takes the mosaics off the
    # GPU workers: their share measured in the right-fitted run.
    fitted = float(np.median(rounds["warm_fitted_steady_us_px"]))
    free = float(np.median(rounds["free_steady_us_px"]))
    # The kernel-free run does the same tile steps without any kernel, so a subtracted
    # figure below it (or below zero) is the noise of subtracting a kernel that ran in
    # another process minutes apart, and no worker rate is drawn from it.
    if fitted > 0 and not fitted < free:  # free is NaN with one scene
        rate = f", an 8-vCPU one near {8 / fitted:.0f} M px/s"
    else:
        where = ("at or below zero" if fitted <= 0 else
                 "below what the same steps cost with no kernel at all (next line)")
        rate = f": {where}, the noise of subtracting a kernel run minutes apart"
    print(f"  with the mosaics on other workers (--mosaic-machine-type), steady state: "
          f"{fitted:.2f} CPU-us/px on the GPU workers with the CPU kernel subtracted"
          f"{rate} (the steady state less the mosaic alone: "
          f"{steady - float(np.median(rounds['mosaic_us_px'])):.2f})")
    if free > 0:
        print(f"  measured with a kernel that costs nothing instead (no kernel "
              f"subtracted): {free:.2f} CPU-us/px, an 8-vCPU GPU worker near "
              f"{8 / free:.0f} M px/s if its GPU keeps up")
    # By the clock rather than from CPU seconds: scenes ready one after another, a
    # mosaic's single-threaded parts and Beam's own scheduling show here.
    fed = float(np.median(rounds["free_whole_steady_mpx_s"]))
    busy = float(np.median(rounds["free_whole_steady_busy"]))
    cores = usable_cores()
    if np.isfinite(fed):
        print(f"  measured by the clock with a kernel that costs nothing, everything on "
              f"one worker: {fed:.2f} M px/s on {cores} cores ({busy:.2f} busy), "
              f"{fed / cores:.2f} M px/s per core; at that rate per vCPU an 8-vCPU GPU "
              f"worker near {8 * fed / cores:.0f} M px/s (the scaling to more cores and "
              f"Dataflow's harness threads not measured)")
    if not args.skip_small:
        settle()
        rates = small_rates(features)
        print(f"texture_map 512² vs 1024² pixel rate (warm): {rates[512] / 1e6:.2f} vs "
              f"{rates[1024] / 1e6:.2f} M px/s: {rates[512] / rates[1024]:.2f}x")


if __name__ == "__main__":
    main()
