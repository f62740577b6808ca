#!/usr/bin/env bash
# Create .venv and install the project. torch==2.13.0 first keeps the install CPU-sized where that
# wheel is local; on a CUDA workstation set TORCH_SPEC (e.g. "torch" ) to take the registry's build.
# pip runs only when pyproject.toml or TORCH_SPEC changed since the last successful install (a copy of
# both is kept in .venv), so run.sh starts in a second instead of half a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH=${TORCH_SPEC:-torch==2.13.0}
STAMP=.venv/.installed-from
wanted="$(printf 'TORCH_SPEC=%s\n' "$TORCH"; cat pyproject.toml)"
if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
rm -f "$STAMP"
.venv/bin/python -m pip install -q "$TORCH" 2>/dev/null \
  || .venv/bin/python -m pip install -q "torch>=2.3"
.venv/bin/python -m pip install -q -e ".[dev]"
printf '%s' "$wanted" > "$STAMP"
