#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) with everything the app and the tests need.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch (a plain `torch` would pull a multi-GB CUDA build).
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[app,dev]"
# 3Dmol.js for the offline 3D viewer, from the npm registry (not committed).
python app/setup_assets.py || echo "warning: could not fetch 3Dmol.js; the viewer will use the CDN" >&2
