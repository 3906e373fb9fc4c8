"""Serving the loaded model to other apps: a second listener of the engine, on the real starter model."""
from __future__ import annotations

import http.client
import json
import socket

import psutil
import pytest

from engine_helpers import free_port, refused, started_engine
from runtime.engine.client import ChatClient
from runtime.engine.local import LocalEngine, ServedApi, is_loopback
from runtime.engine.types import LoadOptions, SamplingParams
from runtime.errors import EngineError, RemoteServerError

GREEDY = SamplingParams(temperature=0, max_tokens=12)
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def engine(starter_model):
    yield from started_engine(starter_model, LoadOptions(n_ctx=1024, n_threads=2))


@pytest.fixture
def served(engine):
    api = engine.serve(port=free_port())
    yield api
    engine.unserve()


def listening_addresses(pid: int, port: int) -> list[str]:
    return [c.laddr.ip for c in psutil.Process(pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port]


def post(port: int, path: str, body: dict, key: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, json.dumps(body), {"Authorization": f"Bearer {key}",
                                                      "Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_the_apps_own_client_gets_a_reply_from_the_served_api(engine, served):
    assert served.base_url == f"http://127.0.0.1:{served.port}/v1" and served.local_only
    assert listening_addresses(engine.pid, served.port) == ["127.0.0.1"]  # this computer only
    client = ChatClient(served.base_url, served.api_key)  # as for any remote server: no engine link
    assert client.list_models() == [engine.model_path.name]
    reply = client.stream_chat(HELLO, GREEDY)
    assert reply.text.strip() and reply.stats.counted_by == "engine"
    assert 0 < reply.stats.completion_tokens <= GREEDY.max_tokens and reply.stats.prompt_tokens > 5
    assert engine.client().stream_chat(HELLO, GREEDY).text == reply.text  # the same model, the same lock


def test_the_curl_line_is_a_working_request(served):
    import shlex

    words = shlex.split(served.curl_command("Say hi."))
    assert words[:2] == ["curl", f"{served.base_url}/chat/completions"]
    headers = dict(h.split(": ", 1) for h in (words[i + 1] for i, w in enumerate(words) if w == "-H"))
    body = json.loads(words[words.index("-d") + 1])
    assert headers["Authorization"] == f"Bearer {served.api_key}"
    status, answer = post(served.port, "/v1/chat/completions", {**body, "max_tokens": 8},
                          headers["Authorization"].split()[1])
    assert status == 200 and answer["choices"][0]["message"]["content"].strip()


def test_a_wrong_key_is_refused_with_401(engine, served):
    status, answer = post(served.port, "/v1/chat/completions", {"messages": HELLO}, "wrong")
    assert status == 401 and answer["error"]["type"] == "authentication_error"
    # the engine's own key does not open the served API, nor the served key the engine's port
    assert post(served.port, "/v1/count_tokens", {"messages": HELLO}, engine.api_key)[0] == 401
    assert post(engine.port, "/v1/count_tokens", {"messages": HELLO}, served.api_key)[0] == 401
    with pytest.raises(RemoteServerError, match="rejected the API key"):
        ChatClient(served.base_url, "wrong").stream_chat(HELLO, GREEDY)


def test_a_port_in_use_is_a_clear_error_and_the_engine_goes_on(engine):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EngineError) as info:
            engine.serve(port=port)
    assert info.value.message == f"Port {port} is already in use by another program: choose another port."
    assert not info.value.hint  # not the engine's usual "reload the model"
    assert engine.served is None and engine.alive
    assert engine.client().stream_chat(HELLO, GREEDY).text


def test_an_address_this_computer_does_not_have_is_named(engine):
    with pytest.raises(EngineError, match="no network address 192.0.2.1"):
        engine.serve("192.0.2.1", free_port())  # TEST-NET-1: never a local address


def test_unserve_closes_the_port_and_its_connections(engine):
    api = engine.serve(port=free_port())
    idle = socket.create_connection(("127.0.0.1", api.port), timeout=5)
    engine.unserve()
    assert engine.served is None and refused(api.port)
    try:
        ended = idle.recv(1) == b""  # the open connection was hung up (a FIN) ...
    except ConnectionResetError:
        ended = True  # ... or reset, when the listener closed before accepting it
    assert ended
    idle.close()
    assert engine.client().stream_chat(HELLO, GREEDY).text  # the app's own API is untouched
    again = engine.serve(port=api.port)  # the port is free again
    assert again.port == api.port
    engine.unserve()


def test_stopping_the_engine_stops_serving(starter_model):
    engine = LocalEngine(starter_model, LoadOptions(n_ctx=512, n_threads=2))
    engine.start()
    api = engine.serve(port=free_port())
    engine.stop()
    assert engine.served is None and refused(api.port)
    with pytest.raises(EngineError, match="not running"):
        engine.serve(port=api.port)


def test_the_openai_package_talks_to_the_served_api(served):
    import openai  # a dev dependency: the client other apps use

    client = openai.OpenAI(base_url=served.base_url, api_key=served.api_key, max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == [served.model]
    answer = client.chat.completions.create(model=served.model, messages=HELLO, max_tokens=8, temperature=0)
    assert answer.choices[0].message.content.strip() and 0 < answer.usage.completion_tokens <= 8
    chunks = list(client.chat.completions.create(model=served.model, messages=HELLO, max_tokens=8,
                                                 temperature=0, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served.base_url, api_key="wrong", max_retries=0).models.list()


@pytest.mark.parametrize("host, local", [("127.0.0.1", True), ("127.0.1.1", True), ("localhost", True),
                                         ("::1", True), ("[::1]", True), ("0.0.0.0", False),
                                         ("192.168.1.20", False), ("", False)])
def test_is_loopback(host, local):
    assert is_loopback(host) is local


def test_served_urls():
    assert ServedApi("0.0.0.0", 8080, "k", "m").base_url == "http://127.0.0.1:8080/v1"
    assert ServedApi("::1", 8080, "k", "m").base_url == "http://[::1]:8080/v1"
    assert not ServedApi("0.0.0.0", 8080, "k", "m").local_only
