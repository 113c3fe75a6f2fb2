"""TensorFlow's CPU allocator, as chosen by ``import glcm`` and by the pipeline."""

import os
import subprocess
import sys

import keras
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prints the setting, then whether TensorFlow's CPU allocator keeps statistics: only
# its caching (BFC) allocator does, the default one raises ValueError.
PROBE = """
import os
import sys
import numpy as np
__import__(sys.argv[1])
import glcm
import tensorflow as tf
glcm.graycomatrix(np.zeros((1, 8, 8), np.uint8), [1], [0], 8)
print(os.environ["TF_CPU_ALLOCATOR_USE_BFC"])
try:
    print("caching" if tf.config.experimental.get_memory_info("CPU:0")["peak"] > 0
          else "no-peak")
except ValueError:
    print("default")
"""


def run_probe(first_import="glcm", **settings):
    """(TF_CPU_ALLOCATOR_USE_BFC, allocator) in a fresh process that imports
    ``first_import``, then glcm, and computes a GLCM. ``settings``: environment
    variables of the process (none of the allocator ones otherwise)."""
    environment = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=REPO)
    for name in ("TF_CPU_ALLOCATOR_USE_BFC", "GLCM_DEFAULT_TF_ALLOCATOR"):
        environment.pop(name, None)  # this process imported glcm
    environment.update(settings)
    result = subprocess.run([sys.executable, "-c", PROBE, first_import], env=environment,
                            capture_output=True, text=True, timeout=300, check=True)
    return result.stdout.split()[-2:]


TENSORFLOW_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="TensorFlow's allocator: checked in the TensorFlow pass")


@TENSORFLOW_ONLY
def test_import_selects_tensorflow_caching_cpu_allocator():
    assert run_probe() == ["true", "caching"]


@TENSORFLOW_ONLY
def test_an_explicit_allocator_setting_is_kept():
    assert run_probe(TF_CPU_ALLOCATOR_USE_BFC="false") == ["false", "default"]
    assert run_probe("pipeline.build", TF_CPU_ALLOCATOR_USE_BFC="true") == ["true", "caching"]


@TENSORFLOW_ONLY
def test_pipeline_keeps_the_default_allocator():
    # Memory a worker's caching allocator keeps raised the 16384² peak RSS by 0.2 GiB.
    # transforms/__init__ decides: Dataflow workers may first import transforms.compute.
    assert run_probe("transforms.compute") == ["false", "default"]


@TENSORFLOW_ONLY
def test_pipeline_started_by_a_process_that_imported_glcm_keeps_the_default():
    # What a child of a process that imported glcm inherits (a benchmark, a test, a
    # user's driver script launching `python -m pipeline`).
    inherited = {"TF_CPU_ALLOCATOR_USE_BFC": "true", "GLCM_DEFAULT_TF_ALLOCATOR": "1"}
    assert run_probe("pipeline.build", **inherited) == ["false", "default"]
