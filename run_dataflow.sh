#!/usr/bin/env bash
# Runs the texture pipeline on Dataflow with GPU workers, or schedules it.
#   ./run_dataflow.sh --help                      # every option
#   ./run_dataflow.sh --dry-run --project P --region R --bucket gs://B --input 'gs://...'
# The launcher itself is Python (pipeline/launch.py): this entry sets up .venv (as
# run_local.sh does), then passes every argument on, quoted, as given.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$root/scripts/setup_venv.sh"
# TensorFlow's C++ start-up lines (the launcher validates flags with the core) hidden.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
# A few lines come before its log level applies: filtered here, as in run_local.sh.
exec "$root/.venv/bin/python" -m pipeline.launch "$@" 2> >(grep --line-buffered -vE \
  '^(WARNING: All log messages before absl::InitializeLog|[IWE][0-9]{4} [0-9:. ]+)' >&2)
