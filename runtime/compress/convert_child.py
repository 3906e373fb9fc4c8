"""The converter in a process of its own: one ``convert_checkpoint`` call, away from the window.

The converter is plain Python and numpy: run in the window's process, its pure-Python stretches
(the GGUF writer packs every token of the vocabulary, ~0.2 s for 49k tokens) hold the GIL, and the
window's own Python code waits for it at every turn of the event loop (stalls of 200 ms measured
with benchmarks/ui_compress.py). Here it holds only this process's GIL. No Qt is imported.

Both ends live here: ``convert_in_child`` (the parent side, used by the Compress tab) starts it through
``runtime.procs.ChildProcess`` as ``python -m runtime.compress.convert_child FOLDER OUT TYPE``. Events on stdout, one JSON object a line:

- ``{"event": "progress", "done": 12, "total": 272, "message": "blk.0.ffn_up.weight (F16)"}``;
- ``{"event": "done", "path": OUT}`` once the file is complete, checked and renamed;
- ``{"event": "cancelled"}`` when stdin closed first (the converter removed its partial file);
- ``{"event": "error", **ConversionError.to_payload()}`` when it cannot be done (exit 3).

Closing stdin (the parent cancels, or is gone) sets the converter's cancel token: it stops between
two slices and removes its partial output itself.
"""
from __future__ import annotations

import sys
from pathlib import Path

from runtime.procs import emit, watch_parent

EXIT_ERROR, EXIT_CANCELLED = 3, 5
MODULE = "runtime.compress.convert_child"
STOP_GRACE_S = 10.0   # how long a cancelled conversion may take to stop and clean up before a kill


def main(argv: list[str] | None = None) -> int:
    from runtime.compress.convert import convert_checkpoint
    from runtime.errors import Cancelled, ConversionError, WorkbenchError
    from runtime.jobs import CancelToken

    folder, out, out_type = (argv if argv is not None else sys.argv[1:])[:3]
    cancel = CancelToken()

    watch_parent(on_close=cancel.cancel)   # the converter stops at its next tensor and removes its partial

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


def convert_in_child(folder: str, out: Path, qtype: str, *, progress, cancel) -> Path:
    """``runtime.compress.convert.convert_checkpoint`` in its own process (this module).

    The same errors as in-process (its ConversionError comes back as one); a crash of the child is a
    ConversionError naming the signal. Cancel closes the child's stdin: the converter stops between
    slices and removes its partial file; a child that does not stop within ``STOP_GRACE_S`` is
    killed and its partial file (``convert.partial_files``) removed here.
    """
    import threading

    from runtime.errors import Cancelled, ConversionError, from_payload
    from runtime.procs import ChildProcess

    child = ChildProcess(MODULE, [str(folder), str(out), qtype.lower()], name="converter",
                         error_class=ConversionError)
    stopping = threading.Event()

    def on_cancel() -> None:   # runs on the thread that cancels (the window's): never wait there
        stopping.set()
        threading.Thread(target=child.stop, args=(STOP_GRACE_S,), name="converter-stop", daemon=True).start()

    finished = False
    cancel.add_callback(on_cancel)
    try:
        child.start()
        while True:
            event = child.read_event()
            if event is None:            # stdout ended without an outcome
                child.wait(10)
                if stopping.is_set():
                    raise Cancelled()
                raise child.crash_error(f"The converter stopped: {child.exit_reason()}.",
                                        "The checkpoint may be damaged, or the computer ran out of memory: "
                                        "close other programs and try again.")
            kind = event.get("event")
            if kind == "progress":
                progress(float(event.get("done") or 0), float(event.get("total") or 0), str(event.get("message") or ""))
            elif kind == "done":
                child.wait(10)
                finished = True
                return Path(event["path"])
            elif kind == "cancelled":
                child.wait(10)
                finished = True          # the converter removed its own partial file
                raise Cancelled()
            elif kind == "error":
                child.wait(10)
                finished = True
                raise from_payload(event, ConversionError)
    finally:
        cancel.remove_callback(on_cancel)
        child.kill()
        if not finished:                 # killed or crashed: nothing removed the partial file
            from runtime.compress.convert import partial_files

            for partial in partial_files(out):
                partial.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
