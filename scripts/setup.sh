#!/usr/bin/env bash
# Create .venv and install the project. torch==2.13.0 first keeps the install CPU-sized where that
# wheel is local; on a CUDA workstation set TORCH_SPEC (e.g. "torch" ) to take the registry's build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" 2>/dev/null \
  || .venv/bin/python -m pip install -q "torch>=2.3"
.venv/bin/python -m pip install -q -e ".[dev]"
