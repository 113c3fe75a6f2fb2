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


def run_probe(first_import="glcm", setting=None):
    """(TF_CPU_ALLOCATOR_USE_BFC, allocator) in a fresh process that imports
    ``first_import``, then glcm, and computes a GLCM."""
    environment = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=REPO)
    environment.pop("TF_CPU_ALLOCATOR_USE_BFC", None)  # this process imported glcm
    if setting is not None:
        environment["TF_CPU_ALLOCATOR_USE_BFC"] = setting
    result = subprocess.run([sys.executable, "-c", PROBE, first_import], env=environment,
                            capture_output=True, text=True, timeout=300, check=True)
    return result.stdout.split()[-2:]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow's allocator: checked in the TensorFlow pass")
def test_import_selects_tensorflow_caching_cpu_allocator():
    assert run_probe() == ["true", "caching"]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow's allocator: checked in the TensorFlow pass")
def test_an_explicit_allocator_setting_is_kept():
    assert run_probe(setting="false") == ["false", "default"]
    assert run_probe("pipeline.build", setting="true") == ["true", "caching"]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow's allocator: checked in the TensorFlow pass")
@pytest.mark.parametrize("first_import", ["pipeline.build", "transforms.compute"])
def test_pipeline_keeps_the_default_allocator(first_import):
    # Memory a worker's caching allocator keeps raised the 16384² peak RSS by 0.2 GiB.
    assert run_probe(first_import) == ["false", "default"]
