#!/usr/bin/env bash
# Set up .venv (see setup.sh) and start Model Workbench; the bundled starter model is ready to chat.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m app "$@"
