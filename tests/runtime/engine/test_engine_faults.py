"""The engine under hostile input and faults: Stop at any stage, typed errors, bounded requests and
connections, and a client that bounds what a server sends. Real engine processes on the starter."""
from __future__ import annotations

import http.client
import json
import socket
import socketserver
import threading
import time

import psutil
import pytest

from engine_helpers import started_engine
from runtime.engine.client import MAX_EVENT_BYTES, ChatClient
from runtime.engine.local import LocalEngine
from runtime.engine.runner import LlamaRunner
from runtime.engine.server import MAX_CONNECTIONS, EngineHandler, EngineServer
from runtime.engine.types import LoadOptions, SamplingParams
from runtime.errors import BadRequest, EngineError, RemoteServerError, TemplateError, WorkbenchError
from runtime.jobs import CancelToken
from starter_variants import write_starter_variant

SHORT = SamplingParams(temperature=0, max_tokens=4)
LONG_PROMPT = [{"role": "user", "content": "Summarise this text. " + "The quick brown fox jumps over the lazy dog. " * 300}]

# The starter's own ChatML, preceded by a hostile behaviour picked by the first message's text.
HOSTILE_TEMPLATE = (
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{% set first = messages[0]['content'] %}"
    "{% if first == 'recurse' %}{{ f(0) }}"
    "{% elif first == 'slow' %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    "{% elif first == 'huge' %}{{ 'x' * 10**8 }}{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def engine(starter_model):
    yield from started_engine(starter_model, LoadOptions(n_ctx=4096, n_threads=2))


@pytest.fixture(scope="module")
def hostile_engine(starter_model, tmp_path_factory):
    model = write_starter_variant(starter_model, tmp_path_factory.mktemp("hostile"), "hostile.gguf",
                                  chat_template=HOSTILE_TEMPLATE)
    engine = LocalEngine(model, LoadOptions(n_ctx=1024, n_threads=2))
    engine.start()
    yield engine
    engine.stop()


def _stop_after(delay_s: float, messages, client: ChatClient) -> tuple[float, str]:
    """Stream ``messages``, press Stop after ``delay_s``; return (seconds from Stop to return, finish)."""
    cancel = CancelToken()
    pressed: list[float] = []
    timer = threading.Timer(delay_s, lambda: (pressed.append(time.perf_counter()), cancel.cancel()))
    timer.start()
    reply = client.stream_chat(messages, SamplingParams(max_tokens=64), cancel=cancel)
    returned = time.perf_counter()
    timer.join()
    return returned - pressed[0], reply.stats.finish_reason


def _cpu_seconds(pid: int, over_s: float) -> float:
    process = psutil.Process(pid)
    before = sum(process.cpu_times()[:2])
    time.sleep(over_s)
    return sum(process.cpu_times()[:2]) - before


# --- Stop takes effect at once, at every stage -------------------------------------------------

def test_stop_during_prompt_evaluation_returns_at_once_and_frees_the_engine(engine):
    client = engine.client()
    assert client.count_tokens(LONG_PROMPT) > 2000  # ~10 s of prompt evaluation on 2 cores
    latency, finish = _stop_after(0.3, LONG_PROMPT, client)
    assert finish == "cancelled"
    assert latency < 0.5  # the promise is 100 ms; benchmarks/stop_latency.py measures it
    time.sleep(0.2)
    assert _cpu_seconds(engine.pid, 1.0) < 0.3  # the engine stopped evaluating the long prompt
    assert client.stream_chat([{"role": "user", "content": "Hi"}], SHORT).text


def test_stop_while_the_template_renders(hostile_engine):
    latency, finish = _stop_after(0.3, [{"role": "user", "content": "slow"}], hostile_engine.client())
    assert finish == "cancelled" and latency < 0.5
    time.sleep(0.2)
    assert _cpu_seconds(hostile_engine.pid, 1.0) < 0.3  # and the engine stopped rendering


def test_stop_before_the_request_is_sent_sends_nothing(engine):
    cancel = CancelToken()
    cancel.cancel()
    started = time.perf_counter()
    reply = engine.client().stream_chat(LONG_PROMPT, SHORT, cancel=cancel)
    assert reply.text == "" and reply.stats.finish_reason == "cancelled"
    assert time.perf_counter() - started < 0.5


# --- every failure inside the engine is a typed error with its cause ------------------------------

@pytest.mark.parametrize("first, error, words", [
    ("recurse", TemplateError, "RecursionError"),
    ("slow", TemplateError, "longer than 5 s"),
    ("huge", TemplateError, "more than"),
])
def test_hostile_templates_fail_with_a_template_error(hostile_engine, first, error, words):
    with pytest.raises(error) as caught:
        hostile_engine.client().stream_chat([{"role": "user", "content": first}], SHORT)
    assert words in caught.value.message
    assert "server address" not in caught.value.user_text()


def _post(engine, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=body, headers={
        "Authorization": f"Bearer {engine.api_key}", "Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    data = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, data


@pytest.mark.parametrize("body, words", [
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e400}', "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', "max_tokens = 0"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "temperature = nan"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "repeat_penalty": "high"}', "repeat_penalty"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "seed": 1e30}', "seed"),
    (b'{"messages": "hi"}', "'messages'"),
    (b'{"messages": [{"content": "hi"}]}', "'role'"),
    (b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', "image_url"),
    (b'{"messages": [', "not valid JSON"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
])
def test_bad_requests_are_refused_with_the_field_named(engine, body, words):
    status, data = _post(engine, body)
    assert status == 400
    assert data["error"]["kind"] == "bad_request" and words in data["error"]["message"]


def test_a_body_bigger_than_the_context_could_hold_is_refused_unread(engine):
    status, data = _post(engine, b"{}", {"Content-Length": str(1 << 30)})
    assert status == 400 and "1,073,741,824 bytes" in data["error"]["message"]


def test_client_errors_arrive_typed(engine):
    with pytest.raises(BadRequest, match="max_tokens = 0"):
        engine.client().stream_chat([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=0))


def test_content_as_text_parts_is_answered(engine):
    parts = [{"type": "text", "text": "Say "}, {"type": "text", "text": "hello."}]
    reply = engine.client().stream_chat([{"role": "user", "content": parts}], SHORT)
    assert reply.text == engine.client().stream_chat([{"role": "user", "content": "Say hello."}], SHORT).text


@pytest.mark.parametrize("options, words", [
    (LoadOptions(n_ctx=512, n_threads=100000), "100000 threads"),
    (LoadOptions(n_ctx=2**32 + 512, n_threads=2), "4294967808 tokens"),
])
def test_the_engine_refuses_load_options_that_would_kill_it(starter_model, options, words):
    engine = LocalEngine(starter_model, options)
    with pytest.raises(WorkbenchError) as caught:
        engine.start()
    engine.stop()
    assert words in caught.value.message and not isinstance(caught.value, EngineError)


# --- connections are bounded; the engine keeps serving its own client ----------------------------

def test_idle_strangers_cannot_lock_the_engine_out(engine):
    strangers = [socket.create_connection(("127.0.0.1", engine.port)) for _ in range(300)]
    try:
        started = time.perf_counter()
        assert engine.client().stream_chat([{"role": "user", "content": "Hi"}], SHORT).text
        assert time.perf_counter() - started < 10
        assert psutil.Process(engine.pid).num_threads() < MAX_CONNECTIONS + 20
        time.sleep(0.5)
        assert _cpu_seconds(engine.pid, 1.0) < 0.3  # no busy loop in accept
        evicted = 0
        for s in strangers:
            s.settimeout(0.01)
            try:
                evicted += s.recv(1) == b""
            except (socket.timeout, OSError):
                pass
        assert evicted >= 300 - MAX_CONNECTIONS
    finally:
        for s in strangers:
            s.close()


def test_health_needs_the_key(engine):
    conn = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=10)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 401


def test_a_silent_connection_is_closed(starter_model, monkeypatch):
    assert EngineHandler.timeout and EngineHandler.timeout <= 30  # the engine's own setting
    monkeypatch.setattr(EngineHandler, "timeout", 0.3)  # shortened so the test need not wait for it
    runner = LlamaRunner(starter_model, LoadOptions(n_ctx=256, n_threads=2, n_gpu_layers=0))
    server = EngineServer(runner, "key", "starter")
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        silent = socket.create_connection(server.server_address)
        silent.settimeout(5)
        started = time.perf_counter()
        assert silent.recv(1) == b""  # closed by the engine, not by us
        assert time.perf_counter() - started < 2
    finally:
        server.shutdown()
        server.server_close()
        runner.close()


# --- a remote server cannot make the client grow without bound ------------------------------------

class _FloodHandler(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: ")
        chunk = b"x" * (1 << 20)
        try:
            for _ in range(1024):  # a 1 GiB event line
                self.wfile.write(chunk)
        except OSError:
            pass


def test_a_remote_server_sending_a_giant_event_is_cut_off():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _FloodHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    me = psutil.Process()
    before = me.memory_info().rss
    try:
        client = ChatClient(f"http://127.0.0.1:{server.server_address[1]}/v1")
        with pytest.raises(RemoteServerError, match=f"more than {MAX_EVENT_BYTES >> 20} MiB"):
            client.stream_chat([{"role": "user", "content": "hi"}], SHORT)
        assert me.memory_info().rss - before < 200 << 20
    finally:
        server.shutdown()
        server.server_close()
