#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with torch
# (CPU build, installed first so nothing pulls CUDA wheels), the package, its test
# extras and Ray (rag ingest --ray; its test starts a local Ray head). Safe to run
# again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q -e ".[dev,ray]"
# The chat app's browser tests drive the system Chromium through Playwright's Python
# package; never `playwright install` (it downloads browsers, which cannot work here).
# slapd: the LDAP login test starts a real OpenLDAP server of its own (issue 23).
if ! command -v chromium >/dev/null 2>&1 || [ ! -x /usr/sbin/slapd ]; then
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    chromium chromium-driver fonts-wqy-microhei slapd ldap-utils
fi
echo "setup: done (.venv ready)" >&2
