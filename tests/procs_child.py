"""A tiny child process for tests/runtime/test_procs.py: ``python -m procs_child WHAT [ARG]``.

WHAT: ``events`` (chatter, a broken line, two ticks, then ready; waits for stdin to close),
``sleep SECONDS`` (says "started", then sleeps), ``signal NAME`` (writes to stderr, then kills
itself with signal NAME), ``error`` (reports a ModelFileError as an error event and exits 3),
``exit CODE`` (writes to stderr and exits with CODE).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time


def emit(event: dict) -> None:
    print(json.dumps(event), flush=True)


def main(argv: list[str]) -> int:
    what, arg = argv[0], (argv[1] if len(argv) > 1 else "")
    if what == "events":
        print("llama.cpp says hello (not JSON)", flush=True)
        print("{this is not json either", flush=True)
        emit({"event": "tick", "i": 1})
        print("[1, 2, 3]", flush=True)  # JSON, but not an event
        emit({"event": "tick", "i": 2})
        emit({"event": "ready", "port": 1234})
        sys.stdin.read()  # until the parent closes our stdin
        return 0
    if what == "sleep":
        emit({"event": "started", "pid": os.getpid()})
        time.sleep(float(arg))
        return 0
    if what == "signal":
        emit({"event": "started", "pid": os.getpid()})
        for i in range(60):
            print(f"stderr line {i}", file=sys.stderr)
        print("last words before the crash", file=sys.stderr, flush=True)
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))  # no core file
        os.kill(os.getpid(), getattr(signal, arg))
        time.sleep(10)
        return 0
    if what == "error":
        from runtime.errors import ModelFileError

        emit({"event": "error", **ModelFileError("The file is broken.", path="/x/model.gguf", offset=42).to_payload()})
        return 3
    if what == "exit":
        print("something went wrong", file=sys.stderr, flush=True)
        return int(arg)
    raise SystemExit(f"unknown request {what!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
