#!/usr/bin/env bash
# Set up a virtualenv (if needed) with faceatlas and its dev tools, then lint, type-check and run the tests.
# Tests read LFW and extra models from FACEATLAS_DATA / FACEATLAS_MODELS (default: ../shared/data, ../shared/models).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e '.[dev]'
ruff check src tests benchmarks
mypy
python -m pytest -q "$@"
