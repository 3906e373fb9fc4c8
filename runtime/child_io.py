"""The child's end of ``runtime.procs``: what every child process module (quantizer, converter, speed
runner, quality runner) shares.

- ``emit(event, **fields)``: one JSON event line on stdout;
- ``watch_parent(partial_files, finished)``: when stdin closes (the parent asks it to stop, or died)
  the partial outputs are removed (unless ``finished`` is set: they are the parent's by then) and
  the process exits at once;
- ``run_main(main, error_class, what)``: runs ``main()`` with Ctrl-C left to the parent (it reaches
  the whole process group; the parent kills the child and cleans up), turns a failure into an
  ``error`` event (a WorkbenchError as it is, anything else as ``error_class`` in words) and leaves
  without Python's shutdown, which takes about a second after llama.cpp has run (its buffers and
  mappings are torn down one by one); every output is closed by then.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Callable, Iterable

EXIT_ERROR, EXIT_ORPHANED = 3, 4


def emit(event: str, **fields) -> None:
    """Print one event line for the parent."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def watch_parent(partial_files: Iterable[str] = (), finished: threading.Event | None = None) -> None:
    """Start the thread that ends this process when the parent closes stdin or is gone."""
    files = [f for f in partial_files if f]

    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
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
    from runtime.errors import WorkbenchError

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
