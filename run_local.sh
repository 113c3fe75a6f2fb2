#!/usr/bin/env bash
# Sets up .venv if needed, then runs the pipeline on the DirectRunner:
#   ./run_local.sh [pipeline flags...]
# Every argument is passed on quoted, as given.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
bash scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec .venv/bin/python -m pipeline "$@"
