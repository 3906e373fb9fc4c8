#!/usr/bin/env bash
# Create .venv (if needed) and install Model Workbench with its starter model and test tools.
#
# llama.cpp is compiled here, through llama-cpp-python (about 6-10 minutes on 2 cores, once), with
# the flags of scripts/llama_flags.sh (x86-64: native, but no AMX), checked in the built library.
# - GPU builds: export CMAKE_ARGS="-DGGML_CUDA=on" (NVIDIA) before running; it is merged with the
#   flags above. Metal is the default on Apple Silicon.
# pip's wheel cache is bypassed for llama-cpp-python: a wheel built earlier with other flags would
# otherwise be reused silently. A stamp in .venv records the flags of the build that is installed,
# so a later run with the same flags skips the compile, and one with other flags rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
LLAMA_CPP_PYTHON="llama-cpp-python==0.3.36"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}"

source scripts/llama_flags.sh

# llama-cpp-python's source distribution, kept: it is what gets compiled, and it carries llama.cpp's
# own convert_hf_to_gguf.py, which the converter's tests compare our GGUF files with.
SDIST_DIR=".venv/llama-cpp-sdist"
if ! ls "$SDIST_DIR"/llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
    .venv/bin/python -m pip download --quiet --no-cache-dir --no-deps --no-binary :all: -d "$SDIST_DIR" "$LLAMA_CPP_PYTHON"
    tar xzf "$SDIST_DIR"/llama_cpp_python-*.tar.gz -C "$SDIST_DIR"
fi
SDIST=$(ls "$SDIST_DIR"/llama_cpp_python-*.tar.gz | head -n 1)

STAMP=".venv/llama-build.stamp"
WANTED="$LLAMA_CPP_PYTHON|CMAKE_ARGS=${CMAKE_ARGS:-}|CFLAGS=${CFLAGS:-}|CXXFLAGS=${CXXFLAGS:-}"
check_build() {
    .venv/bin/python scripts/check_llama_build.py --require "$LLAMA_REQUIRED_FLAGS"
}
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANTED" ] || ! check_build >/dev/null 2>&1; then
    echo "Compiling llama.cpp (llama-cpp-python) for this machine; this takes several minutes ..."
    rm -f "$STAMP"
    .venv/bin/python -m pip install --quiet --no-cache-dir --force-reinstall --no-deps "$SDIST"
    check_build
    echo "$WANTED" > "$STAMP"
fi
# Extras: the tests add "reference" (PyTorch and tokenizers for the converter's checks; see test.sh).
.venv/bin/python -m pip install --quiet -c scripts/constraints.txt -e ".[${WORKBENCH_EXTRAS:-dev,starter}]" "$LLAMA_CPP_PYTHON"
