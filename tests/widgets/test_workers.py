"""The worker: outcomes as objects, throttled text, cancel, and joined threads."""
from __future__ import annotations

import threading
import time

import pytest

from runtime.errors import ModelFileError
from widgets import workers
from widgets.workers import Worker, error_details, error_text


def test_done_delivers_result_on_ui_thread(qtbot):
    seen = {}

    def body(job):
        seen["thread"] = threading.current_thread()
        return 42

    worker = Worker(body)
    with qtbot.waitSignal(worker.sig_done, timeout=10_000) as blocker:
        worker.start()
    assert blocker.args == [42]
    assert seen["thread"] is not threading.main_thread()
    qtbot.waitUntil(lambda: not worker.running)


def test_failure_arrives_as_the_error_object(qtbot):
    error = ModelFileError("bad.gguf is not a GGUF", path="bad.gguf")

    def body(job):
        raise error

    worker = Worker(body)
    with qtbot.waitSignal(worker.sig_failed, timeout=10_000) as blocker:
        worker.start()
    assert blocker.args[0] is error
    assert error_text(blocker.args[0]) == error.user_text()


def test_cancel_gives_cancelled_not_failed(qtbot):
    def body(job):
        while True:
            job.cancel.check()
            time.sleep(0.005)

    worker = Worker(body)
    failed = []
    worker.sig_failed.connect(failed.append)
    worker.start()
    with qtbot.waitSignal(worker.sig_cancelled, timeout=10_000):
        worker.cancel()
    assert failed == []


def test_text_is_coalesced_and_complete(qtbot):
    pieces = [f"t{i} " for i in range(3000)]

    def body(job):
        for i, piece in enumerate(pieces):
            job.text(piece)
            if i % 100 == 0:
                time.sleep(0.01)
        return "end"

    worker = Worker(body)
    received = []
    worker.sig_text.connect(received.append)
    with qtbot.waitSignal(worker.sig_done, timeout=20_000):
        worker.start()
    assert "".join(received) == "".join(pieces)
    # ~0.3 s of work flushed every 40 ms: a handful of signals, not one per piece
    assert 1 <= len(received) < 100


def test_progress_keeps_only_the_latest_value(qtbot):
    def body(job):
        for i in range(1, 1001):
            job.progress(i, 1000, "step")
        return None

    worker = Worker(body)
    updates = []
    worker.sig_progress.connect(lambda d, t, m: updates.append((d, t, m)))
    with qtbot.waitSignal(worker.sig_done, timeout=10_000):
        worker.start()
    assert updates and updates[-1] == (1000.0, 1000.0, "step")
    assert len(updates) < 50


def test_shutdown_all_cancels_and_joins(qtbot):
    def body(job):
        while not job.cancel.wait(0.01):
            pass
        return "stopped"

    done = []
    first, second = Worker(body, name="a"), Worker(body, name="b")
    for worker in (first, second):
        worker.sig_done.connect(done.append)
        worker.start()
    assert len(workers.running_workers()) == 2
    assert workers.shutdown_all(timeout_ms=10_000) == []
    assert workers.running_workers() == []
    assert done == ["stopped", "stopped"]


def test_worker_cannot_start_twice(qtbot):
    worker = Worker(lambda job: None)
    with qtbot.waitSignal(worker.sig_finished, timeout=10_000):
        worker.start()
    with pytest.raises(RuntimeError):
        worker.start()


def test_unexpected_errors_are_objects_too(qtbot):
    worker = Worker(lambda job: 1 / 0)
    with qtbot.waitSignal(worker.sig_failed, timeout=10_000) as blocker:
        worker.start()
    assert isinstance(blocker.args[0], ZeroDivisionError)
    # in words for the person; Python's own name and text one click away (Details)
    assert "ZeroDivisionError" not in error_text(blocker.args[0]) and "unexpected" in error_text(blocker.args[0])
    assert "ZeroDivisionError: division by zero" in error_details(blocker.args[0])
