#!/usr/bin/env bash
# Sets up .venv if needed, then runs the test suite: everything on the TensorFlow
# backend, and the glcm/ core again on the JAX backend. Three pytest processes run at
# once: the pipelines (and the cloud, xarray and example tests) on TensorFlow, shown
# as they go; the core and the transforms on TensorFlow; the core on JAX. The suite
# is CPU-bound and each process alone leaves a core idle part of the time; the other
# two reports are printed when all are done.
# Extra arguments go to every process (e.g. ./run_tests.sh -k texture); a process
# whose tests they all leave out is not a failure, as long as another one ran tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
bash scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL=2
# Tests must never reach real Google Cloud credentials.
unset GOOGLE_APPLICATION_CREDENTIALS
scratch="$(mktemp -d)"
pids=()
# Interrupted or done, no process outlives the script.
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$scratch"' EXIT

# run_pass NAME BACKEND PATH...: one pytest process, in the background, its report in
# $scratch/NAME.log (extra arguments of the script appended).
run_pass() {
  local name=$1 backend=$2
  shift 2
  KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -p no:cacheprovider \
    --basetemp="$scratch/$name" "$@" > "$scratch/$name.log" 2>&1 &
  pids+=($!)
}
run_pass core-jax jax tests/glcm "$@"
run_pass core-tf tensorflow tests/glcm tests/transforms tests/test_layout.py "$@"
names=(core-jax core-tf)
labels=("KERAS_BACKEND=jax: tests/glcm"
        "KERAS_BACKEND=tensorflow: tests/glcm, tests/transforms, tests/test_layout.py")
echo "== KERAS_BACKEND=tensorflow: tests/pipeline, tests/cloud, tests/xarray, tests/test_examples.py"
echo "   (at the same time: tests/glcm, tests/transforms, tests/test_layout.py on TensorFlow; tests/glcm on JAX)"
statuses=()
status=0
KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q -p no:cacheprovider \
  --basetemp="$scratch/pipelines" tests/pipeline tests/cloud tests/xarray \
  tests/test_examples.py "$@" || status=$?
statuses+=("$status")
for k in "${!names[@]}"; do
  status=0
  wait "${pids[$k]}" || status=$?
  statuses+=("$status")
  echo "== ${labels[$k]}"
  cat "$scratch/${names[$k]}.log"
done
# The first failure's status; pytest's 5 (nothing collected) only when no process
# collected anything.
for status in "${statuses[@]}"; do
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
done
for status in "${statuses[@]}"; do
  if [ "$status" -eq 0 ]; then exit 0; fi
done
exit 5
