# Sourced by setup.sh and benchmarks/build_llama_bench.sh: the compiler flags llama.cpp is built with.
# x86-64: every native instruction set of this CPU except Intel AMX. Some virtual machines advertise
# AMX in cpuid but cannot execute it, and llama.cpp's AMX matmul path then dies (SIGSEGV/SIGILL) on the
# first prompt. GCC (and clang) honour -mno-amx-* even together with ggml's -march=native.
# -frecord-gcc-switches stores the command line in the library so the build can be checked afterwards.
case "$(uname -m)" in
    x86_64|amd64|AMD64)
        LLAMA_REQUIRED_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
        export CFLAGS="${CFLAGS:-} $LLAMA_REQUIRED_FLAGS -frecord-gcc-switches"
        export CXXFLAGS="${CXXFLAGS:-} $LLAMA_REQUIRED_FLAGS -frecord-gcc-switches"
        ;;
    *)
        LLAMA_REQUIRED_FLAGS=""
        ;;
esac
