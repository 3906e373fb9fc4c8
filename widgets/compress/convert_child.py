"""The converter process of the Compress tab: one ``convert_checkpoint`` call, away from the window.

The converter is plain Python and numpy: run in the window's process, its pure-Python stretches
(the GGUF writer packs every token of the vocabulary, ~0.2 s for 49k tokens) hold the GIL, and the
window's own Python code waits for it at every turn of the event loop (stalls of 200 ms measured
with benchmarks/ui_compress.py). Here it holds only this process's GIL. No Qt is imported.

Started by ``widgets.compress.jobs.convert_in_child`` through ``runtime.procs.ChildProcess`` as
``python -m widgets.compress.convert_child FOLDER OUT TYPE``. Events on stdout, one JSON object a line:

- ``{"event": "progress", "done": 12, "total": 272, "message": "blk.0.ffn_up.weight (F16)"}``;
- ``{"event": "done", "path": OUT}`` once the file is complete, checked and renamed;
- ``{"event": "cancelled"}`` when stdin closed first (the converter removed its partial file);
- ``{"event": "error", **ConversionError.to_payload()}`` when it cannot be done (exit 3).

Closing stdin (the parent cancels, or is gone) sets the converter's cancel token: it stops between
two slices and removes its partial output itself.
"""
from __future__ import annotations

import json
import sys
import threading

EXIT_ERROR, EXIT_CANCELLED = 3, 5


def emit(event: str, **fields) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    from runtime.compress.convert import convert_checkpoint
    from runtime.errors import Cancelled, ConversionError, WorkbenchError
    from runtime.jobs import CancelToken

    folder, out, out_type = (argv if argv is not None else sys.argv[1:])[:3]
    cancel = CancelToken()

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        cancel.cancel()

    threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()

    def progress(done: float, total: float, message: str = "") -> None:
        emit("progress", done=done, total=total, message=message)

    try:
        path = convert_checkpoint(folder, out, out_type=out_type, progress=progress, cancel=cancel)
    except Cancelled:
        emit("cancelled")
        return EXIT_CANCELLED
    except WorkbenchError as exc:
        emit("error", **exc.to_payload())
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - anything else still reaches the window as a typed error
        emit("error", **ConversionError(f"The conversion failed: {type(exc).__name__}: {exc}").to_payload())
        return EXIT_ERROR
    emit("done", path=str(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
