"""The contract for long work: a plain function with a progress callback and a cancel token."""
from __future__ import annotations

import collections
import threading
import time
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


class RateMeter:
    """Speed and time left of long work, measured over the last few seconds.

    Feed it ``update(done)`` as work advances (any unit: bytes, tensors, ...); read ``rate``
    (units per second, None until there is enough to measure), ``eta_s`` (seconds left, None when
    unknown) or ``text(format_amount)`` ("85.3 MiB/s, 6 s left"). Work that resumes part-way counts
    only what this meter saw advance, so bytes already on disk do not inflate the speed.
    """

    def __init__(self, total: float = 0, *, window_s: float = 5.0, clock: Callable[[], float] | None = None):
        self.total = total
        self.window_s = window_s
        self._clock = clock or time.monotonic
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self.done = 0.0

    def update(self, done: float, total: float | None = None) -> None:
        """Record that ``done`` units are finished now (``total`` may change, e.g. once it is known)."""
        now = self._clock()
        if total is not None:
            self.total = total
        if self._samples and done < self._samples[-1][1]:
            self._samples.clear()  # went backwards (work restarted): measure afresh
        self.done = done
        if len(self._samples) >= 2 and now - self._samples[-2][0] < 0.05:
            self._samples[-1] = (now, done)  # many updates a second: keep one sample per 50 ms
        else:
            self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    @property
    def rate(self) -> float | None:
        """Units per second over the window; None before 0.2 s of samples."""
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if t1 - t0 < 0.2:
            return None
        return max(0.0, (d1 - d0) / (t1 - t0))

    @property
    def eta_s(self) -> float | None:
        """Seconds until ``total`` at the current rate; None when the total or the rate is unknown."""
        rate = self.rate
        if not self.total or not rate:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def text(self, format_amount: Callable[[float], str] = lambda v: f"{v:,.0f}") -> str:
        """"<rate>/s, <time> left", or "measuring speed..." before the first figure."""
        rate = self.rate
        if rate is None:
            return "measuring speed..."
        eta = self.eta_s
        left = f", {format_duration(eta)} left" if eta is not None else ""
        return f"{format_amount(rate)}/s{left}"


def format_duration(seconds: float) -> str:
    """Short, rounded time for people: '8 s', '3 min 05 s', '2 h 14 min'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
