"""The chat engine process and its OpenAI-compatible client, on the real starter model."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from runtime.chat_client import ChatClient
from runtime.chat_types import LoadOptions, SamplingParams
from runtime.engine_process import LocalEngine
from runtime.errors import (
    Cancelled, ContextOverflow, EngineCrashed, ModelFileError, RemoteServerError, UnsupportedArchitectureError,
)
from runtime.jobs import CancelToken
import model_files

GREEDY = SamplingParams(temperature=0, max_tokens=24)


@pytest.fixture(scope="module")
def engine(starter_model):
    engine = LocalEngine(starter_model, LoadOptions(n_ctx=2048, n_threads=2))
    engine.start()
    yield engine
    engine.stop()


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
    cancel = CancelToken()
    seen: list[str] = []

    def on_text(text: str) -> None:
        seen.append(text)
        if len(seen) == 5:
            cancel.cancel()

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


def test_cancel_during_load(starter_model):
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        LocalEngine(starter_model).start(cancel)


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
