"""Helpers for tests on a real engine: one started for a test module, a reply stopped after some
pieces, and the ports its listeners use."""
from __future__ import annotations

import socket

from runtime.engine.local import LocalEngine
from runtime.jobs import CancelToken


def started_engine(model_path, options):
    """For a fixture (``yield from``): a started LocalEngine, stopped afterwards."""
    engine = LocalEngine(model_path, options)
    engine.start()
    yield engine
    engine.stop()


def stop_after(pieces: int):
    """(seen, on_text, cancel): ``on_text`` keeps each piece of a reply in ``seen`` and cancels after ``pieces``."""
    cancel = CancelToken()
    seen: list[str] = []

    def on_text(text: str) -> None:
        seen.append(text)
        if len(seen) == pieces:
            cancel.cancel()

    return seen, on_text, cancel


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(port: int) -> bool:
    """Whether a connection to 127.0.0.1:``port`` is refused (nothing listens there)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False
