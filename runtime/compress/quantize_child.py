"""The quantizer process: one ``llama_model_quantize`` call, watched from outside.

Started by ``runtime.compress.quantize.quantize_gguf`` through ``runtime.procs.ChildProcess`` as
``python -m runtime.compress.quantize_child SRC OUT FTYPE [--requantize] [--threads N] [--imatrix FILE]``.
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

With ``--imatrix`` the importance matrix (``runtime.compress.imatrix``: ours or llama-imatrix's) is
handed to llama.cpp as its typed ``imatrix`` array (per weight: the mean squares, ne[0] x n_experts
values, the array ending in a NULL name), and the output's header records what llama-quantize
records: ``quantize.imatrix.file``, ``.dataset``, ``.entries_count`` and ``.chunks_count`` (kv overrides).

Everything llama.cpp logs also goes to stderr, where the parent keeps the last lines. When stdin
closes (the parent is gone or asks it to stop) the process removes OUT and exits.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import re
import sys
import threading
import time
from collections import deque

from runtime.errors import ModelFileError, QuantizeError
from runtime.procs import emit, run_main, watch_parent

_TENSOR_LINE = re.compile(r"^\[\s*(\d+)\s*/\s*(\d+)\]\s+(\S+)")
_FAILED = re.compile(r"failed to quantize:\s*(.+)")
# llama.cpp's words for a source whose tensor data is damaged (it checks every row before using it).
_DAMAGED = ("invalid data", "not within the file bounds", "data is not within", "failed to read")
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


_FINISHED = threading.Event()  # set once OUT is complete: from then on it is the parent's


def load_bindings():
    """llama-cpp-python's ctypes layer (``llama_cpp.llama_cpp``) without its high-level package.

    ``import llama_cpp`` also imports the ``Llama`` class with numpy, jinja2 and the chat formats:
    0.1 s of a quantization that may itself take one second. An empty package object stands in for
    ``llama_cpp`` so only the bindings module is run; where that fails (a frozen app, another layout)
    the whole package is imported.
    """
    import importlib
    import importlib.util
    import types

    try:
        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or not spec.submodule_search_locations or "llama_cpp" in sys.modules:
            raise ImportError("no plain llama_cpp package")
        package = types.ModuleType("llama_cpp")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["llama_cpp"] = package
        try:
            return importlib.import_module("llama_cpp.llama_cpp")
        except Exception:
            for name in [n for n in sys.modules if n == "llama_cpp" or n.startswith("llama_cpp.")]:
                del sys.modules[name]
            raise
    except Exception:  # noqa: BLE001 - the ordinary way always works
        import llama_cpp

        return llama_cpp


def _bindings_version() -> str:
    try:
        import importlib.util

        spec = importlib.util.find_spec("llama_cpp")
        text = open(spec.origin, encoding="utf-8").read() if spec and spec.origin else ""
        found = re.search(r"__version__\s*=\s*[\"']([^\"']+)", text)
        return found[1] if found else "?"
    except Exception:  # noqa: BLE001 - only shown in an event
        return "?"


def imatrix_params(llama_cpp, path: str):
    """The ctypes arrays for ``params.imatrix`` and ``params.kv_overrides``; keep the returned tuple alive
    for the whole quantization (llama.cpp reads the memory they point at)."""
    import numpy as np

    from runtime.compress.imatrix import load

    matrix = load(path)
    names = sorted(matrix.entries)
    means = [np.ascontiguousarray(matrix.entries[n].mean_squares(), dtype=np.float32) for n in names]
    data = (llama_cpp.llama_model_imatrix_data * (len(names) + 1))()
    encoded = [n.encode() for n in names]
    for i, (name, values) in enumerate(zip(encoded, means)):
        data[i].name = name
        data[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        data[i].size = values.size
    data[len(names)].name = None  # the terminator
    keys = [("quantize.imatrix.file", os.path.basename(path)),
            ("quantize.imatrix.dataset", matrix.datasets[0] if matrix.datasets else None),
            ("quantize.imatrix.entries_count", len(names)),
            ("quantize.imatrix.chunks_count", matrix.chunk_count or None)]
    keys = [(k, v) for k, v in keys if v is not None]
    overrides = (llama_cpp.llama_model_kv_override * (len(keys) + 1))()
    for o, (key, value) in zip(overrides, keys):
        o.key = key.encode()
        if isinstance(value, int):
            o.tag, o.value.val_i64 = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT, value
        else:
            o.tag, o.value.val_str = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR, value.encode()[:127]
    return data, overrides, (means, encoded, matrix)


def quantize(src: str, out: str, ftype: int, *, requantize: bool, threads: int, imatrix: str | None = None) -> None:
    llama_cpp = load_bindings()

    watcher = LogWatcher()
    callback = llama_cpp.llama_log_callback(watcher)  # kept referenced for the whole call
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    emit("started", llama_cpp=_bindings_version())
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    params.allow_requantize = requantize
    keep = None
    if imatrix:
        keep = imatrix_params(llama_cpp, imatrix)
        params.imatrix = ctypes.cast(keep[0], ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        params.kv_overrides = ctypes.cast(keep[1], ctypes.POINTER(llama_cpp.llama_model_kv_override))
    t0 = time.perf_counter()
    status = llama_cpp.llama_model_quantize(src.encode(), out.encode(), ctypes.byref(params))
    seconds = time.perf_counter() - t0
    del keep
    if status != 0:
        reason = watcher.failure or f"llama_model_quantize returned {status}"
        cls, hint = QuantizeError, None
        if any(words in reason for words in _DAMAGED):
            cls, hint = ModelFileError, "The source file is damaged: download or convert it again."
        raise cls(f"llama.cpp could not quantize {os.path.basename(src)}: {reason}", hint=hint,
                  path=src, details="\n".join(watcher.tail), llama_message=reason)
    _FINISHED.set()
    emit("done", seconds=round(seconds, 4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantize_child")
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("ftype", type=int)
    parser.add_argument("--requantize", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--imatrix", default=None)
    args = parser.parse_args(argv)
    watch_parent([args.out], _FINISHED)
    quantize(args.src, args.out, args.ftype, requantize=args.requantize, threads=args.threads,
             imatrix=args.imatrix)
    return 0


if __name__ == "__main__":
    run_main(main, QuantizeError, "The quantizer")
