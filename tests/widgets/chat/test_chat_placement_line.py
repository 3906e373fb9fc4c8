"""The Chat status line says where llama.cpp really put the model, and what was asked for when it
did otherwise."""
from __future__ import annotations

import types

from runtime.engine.placement import BufferUse, PlacementReport
from runtime.engine.types import LoadOptions

MIB = 1024 * 1024


def _session(engine):
    from widgets.chat.session import ChatSession

    session = ChatSession()
    session.engine, session.local_label = engine, "SmolLM2 135M"
    session.load_options = LoadOptions(n_ctx=2048, n_threads=2)
    return session


def _cpu_report():
    return PlacementReport(0, 31, [BufferUse("CPU", "model", 92 * MIB, "CPU_Mapped"),
                                   BufferUse("CPU", "KV", 45 * MIB, "CPU"),
                                   BufferUse("CPU", "compute", 103 * MIB, "CPU")], {"CPU": 31}, False)


def test_the_line_shows_what_llama_cpp_did(qapp):
    engine = types.SimpleNamespace(offload=_cpu_report(), requested_gpu_layers=0, placement="CPU")
    assert _session(engine).describe() == (
        "Loaded SmolLM2 135M on this computer: runs on CPU: all 31 layers · model 92 MiB, KV cache 45 MiB, "
        "work buffers 103 MiB on the CPU (context 2,048, 2 threads).")


def test_the_line_names_gpu_layers_that_were_not_offloaded(qapp):
    engine = types.SimpleNamespace(offload=_cpu_report(), requested_gpu_layers=-1, placement="CPU (...)")
    assert _session(engine).describe().endswith(
        "(context 2,048, 2 threads). Asked for all GPU layers; llama.cpp offloaded 0: this build has no GPU backend.")


def test_an_engine_without_a_report_still_says_its_placement(qapp):
    engine = types.SimpleNamespace(offload=None, placement="CUDA0: 31/31 layers")
    assert _session(engine).describe() == (
        "Loaded SmolLM2 135M on this computer: runs on CUDA0: 31/31 layers (context 2,048, 2 threads).")
