#!/usr/bin/env bash
# Sets up .venv if needed, then runs the test suite: everything on the TensorFlow
# backend, and the glcm/ core again on the JAX backend.
# Extra arguments go to pytest (e.g. ./run_tests.sh -k texture).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
bash scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL=2
# Tests must never reach real Google Cloud credentials.
unset GOOGLE_APPLICATION_CREDENTIALS
echo "== KERAS_BACKEND=jax: tests/glcm"
KERAS_BACKEND=jax .venv/bin/python -m pytest -q -p no:cacheprovider tests/glcm "$@"
echo "== KERAS_BACKEND=tensorflow: all tests"
KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
