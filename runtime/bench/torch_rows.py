"""The original Hugging Face checkpoint as benchmark rows: PyTorch FP32, half precision, dynamic INT8.

Each step runs ``runtime.bench.torch_child`` in a fresh process (see it for what is measured and
how), so an out-of-memory kill or a crash fails only that row, and Cancel kills the child:

- ``measure_torch_speed(folder, precision, options)``: load time, pp / tg tokens/s with the KV cache
  on, TTFT, peak memory, as a GGUF's ``SpeedFigures``, plus the weights' size in memory;
- ``prepare_torch_reference(folder, text, vocab_gguf=...)``: the FP32 logits over the evaluation
  windows as a ``Reference``, cached like ``quality.prepare_reference`` (keyed by the checkpoint
  files' names, sizes and modification times, the text, the context, k and the GGUF whose
  vocabulary tokenized the text); every GGUF is then scored against it with ``quality.score_against``;
- ``score_torch(folder, precision, reference)``: BF16 / INT8 (or FP32 against another reference) on
  the reference's windows, as ``QualityFigures``.

Refused before any child starts: a folder that is not a checkpoint (``check_checkpoint``: words
from the converter's own reader, ``runtime.compress.checkpoint``), an unknown precision, a model that
does not fit in free memory in that precision (``check_torch_memory``: InsufficientMemoryError with
the numbers). ``source_checkpoint_of(gguf)`` reads the checkpoint a GGUF was converted from (the
converter writes it into the header as ``workbench.source_checkpoint``).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from runtime.bench.reference import DEFAULT_K, Reference
from runtime.bench.results import QualityFigures, SpeedFigures, SpeedOptions
from runtime.errors import BenchError, InsufficientMemoryError, WorkbenchError
from runtime.jobs import CancelToken, ProgressCallback, no_progress

CHILD_MODULE = "runtime.bench.torch_child"
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
DEFAULT_PRECISIONS = ("fp32", "bf16", "int8")
LABELS = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16", "int8": "INT8 (dynamic)"}
WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}   # per parameter, in memory
# Per parameter while loading: INT8 is made from the FP32 model, so both are held for a moment.
LOAD_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 5}
RUNTIME_BYTES = 600 << 20          # torch and transformers themselves, resident
SOURCE_KEY = "workbench.source_checkpoint"
START_TIMEOUT_S = 180.0            # importing torch and transformers on a busy machine
_CRASH_HINT = ("The computer may have run out of memory: close other programs, leave out the FP32 row "
               "or choose a smaller context, and try again.")


@dataclass
class TorchSpeed:
    """What one speed child measured: the figures a GGUF row gets, and the weights' size in memory."""

    figures: SpeedFigures
    memory_bytes: int
    precision: str


# --- checks before any child ---------------------------------------------------------------------

def check_checkpoint(folder: str | os.PathLike):
    """The checkpoint's ``CheckpointInfo``; BenchError in words for a folder that is not a usable one."""
    from runtime.compress.checkpoint import inspect_checkpoint
    from runtime.errors import ConversionError

    folder = Path(folder).expanduser()
    try:
        info = inspect_checkpoint(folder)
    except ConversionError as exc:
        raise BenchError(f"{folder.name or folder} cannot be measured as the original model in PyTorch: "
                         f"{exc.message}.", hint=exc.hint, path=str(folder)) from None
    if info.parameter_count <= 0:
        raise BenchError(f"{folder.name} holds no weights to measure.", path=str(folder),
                         hint="Choose the folder of a downloaded Hugging Face model.")
    return info


def check_precisions(precisions: Sequence[str]) -> tuple[str, ...]:
    """The precisions in a fixed order (FP32 first: it is the reference), each once; BenchError for an unknown one."""
    wanted = [str(p).strip().lower() for p in precisions if str(p).strip()]
    unknown = [p for p in wanted if p not in PRECISIONS]
    if unknown:
        raise BenchError(f"Unknown PyTorch precision {', '.join(unknown)}: use {', '.join(PRECISIONS)}.",
                         option="original precisions")
    if not wanted:
        raise BenchError("No PyTorch precision was chosen for the original.", hint="Choose fp32, bf16 or int8.")
    return tuple(p for p in PRECISIONS if p in wanted)


def estimated_memory_bytes(info, precision: str) -> int:
    """The weights' size in memory in ``precision`` (INT8: as if every weight took one byte)."""
    return info.parameter_count * WEIGHT_BYTES[precision]


def check_torch_memory(info, precision: str, n_ctx: int, available_bytes: int | None = None) -> int:
    """Needed bytes for the checkpoint in ``precision`` at ``n_ctx`` tokens; InsufficientMemoryError
    with the numbers when free RAM is short of them."""
    from runtime.models.gguf_info import format_size
    from runtime.models.hardware import available_ram, info_from_config, kv_cache_bytes

    from runtime.compress.checkpoint import read_config

    weights = info.parameter_count * LOAD_BYTES[precision]
    try:
        shape = info_from_config(read_config(Path(info.path)), info.size_bytes, name=info.name)
        kv = kv_cache_bytes(shape, n_ctx) * 2     # llama.cpp's estimate is for F16; PyTorch keeps FP32
    except Exception:  # noqa: BLE001 - a config without the usual shape keys: the weights say most
        kv = 0
    needed = int(weights * 1.1) + kv + RUNTIME_BYTES
    available = available_ram() if available_bytes is None else available_bytes
    if needed > available:
        raise InsufficientMemoryError(
            f"{info.name} in PyTorch {LABELS[precision]} does not fit in memory: it needs about {format_size(needed)} "
            f"({info.parameter_count:,} parameters x {LOAD_BYTES[precision]} bytes while loading, the KV cache and "
            f"PyTorch itself) and {format_size(available)} is free.",
            hint="Close other programs, or leave this precision out (FP32 needs the most).", path=info.path,
            needed_bytes=needed, available_bytes=available, n_ctx=n_ctx, memory="RAM")
    return needed


# --- identity ------------------------------------------------------------------------------------

def checkpoint_files(folder: Path) -> list[tuple[str, int, int]]:
    """(name, size, mtime_ns) of every file at the top of the folder: weights, config, tokenizer."""
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file() and not entry.name.startswith("."):
            stat = entry.stat()
            out.append((entry.name, stat.st_size, stat.st_mtime_ns))
    return out


def checkpoint_source(folder: str | os.PathLike, vocab_gguf: str | os.PathLike | None = None) -> dict:
    """The FP32 reference's identity for the cache: the checkpoint's files and the GGUF whose vocabulary
    tokenized the text (``reference.cache_key`` reads ``kind`` and ``id``)."""
    from runtime.bench.reference import gguf_source

    folder = Path(folder).resolve()
    vocab = gguf_source(vocab_gguf) if vocab_gguf else None
    blob = json.dumps({"folder": str(folder), "files": checkpoint_files(folder), "vocab": vocab}, sort_keys=True)
    return {"kind": "checkpoint", "id": hashlib.sha256(blob.encode()).hexdigest()[:32],
            "checkpoint": str(folder), "precision": "fp32", "name": f"{folder.name} PyTorch FP32",
            "vocab_gguf": vocab["path"] if vocab else None}


def is_torch_reference(folder: str | os.PathLike, reference: Reference) -> bool:
    """True when ``reference`` is this checkpoint's own FP32 reference."""
    source = reference.meta.source
    return source.get("kind") == "checkpoint" and source.get("checkpoint") == str(Path(folder).resolve())


def row_name(folder: str | os.PathLike, precision: str) -> str:
    """"SmolLM2-135M-Instruct PyTorch FP32"."""
    return f"{Path(folder).name} PyTorch {LABELS[precision].split(' ')[0]}"


def source_checkpoint_of(gguf_path: str | os.PathLike) -> Path | None:
    """The checkpoint folder a GGUF was converted from, when its header names one that is still there."""
    from runtime.models.gguf_info import read_gguf_header

    try:
        folder = read_gguf_header(gguf_path)[1].metadata.get(SOURCE_KEY)
    except (WorkbenchError, OSError):
        return None
    if not isinstance(folder, str) or not folder:
        return None
    path = Path(folder)
    return path if (path / "config.json").is_file() else None


def find_original(paths: Sequence[str | os.PathLike]) -> Path | None:
    """The first checkpoint folder that one of ``paths`` (GGUFs of one model) was converted from."""
    for path in paths:
        found = source_checkpoint_of(path)
        if found is not None:
            return found
    return None


# --- the children --------------------------------------------------------------------------------

def _threads(threads: int) -> int:
    from runtime.engine.types import default_threads

    return threads if threads and threads > 0 else default_threads()


def measure_torch_speed(checkpoint: str | os.PathLike, precision: str, options: SpeedOptions, *,
                        progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> TorchSpeed:
    """Load the checkpoint in ``precision`` in a fresh child and measure it with ``options`` (threads,
    prompt and generation tokens, repetitions, warm-up: as the GGUF rows). Raises BenchError (not a
    checkpoint, options, transformers cannot load it), InsufficientMemoryError, Cancelled (the child is
    killed), ProcessCrashed (the child died: its signal in ``facts["signal"]``)."""
    from runtime.bench.speed import check_options, figures_from_event, run_speed_child

    cancel = cancel or CancelToken()
    check_options(options)
    (precision,) = check_precisions([precision])
    info = check_checkpoint(checkpoint)
    check_torch_memory(info, precision, options.prompt_tokens + options.gen_tokens)
    cancel.check()
    name = row_name(checkpoint, precision)
    args = ["speed", str(Path(checkpoint).resolve()), "--precision", precision, "--threads",
            str(_threads(options.threads)), "--prompt-tokens", str(options.prompt_tokens), "--gen-tokens",
            str(options.gen_tokens), "--reps", str(options.reps)] + ([] if options.warmup else ["--no-warmup"])
    done = run_speed_child(args, name, (1 if options.warmup else 0) + 3 * options.reps, "PyTorch runner", progress,
                           cancel, module=CHILD_MODULE, start_timeout_s=START_TIMEOUT_S, hint=_CRASH_HINT)
    return TorchSpeed(figures_from_event(done), int(done["memory_bytes"]), precision)


def prepare_torch_reference(checkpoint: str | os.PathLike, text_path: str | os.PathLike | None = None, *,
                            vocab_gguf: str | os.PathLike | None = None, n_ctx: int = 512, k: int = DEFAULT_K,
                            max_windows: int | None = None, threads: int = 0, use_cache: bool = True,
                            progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> Reference:
    """The checkpoint's FP32 log-probabilities on the text's windows (tokenized by ``vocab_gguf``'s
    vocabulary, so the GGUFs of that model can be scored against it; without one by the checkpoint's
    tokenizer). Cached; a second call with the same inputs runs nothing. Raises BenchError (not a
    checkpoint, text too short, the tokenizations disagree: where and how), InsufficientMemoryError,
    ModelFileError (a damaged vocab GGUF), ProcessCrashed, Cancelled; no partial file is left."""
    from runtime.bench import quality as q

    text = Path(text_path) if text_path is not None else q.default_text_path()
    if n_ctx < 16:
        raise BenchError(f"A context of {n_ctx} tokens is too small to measure quality: use 16 or more.")
    if not text.is_file():
        raise BenchError(f"The evaluation text {text} does not exist or is not a file.", path=str(text))
    info = check_checkpoint(checkpoint)
    if vocab_gguf is not None:
        from runtime.models.gguf_info import read_gguf_info

        read_gguf_info(vocab_gguf)   # a damaged header is refused here, in words
    check_torch_memory(info, "fp32", n_ctx)
    folder = Path(checkpoint).resolve()
    source = checkpoint_source(folder, vocab_gguf)

    def child_args(out: Path, meta: str) -> list[str]:
        args = ["reference", str(folder), "--text", str(text), "--n-ctx", str(n_ctx), "--k", str(k), "--out",
                str(out), "--meta", meta, "--max-windows", str(max_windows or 0), "--threads", str(_threads(threads))]
        return args + (["--vocab-gguf", str(vocab_gguf)] if vocab_gguf else [])

    return q.cached_reference(source, text, n_ctx=n_ctx, k=k, max_windows=max_windows, child_args=child_args,
                              label=source["name"], module=CHILD_MODULE, name="PyTorch runner", use_cache=use_cache,
                              progress=progress, cancel=cancel)


def score_torch(checkpoint: str | os.PathLike, precision: str, reference: Reference, *,
                text_path: str | os.PathLike | None = None, vocab_gguf: str | os.PathLike | None = None,
                threads: int = 0, progress: ProgressCallback = no_progress,
                cancel: CancelToken | None = None) -> QualityFigures:
    """The checkpoint in ``precision`` scored on ``reference``'s windows (KLD, top-1 agreement,
    perplexity, its ratio); the reference's own figures for FP32 against its own reference. With a GGUF
    reference, its vocabulary (``vocab_gguf``, default the reference's GGUF) must be the checkpoint's,
    and with ``text_path`` the checkpoint's tokenizer must split the text as llama.cpp does."""
    from runtime.bench import quality as q

    cancel = cancel or CancelToken()
    (precision,) = check_precisions([precision])
    if precision == "fp32" and is_torch_reference(checkpoint, reference):
        progress(1, 1, f"{row_name(checkpoint, precision)}: the reference")
        return q.reference_figures(reference)
    info = check_checkpoint(checkpoint)
    check_torch_memory(info, precision, reference.n_ctx)
    source = reference.meta.source
    if vocab_gguf is None:
        vocab_gguf = source.get("vocab_gguf") if source.get("kind") == "checkpoint" else source.get("path")
    if vocab_gguf is not None and not Path(vocab_gguf).is_file():
        vocab_gguf = None
    folder = Path(checkpoint).resolve()
    args = ["score", str(folder), "--precision", precision, "--reference", str(reference.path),
            "--threads", str(_threads(threads))]
    if vocab_gguf:
        args += ["--vocab-gguf", str(vocab_gguf)]
    if text_path is not None and not is_torch_reference(folder, reference):
        args += ["--text", str(text_path)]
    name = row_name(checkpoint, precision)
    done = q._run_child(args, name, progress, cancel, doing=f"scoring {name}", module=CHILD_MODULE,
                        name="PyTorch runner")
    return q.score_from_event(done).figures
