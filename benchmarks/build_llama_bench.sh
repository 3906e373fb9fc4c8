#!/usr/bin/env bash
# Build llama.cpp's own tools (llama-bench, llama-quantize, llama-perplexity) from the llama.cpp vendored in the *installed*
# llama-cpp-python's source distribution, so the app's speed is compared with the very same llama.cpp.
# Output: benchmarks/_build/<tool> (ignored by git). A few minutes on 2 cores.
# Arguments: the targets to build (default: llama-bench llama-quantize).
set -euo pipefail
cd "$(dirname "$0")"
source ../scripts/llama_flags.sh  # the same flags as the app's llama.cpp
PY="$(cd .. && pwd)/.venv/bin/python"; PY="${PYTHON_FOR_BENCH:-$PY}"
VERSION=$("$PY" -c "import llama_cpp; print(llama_cpp.__version__)")
mkdir -p _build
cd _build
KEPT="$(cd ../.. && pwd)/.venv/llama-cpp-sdist/llama_cpp_python-$VERSION"   # kept by scripts/setup.sh
if [ ! -d "llama_cpp_python-$VERSION" ] && [ -d "$KEPT" ]; then
    ln -s "$KEPT" "llama_cpp_python-$VERSION"
elif [ ! -d "llama_cpp_python-$VERSION" ]; then
    "$PY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d .
    tar xzf "llama_cpp_python-$VERSION.tar.gz"
fi
SRC="llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$SRC" -B "cmake-$VERSION" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF ${CMAKE_ARGS:-} > /dev/null
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=(llama-bench llama-quantize); fi
cmake --build "cmake-$VERSION" --target "${TARGETS[@]}" -j "$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)" > /dev/null
for target in "${TARGETS[@]}"; do
    cp "cmake-$VERSION/bin/$target" "./$target"
    echo "built $(pwd)/$target (llama-cpp-python $VERSION)"
done
