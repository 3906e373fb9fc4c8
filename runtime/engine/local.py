"""Start, watch and stop the engine process that serves one local model."""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

from runtime.chat_client import ChatClient
from runtime.chat_types import LoadOptions
from runtime.errors import Cancelled, EngineCrashed, EngineError, error_class_for
from runtime.jobs import CancelToken

LOAD_TIMEOUT_S = 600


class LocalEngine:
    """One child process running ``runtime.engine_server`` for one model.

    ``start()`` blocks until the model is loaded (call it off the UI thread). A crash of the child
    (segfault, out-of-memory kill, kill -9) leaves this object with ``alive == False`` and an
    ``exit_reason()`` to show; create a new LocalEngine to reload.
    """

    def __init__(self, model_path: str | Path, options: LoadOptions | None = None) -> None:
        self.model_path = Path(model_path)
        self.options = options or LoadOptions()
        self.api_key = secrets.token_urlsafe(24)
        self.port: int | None = None
        self.ready_info: dict = {}
        self._proc: subprocess.Popen | None = None
        self._stderr_tail: deque[str] = deque(maxlen=40)
        self._stopped_by_us = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self.port is not None

    def start(self, cancel: CancelToken | None = None) -> None:
        """Spawn the engine and wait until it reports the model loaded (or why it could not)."""
        from runtime.gguf_info import read_gguf_info

        read_gguf_info(self.model_path)  # fail fast, with a precise message, on a bad file
        cancel = cancel or CancelToken()
        cancel.check()
        cmd = [sys.executable, "-m", "runtime.engine_server", "--model", str(self.model_path),
               "--ctx", str(self.options.n_ctx), "--threads", str(self.options.n_threads),
               "--gpu-layers", str(self.options.n_gpu_layers)]
        env = dict(os.environ, WORKBENCH_ENGINE_KEY=self.api_key, PYTHONUNBUFFERED="1")
        project_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root, env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            text=True, encoding="utf-8", errors="replace",
        )
        threading.Thread(target=self._drain, args=(self._proc.stderr, self._stderr_tail), daemon=True).start()
        stop_on_cancel = lambda: self._kill()  # noqa: E731 - unblocks readline below
        cancel.add_callback(stop_on_cancel)
        try:
            line = self._read_announcement()
        finally:
            cancel.remove_callback(stop_on_cancel)
        if cancel.cancelled:
            self.stop()
            raise Cancelled()
        if line is None:
            self._proc.wait()
            raise EngineCrashed(
                f"The engine stopped while loading {self.model_path.name}: {self.exit_reason()}.",
                hint="The file may be damaged or too large for this machine's memory.",
                path=str(self.model_path), details=self.stderr_tail(),
            )
        event = json.loads(line)
        if event.get("event") != "ready":
            self._proc.wait()
            error_class = error_class_for(event.get("kind"), EngineError)
            raise error_class(event.get("message", "The engine failed to load the model."),
                              hint=event.get("hint") or None, path=str(self.model_path))
        self.port = int(event["port"])
        self.ready_info = event
        threading.Thread(target=self._drain, args=(self._proc.stdout, None), daemon=True).start()

    def _read_announcement(self) -> str | None:
        """The first JSON line the engine prints (it may print other lines from native code)."""
        assert self._proc and self._proc.stdout
        for line in self._proc.stdout:
            if line.startswith("{"):
                return line
        return None

    @staticmethod
    def _drain(stream, keep: deque | None) -> None:
        """Read a pipe to its end so the child never blocks on a full pipe; keep the tail if asked."""
        for line in stream:
            if keep is not None:
                keep.append(line)

    def stderr_tail(self) -> str:
        return "".join(self._stderr_tail)

    def client(self) -> ChatClient:
        if self.port is None:
            raise EngineError("The engine is not running.", hint="Load a model first.")
        return ChatClient(f"http://127.0.0.1:{self.port}/v1", api_key=self.api_key, model=self.model_path.name,
                          engine=self)

    def exit_reason(self) -> str:
        """Why the process is gone, in words a user understands."""
        if self._proc is None:
            return "the engine was never started"
        code = self._proc.poll()
        if code is None:
            return "the engine is still running"
        if self._stopped_by_us:
            return "the engine was stopped"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            what = {"SIGKILL": "was killed (SIGKILL; often the system running out of memory)",
                    "SIGSEGV": "crashed (segmentation fault)", "SIGABRT": "aborted (SIGABRT)"}
            return f"the engine process {what.get(name, f'ended by {name}')}"
        return f"the engine process exited with code {code}"

    def wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the process to end; True if it has ended."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _kill(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.kill()

    def stop(self) -> None:
        """End the engine (idempotent). Closing stdin asks politely; kill follows if needed."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._stopped_by_us = True
        try:
            self._proc.stdin.close()  # type: ignore[union-attr]
            self._proc.wait(timeout=3)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> "LocalEngine":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
