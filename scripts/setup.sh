#!/usr/bin/env bash
# Create .venv (if needed) and install Model Workbench with its starter model and test tools.
# The first run compiles llama.cpp through llama-cpp-python: about 6-10 minutes on 2 cores.
# GPU builds: export CMAKE_ARGS="-DGGML_CUDA=on" (NVIDIA) before running; Metal is the default on Apple Silicon.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}"
.venv/bin/python -m pip install --quiet -e '.[dev,starter]'
