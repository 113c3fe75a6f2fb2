#!/usr/bin/env bash
# Sets up .venv if needed, then runs the texture pipeline on the DirectRunner.
#   ./run_local.sh                       # the built-in sample -> ./output
#   ./run_local.sh --input 'data/*.tif' --output out [other flags]
#   ./run_local.sh -v ...                # also the libraries' own log lines
# Every argument is passed on quoted, as given.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
bash scripts/setup_venv.sh
has_input=0
verbose=0
for arg in "$@"; do
  case "$arg" in
    --input|--input=*) has_input=1 ;;
    -v|--verbose|--verbose=true) verbose=1 ;;
  esac
done
if [ "$has_input" -eq 0 ]; then
  echo "[run_local] no --input: using the built-in sample in ./sample_data"
  .venv/bin/python -c 'from pipeline.sample import make_sample; make_sample("sample_data")'
  set -- --input sample_data "$@"
fi
# Process start is where settings of this kind belong (the library changes none):
# TensorFlow's caching CPU allocator (without it every tile's buffers come back as
# fresh pages: 12-16 % more CPU and a higher peak RSS in the pipeline, measured in
# docs/performance.md), and its C++ start-up lines hidden unless -v.
export TF_CPU_ALLOCATOR_USE_BFC="${TF_CPU_ALLOCATOR_USE_BFC:-true}"
command=(.venv/bin/python -m pipeline --direct_num_workers=0
         --direct_running_mode=multi_threading "$@")  # later flags win
if [ "$verbose" -eq 1 ]; then
  exec "${command[@]}"
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
# A few TensorFlow lines are written before its log level applies: filtered here.
exec "${command[@]}" 2> >(grep --line-buffered -vE \
  '^(WARNING: All log messages before absl::InitializeLog|[IWE][0-9]{4} [0-9:. ]+)' >&2)
