#!/usr/bin/env bash
# Set up (idempotent) and launch the workstation on the bundled data.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python main.py "$@"
