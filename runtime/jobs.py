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
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def add_callback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once on cancel (at once if already cancelled); used to unblock I/O."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def remove_callback(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; return True early if cancelled."""
        return self._event.wait(timeout)
