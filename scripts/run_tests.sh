#!/usr/bin/env bash
# The README's test command: sets up .venv with the test extra and runs the
# default (non-slow) test suite. Exits non-zero when a test fails or none ran.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$(bash "$root/scripts/setup_env.sh" test | tail -n 1)"
cd "$root"
# pytest exits 5 when it collected no tests; that is a failure here too.
exec "$python" -m pytest -m "not slow" "$@"
