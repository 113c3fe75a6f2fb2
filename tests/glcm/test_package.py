"""Process-wide settings made by ``import glcm``."""

import os
import subprocess
import sys

import keras
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Prints the setting, then whether TensorFlow's CPU allocator keeps statistics: only
# its caching (BFC) allocator does, the default one raises ValueError.
PROBE = """
import os
import numpy as np
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


def run_probe(setting=None):
    """(TF_CPU_ALLOCATOR_USE_BFC after ``import glcm``, allocator) in a fresh process."""
    environment = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=REPO)
    environment.pop("TF_CPU_ALLOCATOR_USE_BFC", None)  # this process imported glcm
    if setting is not None:
        environment["TF_CPU_ALLOCATOR_USE_BFC"] = setting
    result = subprocess.run([sys.executable, "-c", PROBE], env=environment,
                            capture_output=True, text=True, timeout=300, check=True)
    return result.stdout.split()[-2:]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow's allocator: checked in the TensorFlow pass")
def test_import_selects_tensorflow_caching_cpu_allocator():
    assert run_probe() == ["true", "caching"]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow's allocator: checked in the TensorFlow pass")
def test_an_explicit_allocator_setting_is_kept():
    assert run_probe("false") == ["false", "default"]
