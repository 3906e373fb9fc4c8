"""This machine, for people and for load defaults: processor, memory, graphics, and what to load with.

``gather_facts(llama_gpus)`` collects ``MachineFacts``: the CPU's model, cores and instruction-set
level, RAM, the OS, the GPU backends this llama.cpp build has and the GPUs it can use, and the GPUs
the operating system sees (nvidia-smi, /proc/driver/nvidia, /sys/class/drm, Apple Silicon). Every OS
probe is quick (subprocess time-out ``PROBE_TIMEOUT_S``) and never raises: what cannot be told stays
unknown.

What llama.cpp itself says about its GPUs must not be asked in the window's process (listing CUDA
devices creates a context on each): the caller passes that list in, from the engine child
(``runtime.engine.local.list_gpus``, which this layer cannot import). The backends compiled in are
read from the names of the installed libraries (``libggml-cuda``, ``libggml-metal``, ...), which
loads nothing.

The pure parts work on plain values, so any machine can be described in a test:
``recommend(facts, info, n_ctx)`` (threads and GPU layers, with the reason), ``unusable_gpu_notice``
(a GPU this build cannot use, and the exact rebuild command) and ``describe`` (beginner words).
"""
from __future__ import annotations

import functools
import glob
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from runtime.models.gguf_info import GGUFInfo
from runtime.models.hardware import (GpuDevice, available_ram, compute_buffer_bytes, estimate_model_memory,
                                     kv_cache_bytes, total_ram)

PROBE_TIMEOUT_S = 2.0
MAX_THREADS = 32          # beyond this generation is bound by memory bandwidth, not cores
GPU_HEADROOM = 0.9        # of a GPU's free memory, the share a partial offload plans to fill

# How this project builds llama.cpp with a GPU backend (scripts/setup.sh merges CMAKE_ARGS with its
# CPU flags and rebuilds when they change; README "GPU builds").
REBUILD_COMMANDS = {
    "CUDA": 'CMAKE_ARGS="-DGGML_CUDA=on" bash scripts/setup.sh',
    "Metal": 'CMAKE_ARGS="-DGGML_METAL=on" bash scripts/setup.sh',
    "Vulkan": 'CMAKE_ARGS="-DGGML_VULKAN=on" bash scripts/setup.sh',
}
# What each GPU maker's cards need in llama.cpp, and what that needs installed first.
VENDOR_BACKENDS = {"NVIDIA": "CUDA", "Apple": "Metal", "AMD": "Vulkan"}
BACKEND_NEEDS = {"CUDA": "the NVIDIA CUDA toolkit (nvcc) installed",
                 "Metal": "Xcode's command line tools installed",
                 "Vulkan": "the Vulkan SDK installed"}

# ggml's backend libraries, by the part of their file name after "ggml-"
_BACKEND_LIBS = {"cuda": "CUDA", "metal": "Metal", "vulkan": "Vulkan", "hip": "ROCm", "sycl": "SYCL",
                 "opencl": "OpenCL", "musa": "MUSA", "cann": "CANN", "kompute": "Kompute"}
_PCI_VENDORS = {"0x10de": "NVIDIA", "0x1002": "AMD"}


@dataclass
class OsGpu:
    """A graphics card the operating system sees, whether or not llama.cpp can use it."""

    name: str                       # "NVIDIA GeForce RTX 3060", "Apple M1 GPU"
    vendor: str                     # "NVIDIA" | "AMD" | "Apple" | ...
    total_bytes: int | None = None  # None: unknown (or shared with the CPU, on Apple Silicon)
    free_bytes: int | None = None


@dataclass
class MachineFacts:
    """What this computer has, as plain values (tests describe machines with it)."""

    cpu_model: str = "unknown"
    physical_cores: int = 1
    logical_cores: int = 1
    isa_level: str = "unknown"          # "AVX-512", "AVX2", "AVX", "SSE4.2", "NEON", "SVE", ...
    ram_total: int = 0
    ram_available: int = 0
    os: str = ""
    arch: str = ""
    apple_silicon: bool = False
    performance_cores: int | None = None   # Apple Silicon's P-cores, when sysctl tells
    backends: list[str] = field(default_factory=list)     # GPU backends this llama.cpp has: "CUDA", "Metal"
    gpus: list[GpuDevice] = field(default_factory=list)   # the GPUs this llama.cpp can offload to
    os_gpus: list[OsGpu] = field(default_factory=list)    # the GPUs the operating system sees


@dataclass
class Recommendation:
    threads: int
    gpu_layers: int      # LoadOptions.n_gpu_layers: -1 all, N the first N, 0 CPU only
    why: str


# --- probes (fast, time-limited, never raise) ---------------------------------------------------

def _run(args: list[str]) -> str | None:
    """stdout of a short command, or None when it is missing, fails or takes too long."""
    if shutil.which(args[0]) is None:
        return None
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout if done.returncode == 0 else None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 7763 64-Core Processor"), or the best the system says."""
    try:
        if sys.platform.startswith("linux"):
            for line in _read("/proc/cpuinfo").splitlines():
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                    return value.strip()
        elif sys.platform == "darwin":
            out = (_run(["sysctl", "-n", "machdep.cpu.brand_string"]) or "").strip()
            if out:
                return out
    except Exception:  # noqa: BLE001 - a probe never raises
        pass
    return platform.processor() or platform.machine() or "unknown"


def isa_level_from_flags(flags: set[str], arch: str) -> str:
    """The best SIMD level llama.cpp uses on this CPU, from its feature flags (lower case)."""
    arch = arch.lower()
    if arch in ("arm64", "aarch64") or arch.startswith("armv8"):
        if "sve" in flags:
            return "SVE"
        return "NEON"   # every 64-bit ARM CPU has it (asimd)
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    if "avx" in flags:
        return "AVX"
    if "sse4_2" in flags or "sse4.2" in flags:
        return "SSE4.2"
    return "unknown"


def _cpu_flags() -> set[str]:
    if sys.platform.startswith("linux"):
        for line in _read("/proc/cpuinfo").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return set(value.lower().split())
    elif sys.platform == "darwin" and platform.machine() == "x86_64":
        out = " ".join(_run(["sysctl", "-n", key]) or "" for key in
                       ("machdep.cpu.features", "machdep.cpu.leaf7_features"))
        return {f.replace("sse4.2", "sse4_2") for f in out.lower().split()}
    return set()


def isa_level() -> str:
    try:
        return isa_level_from_flags(_cpu_flags(), platform.machine())
    except Exception:  # noqa: BLE001
        return "unknown"


@functools.lru_cache(maxsize=1)
def performance_cores() -> int | None:
    """Apple Silicon's performance cores (sysctl hw.perflevel0.physicalcpu), else None."""
    if sys.platform != "darwin":
        return None
    out = (_run(["sysctl", "-n", "hw.perflevel0.physicalcpu"]) or "").strip()
    return int(out) if out.isdigit() and int(out) > 0 else None


def _cores() -> tuple[int, int]:
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
        logical = psutil.cpu_count(logical=True)
    except Exception:  # noqa: BLE001
        physical = logical = None
    logical = logical or os.cpu_count() or 1
    return max(1, physical or logical), max(1, logical)


def _ram() -> tuple[int, int]:
    try:
        return total_ram(), available_ram()
    except Exception:  # noqa: BLE001 - a probe never raises
        return 0, 0


def compiled_backends() -> list[str]:
    """The GPU backends of the installed llama.cpp, from its library names (loads nothing)."""
    try:
        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or not spec.origin:
            return []
        found = []
        for lib in sorted((Path(spec.origin).parent / "lib").glob("*ggml-*")):
            key = lib.name.split("ggml-", 1)[1].split(".", 1)[0].lower()
            backend = _BACKEND_LIBS.get(key)
            if backend and backend not in found:
                found.append(backend)
        return found
    except Exception:  # noqa: BLE001
        return []


def backend_names(device_names: list[str]) -> list[str]:
    """"CUDA" for CUDA0 and CUDA1, "Metal" for MTL0 or Metal, ... (from llama.cpp's device names)."""
    names = []
    for device in device_names:
        base = re.sub(r"\d+$", "", device) or device
        base = {"MTL": "Metal", "ROCm": "ROCm", "HIP": "ROCm"}.get(base, base)
        if base not in names:
            names.append(base)
    return names


def backends_of_devices(gpus: list[GpuDevice]) -> list[str]:
    return backend_names([gpu.name for gpu in gpus])


def parse_nvidia_smi(text: str) -> list[OsGpu]:
    """Lines of ``nvidia-smi --query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits``
    (MiB) as OsGpus; lines that do not parse are skipped."""
    found = []
    for line in (text or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0]:
            continue

        def mib(value: str) -> int | None:
            value = value.split()[0] if value.split() else ""
            return int(float(value) * 1024**2) if re.fullmatch(r"\d+(\.\d+)?", value) else None

        found.append(OsGpu(parts[0], "NVIDIA", mib(parts[1]), mib(parts[2])))
    return found


def os_gpus() -> list[OsGpu]:
    """The GPUs the operating system sees (nvidia-smi, /proc/driver/nvidia, /sys/class/drm, Apple)."""
    found: list[OsGpu] = []
    try:
        if sys.platform == "darwin" and platform.machine() == "arm64":
            chip = cpu_name()
            return [OsGpu(f"{chip} GPU" if chip.startswith("Apple") else "Apple Silicon GPU", "Apple")]
        out = _run(["nvidia-smi", "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"])
        found = parse_nvidia_smi(out or "")
        if not found:
            for info in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
                match = re.search(r"^Model:\s*(.+)$", _read(info), re.MULTILINE)
                if match:
                    name = match.group(1).strip()
                    found.append(OsGpu(name if "NVIDIA" in name.upper() else f"NVIDIA {name}", "NVIDIA"))
        have = {g.vendor for g in found}
        for vendor_file in sorted(glob.glob("/sys/class/drm/card[0-9]*/device/vendor")):
            vendor = _PCI_VENDORS.get(_read(vendor_file).strip().lower())
            if vendor and vendor not in have:   # a card nvidia-smi did not name (AMD, or no driver tools)
                found.append(OsGpu(f"an {vendor} graphics card" if vendor == "AMD" else "an NVIDIA graphics card",
                                   vendor))
                have.add(vendor)
    except Exception:  # noqa: BLE001
        pass
    return found


def gather_facts(llama_gpus: list[GpuDevice] | None = None, *, backends: list[str] | None = None) -> MachineFacts:
    """This machine's facts. ``llama_gpus``: what the engine child lists (``list_gpus``; None or []
    on a CPU-only build); ``backends``: the GPU backends compiled in (default: read from the
    installed libraries, plus those the devices name). Quick (a few probes of at most 2 s each)."""
    gpus = list(llama_gpus or [])
    physical, logical = _cores()
    total, available = _ram()
    arch = platform.machine()
    found = list(backends) if backends is not None else compiled_backends()
    for name in backends_of_devices(gpus):
        if name not in found:
            found.append(name)
    return MachineFacts(
        cpu_model=cpu_name(), physical_cores=physical, logical_cores=logical, isa_level=isa_level(),
        ram_total=total, ram_available=available, os=_os_name(), arch=arch,
        apple_silicon=sys.platform == "darwin" and arch == "arm64", performance_cores=performance_cores(),
        backends=found, gpus=gpus, os_gpus=os_gpus())


def _os_name() -> str:
    try:
        if sys.platform == "darwin":
            return f"macOS {platform.mac_ver()[0]}".strip()
        if sys.platform.startswith("linux"):
            match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', _read("/etc/os-release"), re.MULTILINE)
            return match.group(1) if match else f"Linux {platform.release()}"
        return f"{platform.system()} {platform.release()}".strip()
    except Exception:  # noqa: BLE001
        return platform.system()


# --- the pure part -------------------------------------------------------------------------------

def recommended_threads(facts: MachineFacts) -> tuple[int, str]:
    """Threads for llama.cpp: one per performance core on Apple Silicon, else one per physical core
    (hyper-threads only compete for the same units), at most MAX_THREADS."""
    if facts.apple_silicon and facts.performance_cores:
        n, why = facts.performance_cores, "one per performance core (the efficiency cores would slow it down)"
    else:
        n, why = max(1, facts.physical_cores), "one per processor core"
    if n > MAX_THREADS:
        n, why = MAX_THREADS, f"at most {MAX_THREADS}: beyond that memory speed, not cores, is the limit"
    return n, why


@functools.lru_cache(maxsize=1)
def machine_threads() -> int:
    """``recommended_threads`` for this machine from its cores alone (quick: no GPU probe); what
    new loads default to (``runtime.engine.types.default_threads``)."""
    try:
        physical, logical = _cores()
        arch = platform.machine()
        facts = MachineFacts(physical_cores=physical, logical_cores=logical,
                             apple_silicon=sys.platform == "darwin" and arch == "arm64",
                             performance_cores=performance_cores())
        return recommended_threads(facts)[0]
    except Exception:  # noqa: BLE001
        return max(1, os.cpu_count() or 1)


def partial_gpu_layers(info: GGUFInfo, n_ctx: int, gpu_free: int) -> int:
    """How many of the model's layers fit in ``gpu_free`` bytes of GPU memory (0..block_count).

    Each repeating layer costs its share of the weights (the file over block_count + 1: the output
    and embedding tensors count as one more layer) plus its share of the KV cache; llama.cpp's
    working memory for one micro-batch is reserved on the GPU first, and only ``GPU_HEADROOM`` of
    the free memory is planned for.
    """
    blocks = info.block_count or 0
    if blocks <= 0 or gpu_free <= 0:
        return 0
    per_layer = info.size_bytes / (blocks + 1) + kv_cache_bytes(info, n_ctx) / blocks
    budget = GPU_HEADROOM * gpu_free - compute_buffer_bytes(info, n_ctx)
    if per_layer <= 0 or budget <= 0:
        return 0
    return max(0, min(blocks, int(budget // per_layer)))


def auto_gpu_layers(info: GGUFInfo, n_ctx: int, gpu_free_bytes: list[int]) -> int:
    """GPU layers for "Auto": -1 (all) when the model fits in the GPUs' free memory together, else as
    many layers as fit (``partial_gpu_layers``), else 0. ``gpu_free_bytes``: one figure per GPU
    llama.cpp would use ([] on a CPU-only build). The engine's "auto" (``--gpu-layers auto``) is this."""
    free = sum(max(0, f) for f in gpu_free_bytes)
    if free <= 0:
        return 0
    if estimate_model_memory(info, n_ctx) <= free:
        return -1
    return partial_gpu_layers(info, n_ctx, free)


def _gb(n: int | None) -> str:
    """Bytes in the words an OS uses: "24 GB", "5.8 GB", "512 MB"."""
    if not n or n <= 0:
        return "? GB"
    gib = n / 1024**3
    if gib >= 10:
        return f"{gib:.0f} GB"
    if gib >= 1:
        return f"{gib:.1f} GB".replace(".0 GB", " GB")
    return f"{n / 1024**2:.0f} MB"


def recommend(facts: MachineFacts, info: GGUFInfo, n_ctx: int) -> Recommendation:
    """Threads and GPU layers for loading ``info`` at ``n_ctx`` tokens on this machine, and why."""
    threads, threads_why = recommended_threads(facts)
    why = [f"{threads} thread{'s' if threads != 1 else ''}: {threads_why}."]
    usable = [g for g in facts.gpus if g.free_bytes > 0]
    gpu_free = sum(g.free_bytes for g in usable)
    names = "+".join(g.name for g in usable)
    blocks = info.block_count or 0
    needed = estimate_model_memory(info, n_ctx)
    if not facts.gpus:
        layers = 0
        why.append("No GPU that this llama.cpp can use: every layer runs on the processor.")
    elif not usable:
        layers = 0
        why.append("The GPU reports no free memory: every layer runs on the processor.")
    elif (layers := auto_gpu_layers(info, n_ctx, [g.free_bytes for g in usable])) == -1:
        why.append(f"All layers on the GPU ({names}): the model needs about {_gb(needed)} and "
                   f"{_gb(gpu_free)} is free there.")
    else:
        if layers > 0:
            why.append(f"{layers} of {blocks} layers on the GPU ({names}), the rest on the processor: the "
                       f"model needs about {_gb(needed)}, more than the {_gb(gpu_free)} free there.")
        else:
            why.append(f"Every layer on the processor: the {_gb(gpu_free)} free on the GPU ({names}) does "
                       f"not hold even one layer of a model needing about {_gb(needed)}.")
    return Recommendation(threads=threads, gpu_layers=layers, why=" ".join(why))


def unusable_gpu_notice(facts: MachineFacts) -> str | None:
    """What to say when this computer has a GPU that this llama.cpp build cannot use, with the exact
    rebuild command; None when every GPU is used (or there is none)."""
    if facts.gpus:
        return None
    for gpu in facts.os_gpus:
        backend = VENDOR_BACKENDS.get(gpu.vendor)
        if backend is None:
            continue
        size = f" ({_gb(gpu.total_bytes)})" if gpu.total_bytes else ""
        command = REBUILD_COMMANDS[backend]
        if backend in facts.backends:
            return (f"This computer has {gpu.name}{size}, and this llama.cpp build has {backend} support, "
                    f"but it found no {backend} device, so models run on the processor. Check the graphics "
                    f"driver, then rebuild if it still fails: {command}")
        return (f"This computer has {gpu.name}{size}, but this llama.cpp build has no {backend} support, so "
                f"models run on the processor. To use the GPU, rebuild (with {BACKEND_NEEDS[backend]}), "
                f"in the Model Workbench folder: {command}")
    return None


def notice_command(notice: str | None) -> str:
    """The rebuild command a notice ends with ('' when none)."""
    if not notice:
        return ""
    return next((c for c in REBUILD_COMMANDS.values() if notice.endswith(c)), "")


def describe(facts: MachineFacts) -> list[tuple[str, str]]:
    """This machine in plain words, as (label, text) lines: Processor, Memory, Graphics, llama.cpp, System."""
    cores = f"{facts.physical_cores} core{'s' if facts.physical_cores != 1 else ''}"
    if facts.apple_silicon and facts.performance_cores:
        cores += f" ({facts.performance_cores} performance)"
    elif facts.logical_cores > facts.physical_cores:
        cores += f", {facts.logical_cores} threads"
    isa = f" ({facts.isa_level})" if facts.isa_level and facts.isa_level != "unknown" else ""
    lines = [("Processor", f"{facts.cpu_model}, {cores}{isa}")]
    if facts.ram_total:
        memory = f"{_gb(facts.ram_total)}, {_gb(facts.ram_available)} free"
        if facts.apple_silicon:
            memory += " (shared by the processor and the graphics)"
    else:
        memory = "unknown"
    lines.append(("Memory", memory))
    if facts.gpus:
        parts = []
        for gpu in facts.gpus:
            label = gpu.description or gpu.name
            if gpu.total_bytes:
                label += f" ({_gb(gpu.total_bytes)}, {_gb(gpu.free_bytes)} free)"
            parts.append(label)
        backend = "+".join(backends_of_devices(facts.gpus)) or "its GPU backend"
        graphics = f"{', '.join(parts)}, used by llama.cpp through {backend}"
    elif facts.os_gpus and unusable_gpu_notice(facts):
        names = ", ".join(g.name + (f" ({_gb(g.total_bytes)})" if g.total_bytes else "") for g in facts.os_gpus)
        graphics = f"{names}, which this llama.cpp cannot use, so models run on the processor"
    else:
        graphics = "none that llama.cpp can use, so models run on the processor"
    lines.append(("Graphics", graphics))
    build = (f"built with {' and '.join(facts.backends)} support" if facts.backends
             else "built for the processor only (no GPU support)")
    lines.append(("llama.cpp", build))
    if facts.os:
        lines.append(("System", f"{facts.os} ({facts.arch})" if facts.arch else facts.os))
    return lines
