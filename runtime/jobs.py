"""The contract for long work: a plain function with a progress callback and a cancel token."""
from __future__ import annotations

import threading
from typing import Callable

from runtime.errors import Cancelled

# progress(done, total, message): total may be 0 when unknown.
ProgressCallback = Callable[[float, float, str], None]


def no_progress(done: float, total: float, message: str = "") -> None:
    """A progress callback that ignores its updates."""


class CancelToken:
    """Thread-safe flag that long work polls; ``check()`` raises ``Cancelled`` once set."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; return True early if cancelled."""
        return self._event.wait(timeout)
