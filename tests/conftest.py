"""Shared fixtures. Backend: set KERAS_BACKEND before running pytest (run_tests.sh
runs the glcm tests under both TensorFlow and JAX)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
