#!/usr/bin/env bash
# Sets up .venv if needed, then runs the texture pipeline on the DirectRunner.
#   ./run_local.sh                       # the built-in sample -> ./output
#   ./run_local.sh --input 'data/*.tif' --output out [other flags]
# Every argument is passed on quoted, as given.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
bash scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
has_input=0
for arg in "$@"; do
  case "$arg" in --input|--input=*) has_input=1 ;; esac
done
if [ "$has_input" -eq 0 ]; then
  echo "[run_local] no --input: using the built-in sample in ./sample_data"
  .venv/bin/python -c 'from pipeline.sample import make_sample; make_sample("sample_data")'
  set -- --input sample_data "$@"
fi
# Use every core unless the caller chose (later flags win).
exec .venv/bin/python -m pipeline --direct_num_workers=0 \
  --direct_running_mode=multi_threading "$@"
