"""Timing helpers shared by the benchmarks."""

import os
import platform
import re
import resource
import shlex
import sys
import time

import keras
import numpy as np


def best_of(fn, repeat=3):
    """Best wall time of ``repeat`` calls (after one warm-up call that may compile)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def pipeline_peak_gib(stdout):
    """The peak memory ``python -m pipeline`` reports at the end of its summary (its
    own VmHWM, not the benchmark's pages it was forked with), in GiB; NaN where it
    prints none (its /proc does not say: some sandboxed kernels)."""
    found = re.search(r"^peak memory \(this process\): ([\d.]+) GiB$", stdout, re.M)
    return float("nan") if found is None else float(found.group(1))


def fresh_memory_cost(gib=2, idle=5.0):
    """System CPU-seconds per GiB to fill memory freshly taken from the OS: (right after
    as much was freed, after ``idle`` seconds with it freed).

    On a virtual machine that hands free memory back to its host (virtio free page
    reporting, a balloon) the second is many times the first: the host supplies the
    pages again on first touch, and the guest's kernel charges that to whichever
    process touches them. Every figure of a child process's system CPU then depends on
    how much of the memory it gets was handed back before it ran.
    """
    def fill():
        start = os.times().system
        block = np.ones(gib * 2 ** 27)  # float64: gib GiB, every page written
        seconds = os.times().system - start
        del block
        return seconds / gib

    fill()
    right_after = fill()
    time.sleep(idle)
    return right_after, fill()


def header(title):
    print(f"# {title}")
    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable] + sys.argv)}")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.platform()}; "
          f"python {platform.python_version()}; keras {keras.__version__} "
          f"backend {keras.backend.backend()}")
