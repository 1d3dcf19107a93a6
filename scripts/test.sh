#!/usr/bin/env bash
# Set up a virtualenv (if needed) with faceatlas and its dev tools, then lint, type-check and run the tests.
# Tests read LFW and extra models from FACEATLAS_DATA / FACEATLAS_MODELS (default: ../shared/data, ../shared/models).
# Runs the default (fast) test set; with RUN_SLOW_TESTS=1 (set by .ci/run) it then runs the `slow` set as well.
# Extra arguments go to both pytest runs, e.g. `bash scripts/test.sh tests/test_server.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e '.[dev]'
# Debian's Chromium for the browser tests (Playwright drives it via executable_path; no browser download) and strace
# for the privacy audit (tests/test_privacy.py traces file and socket calls; those tests skip without it).
if [ "${RUN_SLOW_TESTS:-0}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
   && { ! command -v chromium >/dev/null 2>&1 || ! command -v strace >/dev/null 2>&1; }; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium strace >/dev/null) \
    || echo "warning: could not install chromium/strace; the browser and trace tests will be skipped" >&2
fi
ruff check src tests benchmarks
mypy

# pytest exits 5 when the selection is empty (e.g. a file whose tests are all `slow`): that is not a failure here.
run_pytest() {
  local rc=0
  python -m pytest -q "$@" || rc=$?
  if [ "$rc" = 5 ]; then
    echo "(no test selected by: pytest $*)"
    rc=0
  fi
  return "$rc"
}

run_pytest "$@"                 # default set: pyproject's addopts deselect `slow`
if [ "${RUN_SLOW_TESTS:-0}" = 1 ]; then
  run_pytest -m slow "$@"       # browser, kill -9, multi-process and the longest end-to-end tests
fi
