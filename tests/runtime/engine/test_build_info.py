"""The installed llama.cpp was built as setup.sh asks: no AMX on x86-64, checked in the library itself."""
from __future__ import annotations

import platform
import shutil
import subprocess

import pytest

from runtime.engine import build_info

X86 = platform.machine().lower() in ("x86_64", "amd64")
NO_AMX = ["-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16"]
needs_gcc = pytest.mark.skipif(not (X86 and shutil.which("gcc") and shutil.which("objdump")),
                               reason="needs gcc and binutils on x86-64")


@pytest.mark.skipif(not X86, reason="AMX exists only on x86-64")
def test_installed_llama_cpp_has_no_amx_and_recorded_its_flags():
    assert build_info.check_build(NO_AMX) == []
    cpu_lib = next(p for p in build_info.llama_cpp_libraries() if "ggml-cpu" in p.name)
    flags = build_info.recorded_compiler_flags(cpu_lib)
    assert flags and all(f in flags for f in NO_AMX)


def test_a_later_switch_undoes_an_earlier_one():
    assert build_info._last_wins("-march=x -mamx-tile -mno-amx-tile".split(), "-mno-amx-tile")
    assert not build_info._last_wins("-mno-amx-tile -march=x -mamx-tile".split(), "-mno-amx-tile")
    assert not build_info._last_wins("-O3 -fPIC".split(), "-mno-amx-tile")


@needs_gcc
def test_amx_code_and_missing_flags_are_detected(tmp_path):
    """The checks can fail: a library with an AMX instruction and no recorded flags is caught."""
    src = tmp_path / "amx.c"
    src.write_text("#include <immintrin.h>\nvoid clear_tile(void) { _tile_zero(0); }\n")
    lib = tmp_path / "libamx.so"
    subprocess.run(["gcc", "-O2", "-mamx-tile", "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    assert build_info.amx_instructions(lib) == 1
    assert build_info.recorded_compiler_flags(lib) is None

    clean = tmp_path / "libclean.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-frecord-gcc-switches", *NO_AMX, "-x", "c", "-",
                    "-o", str(clean)], input="int one(void) { return 1; }\n", text=True, check=True)
    assert build_info.amx_instructions(clean) == 0
    assert "-mno-amx-tile" in build_info.recorded_compiler_flags(clean)
