"""SIGTERM (logout, system shutdown, ``kill``) and Ctrl+C in the terminal close the window the way Quit
does: window state saved, the reply being written saved, the engine stopped.

Python runs a signal handler only when the interpreter gets control, and Qt's event loop is C++: the
signal module writes a byte to a socket (``signal.set_wakeup_fd``) that a QSocketNotifier watches, so
the loop wakes at once and the handler runs.
"""
from __future__ import annotations

import signal
import socket

from PySide6.QtCore import QSocketNotifier, QTimer

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), signal.SIGINT) if s is not None)


class CloseOnTerminate:
    """While installed, SIGTERM and SIGINT call ``close()`` (e.g. the main window's) on the Qt thread."""

    def __init__(self, close) -> None:
        self._close = close
        self._reader, self._writer = socket.socketpair()
        for sock in (self._reader, self._writer):
            sock.setblocking(False)
        self._notifier = QSocketNotifier(self._reader.fileno(), QSocketNotifier.Type.Read)
        self._notifier.activated.connect(self._drain)
        self._old_fd = signal.set_wakeup_fd(self._writer.fileno())
        self._old_handlers = {s: signal.signal(s, self._on_signal) for s in SIGNALS}

    def _on_signal(self, _signum, _frame) -> None:
        QTimer.singleShot(0, self._close)  # after the handler returns, from the event loop

    def _drain(self, *_args) -> None:
        try:
            while self._reader.recv(64):
                pass
        except OSError:  # nothing more to read
            pass

    def uninstall(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_fd)
        self._notifier.setEnabled(False)
        self._reader.close()
        self._writer.close()
