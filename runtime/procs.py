"""The one way the app runs native work in a child process (engine, quantizer, benchmark runner).

A child is a Python module run as ``__main__``: ``python -m MODULE ARGS`` from source (with the
project root on PYTHONPATH), or ``APP --workbench-child MODULE ARGS`` from a frozen (PyInstaller) app,
whose ``app/__main__.py`` runs the module. The protocol is small:

- the child prints events on stdout, one JSON object per line: ``{"event": "ready", ...}``; other
  lines (native code may print) are skipped. An ``{"event": "error", ...}`` line carries a
  ``WorkbenchError.to_payload()`` and is raised in the parent by ``wait_for``;
- stderr is drained on a thread (the child never blocks on a full pipe); its last lines are kept;
- closing the child's stdin asks it to exit (``stop()``); ``kill()`` ends it at once; a child
  that reads JSON-line commands on stdin gets them through ``send()`` (the engine does);
- an exit is explained in words (``exit_reason()``: "crashed (SIGSEGV, segmentation fault)") and
  turned into a typed error (``crash_error()``) whose facts keep the signal, the exit code and the
  stderr tail as ``details``.

The child's end, shared by every child module (quantizer, converter, speed and quality runners):
``emit(event, **fields)`` writes an event line; ``watch_parent(partial_files, finished)`` ends the
child when stdin closes (the parent asks it to stop, or died), removing its partial outputs unless
``finished`` is set (they are the parent's by then); ``run_main(main, error_class, what)`` runs its
``main()`` with Ctrl-C left to the parent (it reaches the whole process group; the parent kills
the child and cleans up), turns a failure into an ``error`` event (a WorkbenchError as it is,
anything else as ``error_class`` in words) and leaves with ``os._exit``: Python's shutdown takes
about a second after llama.cpp has run (its buffers and mappings are torn down one by one).
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from runtime.errors import Cancelled, ProcessCrashed, ProcessTimeout, WorkbenchError, from_payload
from runtime.jobs import CancelToken

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHILD_FLAG = "--workbench-child"   # app/__main__.py runs MODULE when a frozen app gets this flag
STDERR_LINES = 40

# What a deadly signal means, for people.
SIGNAL_WORDS = {
    "SIGKILL": "was killed (SIGKILL; often the system running out of memory)",
    "SIGSEGV": "crashed (SIGSEGV, segmentation fault)",
    "SIGILL": "crashed (SIGILL, illegal instruction: an instruction this CPU cannot run)",
    "SIGABRT": "aborted (SIGABRT; native code gave up, often after running out of memory)",
    "SIGBUS": "crashed (SIGBUS, bus error: memory it used became unreadable, e.g. a file that shrank)",
    "SIGTERM": "was terminated (SIGTERM)",
}

_END = object()        # queued when stdout ends
_CANCELLED = object()  # queued when a cancel token fires


def child_command(module: str, args: Sequence[str] = ()) -> list[str]:
    """The command line that runs ``module`` as ``__main__`` in a new process, from source or frozen."""
    if getattr(sys, "frozen", False):
        return [sys.executable, CHILD_FLAG, module, *args]
    return [sys.executable, "-m", module, *args]


def signal_name(returncode: int | None) -> str | None:
    """"SIGSEGV" for a process ended by that signal (negative return code), else None."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def peak_rss_bytes(pid: int | None = None) -> int | None:
    """The most resident memory process ``pid`` (default: this one) has used so far, in bytes.

    Linux: VmHWM from /proc; Windows: the peak working set; elsewhere (macOS) the current RSS, which
    is the best another process can read there. None when the process is gone or cannot be read.
    """
    try:
        import psutil

        proc = psutil.Process(pid)
        if sys.platform.startswith("linux"):
            with open(f"/proc/{proc.pid}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        info = proc.memory_info()
        return int(getattr(info, "peak_wset", 0) or info.rss)
    except Exception:  # noqa: BLE001 - gone, no permission, no psutil: the figure is unknown
        return None


class ChildProcess:
    """One child process running a Python module, with JSON-lines events on stdout.

    ``name`` is how messages call it ("engine" gives "the engine process crashed ...");
    ``error_class`` is the class of the errors raised when it dies (default ``ProcessCrashed``).
    """

    def __init__(self, module: str, args: Sequence[str] = (), *, env: dict | None = None,
                 name: str = "child", error_class: type[WorkbenchError] = ProcessCrashed) -> None:
        self.module = module
        self.args = [str(a) for a in args]
        self.env = dict(env or {})
        self.name = name
        self.error_class = error_class
        self.stopped_by_us = False
        self._proc: subprocess.Popen | None = None
        self._events: queue.Queue = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._stderr_thread: threading.Thread | None = None
        self._send_lock = threading.Lock()

    # --- life --------------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the child; stdout and stderr are read on two daemon threads from now on."""
        env = dict(os.environ, **self.env, PYTHONUNBUFFERED="1")
        if not getattr(sys, "frozen", False):
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            child_command(self.module, self.args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, text=True, encoding="utf-8", errors="replace",
        )
        threading.Thread(target=self._read_stdout, name=f"{self.name}-stdout", daemon=True).start()
        self._stderr_thread = threading.Thread(target=self._read_stderr, name=f"{self.name}-stderr", daemon=True)
        self._stderr_thread.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s for the child to end; True if it has ended (or never started)."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        """End the child at once (SIGKILL) and reap it. Safe to call from any thread, any time."""
        if self._proc is not None and self._proc.poll() is None:
            self.stopped_by_us = True
            self._proc.kill()
        self.wait(5)

    def stop(self, grace_s: float = 3.0) -> None:
        """End the child politely (close its stdin), killing it after ``grace_s`` s. Idempotent."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self.stopped_by_us = True
        try:
            self._proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        if not self.wait(grace_s):
            self.kill()

    # --- events ------------------------------------------------------------------------------

    def send(self, message: dict) -> None:
        """Write one JSON line to the child's stdin (a command, for children that read them).

        Raises the ``error_class`` crash error when the child is gone or its stdin is closed.
        """
        line = json.dumps(message) + "\n"
        with self._send_lock:
            try:
                if self._proc is None or self._proc.stdin is None:
                    raise BrokenPipeError("not started")
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
            except (OSError, ValueError):  # a broken pipe, or stdin closed by stop()
                raise self.crash_error(f"The {self.name} is not running: {self.exit_reason()}.") from None

    def _read_stdout(self) -> None:
        assert self._proc and self._proc.stdout
        for line in self._proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue  # native code's chatter
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._events.put(event)
        self._events.put(_END)

    def _read_stderr(self) -> None:
        assert self._proc and self._proc.stderr
        for line in self._proc.stderr:
            self._stderr.append(line)

    def read_event(self, timeout: float | None = None) -> dict | None:
        """The next event; None once stdout has ended. Raises TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._events.get(timeout=remaining)
            except queue.Empty:
                raise TimeoutError(f"no event from the {self.name} within {timeout} s") from None
            if item is _END:
                self._events.put(_END)  # stay at the end for later readers
                return None
            if item is not _CANCELLED:
                return item

    def events(self) -> Iterator[dict]:
        """Every event until stdout ends."""
        while (event := self.read_event()) is not None:
            yield event

    def wait_for(self, event_name: str, timeout: float, cancel: CancelToken | None = None,
                 on_event: Callable[[dict], None] | None = None, doing: str = "starting",
                 hint: str | None = None) -> dict:
        """Read events until one named ``event_name`` arrives, and return it.

        Other events go to ``on_event`` (it may cancel). An ``error`` event is raised as the error it
        carries (``from_payload``, default ``error_class``). The child is killed and an error raised
        when: ``cancel`` fires (``Cancelled``), ``timeout`` s pass (``ProcessTimeout``), or it exits
        first (``crash_error``). ``doing`` completes messages: "The engine stopped while {doing}".
        """
        cancel = cancel or CancelToken()
        wake = lambda: self._events.put(_CANCELLED)  # noqa: E731 - unblocks the queue read below
        cancel.add_callback(wake)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if cancel.cancelled:
                    self.kill()
                    raise Cancelled()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill()
                    raise ProcessTimeout(f"The {self.name} did not finish {doing} within {timeout:g} s; "
                                         "it was stopped.", details=self.stderr_tail())
                try:
                    item = self._events.get(timeout=remaining)
                except queue.Empty:
                    continue
                if item is _CANCELLED:
                    continue
                if item is _END:
                    self._events.put(_END)
                    if cancel.cancelled:
                        continue
                    if not self.wait(5):
                        self.kill()
                    raise self.crash_error(f"The {self.name} stopped while {doing}: {self.exit_reason()}.", hint)
                name = item.get("event")
                if name == event_name:
                    return item
                if name == "error":
                    if not self.wait(5):
                        self.kill()
                    raise from_payload(item, self.error_class)
                if on_event is not None:
                    on_event(item)
        finally:
            cancel.remove_callback(wake)

    # --- why it ended ------------------------------------------------------------------------

    def stderr_tail(self) -> str:
        """The last lines the child wrote to stderr (all of them once it has ended)."""
        if self._stderr_thread is not None and self.returncode is not None:
            self._stderr_thread.join(timeout=1.0)  # read what the child wrote just before it ended
        return "".join(self._stderr)

    def signal_name(self) -> str | None:
        """The signal that ended the child ("SIGKILL", ...), or None."""
        return signal_name(self.returncode)

    def exit_reason(self) -> str:
        """Why the child is gone, in words: "the engine process crashed (SIGSEGV, segmentation fault)"."""
        if self._proc is None:
            return f"the {self.name} was never started"
        code = self._proc.poll()
        if code is None:
            return f"the {self.name} is still running"
        if self.stopped_by_us:
            return f"the {self.name} was stopped"
        name = signal_name(code)
        if name:
            return f"the {self.name} process {SIGNAL_WORDS.get(name, f'was ended by {name}')}"
        return f"the {self.name} process exited with code {code}"

    def exit_facts(self) -> dict:
        """Facts for an error about this child's end: exit_code, signal and details (stderr tail)."""
        return {"exit_code": self.returncode, "signal": self.signal_name(), "details": self.stderr_tail()}

    def crash_error(self, message: str, hint: str | None = None,
                    cls: type[WorkbenchError] | None = None, **facts) -> WorkbenchError:
        """An error (``cls``, default ``error_class``) about the child's end, with its exit facts."""
        return (cls or self.error_class)(message, hint=hint, **{**self.exit_facts(), **facts})


# --- the child's end -----------------------------------------------------------------------------

EXIT_ERROR, EXIT_ORPHANED = 3, 4   # a child's exit after an error event / when its parent went away


def emit(event: str, **fields) -> None:
    """Print one event line for the parent."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def watch_parent(partial_files: Iterable[str] = (), finished: threading.Event | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
    """Start the thread that ends this process when the parent closes stdin or is gone.

    With ``on_close`` the thread calls it instead and ends: work that can stop itself (a cancel
    token it checks) then cleans up and exits on its own.
    """
    files = [f for f in partial_files if f]

    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        if on_close is not None:
            on_close()
            return
        if finished is None or not finished.is_set():
            for path in files:
                try:
                    os.remove(path)
                except OSError:
                    pass
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def run_main(main: Callable[[], int | None], error_class: type, what: str) -> None:
    """Run a child's ``main()`` and exit with its status (EXIT_ERROR after an ``error`` event)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = int(main() or 0)
    except WorkbenchError as exc:
        emit("error", **exc.to_payload())
        code = EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - anything else still reaches the parent as words
        emit("error", **error_class(f"{what} failed: {type(exc).__name__}: {exc}"[:2000]).to_payload())
        code = EXIT_ERROR
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
