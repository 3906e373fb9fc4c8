"""`workbench serve`: the starter model served to other apps until Ctrl-C."""
from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runtime.engine.client import ChatClient
from runtime.engine.types import SamplingParams

REPO = Path(__file__).resolve().parents[2]
STARTER = "SmolLM2-135M-Instruct.Q4_1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serving(*args: str) -> tuple[subprocess.Popen, queue.Queue]:
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    return proc, lines


def read_until(lines: queue.Queue, pattern: str, timeout: float = 120) -> tuple[re.Match, list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            return match, seen
    pytest.fail(f"no line matching {pattern!r}; got {seen!r}")


def test_serve_answers_the_apps_client_and_stops_cleanly_on_ctrl_c(starter_model):
    port = free_port()
    proc, lines = start_serving(STARTER, "--port", str(port), "--threads", "2", "--ctx", "1024")
    try:
        url = read_until(lines, r"Base URL: (\S+)")[0].group(1)
        key = read_until(lines, r"API key:\s+(\S+)")[0].group(1)
        curl = read_until(lines, r"^\s+curl ")[1][-1]
        read_until(lines, "Ctrl-C")
        assert url == f"http://127.0.0.1:{port}/v1" and key in curl and url in curl
        reply = ChatClient(url, key).stream_chat([{"role": "user", "content": "Say hello."}],
                                                 SamplingParams(temperature=0, max_tokens=8))
        assert reply.text.strip() and reply.stats.counted_by == "engine"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
        assert "Stopped serving." in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_serve_with_another_host_warns_and_a_taken_port_is_explained(starter_model):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "app.cli", "serve", STARTER, "--host", "0.0.0.0",
                                 "--port", str(port), "--threads", "2", "--ctx", "512"],
                                cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "warning: serving on 0.0.0.0: other computers" in result.stderr
    assert f"error: Port {port} is already in use by another program: choose another port." in result.stderr


def test_serve_refuses_a_port_that_is_not_one():
    result = subprocess.run([sys.executable, "-m", "app.cli", "serve", STARTER, "--port", "70000"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "is not a port" in result.stderr
