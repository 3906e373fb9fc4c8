"""Compute an importance matrix in a child process: ``compute_imatrix(source, text, out, ...)``.

``source`` is a GGUF file (llama.cpp evaluates it: ``runtime.compress.imatrix_child``) or a Hugging
Face checkpoint folder (PyTorch evaluates it: ``runtime.compress.imatrix_torch``; a downloaded GGUF
has no checkpoint beside it, so both ways exist). Both cut the same tokens into the same chunks as
llama-imatrix (``--ctx`` tokens each, BOS first where the vocabulary adds one; at most ``chunks``).
The child writes a temporary file in the destination folder; it is read back (``imatrix.load``)
before it gets its name. Cancel kills the child; no partial file is left in any case.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runtime.compress.imatrix import default_calibration_path, load, usual_permissions
from runtime.errors import ModelFileError, ProcessCrashed, QuantizeError
from runtime.jobs import CancelToken, ProgressCallback, no_progress
from runtime.procs import ChildProcess

GGUF_CHILD = "runtime.compress.imatrix_child"
TORCH_CHILD = "runtime.compress.imatrix_torch"
START_TIMEOUT_S = 300.0          # importing torch or llama.cpp and loading the model on a busy machine
RUN_TIMEOUT_S = 7 * 24 * 3600.0  # Cancel is the way out
_CRASH_HINT = ("The model may be damaged, or the computer ran out of memory: close other programs, "
               "or choose a smaller context, and try again.")


@dataclass
class ImatrixRun:
    """What one computation made: the file, how much text it used, what it cost."""

    path: Path
    engine: str              # "llama.cpp" or "pytorch"
    entries: int
    chunks: int
    n_tokens: int
    seconds: float
    peak_rss_bytes: int | None

    def to_dict(self) -> dict:
        return {"path": str(self.path), "engine": self.engine, "entries": self.entries, "chunks": self.chunks,
                "n_tokens": self.n_tokens, "seconds": self.seconds, "peak_rss_bytes": self.peak_rss_bytes}


def source_kind(source: str | os.PathLike) -> str:
    """"gguf" for a .gguf file, "checkpoint" for a folder with config.json; else ModelFileError."""
    path = Path(source)
    if path.is_file() and path.name.lower().endswith(".gguf"):
        return "gguf"
    if path.is_dir() and (path / "config.json").is_file():
        return "checkpoint"
    raise ModelFileError(f"{path} is neither a .gguf file nor a Hugging Face checkpoint folder.", path=str(path),
                         hint="Give a .gguf model file, or a folder with config.json and the weights.")


def default_imatrix_path(source: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """``<source stem>.imatrix.gguf`` beside the source (or in ``out_dir``)."""
    path = Path(source)
    stem = path.name[:-5] if path.name.lower().endswith(".gguf") else path.name
    return (Path(out_dir) if out_dir else path.parent) / f"{stem}.imatrix.gguf"


def compute_imatrix(source: str | os.PathLike, text: str | os.PathLike | None, out: str | os.PathLike, *,
                    ctx: int = 512, chunks: int | None = None, threads: int = 0, n_gpu_layers: int = -1,
                    overwrite: bool = False, progress: ProgressCallback = no_progress,
                    cancel: CancelToken | None = None) -> ImatrixRun:
    """Compute the importance matrix of ``source`` on ``text`` (None: the shipped calibration text) and
    save it at ``out`` in llama.cpp's GGUF imatrix format.

    ``progress(done_chunks, total_chunks, message)``. Raises QuantizeError (a context below 16, a text
    shorter than two chunks, an existing ``out`` without ``overwrite``, a missing folder, what the
    child reports), ModelFileError (not a model, damaged), ProcessCrashed, Cancelled.
    """
    cancel = cancel or CancelToken()
    kind = source_kind(source)
    text_path = Path(text) if text is not None else default_calibration_path()
    out = Path(out).absolute()
    if not isinstance(ctx, int) or ctx < 16:
        raise QuantizeError(f"A context of {ctx} tokens is too small: use 16 or more (llama-imatrix uses 512).")
    if chunks is not None and chunks < 1:
        raise QuantizeError(f"{chunks} chunks: use 1 or more, or leave it out to use the whole text.")
    if not text_path.is_file():
        raise QuantizeError(f"The calibration text {text_path} does not exist or is not a file.",
                            path=str(text_path), hint="Choose a plain-text file.")
    if out.exists() and not overwrite:
        raise QuantizeError(f"{out} already exists.", hint="Delete it, or choose another name.", path=str(out))
    if not out.parent.is_dir():
        raise QuantizeError(f"The folder {out.parent} does not exist.", hint="Create it or choose another.",
                            path=str(out.parent))
    if kind == "checkpoint":
        import importlib.util

        missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            raise QuantizeError(
                f"Computing an importance matrix from a checkpoint needs {' and '.join(missing)}, which "
                "is not installed here.",
                hint="Convert the checkpoint to GGUF first and compute the matrix from that file (llama.cpp "
                     "needs nothing more), or install the reference extra (pip install '.[reference]').",
                missing=missing)
    if kind == "gguf":
        from runtime.models.gguf_info import read_gguf_info

        read_gguf_info(source)  # a damaged header is refused before any child starts
    fd, temp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(fd)
    temp = Path(temp_name)
    args = [str(Path(source).absolute()), str(text_path), str(temp), "--ctx", str(ctx),
            "--chunks", str(chunks or 0), "--dataset", text_path.name, "--threads", str(threads),
            "--gpu-layers", str(n_gpu_layers)]
    child = ChildProcess(GGUF_CHILD if kind == "gguf" else TORCH_CHILD, args, name="importance-matrix process",
                         error_class=ProcessCrashed)
    label = Path(source).name

    def on_event(event: dict) -> None:
        if event.get("event") == "loaded":
            progress(0, event["n_chunks"], f"{label}: {event['n_tokens']:,} tokens, {event['n_chunks']} chunks")
        elif event.get("event") == "chunk":
            progress(event["done"], event["total"], f"{label}: chunk {event['done']}/{event['total']}")

    try:
        progress(0, 1, f"{label}: starting")
        child.start()
        child.wait_for("started", START_TIMEOUT_S, cancel, doing="starting", hint=_CRASH_HINT)
        done = child.wait_for("done", RUN_TIMEOUT_S, cancel, on_event=on_event,
                              doing="computing the importance matrix", hint=_CRASH_HINT)
        child.wait(10)
        load(temp)
        usual_permissions(temp)
        os.replace(temp, out)
    finally:
        child.kill()
        temp.unlink(missing_ok=True)
    return ImatrixRun(out, "llama.cpp" if kind == "gguf" else "pytorch", done["entries"], done["chunks"],
                      done["n_tokens"], done["seconds"], done.get("peak_rss_bytes"))
