"""The chat engine process and its OpenAI-compatible client, on the real starter model."""
from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from engine_helpers import started_engine, stop_after
from runtime.engine.client import ChatClient
from runtime.engine.types import LoadOptions, SamplingParams
from runtime.engine.local import LocalEngine
from runtime.errors import (
    Cancelled, ContextOverflow, EngineBuildMismatch, EngineCrashed, ModelFileError, RemoteServerError,
    UnsupportedArchitectureError,
)
from runtime.jobs import CancelToken
import model_files

GREEDY = SamplingParams(temperature=0, max_tokens=24)


@pytest.fixture(scope="module")
def engine(starter_model):
    yield from started_engine(starter_model, LoadOptions(n_ctx=2048, n_threads=2))


def test_streams_a_reply_with_stats(engine):
    pieces: list[str] = []
    reply = engine.client().stream_chat(
        [{"role": "user", "content": "What is the capital of France?"}], GREEDY, on_text=pieces.append)
    assert reply.text and reply.text == "".join(pieces)
    assert len(pieces) > 3  # streamed piece by piece, not in one block
    stats = reply.stats
    assert stats.prompt_tokens > 10
    assert stats.completion_tokens == GREEDY.max_tokens and stats.finish_reason == "length"
    assert 0 < stats.ttft_s < stats.total_s
    assert stats.gen_tokens_per_s > 1


def test_greedy_replies_are_reproducible(engine):
    messages = [{"role": "user", "content": "Name three colours."}]
    first = engine.client().stream_chat(messages, GREEDY).text
    assert engine.client().stream_chat(messages, GREEDY).text == first


def test_second_turn_evaluates_only_the_new_tokens(engine):
    client = engine.client()
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Tell me about the Moon in two sentences. " * 8}]
    turn1 = client.stream_chat(messages, GREEDY)
    messages += [{"role": "assistant", "content": turn1.text}, {"role": "user", "content": "And the Sun?"}]
    turn2 = client.stream_chat(messages, GREEDY)
    new_tokens = turn2.stats.prompt_tokens - turn1.stats.prompt_tokens - turn1.stats.completion_tokens
    assert turn1.stats.prompt_tokens > 80
    assert 0 < turn2.stats.prompt_tokens_evaluated <= new_tokens + 2
    assert turn2.stats.prompt_tokens_evaluated < turn2.stats.prompt_tokens - turn1.stats.prompt_tokens


def test_stop_mid_reply_keeps_the_partial_text_and_the_engine_usable(engine):
    client = engine.client()
    seen, on_text, cancel = stop_after(5)
    reply = client.stream_chat([{"role": "user", "content": "Write a long story about a lighthouse."}],
                               SamplingParams(max_tokens=400, seed=3), on_text=on_text, cancel=cancel)
    assert reply.stats.finish_reason == "cancelled"
    assert 5 <= len(seen) < 50 and reply.text == "".join(seen)
    after = client.stream_chat([{"role": "user", "content": "Hi"}], GREEDY)
    assert after.text and after.stats.finish_reason in ("stop", "length")


def test_context_overflow_is_a_clear_error(engine):
    with pytest.raises(ContextOverflow, match="2048"):
        engine.client().stream_chat([{"role": "user", "content": "word " * 3000}], GREEDY)


def test_rejects_a_wrong_api_key(engine):
    with pytest.raises(RemoteServerError, match="API key"):
        ChatClient(engine.client().base_url, api_key="not-the-key").check()


def test_killed_engine_raises_engine_crashed_and_reload_works(starter_model):
    engine = LocalEngine(starter_model, LoadOptions(n_ctx=512, n_threads=2))
    engine.start()
    started = threading.Event()

    def kill_when_streaming(_text):
        if not started.is_set():
            started.set()
            os.kill(engine.pid, signal.SIGKILL)

    with pytest.raises(EngineCrashed, match="killed"):
        engine.client().stream_chat([{"role": "user", "content": "Count to one hundred."}],
                                    SamplingParams(max_tokens=500), on_text=kill_when_streaming)
    assert not engine.alive
    with pytest.raises(EngineCrashed):
        engine.client().stream_chat([{"role": "user", "content": "Hi"}], GREEDY)
    reloaded = LocalEngine(starter_model, engine.options)
    reloaded.start()
    try:
        assert reloaded.client().stream_chat([{"role": "user", "content": "Hi"}], GREEDY).text
    finally:
        reloaded.stop()


def test_cancel_while_the_child_is_loading_kills_it(starter_model):
    engine = LocalEngine(starter_model, LoadOptions(n_ctx=512, n_threads=2))
    cancel = CancelToken()
    seen: list[dict] = []

    def on_event(event: dict) -> None:
        seen.append(event)
        if event.get("event") == "loading":
            assert psutil.pid_exists(engine.pid)  # the child is really there, loading
            cancel.cancel()

    with pytest.raises(Cancelled):
        engine.start(cancel, on_event=on_event)
    assert seen and seen[0]["event"] == "loading"
    assert not engine.alive and engine.wait_exit(0)
    assert not psutil.pid_exists(engine.pid) or psutil.Process(engine.pid).status() == psutil.STATUS_ZOMBIE
    assert engine.port is None and engine.ready_info == {} and engine.placement == ""


def test_an_already_cancelled_load_raises_cancelled(starter_model):
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        LocalEngine(starter_model).start(cancel)


# --- where the model runs -----------------------------------------------------------------------

def test_the_ready_line_says_cpu_on_this_machine(engine):
    assert engine.ready_info["placement"] == engine.placement == "CPU"
    assert engine.ready_info["n_gpu_layers"] == 0 and engine.ready_info["gpu_devices"] == []
    assert engine.options.n_gpu_layers is None  # the automatic choice
    assert engine.ready_info["offload"]["layers_offloaded"] == 0 and engine.offload.model_bytes > 0


def test_gpu_layers_asked_of_a_cpu_only_build_are_reported(starter_model):
    with LocalEngine(starter_model, LoadOptions(n_ctx=512, n_threads=2, n_gpu_layers=8)) as engine:
        # what llama.cpp did (its load log), with what was asked for
        assert engine.placement == "CPU (asked for 8 GPU layers; llama.cpp offloaded 0: this build has no GPU backend)"
        assert engine.offload.layers_offloaded == 0
        assert engine.client().stream_chat([{"role": "user", "content": "Hi"}], GREEDY).text


# --- crashes: a build that does not match the CPU -----------------------------------------------

@pytest.fixture
def no_core_files():
    """Crash tests kill engines with SIGILL: keep them from writing core files (children inherit this)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    yield
    resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))


@pytest.mark.parametrize("when", ["while_evaluating", "before_the_request"])
def test_death_on_the_first_prompt_says_the_build_does_not_match_the_cpu(starter_model, no_core_files, when):
    engine = LocalEngine(starter_model, LoadOptions(n_ctx=2048, n_threads=2))
    engine.start()
    try:
        long_prompt = [{"role": "user", "content": "Tell me about lighthouses and the sea. " * 180}]
        if when == "before_the_request":
            os.kill(engine.pid, signal.SIGILL)
        else:  # the prompt takes seconds to evaluate: kill the engine in the middle of it
            threading.Timer(1.0, os.kill, args=(engine.pid, signal.SIGILL)).start()
        started = time.monotonic()
        with pytest.raises(EngineBuildMismatch) as info:
            engine.client().stream_chat(long_prompt, GREEDY)
        assert time.monotonic() - started < 30
    finally:
        engine.stop()
    err = info.value
    assert isinstance(err, EngineCrashed)
    assert "SIGILL" in err.message and "illegal instruction" in err.message
    assert "does not match this computer's CPU" in err.message and "first prompt" in err.message
    assert "rm .venv/llama-build.stamp && bash scripts/setup.sh" in err.hint
    assert "server address" not in err.user_text() and "No answer from" not in err.user_text()
    assert err.facts["signal"] == "SIGILL" and "details" in err.facts


def test_death_after_a_completed_reply_names_the_signal_only(starter_model, no_core_files):
    engine = LocalEngine(starter_model, LoadOptions(n_ctx=512, n_threads=2))
    engine.start()
    try:
        client = engine.client()
        assert client.stream_chat([{"role": "user", "content": "Hi"}], GREEDY).text
        assert engine.replies_completed == 1

        def kill_on_first_text(_text, killed=[]):
            if not killed:
                killed.append(True)
                os.kill(engine.pid, signal.SIGILL)

        with pytest.raises(EngineCrashed) as info:
            client.stream_chat([{"role": "user", "content": "Count to one hundred."}],
                               SamplingParams(max_tokens=500), on_text=kill_on_first_text)
    finally:
        engine.stop()
    err = info.value
    assert not isinstance(err, EngineBuildMismatch)  # the build already ran this model here
    assert "SIGILL" in err.message and "illegal instruction" in err.message
    assert "Reload the model" in err.hint and "server address" not in err.user_text()


@pytest.mark.parametrize("bad_file", ["not_gguf", "truncated", "garbage_header"])
def test_bad_files_fail_with_model_file_error(tmp_path, starter_model, bad_file):
    path = {
        "not_gguf": lambda: model_files.write_not_gguf(tmp_path),
        "truncated": lambda: model_files.write_truncated_copy(starter_model, tmp_path),
        "garbage_header": lambda: model_files.write_garbage_header(tmp_path),
    }[bad_file]()
    with pytest.raises(ModelFileError) as info:
        LocalEngine(path).start()
    assert info.value.hint and str(path.name) in str(info.value)


def test_unknown_architecture_is_named(tmp_path):
    path = model_files.write_unknown_arch_gguf(tmp_path, arch="flibbertigibbet")
    with pytest.raises(UnsupportedArchitectureError, match="flibbertigibbet"):
        LocalEngine(path).start()


def test_a_folder_is_not_a_model(tmp_path):
    with pytest.raises(ModelFileError, match="folder"):
        LocalEngine(tmp_path).start()


def test_auto_gpu_layers_take_all_part_or_none_of_the_model(starter_model):
    """The engine's "auto": all layers when the model fits the GPU, as many as fit when part does."""
    from runtime.engine.server import choose_gpu_layers
    from runtime.models.hardware import GpuDevice

    def gpu(mib: int) -> list[GpuDevice]:
        return [GpuDevice("CUDA0", "a described GPU", mib << 20, mib << 20)]

    path = str(starter_model)
    assert choose_gpu_layers(None, path, 4096, []) == 0            # a CPU-only build
    assert choose_gpu_layers(None, path, 4096, gpu(100)) == 0      # not even one layer fits
    assert 0 < choose_gpu_layers(None, path, 4096, gpu(250)) < 30  # part of the 30 blocks
    assert choose_gpu_layers(None, path, 4096, gpu(800)) == -1     # all of it
    assert choose_gpu_layers(7, path, 4096, gpu(800)) == 7         # asked for: as asked
