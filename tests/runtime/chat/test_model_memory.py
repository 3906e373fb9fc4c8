"""What a loaded model really used, next to the fit estimate: measured on the real starter model."""
from __future__ import annotations

import pytest

from runtime.chat.session import ConversationSession
from runtime.engine.local import LocalEngine
from runtime.engine.types import LoadOptions, SamplingParams
from runtime.models.gguf_info import read_gguf_info
from runtime.models.hardware import estimate_model_memory

LONG_PROMPT = "Summarise this in one sentence: " + "The quick brown fox jumps over the lazy dog. " * 60



@pytest.mark.parametrize("n_ctx", [2048, 8192])
def test_the_estimate_covers_what_the_starter_really_uses_without_wild_excess(starter_model, store, n_ctx):
    """Measured (engine peak RSS above its pre-load peak) never exceeds the estimate, which errs on the
    safe side by less than 2x: on this machine 174 / 267 MiB at 2,048 and 310 / 450 MiB at 8,192.
    The gap is llama.cpp's compute buffer, reserved in full but only partly touched."""
    engine = LocalEngine(starter_model, LoadOptions(n_ctx=n_ctx, n_threads=2))
    engine.start()
    try:
        chat = ConversationSession.create(store, engine.client())
        chat.send(LONG_PROMPT, SamplingParams(temperature=0, max_tokens=16))
        report = engine.memory_report()
    finally:
        engine.stop()
    assert report.estimated_bytes == estimate_model_memory(read_gguf_info(starter_model), n_ctx)
    weights = read_gguf_info(starter_model).size_bytes
    assert weights < report.measured_bytes <= report.estimated_bytes < 1.75 * report.measured_bytes
    saved = store.model_memory()[str(starter_model)]
    assert saved["n_ctx"] == n_ctx and saved["estimated_bytes"] == report.estimated_bytes
    assert 0.9 * report.measured_bytes <= saved["measured_bytes"] <= report.measured_bytes


def test_a_record_keeps_the_highest_figure_of_a_load_and_the_latest_load(store):
    store.record_model_memory("/m.gguf", 2048, 300, 100)
    store.record_model_memory("/m.gguf", 2048, 300, 180)
    store.record_model_memory("/m.gguf", 2048, 300, 150)
    assert store.model_memory()["/m.gguf"]["measured_bytes"] == 180
    store.record_model_memory("/m.gguf", 4096, 400, 120)  # reloaded with another context: a new figure
    assert store.model_memory()["/m.gguf"] | {"measured_at": 0} == {
        "n_ctx": 4096, "estimated_bytes": 400, "measured_bytes": 120, "measured_at": 0}
