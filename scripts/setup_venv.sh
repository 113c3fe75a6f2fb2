#!/usr/bin/env bash
# Creates .venv (if missing) and installs the package with its test extra.
# Re-installs only when setup.py changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if ! command -v python3 >/dev/null 2>&1 || \
    ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "python3 (>= 3.11) is required: the pinned numpy, xarray and zarr need it" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.glcm-installed
want="$(sha256sum setup.py | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing the package and its dependencies into .venv (first run: several minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
  .venv/bin/python -m pip install --quiet -e '.[test]'
  printf '%s' "$want" > "$stamp"
fi
