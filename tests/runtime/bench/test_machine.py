"""machine_facts: what a benchmark run records about the machine, JSON-safe and cached."""
from __future__ import annotations

import json
import os
import time

import psutil

from runtime.bench import machine
from runtime.bench.machine import backend_name, machine_facts
from runtime.engine.build_info import llama_cpp_version
from runtime.engine.types import default_threads
from runtime.procs import ChildProcess

KEYS = {"cpu", "arch", "physical_cores", "logical_cores", "ram_bytes", "backend", "gpus", "threads", "os",
        "python", "llama_cpp_python", "llama_cpp_commit", "ggml_version", "cpu_features", "build_flags"}


def test_facts_are_complete_and_json_safe():
    facts = machine_facts()
    assert set(facts) == KEYS
    assert json.loads(json.dumps(facts)) == facts
    assert facts["cpu"] and facts["cpu"] != "unknown"
    assert 1 <= facts["physical_cores"] <= facts["logical_cores"] == os.cpu_count()
    assert facts["ram_bytes"] == psutil.virtual_memory().total
    assert facts["threads"] == default_threads()
    assert facts["llama_cpp_python"] == llama_cpp_version()
    assert facts["llama_cpp_commit"] and facts["ggml_version"].count(".") == 2
    assert "CPU" in facts["cpu_features"]
    # This test machine's llama.cpp is a CPU build: no GPUs, backend CPU.
    assert facts["gpus"] == [] and facts["backend"] == "CPU"


def test_threads_asked_are_recorded():
    assert machine_facts(3)["threads"] == 3
    assert machine_facts(0)["threads"] == default_threads()


def test_the_llama_cpp_child_runs_once(monkeypatch):
    started = []
    real_start = ChildProcess.start
    monkeypatch.setattr(ChildProcess, "start", lambda self: (started.append(self.module), real_start(self)))
    monkeypatch.setattr(machine, "_native", None)
    machine_facts()
    t0 = time.monotonic()
    machine_facts(2)
    assert started == ["runtime.bench.speed_child"]
    assert time.monotonic() - t0 < 0.5


def test_a_failing_child_means_a_cpu_build(monkeypatch):
    def broken(self):
        raise OSError("no such program")

    monkeypatch.setattr(ChildProcess, "start", broken)
    monkeypatch.setattr(machine, "_native", None)
    facts = machine_facts()
    assert facts["backend"] == "CPU" and facts["gpus"] == [] and facts["llama_cpp_commit"] is None
    assert json.dumps(facts)


def test_backend_names():
    assert backend_name([]) == "CPU"
    assert backend_name(["CUDA0", "CUDA1"]) == "CUDA"
    assert backend_name(["Metal"]) == "Metal"
    assert backend_name(["Vulkan0", "CUDA0"]) == "Vulkan+CUDA"
