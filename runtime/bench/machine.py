"""The machine a benchmark ran on, as JSON-safe facts kept with every run.

``machine_facts(threads)``: CPU model and cores, RAM, the llama.cpp backend and its GPUs, the
threads used, OS, Python, llama-cpp-python's version, llama.cpp's commit and its build flags. What
only llama.cpp knows (its GPUs, CPU features, commit) is asked once per process from a short-lived
``runtime.bench.speed_child --machine``: listing CUDA devices creates a context on each, which must
not happen in the window's process. The slow parts (that child, readelf) are cached.
"""
from __future__ import annotations

import functools
import os
import platform
import threading

from runtime.errors import WorkbenchError

NATIVE_TIMEOUT_S = 120.0
_native: dict | None = None
_native_lock = threading.Lock()


def native_facts() -> dict:
    """What this llama.cpp build reports about itself (cached): gpu_offload, gpus, ggml_commit,
    ggml_version, system_info. A child that fails leaves them empty (a CPU build is assumed)."""
    global _native
    with _native_lock:
        if _native is None:
            from runtime.procs import ChildProcess

            child = ChildProcess("runtime.bench.speed_child", ["--machine"], name="machine check")
            try:
                child.start()
                event = child.wait_for("machine", NATIVE_TIMEOUT_S, doing="reading the llama.cpp build")
                _native = {k: v for k, v in event.items() if k != "event"}
            except (WorkbenchError, OSError):
                _native = {"gpu_offload": False, "gpus": [], "ggml_commit": None, "ggml_version": None,
                           "system_info": None}
            finally:
                child.stop()
        return dict(_native)


def gpu_devices() -> list:
    """The GPUs this llama.cpp build offloads to (``GpuDevice``, free memory as of the first call)."""
    from runtime.models.hardware import GpuDevice

    return [GpuDevice(**g) for g in native_facts().get("gpus") or []]


def backend_name(gpu_names: list[str]) -> str:
    """"CPU" without GPUs, else the backends of the GPU names: "CUDA" for CUDA0 and CUDA1, "Metal"."""
    from runtime.models.this_machine import backend_names

    return "+".join(backend_names(gpu_names)) or "CPU"


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 7763 64-Core Processor"), or the best the system says."""
    from runtime.models.this_machine import cpu_name as name

    return name()


@functools.lru_cache(maxsize=1)
def build_flags() -> str | None:
    """The compiler command line recorded in ggml's CPU library (setup.sh's build), or None."""
    from runtime.engine.build_info import llama_cpp_libraries, recorded_compiler_flags

    try:
        for lib in llama_cpp_libraries():
            if "ggml-cpu" in lib.name:
                flags = recorded_compiler_flags(lib)
                if flags:
                    return flags.splitlines()[0]
    except OSError:
        pass
    return None


def machine_facts(threads: int | None = None) -> dict:
    """This machine, for a benchmark run's record (JSON-safe). ``threads``: those the run uses
    (None: the default, one per physical core)."""
    import psutil

    from runtime.engine.build_info import llama_cpp_version
    from runtime.engine.types import default_threads

    native = native_facts()
    gpus = native.get("gpus") or []
    return {
        "cpu": cpu_name(),
        "arch": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True) or os.cpu_count(),
        "ram_bytes": int(psutil.virtual_memory().total),
        "backend": backend_name([g.get("name", "") for g in gpus]),
        "gpus": [{"name": g.get("name"), "description": g.get("description"), "total_bytes": g.get("total_bytes")}
                 for g in gpus],
        "threads": threads if threads and threads > 0 else default_threads(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "llama_cpp_python": llama_cpp_version(),
        "llama_cpp_commit": native.get("ggml_commit"),
        "ggml_version": native.get("ggml_version"),
        "cpu_features": native.get("system_info"),
        "build_flags": build_flags(),
    }
