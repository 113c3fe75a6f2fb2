"""Timing helpers shared by the benchmarks."""

import os
import platform
import re
import resource
import shlex
import sys
import time

import keras


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
    own VmHWM, not the benchmark's pages it was forked with), in GiB."""
    found = re.search(r"^peak memory \(this process\): ([\d.]+) GiB$", stdout, re.M)
    if found is None:
        raise RuntimeError("the pipeline's summary has no peak memory line")
    return float(found.group(1))


def header(title):
    print(f"# {title}")
    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable] + sys.argv)}")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.platform()}; "
          f"python {platform.python_version()}; keras {keras.__version__} "
          f"backend {keras.backend.backend()}")
