#!/usr/bin/env bash
# Sets up .venv if needed, then runs the test suite: everything on the TensorFlow
# backend, and the glcm/ core again on the JAX backend, in two processes at a time
# (the suite is CPU-bound: on two cores each fills the other's idle gaps, and a third
# at once costs more CPU than it saves). In the foreground, reporting as it runs:
# TensorFlow, the pipelines, transforms, cloud, xarray/Dask and examples tests; beside
# it, one after the other: JAX, tests/glcm, then TensorFlow, the other tests (their
# reports at the end). The split keeps the two sides about equally long.
# Extra arguments go to every pass (e.g. ./run_tests.sh -k texture); a pass whose
# tests they all leave out is not a failure, as long as another ran tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
bash scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL=2
# Tests must never reach real Google Cloud credentials.
unset GOOGLE_APPLICATION_CREDENTIALS
scratch="$(mktemp -d)"
foreground=(tests/pipeline tests/transforms tests/cloud tests/xarray tests/test_examples.py)
run_pytest() {  # name backend pytest-arguments...
  local name="$1" backend="$2"
  shift 2
  KERAS_BACKEND="$backend" .venv/bin/python -m pytest -q -p no:cacheprovider \
    --basetemp="$scratch/$name" "$@"
}
run_pass() {  # as run_pytest, its report and status kept under $scratch for later
  local status=0
  echo "== KERAS_BACKEND=$2: ${*:3}" > "$scratch/$1.log"
  run_pytest "$@" >> "$scratch/$1.log" 2>&1 || status=$?
  echo "$status" > "$scratch/$1.status"
}
( run_pass jax jax tests/glcm "$@"
  run_pass tf-rest tensorflow tests "${foreground[@]/#/--ignore=}" "$@" ) &
beside=$!
# Interrupted or done, the passes beside do not outlive the script.
trap 'kill "$beside" 2>/dev/null || true; pkill -P "$beside" 2>/dev/null || true; rm -rf "$scratch"' EXIT
echo "== KERAS_BACKEND=tensorflow: ${foreground[*]}" \
     "(beside it: KERAS_BACKEND=jax tests/glcm, then KERAS_BACKEND=tensorflow the other tests)"
status=0
run_pytest tf-foreground tensorflow "${foreground[@]}" "$@" || status=$?
statuses=("$status")
wait "$beside" || true
for name in jax tf-rest; do
  cat "$scratch/$name.log"
  statuses+=("$(cat "$scratch/$name.status" 2>/dev/null || echo 1)")
done
# The first failure's status; pytest's 5 (nothing collected) only when no pass
# collected anything.
for status in "${statuses[@]}"; do
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
done
for status in "${statuses[@]}"; do
  if [ "$status" -eq 0 ]; then exit 0; fi
done
exit 5
