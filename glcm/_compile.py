"""Compiles the heavy kernels with the backend's JIT when called eagerly (op by op
they are several times slower). Inside a caller's own ``tf.function`` or
``jax.jit`` the function is traced into the caller's program instead.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np

# On TensorFlow, compiling costs time for every new shape: worth it for large inputs
# only. JAX compiles every eager op per shape anyway, so one compiled call is cheaper.
MIN_COMPILED_SIZE = 1 << 20


def is_tracing(args) -> bool:
    """True while the backend traces (tf.function graph, JAX tracer)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # backend check: only when TF is the backend

        return not tf.executing_eagerly()
    if backend == "jax":
        import jax

        return any(isinstance(a, jax.core.Tracer) for a in args)
    return True  # other backends: run op by op


def is_symbolic(arrays) -> bool:
    """True for Keras symbolic inputs or while the backend traces: no eager call."""
    return any(isinstance(a, keras.KerasTensor) for a in arrays) or is_tracing(arrays)


def jit_when_eager(fn=None, *, min_size=MIN_COMPILED_SIZE):
    """Decorator: ``fn(*arrays, **static)`` runs compiled once per static config.

    ``static`` keyword values must be hashable; they are baked into the compiled
    function. Shapes that change cause a retrace, as the backends do. On TensorFlow,
    inputs smaller than ``min_size`` elements run op by op.
    """
    if fn is None:
        return functools.partial(jit_when_eager, min_size=min_size)
    cache = {}
    lock = threading.Lock()

    @functools.wraps(fn)
    def wrapper(*arrays, **static):
        if is_symbolic(arrays):
            return fn(*arrays, **static)
        backend = keras.backend.backend()
        size = max(int(np.prod(a.shape)) for a in arrays if a is not None)
        if backend == "tensorflow" and size < min_size:
            return fn(*arrays, **static)
        key = (backend, tuple(sorted(static.items())))
        with lock:  # threads (e.g. Beam's) share one compiled function per config
            compiled = cache.get(key)
            if compiled is None:
                compiled = cache[key] = _compile(fn, backend, static)
        return compiled(*arrays)

    wrapper.compiled_functions = cache  # static config -> compiled function (tests)
    return wrapper


def _compile(fn, backend, static):
    bound = functools.partial(fn, **static)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(bound, jit_compile=True, autograph=False)
    import jax

    return jax.jit(bound)


def chunk_threads(threads=None) -> int:
    """How many chunks an eager call computes at once.

    Default: the usable CPU cores when TensorFlow computes on the CPU (a compiled
    loop runs on one core), else 1: an accelerator wants few, large chunks, and on
    JAX, XLA:CPU executions started from several threads at once were seen to hang
    (jaxlib 0.10.2, 2 cores).

    Raises:
      ValueError: ``threads`` < 1, or > 1 on the JAX backend.
    """
    backend = keras.backend.backend()
    if threads is None:
        if backend != "tensorflow" or _default_device_platform() != "cpu":
            return 1
        return usable_cores()
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if threads > 1 and backend == "jax":
        raise ValueError(f"threads={threads}: on the JAX backend chunks run one at a time "
                         "(leave threads unset, or use the TensorFlow backend)")
    return threads


# cgroup v2, then v1: a container's CPU quota (e.g. a Kubernetes limit) while the
# process still sees every core of the host.
CGROUP_CPU_FILES = (("/sys/fs/cgroup/cpu.max",),
                    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                     "/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


def usable_cores(cgroup_files=CGROUP_CPU_FILES) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota
    (rounded down, at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    for files in cgroup_files:
        try:
            fields = " ".join(_read_text(f) for f in files).split()
            quota, period = int(fields[0]), int(fields[1])
        except (OSError, ValueError, IndexError):  # absent, or "max": no quota
            continue
        if quota > 0 and period > 0:
            return max(1, min(cores, quota // period))
    return max(1, cores)


def _read_text(path):
    with open(path) as f:
        return f.read()


# Counting split into independent scatter-adds over groups of images: XLA:CPU runs
# independent operations of one program concurrently, and smaller outputs stay in
# cache (figures per number of parts: docs/performance.md, "graycomatrix").
MIN_SCATTER_PARTS = 4
MAX_SCATTER_PARTS = 8


def scatter_parts(arrays, batch) -> int:
    """Into how many independent scatter-adds to split counting over ``batch`` images
    in an eager call on the CPU: one per usable core, at least
    :data:`MIN_SCATTER_PARTS` and at most :data:`MAX_SCATTER_PARTS` (never more than
    the images); 1 while tracing, for an unknown batch size, or on an accelerator."""
    if not isinstance(batch, int) or batch < 2 or is_symbolic(arrays):
        return 1
    if _default_device_platform() != "cpu":
        return 1
    return min(batch, MAX_SCATTER_PARTS, max(MIN_SCATTER_PARTS, usable_cores()))


def float64_available() -> bool:
    """Whether float64 arrays stay float64: TensorFlow yes; JAX only with
    ``jax_enable_x64`` (otherwise it makes them float32)."""
    if keras.backend.backend() == "jax":
        import jax

        return bool(jax.config.read("jax_enable_x64"))
    return True


def map_in_threads(fn, items, threads):
    """``[fn(item) for item in items]`` with ``threads`` threads (from
    :func:`chunk_threads`: more than one only where TensorFlow computes on the CPU).

    TensorFlow's device scopes belong to the thread that entered them, so the workers
    enter the CPU scope themselves; otherwise they would use the default device, a
    GPU where one is visible, even inside the caller's ``tf.device("/CPU:0")``.
    """
    if threads == 1:
        return [fn(item) for item in items]

    def on_cpu(item):
        with _cpu_scope():
            return fn(item)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(on_cpu, items))


def _cpu_scope():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.device("/CPU:0")
    return contextlib.nullcontext()


def on_accelerator() -> bool:
    """True where a new array lands on a GPU or TPU (honours TF device scopes)."""
    return _default_device_platform() != "cpu"


def _default_device_platform() -> str:
    """"cpu" or "gpu"/"tpu": where a new array lands (honours TF device scopes)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        device = (tf.zeros(()) + 0).device.upper()
        return "cpu" if ":CPU:" in device else "gpu"
    if backend == "jax":
        import jax

        return jax.numpy.zeros(()).devices().pop().platform
    return "cpu"
