#!/usr/bin/env bash
# Creates (once) the project's virtual environment in .venv and installs the
# package into it with the extras given as arguments, e.g. `setup_env.sh test`.
# Prints the path of the environment's python on its last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${MASKCONVER_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --upgrade pip >&2
fi
extras=""
if [ "$#" -gt 0 ]; then
  extras="[$(IFS=,; echo "$*")]"
fi
"$venv/bin/pip" install --quiet -e "$root$extras" >&2
echo "$venv/bin/python"
