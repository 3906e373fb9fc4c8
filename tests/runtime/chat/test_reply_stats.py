"""The figures saved with a reply are the engine's own token counts, also after Stop and after a crash.

The proof that a stopped reply's ``completion_tokens`` N is exact for its saved text: greedy
generation is deterministic, so asking the engine for the same reply with max_tokens N gives exactly
that text, and with N - 1 a shorter one. (The chunks the engine streams hold several tokens each, so
a count of chunks, or of pieces, fails this.)
"""
from __future__ import annotations

import os
import signal
import socketserver
import threading

import pytest

from engine_helpers import started_engine, stop_after
from runtime.chat.session import ConversationSession
from runtime.engine.client import ChatClient
from runtime.engine.local import LocalEngine
from runtime.engine.types import LoadOptions, SamplingParams
from runtime.errors import EngineCrashed
from runtime.jobs import CancelToken

OPTIONS = LoadOptions(n_ctx=1024, n_threads=2)
STORY = "Write a long story about a lighthouse keeper and his cat."


def greedy(max_tokens: int) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=max_tokens)


@pytest.fixture(scope="module")
def engine(starter_model):
    yield from started_engine(starter_model, OPTIONS)



def assert_exact_for(engine, text: str, stats) -> None:
    """``stats.completion_tokens`` tokens make exactly ``text``; one fewer makes less."""
    n = stats.completion_tokens
    messages = [{"role": "user", "content": STORY}]
    again = engine.client().stream_chat(messages, greedy(n))
    assert again.text == text and again.stats.completion_tokens == n
    assert again.stats.prompt_tokens == stats.prompt_tokens
    shorter = engine.client().stream_chat(messages, greedy(n - 1)).text
    assert len(shorter) < len(text) and text.startswith(shorter)


def test_stop_saves_the_engines_counts_for_the_text_that_arrived(store, engine):
    chat = ConversationSession.create(store, engine.client())
    cancel = CancelToken()
    pieces: list[str] = []

    def on_text(text: str) -> None:
        pieces.append(text)
        if len(pieces) >= 3 and len("".join(pieces)) > 60:
            cancel.cancel()

    turn = chat.send(STORY, greedy(400), on_text=on_text, cancel=cancel)
    saved = chat.messages()[-1]
    assert saved.role == "assistant" and saved.content == "".join(pieces)
    stats = saved.stats
    assert stats.finish_reason == "cancelled"
    assert stats.prompt_tokens == engine.client().count_tokens([{"role": "user", "content": STORY}])
    assert 3 <= stats.completion_tokens < 400
    assert_exact_for(engine, saved.content, stats)
    assert stats.gen_tokens_per_s > 1  # from the engine's own timing of those tokens
    assert stats.counted_by == "engine" and turn.stats == stats


def test_a_killed_engine_leaves_the_partial_reply_with_the_engines_counts(store, starter_model, engine):
    doomed = LocalEngine(starter_model, OPTIONS)
    doomed.start()
    try:
        chat = ConversationSession.create(store, doomed.client())
        pieces: list[str] = []

        def on_text(text: str) -> None:
            pieces.append(text)
            if len(pieces) == 3:
                os.kill(doomed.pid, signal.SIGKILL)

        with pytest.raises(EngineCrashed) as info:
            chat.send(STORY, greedy(400), on_text=on_text)
    finally:
        doomed.stop()
    saved = chat.messages()[-1]
    assert info.value.partial_reply.id == saved.id and saved.content == "".join(pieces)
    stats = saved.stats
    assert stats is not None and stats.finish_reason == "error"
    assert stats.prompt_tokens > 10 and stats.completion_tokens >= 3
    assert_exact_for(engine, saved.content, stats)  # a fresh engine with the same model and options
    assert stats.counted_by == "engine"


# --- a server that reports no running counts --------------------------------------------------------

class _PlainSSE(socketserver.StreamRequestHandler):
    """An OpenAI-style server streaming one word per event, with usage only in the final event."""

    words = 40

    def handle(self):
        self.rfile.readline()
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        self.rfile.read(length)
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        try:
            for i in range(self.words):
                self.wfile.write(b'data: {"choices":[{"index":0,"delta":{"content":"word%d "}}]}\n\n' % i)
                self.wfile.flush()
            self.wfile.write(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
                             b'"usage":{"prompt_tokens":12,"completion_tokens":80,"total_tokens":92}}\n\n'
                             b"data: [DONE]\n\n")
        except OSError:
            pass


@pytest.fixture
def plain_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _PlainSSE)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield ChatClient(f"http://127.0.0.1:{server.server_address[1]}/v1")
    server.shutdown()
    server.server_close()


def test_a_remote_reply_is_counted_by_its_usage_not_by_its_chunks(plain_server):
    reply = plain_server.stream_chat([{"role": "user", "content": "hi"}], greedy(100))
    stats = reply.stats
    assert reply.text.count("word") == 40
    assert (stats.prompt_tokens, stats.completion_tokens, stats.counted_by) == (12, 80, "engine")


def test_a_stopped_remote_reply_without_counts_says_unknown_not_chunks(plain_server):
    seen, on_text, cancel = stop_after(5)
    reply = plain_server.stream_chat([{"role": "user", "content": "hi"}], greedy(100), on_text=on_text,
                                     cancel=cancel)
    stats = reply.stats
    assert stats.finish_reason == "cancelled" and reply.text == "".join(seen) and len(seen) == 5
    assert (stats.prompt_tokens, stats.completion_tokens, stats.gen_tokens_per_s) == (0, 0, 0)
    assert stats.counted_by == ""  # unknown: the server never said
