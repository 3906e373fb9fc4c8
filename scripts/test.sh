#!/usr/bin/env bash
# Set up .venv (see setup.sh) and run the whole test suite headless.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKBENCH_EXTRAS=dev,starter,reference bash scripts/setup.sh
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest -q "$@"
