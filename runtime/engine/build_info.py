"""What the installed llama.cpp was built with, read from the built libraries themselves.

setup.sh compiles llama.cpp with ``-frecord-gcc-switches``, so each library carries the compiler's
command line in its ``.GCC.command.line`` section; ``readelf`` prints it and ``objdump`` shows whether
any AMX instruction made it into the machine code. Both come with binutils, which a compiler needs.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
from pathlib import Path

# Mnemonics of Intel AMX tile instructions as objdump prints them.
AMX_MNEMONICS = ("ldtilecfg", "sttilecfg", "tileloadd", "tilestored", "tilezero", "tilerelease",
                 "tdpbssd", "tdpbsud", "tdpbusd", "tdpbuud", "tdpbf16ps", "tdpfp16ps")


def llama_cpp_version() -> str | None:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def llama_cpp_libraries() -> list[Path]:
    """The shared libraries of the installed llama-cpp-python (ggml, its backends, llama)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.origin:
        return []
    lib_dir = Path(spec.origin).parent / "lib"
    return sorted(p for p in lib_dir.glob("*") if p.suffix in (".so", ".dylib", ".dll") or ".so." in p.name)


def recorded_compiler_flags(library: Path) -> str | None:
    """The compiler command lines recorded in ``library``, or None when it recorded none."""
    if shutil.which("readelf") is None:
        return None
    out = subprocess.run(["readelf", "-p", ".GCC.command.line", str(library)],
                         capture_output=True, text=True, check=False).stdout
    lines = [line.split("]", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("[")]
    return "\n".join(lines) or None


def amx_instructions(library: Path) -> int:
    """How many AMX instructions the machine code of ``library`` contains."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(library)],
                         capture_output=True, text=True, check=False).stdout
    count = 0
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1].split(" ", 1)[0] in AMX_MNEMONICS:
            count += 1
    return count


def _last_wins(switches: list[str], flag: str) -> bool:
    """True when ``flag`` (e.g. -mno-amx-tile) is given and not undone by a later -mamx-tile.

    -march=native expands to explicit -m<feature> switches, and among explicit switches the last wins.
    """
    if flag not in switches:
        return False
    opposite = flag.replace("-mno-", "-m", 1) if flag.startswith("-mno-") else None
    last = len(switches) - 1 - switches[::-1].index(flag)
    return opposite is None or opposite not in switches[last:]


def check_build(required_flags: list[str]) -> list[str]:
    """Problems with the installed build: missing, built without ``required_flags``, or with AMX code.

    An empty list means the build is what setup.sh asked for.
    """
    if llama_cpp_version() is None:
        return ["llama-cpp-python is not installed"]
    libraries = llama_cpp_libraries()
    cpu_libs = [p for p in libraries if "ggml-cpu" in p.name]
    if not cpu_libs:
        return [f"no ggml-cpu library among {[p.name for p in libraries]}"]
    if not required_flags:
        return []
    for tool in ("readelf", "objdump"):
        if shutil.which(tool) is None:
            return [f"{tool} is missing (install binutils) so the build cannot be checked"]
    problems = []
    for lib in cpu_libs:
        flags = recorded_compiler_flags(lib)
        if flags is None:
            problems.append(f"{lib.name} records no compiler flags (built without setup.sh's flags)")
            continue
        for line in flags.splitlines():
            missing = [f for f in required_flags if not _last_wins(line.split(), f)]
            if missing:
                problems.append(f"{lib.name} was compiled without {' '.join(missing)} in effect: {line[:200]}")
                break
        found = amx_instructions(lib)
        if found:
            problems.append(f"{lib.name} contains {found} AMX instructions")
    return problems
