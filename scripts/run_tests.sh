#!/usr/bin/env bash
# The README's test command: sets up .venv with the test and onnx extras and
# runs the default (non-slow) test suite. Exits non-zero when a test fails or
# none ran.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$(bash "$root/scripts/setup_env.sh" test onnx | tail -n 1)"
cd "$root"
# pytest exits 5 when it collected no tests; that is a failure here too.
# Two workers (pytest-xdist), one per core: much of a test's time is
# single-threaded tracing; whole files go to one worker so module fixtures
# are built once.
exec "$python" -m pytest -m "not slow" -n 2 --dist loadfile "$@"
