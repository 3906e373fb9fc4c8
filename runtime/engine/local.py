"""Start, watch and stop the engine process that serves one local model."""
from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runtime.engine.client import ChatClient
from runtime.engine.server import KEY_ENV
from runtime.engine.types import LoadOptions
from runtime.errors import EngineBuildMismatch, EngineCrashed, EngineError, WorkbenchError, from_payload
from runtime.jobs import CancelToken
from runtime.procs import ChildProcess, peak_rss_bytes

LOAD_TIMEOUT_S = 600
LOAD_CRASH_HINT = "The file may be damaged or too large for this machine's memory."
REPLY_CRASH_HINT = "Reload the model; the conversation so far is kept."
MEMORY_HINT = " If it happens again, close other programs or load a smaller model or context length."
SERVE_TIMEOUT_S = 15.0  # the engine answers a serve command at once; a busy one within a token
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """True for an address only this computer can reach (127.x.x.x, localhost, ::1)."""
    host = (host or "").strip().lower().strip("[]")
    return host in LOOPBACK_HOSTS or host.startswith("127.")


@dataclass
class ServedApi:
    """The loaded model served to other apps: where, with which key, and a request that works."""

    host: str
    port: int
    api_key: str
    model: str

    @property
    def base_url(self) -> str:
        """The OpenAI base URL other apps use (a wildcard address is reached through loopback here)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/v1"

    @property
    def local_only(self) -> bool:
        return is_loopback(self.host)

    def curl_command(self, prompt: str = "Hello!") -> str:
        """A ready request for a terminal (POSIX shell quoting)."""
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}]})
        return (f"curl {self.base_url}/chat/completions -H 'Authorization: Bearer {self.api_key}' "
                f"-H 'Content-Type: application/json' -d '{body}'")


@dataclass
class MemoryReport:
    """A loaded model's memory: the estimate the fit badge used, and what the engine really used."""

    model_path: str
    n_ctx: int
    estimated_bytes: int
    measured_bytes: int


class LocalEngine:
    """One child process running ``runtime.engine.server`` for one model.

    ``start()`` blocks until the model is loaded (call it off the UI thread). A crash of the child
    (segfault, out-of-memory kill, kill -9) leaves this object with ``alive == False`` and an
    ``exit_reason()`` to show; create a new LocalEngine to reload.

    Crash messages: a death by SIGILL while loading, or by SIGILL/SIGSEGV before the engine completed
    any reply (its first prompt), is reported as ``EngineBuildMismatch``: this llama.cpp build runs
    instructions this CPU cannot (the hint says how to rebuild). Later crashes are ``EngineCrashed``
    naming the signal, with the usual "reload" hint: the build has already run this model here.

    ``serve()`` / ``unserve()`` open and close a second listener of the same engine for other apps
    (commands on the child's stdin); ``served`` is what is served now (None when off).
    """

    def __init__(self, model_path: str | Path, options: LoadOptions | None = None,
                 load_timeout_s: float = LOAD_TIMEOUT_S) -> None:
        self.model_path = Path(model_path)
        self.options = options or LoadOptions()
        self.load_timeout_s = load_timeout_s
        self.api_key = secrets.token_urlsafe(24)
        self.port: int | None = None
        self.ready_info: dict = {}
        self.replies_completed = 0  # counted by ChatClient; 0 means the next decode is the first
        self._child: ChildProcess | None = None
        self._info = None  # the GGUF header, read by start()
        self.served: ServedApi | None = None  # the API served to other apps (see ``serve``)
        self._command_lock = threading.Lock()
        self._command_id = 0

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def alive(self) -> bool:
        return self._child is not None and self._child.alive and self.port is not None

    @property
    def placement(self) -> str:
        """Where the model runs, as llama.cpp reported it: "CPU", "CUDA0: 31/31 layers", "CPU (asked for
        all GPU layers; llama.cpp offloaded 0: this build has no GPU backend)" ('' before ready)."""
        return self.ready_info.get("placement", "")

    @property
    def offload(self):
        """What llama.cpp did with the model (``runtime.engine.placement.PlacementReport``: layers
        offloaded, buffers per device, ``summary()``); None before ready or from an engine without it."""
        from runtime.engine.placement import PlacementReport

        data = self.ready_info.get("offload")
        return PlacementReport.from_dict(data) if isinstance(data, dict) else None

    @property
    def requested_gpu_layers(self) -> int | None:
        """The GPU layers the engine asked llama.cpp for (after the automatic choice; None before ready)."""
        value = self.ready_info.get("n_gpu_layers")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def start(self, cancel: CancelToken | None = None, on_event: Callable[[dict], None] | None = None) -> None:
        """Spawn the engine and wait until it reports the model loaded (or why it could not).

        ``on_event`` receives the engine's other events before "ready" (``{"event": "loading"}``); it
        may cancel. Raises Cancelled (the child is killed), ProcessTimeout after ``load_timeout_s``,
        the engine's own error (ModelFileError, ...) or EngineCrashed.
        """
        from runtime.models.gguf_info import read_gguf_info

        self._info = read_gguf_info(self.model_path)  # fail fast, with a precise message, on a bad file
        cancel = cancel or CancelToken()
        cancel.check()
        gpu_layers = "auto" if self.options.n_gpu_layers is None else str(self.options.n_gpu_layers)
        self._child = ChildProcess(
            "runtime.engine.server",
            ["--model", str(self.model_path), "--ctx", str(self.options.n_ctx),
             "--threads", str(self.options.n_threads), "--gpu-layers", gpu_layers]
            + (["--parallel", str(self.options.n_parallel)] if self.options.n_parallel > 1 else []),
            env={KEY_ENV: self.api_key}, name="engine", error_class=EngineCrashed,
        )
        self._child.start()
        try:
            ready = self._child.wait_for("ready", self.load_timeout_s, cancel, on_event,
                                         doing=f"loading {self.model_path.name}", hint=LOAD_CRASH_HINT)
        except EngineCrashed:
            raise self.crash_error("loading") from None
        except WorkbenchError as exc:
            exc.path = exc.path or str(self.model_path)
            raise
        self.port = int(ready["port"])
        self.ready_info = ready

    def memory_report(self) -> MemoryReport | None:
        """What the loaded model really costs in memory next to the app's estimate (None before ready).

        Measured = the engine's peak resident memory minus its peak before the model was loaded
        (interpreter and llama.cpp libraries), so it covers weights, KV cache and compute buffers as
        they were actually touched. Read it after a reply: the weights are memory-mapped and count
        only once they have been used.
        """
        baseline = self.ready_info.get("baseline_rss_bytes")
        peak = peak_rss_bytes(self.pid) if self.alive else None
        if self._info is None or not isinstance(baseline, int) or peak is None:
            return None
        from runtime.models.hardware import estimate_model_memory

        n_ctx = int(self.ready_info.get("n_ctx") or self.options.n_ctx)
        n_seq = max(1, self.options.n_parallel)  # each parallel sequence has a KV cache of n_ctx
        return MemoryReport(str(self.model_path), n_ctx, estimate_model_memory(self._info, n_ctx * n_seq),
                            max(0, peak - baseline))

    def stderr_tail(self) -> str:
        return self._child.stderr_tail() if self._child else ""

    def client(self) -> ChatClient:
        if self.port is None:
            raise EngineError("The engine is not running.", hint="Load a model first.")
        return ChatClient(f"http://127.0.0.1:{self.port}/v1", api_key=self.api_key, model=self.model_path.name,
                          engine=self)

    def exit_reason(self) -> str:
        """Why the process is gone, in words a user understands."""
        return self._child.exit_reason() if self._child else "the engine was never started"

    def wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the process to end; True if it has ended."""
        return self._child.wait(timeout) if self._child else True

    def note_reply_done(self) -> None:
        """Called by ChatClient when a reply completed: later crashes are not "first decode" ones."""
        self.replies_completed += 1

    def crash_error(self, stage: str = "reply") -> EngineCrashed:
        """The error for this engine's death while ``stage`` ("loading", "reply" or "idle"), with its facts."""
        assert self._child is not None
        signal = self._child.signal_name()
        reason = self.exit_reason()
        if stage == "loading":
            message = f"The engine stopped while loading {self.model_path.name}: {reason}."
            mismatch, hint = signal == "SIGILL", LOAD_CRASH_HINT
        else:
            first = stage == "reply" and self.replies_completed == 0
            message = f"The model engine stopped{' on its first prompt' if first else ''}: {reason}."
            mismatch = first and signal in ("SIGILL", "SIGSEGV")
            hint = REPLY_CRASH_HINT + (MEMORY_HINT if signal == "SIGKILL" else "")
        if mismatch:
            return self._child.crash_error(  # type: ignore[return-value]
                f"{message} This llama.cpp build does not match this computer's CPU: it uses instructions "
                "this CPU cannot run.", cls=EngineBuildMismatch, path=str(self.model_path))
        return self._child.crash_error(message, hint, path=str(self.model_path))  # type: ignore[return-value]

    def connection_error(self, exc: BaseException | None = None) -> EngineError:
        """What a failed connection to this engine means (for ChatClient; ``exc=None``: reply cut short).

        Waits briefly for a dying process to be reaped, so a crash is reported as the crash it is.
        """
        self.wait_exit(2.0)
        if self._child is not None and not self._child.alive:
            return self.crash_error("reply")
        if exc is None:
            return EngineError("The model engine closed the reply early.", hint=REPLY_CRASH_HINT)
        reason = "timed out" if isinstance(exc, socket.timeout) else (str(exc) or type(exc).__name__)
        return EngineError(f"The model engine did not answer ({reason}).", hint=REPLY_CRASH_HINT)

    # --- serving other apps ---------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
              timeout_s: float = SERVE_TIMEOUT_S) -> ServedApi:
        """Serve the loaded model's OpenAI-compatible API to other apps on ``host``:``port`` (0: any
        free port) with its own ``api_key`` (default: a new random one); blocking, call it off the UI
        thread. A served API already open is closed first. It shares the engine's model and its
        generation lock (requests take turns with the app's own chat) and ends with the engine.

        The default host is 127.0.0.1 (this computer only); the caller asks the person before passing
        another one. Raises EngineError in words (port taken, no such address) or the engine's crash.
        """
        key = api_key or secrets.token_urlsafe(24)
        event = self._command({"cmd": "serve", "host": host, "port": int(port), "api_key": key}, timeout_s)
        if event.get("event") != "serving":
            self.served = None
            raise from_payload(event, EngineError)
        self.served = ServedApi(str(event.get("host") or host), int(event["port"]), key, self.model_path.name)
        return self.served

    def unserve(self, timeout_s: float = SERVE_TIMEOUT_S) -> None:
        """Stop serving other apps (idempotent; nothing to do once the engine is gone)."""
        if self.served is None:
            return
        self.served = None
        if self._child is not None and self._child.alive:
            self._command({"cmd": "unserve"}, timeout_s)

    def _command(self, command: dict, timeout_s: float) -> dict:
        """Send a command to the engine process and return its answer (the event with the same id)."""
        with self._command_lock:
            if not self.alive:
                raise EngineError("The engine is not running.", hint="Load a model first.")
            self._command_id += 1
            ident = self._command_id
            self._child.send({**command, "id": ident})  # type: ignore[union-attr]
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    event = self._child.read_event(max(0.0, deadline - time.monotonic()))  # type: ignore[union-attr]
                except TimeoutError:
                    raise EngineError(f"The model engine did not answer within {timeout_s:g} s.",
                                      hint=REPLY_CRASH_HINT) from None
                if event is None:  # its stdout ended: it died
                    self.wait_exit(2.0)
                    raise self.crash_error("idle")
                if event.get("id") == ident:
                    return event

    def stop(self) -> None:
        """End the engine (idempotent). Closing stdin asks politely; kill follows if needed."""
        self.served = None
        if self._child is not None:
            self._child.stop()

    def __enter__(self) -> "LocalEngine":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


_GPUS: list | None = None
GPU_LIST_TIMEOUT_S = 60


def list_gpus() -> list:
    """The GPUs this llama.cpp build can offload to (``GpuDevice``; [] for CPU only), asked once per
    process from a short-lived engine child: listing them creates a context on each CUDA device,
    which must not happen in the window's process. Blocking; a child that fails means CPU only."""
    global _GPUS
    if _GPUS is None:
        from runtime.models.hardware import GpuDevice

        child = ChildProcess("runtime.engine.server", ["--list-gpus"], name="GPU check")
        child.start()
        try:
            event = child.wait_for("gpus", GPU_LIST_TIMEOUT_S, doing="listing the GPUs")
            _GPUS = [GpuDevice(**d) for d in event.get("devices", [])]
        except WorkbenchError:
            _GPUS = []
        finally:
            child.stop()
    return list(_GPUS)

