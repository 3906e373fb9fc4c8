"""runtime.procs: a real child process (tests/procs_child.py) that prints events, sleeps or crashes."""
from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from runtime.errors import Cancelled, ModelFileError, ProcessCrashed, ProcessTimeout
from runtime.jobs import CancelToken
from runtime.procs import ChildProcess, child_command

TESTS = Path(__file__).resolve().parents[1]


def child(*args: str) -> ChildProcess:
    proc = ChildProcess("procs_child", args, env={"PYTHONPATH": str(TESTS)}, name="test child")
    proc.start()
    return proc


def test_events_are_read_and_other_lines_skipped():
    proc = child("events")
    try:
        ticks = []
        ready = proc.wait_for("ready", timeout=30, on_event=ticks.append)
        assert ready == {"event": "ready", "port": 1234}
        assert ticks == [{"event": "tick", "i": 1}, {"event": "tick", "i": 2}]
        assert proc.alive
    finally:
        proc.stop()
    assert not proc.alive and proc.returncode == 0
    assert proc.exit_reason() == "the test child was stopped"


def test_read_event_returns_none_at_the_end():
    proc = child("exit", "0")
    assert proc.read_event(timeout=30) is None
    assert list(proc.events()) == []


def test_an_error_event_is_raised_as_its_class_with_its_facts():
    proc = child("error")
    with pytest.raises(ModelFileError) as info:
        proc.wait_for("ready", timeout=30)
    err = info.value
    assert err.message == "The file is broken." and err.path == "/x/model.gguf" and err.facts["offset"] == 42
    assert err.hint == ModelFileError.default_hint


def test_startup_timeout_raises_and_kills_the_child():
    proc = child("sleep", "60")
    started = time.monotonic()
    with pytest.raises(ProcessTimeout, match=r"did not finish starting within 1 s"):
        proc.wait_for("ready", timeout=1.0)
    assert time.monotonic() - started < 10
    assert not proc.alive


def test_cancel_kills_the_child_promptly_and_raises_cancelled():
    proc = child("sleep", "60")
    assert proc.read_event(timeout=30)["event"] == "started"
    cancel = CancelToken()
    threading.Timer(0.3, cancel.cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        proc.wait_for("ready", timeout=60, cancel=cancel)
    assert time.monotonic() - started < 5
    assert not proc.alive and proc.signal_name() == "SIGKILL"


def test_an_already_cancelled_token_kills_at_once():
    proc = child("sleep", "60")
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        proc.wait_for("ready", timeout=60, cancel=cancel)
    assert not proc.alive


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("name, words", [
    ("SIGSEGV", "segmentation fault"),
    ("SIGILL", "illegal instruction"),
    ("SIGKILL", "running out of memory"),
    ("SIGABRT", "SIGABRT"),
    ("SIGBUS", "bus error"),
])
def test_death_by_signal_is_a_typed_error_naming_it_with_stderr_details(name, words):
    proc = child("signal", name)
    with pytest.raises(ProcessCrashed) as info:
        proc.wait_for("ready", timeout=30, doing="warming up", hint="Try again.")
    err = info.value
    assert f"The test child stopped while warming up: the test child process" in err.message
    assert name in err.message and words in err.message
    assert err.hint == "Try again."
    assert err.facts["signal"] == name and err.facts["exit_code"] == -getattr(signal, name)
    details = err.facts["details"]
    assert details.rstrip().endswith("last words before the crash")
    assert "stderr line 59" in details and "stderr line 0\n" not in details  # only the tail is kept


def test_a_nonzero_exit_is_explained():
    proc = child("exit", "7")
    with pytest.raises(ProcessCrashed, match="exited with code 7") as info:
        proc.wait_for("ready", timeout=30)
    assert info.value.facts["details"].strip() == "something went wrong"
    assert info.value.facts["signal"] is None


def test_child_command_from_source_and_frozen(monkeypatch):
    assert child_command("runtime.engine.server", ["--x"]) == [sys.executable, "-m", "runtime.engine.server", "--x"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert child_command("m", ["a"]) == [sys.executable, "--workbench-child", "m", "a"]


def test_the_app_entry_point_runs_a_child_module(tmp_path):
    """What a frozen app does with --workbench-child, checked through `python -m app`."""
    import subprocess

    repo = TESTS.parent
    env = {"PYTHONPATH": f"{repo}:{TESTS}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "app", "--workbench-child", "procs_child", "exit", "5"],
                            cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 5
    assert "something went wrong" in result.stderr
