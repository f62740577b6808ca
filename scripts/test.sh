#!/usr/bin/env bash
# Set up (idempotent), check style with ruff, and run the whole test suite (offscreen plus one real
# window under Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export QT_QPA_PLATFORM=offscreen OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/python -m ruff check --quiet .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
