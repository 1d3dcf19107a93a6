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
# Debian's Chromium for tests/test_web_e2e.py (Playwright drives it via executable_path; no browser download).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
ruff check src tests benchmarks
mypy
python -m pytest -q "$@"
