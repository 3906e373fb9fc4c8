"""Hardware facts and the recommendations made from them (runtime/models/this_machine.py).

The machines are described as plain values (no mocking of the OS); one test reads this machine.
"""
from __future__ import annotations

import platform
from pathlib import Path

import pytest

from runtime.models.gguf_info import GGUFInfo
from runtime.models.hardware import GpuDevice, estimate_model_memory
from runtime.models.this_machine import (REBUILD_COMMANDS, MachineFacts, OsGpu, auto_gpu_layers, describe, gather_facts,
                                         isa_level_from_flags, machine_threads, notice_command, parse_nvidia_smi,
                                         partial_gpu_layers, recommend, unusable_gpu_notice)

GB = 1024**3
ROOT = Path(__file__).resolve().parents[3]


def llama(size_bytes: int, *, blocks: int, embd: int, heads: int, kv_heads: int, vocab: int,
          name: str = "model") -> GGUFInfo:
    return GGUFInfo(path=name, size_bytes=size_bytes, architecture="llama", name=name, parameter_count=0,
                    file_type="Q4_K_M", tensor_count=0, context_length=4096, block_count=blocks,
                    embedding_length=embd, head_count=heads, head_count_kv=kv_heads, vocab_size=vocab)


LLAMA2_7B_Q4 = llama(int(4.08 * GB), blocks=32, embd=4096, heads=32, kv_heads=32, vocab=32000, name="7B Q4_K_M")
LLAMA32_1B_Q4 = llama(int(0.75 * GB), blocks=16, embd=2048, heads=32, kv_heads=8, vocab=128256, name="1B Q4_K_M")
STARTER = llama(94 * 1024**2, blocks=30, embd=576, heads=9, kv_heads=3, vocab=49152, name="SmolLM2-135M")

M1_8GB = MachineFacts(
    cpu_model="Apple M1", physical_cores=8, logical_cores=8, isa_level="NEON", ram_total=8 * GB,
    ram_available=int(4.5 * GB), os="macOS 14.5", arch="arm64", apple_silicon=True, performance_cores=4,
    backends=["Metal"], gpus=[GpuDevice("Metal", "Apple M1", int(5.3 * GB), int(5.3 * GB))],
    os_gpus=[OsGpu("Apple M1 GPU", "Apple")])
LAPTOP_16GB_6GB_GPU = MachineFacts(
    cpu_model="Intel Core i7-12700H", physical_cores=14, logical_cores=20, isa_level="AVX2",
    ram_total=16 * GB, ram_available=11 * GB, os="Windows 11", arch="AMD64", backends=["CUDA"],
    gpus=[GpuDevice("CUDA0", "NVIDIA GeForce RTX 3060 Laptop GPU", int(5.6 * GB), 6 * GB)],
    os_gpus=[OsGpu("NVIDIA GeForce RTX 3060 Laptop GPU", "NVIDIA", 6 * GB, int(5.6 * GB))])
CI_2_CORES = MachineFacts(
    cpu_model="AMD EPYC", physical_cores=2, logical_cores=2, isa_level="AVX-512", ram_total=24 * GB,
    ram_available=21 * GB, os="Debian GNU/Linux 12 (bookworm)", arch="x86_64")
CUDA_CARD_CPU_BUILD = MachineFacts(
    cpu_model="AMD Ryzen 7 5800X 8-Core Processor", physical_cores=8, logical_cores=16, isa_level="AVX2",
    ram_total=32 * GB, ram_available=26 * GB, os="Ubuntu 24.04 LTS", arch="x86_64",
    os_gpus=[OsGpu("NVIDIA GeForce RTX 3060", "NVIDIA", 12 * GB, 11 * GB)])


# --- the described machines ----------------------------------------------------------------------

def test_m1_with_8_gb_uses_its_performance_cores_and_metal():
    rec = recommend(M1_8GB, LLAMA32_1B_Q4, 4096)
    assert rec.threads == 4                      # the performance cores, not all 8
    assert rec.gpu_layers == -1                  # a 1B model fits in Metal's working set
    assert "performance core" in rec.why and "All layers on the GPU (Metal)" in rec.why
    assert unusable_gpu_notice(M1_8GB) is None
    lines = dict(describe(M1_8GB))
    assert lines["Processor"] == "Apple M1, 8 cores (4 performance) (NEON)"
    assert lines["Memory"].startswith("8 GB, 4.5 GB free") and "shared" in lines["Memory"]
    assert "through Metal" in lines["Graphics"]


def test_m1_without_performance_core_count_falls_back_to_physical_cores():
    facts = MachineFacts(**{**M1_8GB.__dict__, "performance_cores": None})
    assert recommend(facts, STARTER, 2048).threads == 8


def test_laptop_with_a_6_gb_gpu_offloads_part_of_a_7b_model():
    needed = estimate_model_memory(LLAMA2_7B_Q4, 4096)
    assert needed > 5.6 * GB                     # the whole model does not fit in the GPU ...
    rec = recommend(LAPTOP_16GB_6GB_GPU, LLAMA2_7B_Q4, 4096)
    assert 0 < rec.gpu_layers < 32               # ... so part of it goes there
    assert rec.gpu_layers == partial_gpu_layers(LLAMA2_7B_Q4, 4096, int(5.6 * GB))
    assert f"{rec.gpu_layers} of 32 layers on the GPU (CUDA0)" in rec.why
    assert rec.threads == 14                     # physical cores, not the 20 hyper-threads
    # a smaller context leaves room for more layers, a small one for all; a small model goes wholly there
    assert partial_gpu_layers(LLAMA2_7B_Q4, 2048, int(5.6 * GB)) > rec.gpu_layers
    assert recommend(LAPTOP_16GB_6GB_GPU, LLAMA2_7B_Q4, 1024).gpu_layers == -1
    assert recommend(LAPTOP_16GB_6GB_GPU, STARTER, 4096).gpu_layers == -1
    assert unusable_gpu_notice(LAPTOP_16GB_6GB_GPU) is None
    assert "RTX 3060 Laptop GPU (6 GB, 5.6 GB free), used by llama.cpp through CUDA" in \
        dict(describe(LAPTOP_16GB_6GB_GPU))["Graphics"]


def test_auto_gpu_layers_all_part_or_none():
    assert auto_gpu_layers(STARTER, 4096, []) == 0
    assert auto_gpu_layers(STARTER, 4096, [0]) == 0
    assert auto_gpu_layers(STARTER, 4096, [2 * GB]) == -1
    assert 0 < auto_gpu_layers(LLAMA2_7B_Q4, 4096, [3 * GB, int(2.6 * GB)]) < 32   # split over two GPUs
    assert auto_gpu_layers(LLAMA2_7B_Q4, 4096, [12 * GB]) == -1


def test_partial_layers_stay_within_the_free_memory():
    layers = partial_gpu_layers(LLAMA2_7B_Q4, 4096, int(5.6 * GB))
    per_layer = LLAMA2_7B_Q4.size_bytes / 33 + 2 * 4096 * (4096 + 4096)
    assert layers * per_layer < 5.6 * GB
    assert partial_gpu_layers(LLAMA2_7B_Q4, 4096, 100 * 1024**2) == 0     # not even one layer
    assert partial_gpu_layers(LLAMA2_7B_Q4, 4096, 0) == 0


def test_two_core_ci_box_runs_on_the_cpu():
    rec = recommend(CI_2_CORES, STARTER, 4096)
    assert (rec.threads, rec.gpu_layers) == (2, 0)
    assert "runs on the processor" in rec.why
    assert unusable_gpu_notice(CI_2_CORES) is None
    assert describe(CI_2_CORES) == [
        ("Processor", "AMD EPYC, 2 cores (AVX-512)"),
        ("Memory", "24 GB, 21 GB free"),
        ("Graphics", "none that llama.cpp can use, so models run on the processor"),
        ("llama.cpp", "built for the processor only (no GPU support)"),
        ("System", "Debian GNU/Linux 12 (bookworm) (x86_64)"),
    ]


def test_cuda_card_with_a_cpu_only_build_gets_the_rebuild_command():
    notice = unusable_gpu_notice(CUDA_CARD_CPU_BUILD)
    assert notice.startswith("This computer has NVIDIA GeForce RTX 3060 (12 GB), but this llama.cpp build has "
                             "no CUDA support, so models run on the processor.")
    assert notice.endswith('CMAKE_ARGS="-DGGML_CUDA=on" bash scripts/setup.sh')
    assert notice_command(notice) == 'CMAKE_ARGS="-DGGML_CUDA=on" bash scripts/setup.sh'
    assert "CUDA toolkit" in notice
    rec = recommend(CUDA_CARD_CPU_BUILD, LLAMA2_7B_Q4, 4096)
    assert (rec.threads, rec.gpu_layers) == (8, 0)
    assert "which this llama.cpp cannot use" in dict(describe(CUDA_CARD_CPU_BUILD))["Graphics"]


def test_cuda_build_that_finds_no_device_points_at_the_driver():
    facts = MachineFacts(**{**CUDA_CARD_CPU_BUILD.__dict__, "backends": ["CUDA"]})
    notice = unusable_gpu_notice(facts)
    assert "has CUDA support, but it found no CUDA device" in notice and "driver" in notice


def test_rebuild_commands_are_the_ones_setup_documents():
    """The command shown must be how this project installs llama.cpp (setup.sh and the README)."""
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'CMAKE_ARGS="-DGGML_CUDA=on"' in setup
    assert "CMAKE_ARGS=${CMAKE_ARGS:-}" in setup          # a change of CMAKE_ARGS forces the rebuild
    for backend in ("CUDA", "Vulkan"):
        assert f"`{REBUILD_COMMANDS[backend]}`" in readme


def test_many_cores_are_capped():
    big = MachineFacts(physical_cores=128, logical_cores=256)
    rec = recommend(big, STARTER, 2048)
    assert rec.threads == 32 and "at most 32" in rec.why


# --- probes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, arch, level", [
    ({"sse4_2", "avx", "avx2", "avx512f"}, "x86_64", "AVX-512"),
    ({"sse4_2", "avx", "avx2"}, "x86_64", "AVX2"),
    ({"sse4_2", "avx"}, "AMD64", "AVX"),
    ({"sse4_2"}, "x86_64", "SSE4.2"),
    (set(), "x86_64", "unknown"),
    ({"asimd"}, "aarch64", "NEON"),
    (set(), "arm64", "NEON"),
    ({"asimd", "sve"}, "aarch64", "SVE"),
])
def test_isa_level_from_flags(flags, arch, level):
    assert isa_level_from_flags(flags, arch) == level


def test_parse_nvidia_smi():
    gpus = parse_nvidia_smi("NVIDIA GeForce RTX 3060, 12288, 11020\nTesla T4, [N/A], 15000\n\ngarbage\n")
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 3060", "Tesla T4"]
    assert gpus[0].total_bytes == 12288 * 1024**2 and gpus[0].free_bytes == 11020 * 1024**2
    assert gpus[1].total_bytes is None and gpus[1].vendor == "NVIDIA"


def test_detection_on_this_machine():
    facts = gather_facts([])
    assert facts.physical_cores >= 1 and facts.logical_cores >= facts.physical_cores
    assert facts.ram_total > 0 and 0 < facts.ram_available <= facts.ram_total
    assert facts.cpu_model and facts.os
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert facts.isa_level in ("AVX-512", "AVX2", "AVX", "SSE4.2")
    assert facts.gpus == []
    labels = [label for label, _ in describe(facts)]
    assert labels[:4] == ["Processor", "Memory", "Graphics", "llama.cpp"]
    rec = recommend(facts, STARTER, 2048)
    assert 1 <= rec.threads <= facts.physical_cores and rec.gpu_layers == 0
    # what new loads default to is the same recommendation (quick: cores only)
    from runtime.engine.types import LoadOptions, default_threads

    assert machine_threads() == default_threads() == LoadOptions().n_threads
    if not facts.apple_silicon:
        assert machine_threads() == rec.threads


def test_devices_name_their_backend():
    facts = gather_facts([GpuDevice("CUDA0", "NVIDIA GeForce RTX 4070", 11 * GB, 12 * GB)], backends=[])
    assert facts.backends == ["CUDA"]
    assert unusable_gpu_notice(facts) is None
