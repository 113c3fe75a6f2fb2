#!/usr/bin/env bash
# Sets up .venv if needed, then runs the test suite: everything on the TensorFlow
# backend, and the glcm/ core again on the JAX backend. The two passes run at once
# (on two cores this fills the idle gaps of the other: the suite is CPU-bound);
# the JAX pass's report is printed when both are done.
# Extra arguments go to both passes (e.g. ./run_tests.sh -k texture); a pass whose
# tests they all leave out is not a failure, as long as the other ran tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
bash scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL=2
# Tests must never reach real Google Cloud credentials.
unset GOOGLE_APPLICATION_CREDENTIALS
scratch="$(mktemp -d)"
KERAS_BACKEND=jax .venv/bin/python -m pytest -q -p no:cacheprovider \
  --basetemp="$scratch/jax" tests/glcm "$@" > "$scratch/jax.log" 2>&1 &
jax_pid=$!
# Interrupted or done, the JAX pass does not outlive the script.
trap 'kill "$jax_pid" 2>/dev/null || true; rm -rf "$scratch"' EXIT
echo "== KERAS_BACKEND=tensorflow: all tests (KERAS_BACKEND=jax: tests/glcm, at the same time)"
tf_status=0
KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q -p no:cacheprovider \
  --basetemp="$scratch/tf" tests "$@" || tf_status=$?
jax_status=0
wait "$jax_pid" || jax_status=$?
echo "== KERAS_BACKEND=jax: tests/glcm"
cat "$scratch/jax.log"
# The first failure's status; pytest's 5 (nothing collected) only when neither pass
# collected anything.
for status in "$jax_status" "$tf_status"; do
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
done
if [ "$jax_status" -eq 0 ] || [ "$tf_status" -eq 0 ]; then exit 0; fi
exit 5
