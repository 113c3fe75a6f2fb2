#!/usr/bin/env bash
# Sets up .venv if needed, then runs the test suite: everything on the TensorFlow
# backend, and the glcm/ core again on the JAX backend. Three passes run at once
# (TensorFlow: the pipeline and cloud tests; TensorFlow: the rest; JAX: tests/glcm):
# on two cores each fills the idle gaps of the others (the suite is CPU-bound, and
# one pass alone leaves a core idle while it starts processes or waits on them).
# The first pass reports as it runs; the other two when all are done.
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
names=(tf-pipeline tf-rest jax)
pids=()
# Interrupted or done, no pass outlives the script.
trap 'for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$scratch"' EXIT
run_pass() {  # name backend paths... (the first pass writes to the terminal)
  local name="$1" backend="$2" log="$scratch/$1.log"
  shift 2
  if [ "${#pids[@]}" -eq 0 ]; then log=/dev/stdout; fi
  KERAS_BACKEND="$backend" .venv/bin/python -m pytest -q -p no:cacheprovider \
    --basetemp="$scratch/$name" "$@" > "$log" 2>&1 &
  pids+=($!)
}
echo "== three passes at once: KERAS_BACKEND=tensorflow (tests/pipeline, tests/cloud;" \
     "the other tests), KERAS_BACKEND=jax (tests/glcm)"
run_pass tf-pipeline tensorflow tests/pipeline tests/cloud "$@"
run_pass tf-rest tensorflow tests --ignore=tests/pipeline --ignore=tests/cloud "$@"
run_pass jax jax tests/glcm "$@"
statuses=()
for i in "${!pids[@]}"; do
  status=0
  wait "${pids[$i]}" || status=$?
  statuses+=("$status")
  echo "== ${names[$i]} (exit $status)"
  if [ "$i" -gt 0 ]; then cat "$scratch/${names[$i]}.log"; fi
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
