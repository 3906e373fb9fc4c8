"""The quantizer process: one ``llama_model_quantize`` call, watched from outside.

Started by ``runtime.compress.quantize.quantize_gguf`` through ``runtime.procs.ChildProcess`` as
``python -m runtime.compress.quantize_child SRC OUT FTYPE [--requantize] [--threads N]``.
llama.cpp's quantizer has no progress callback and no cancel hook, so it runs here: a crash or an
out-of-memory kill ends only this process, and Cancel is a kill.

Events on stdout, one JSON object a line:

- ``{"event": "started", "llama_cpp": "0.3.36"}`` once llama.cpp is loaded;
- ``{"event": "tensor", "index": 12, "total": 272, "name": "blk.0.ffn_up.weight"}`` when llama.cpp
  starts a tensor (from the line it logs for each: ``[  12/ 272] blk.0.ffn_up.weight - [...]``);
- ``{"event": "done", "seconds": 2.1}`` when the file is written (the parent checks and renames it);
- ``{"event": "error", **QuantizeError.to_payload()}`` (then exit 3) when llama.cpp refuses: its own
  "failed to quantize: ..." line is the message's end, its last log lines are ``details``; a source
  whose tensor data llama.cpp finds damaged is a ModelFileError.

Everything llama.cpp logs also goes to stderr, where the parent keeps the last lines. When stdin
closes (the parent is gone or asks it to stop) the process removes OUT and exits.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import signal
import sys
import threading
import time
from collections import deque

from runtime.errors import ModelFileError, QuantizeError

_TENSOR_LINE = re.compile(r"^\[\s*(\d+)\s*/\s*(\d+)\]\s+(\S+)")
_FAILED = re.compile(r"failed to quantize:\s*(.+)")
# llama.cpp's words for a source whose tensor data is damaged (it checks every row before using it).
_DAMAGED = ("invalid data", "not within the file bounds", "data is not within", "failed to read")
EXIT_ERROR, EXIT_ORPHANED = 3, 4


def emit(event: str, **fields) -> None:
    """Print one event line for the parent."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class LogWatcher:
    """llama.cpp's log callback: copies the text to stderr, turns tensor lines into events."""

    def __init__(self) -> None:
        self.tail: deque[str] = deque(maxlen=30)
        self.failure: str | None = None
        self._line = ""

    def __call__(self, level: int, text: bytes, user_data) -> None:
        piece = text.decode("utf-8", "replace")
        sys.stderr.write(piece)
        match = _TENSOR_LINE.match(piece)  # each tensor's line starts with its own log call
        if match:
            emit("tensor", index=int(match[1]), total=int(match[2]), name=match[3])
        self._line += piece
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            if line.strip():
                self.tail.append(line)
            failed = _FAILED.search(line)
            if failed:
                self.failure = failed[1].strip()


def _watch_stdin(out_path: str) -> None:
    """Exit (removing the partial output) when the parent closes stdin or dies."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    try:
        os.remove(out_path)
    except OSError:
        pass
    os._exit(EXIT_ORPHANED)


def quantize(src: str, out: str, ftype: int, *, requantize: bool, threads: int) -> None:
    import llama_cpp

    watcher = LogWatcher()
    callback = llama_cpp.llama_log_callback(watcher)  # kept referenced for the whole call
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    emit("started", llama_cpp=getattr(llama_cpp, "__version__", "?"))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    params.allow_requantize = requantize
    t0 = time.perf_counter()
    status = llama_cpp.llama_model_quantize(src.encode(), out.encode(), ctypes.byref(params))
    seconds = time.perf_counter() - t0
    if status != 0:
        reason = watcher.failure or f"llama_model_quantize returned {status}"
        cls, hint = QuantizeError, None
        if any(words in reason for words in _DAMAGED):
            cls, hint = ModelFileError, "The source file is damaged: download or convert it again."
        raise cls(f"llama.cpp could not quantize {os.path.basename(src)}: {reason}", hint=hint,
                  path=src, details="\n".join(watcher.tail), llama_message=reason)
    emit("done", seconds=round(seconds, 4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantize_child")
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("ftype", type=int)
    parser.add_argument("--requantize", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    # Ctrl-C in a terminal reaches the whole process group: the parent decides (it kills this process
    # and removes the partial file), so a stray KeyboardInterrupt here must not race it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_stdin, args=(args.out,), name="stdin-watch", daemon=True).start()
    try:
        quantize(args.src, args.out, args.ftype, requantize=args.requantize, threads=args.threads)
    except (QuantizeError, ModelFileError) as exc:
        emit("error", **exc.to_payload())
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - anything else still reaches the parent as words
        emit("error", **QuantizeError(f"The quantizer failed: {type(exc).__name__}: {exc}"[:2000]).to_payload())
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
