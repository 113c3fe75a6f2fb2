"""Checks, at image build time, what can be checked of the GPU set-up without a GPU.

TensorFlow's build info names the CUDA and cuDNN versions it was compiled against;
the NVIDIA libraries installed beside it (the wheels ``tensorflow[and-cuda]`` brings)
must match them, or TensorFlow skips the GPU at run time and computes on the CPU
with a single log line to show for it. Run in the Dockerfile:

    python3 dataflow/check_gpu_image.py --tensorflow 2.21.0 --beam 2.77.0

It also checks that the folders where Dataflow mounts the host's NVIDIA driver
(``/usr/local/nvidia/lib64`` for ``libcuda.so.1``, ``/usr/local/nvidia/bin``) are on
the image's loader path and PATH: the wheels never carry the driver, and without
them TensorFlow finds no GPU on a GPU worker.

Exits 1 with every problem found; prints what it checked otherwise.
"""

from __future__ import annotations

import argparse
import glob
import importlib.metadata
import os
import sys
from typing import Dict, List, Mapping, Optional

# The wheels that carry the libraries TensorFlow loads, and the library file each
# must hold (by major version).
CUDA_RUNTIME = ("nvidia-cuda-runtime-cu12", "nvidia/cuda_runtime/lib/libcudart.so.{major}")
CUDNN = ("nvidia-cudnn-cu12", "nvidia/cudnn/lib/libcudnn.so.{major}")
# Where Dataflow mounts the host's NVIDIA driver in the worker container.
DRIVER_LIBRARIES = "/usr/local/nvidia/lib64"
DRIVER_BINARIES = "/usr/local/nvidia/bin"


def loader_path_problems(environ: Mapping[str, str]) -> List[str]:
    """What keeps the driver Dataflow mounts out of reach: its library folder missing
    from LD_LIBRARY_PATH, its binaries' folder missing from PATH."""
    out = []
    for variable, folder in (("LD_LIBRARY_PATH", DRIVER_LIBRARIES),
                             ("PATH", DRIVER_BINARIES)):
        entries = [e.rstrip("/") for e in environ.get(variable, "").split(":") if e]
        if folder not in entries:
            out.append(f"{variable} lacks {folder}, where Dataflow mounts the NVIDIA "
                       f"driver: TensorFlow would find no GPU (set it with ENV in the "
                       f"Dockerfile)")
    return out


def _numbers(version: str) -> List[int]:
    out = []
    for part in str(version).split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return out


def problems(build: Mapping[str, object], installed: Mapping[str, Optional[str]],
             library_present, versions: Mapping[str, str],
             expected: Mapping[str, str]) -> List[str]:
    """Every mismatch between TensorFlow's build and what the image holds.

    Args:
      build: ``tf.sysconfig.get_build_info()``.
      installed: wheel name -> installed version (None when missing).
      library_present: callable(relative path pattern) -> bool.
      versions: {"tensorflow": ..., "apache_beam": ..., "python": "3.11"} found.
      expected: the same keys, as pinned.
    """
    out = [f"{name} is {versions.get(name)}, the image pins {want}"
           for name, want in expected.items() if versions.get(name) != want]
    if not build.get("is_cuda_build"):
        return out + ["this TensorFlow is not a CUDA build (tensorflow-cpu, or a wheel "
                      "without GPU support): install tensorflow[and-cuda]"]
    for (wheel, library), key, rule in ((CUDA_RUNTIME, "cuda_version", "minor"),
                                        (CUDNN, "cudnn_version", "same major")):
        built = _numbers(build.get(key, ""))
        have = installed.get(wheel)
        if not built:
            out.append(f"TensorFlow's build info names no {key}")
            continue
        if have is None:
            out.append(f"{wheel} is not installed; TensorFlow was built for {key} "
                       f"{build[key]}")
            continue
        found = _numbers(have)
        ok = found[:1] == built[:1] and (rule != "minor" or found[1:2] >= built[1:2])
        if not ok:
            out.append(f"{wheel} {have} does not serve TensorFlow's {key} {build[key]} "
                       f"({'same major, minor at least' if rule == 'minor' else rule})")
        if not library_present(library.format(major=built[0])):
            out.append(f"{library.format(major=built[0])} is missing from {wheel}")
    return out


def _installed(wheels) -> Dict[str, Optional[str]]:
    out = {}
    for wheel in wheels:
        try:
            out[wheel] = importlib.metadata.version(wheel)
        except importlib.metadata.PackageNotFoundError:
            out[wheel] = None
    return out


def _library_present(relative: str) -> bool:
    return any(glob.glob(os.path.join(folder, relative + "*")) for folder in sys.path
               if os.path.isdir(folder))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensorflow", required=True, help="pinned TensorFlow version")
    parser.add_argument("--beam", required=True, help="pinned Apache Beam version")
    parser.add_argument("--python", default=None, help="the Beam SDK image's Python "
                        "(major.minor); default: not checked")
    args = parser.parse_args(argv)
    import apache_beam
    import tensorflow as tf

    build = dict(tf.sysconfig.get_build_info())
    versions = {"tensorflow": tf.__version__, "apache_beam": apache_beam.__version__,
                "python": "%d.%d" % sys.version_info[:2]}
    expected = {"tensorflow": args.tensorflow, "apache_beam": args.beam}
    if args.python:
        expected["python"] = args.python
    installed = _installed([CUDA_RUNTIME[0], CUDNN[0]])
    found = loader_path_problems(os.environ) + problems(build, installed,
                                                        _library_present, versions,
                                                        expected)
    print(f"TensorFlow {tf.__version__} built for CUDA {build.get('cuda_version')}, "
          f"cuDNN {build.get('cudnn_version')}; installed: {installed}; {versions}")
    for problem in found:
        print(f"GPU image check failed: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
