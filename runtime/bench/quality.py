"""Quality of GGUF variants: perplexity, and KL divergence / top-1 agreement / perplexity ratio
against a reference, all on the same token windows, measured as llama-perplexity does.

Two steps, each in its own child process (``runtime.bench.quality_child``), so a damaged file or
a crash fails only that model:

- ``prepare_reference(path, text)`` runs the reference model once over the text and caches its
  log-probabilities (``runtime.bench.reference``; reused while the file, text, context and k are the
  same); ``reference_figures(ref)`` are the reference's own figures (KLD 0, top-1 1, ratio 1);
- ``score_against(path, ref)`` scores another variant on the reference's windows.

``measure_quality(paths, ...)`` does both for a group, the reference by default being the
highest-precision variant (``pick_reference``). Each raises ``Cancelled`` on cancel (the child is
killed, no partial cache file is left), ``ModelFileError`` for a damaged file, and ``BenchError``
for a text too short for the context or a variant whose vocabulary differs from the reference's.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

from runtime.bench import reference as ref
from runtime.bench.reference import DEFAULT_K, Reference
from runtime.bench.results import QualityFigures
from runtime.errors import BenchError, ProcessCrashed
from runtime.jobs import CancelToken, ProgressCallback, no_progress
from runtime.procs import ChildProcess

CHILD_MODULE = "runtime.bench.quality_child"
DEFAULT_N_CTX = 512
TEXT_FILE = "workbench_essays.txt"
START_TIMEOUT_S = 180.0          # importing llama.cpp and loading a big model on a busy machine
RUN_TIMEOUT_S = 7 * 24 * 3600.0  # Cancel is the way out
CACHE_FILES = 8                  # reference files kept (the most recently used)
STALE_PARTIAL_S = 24 * 3600.0
_CRASH_HINT = ("The model file may be damaged, or the computer ran out of memory: close other programs, "
               "try a smaller context, and run it again.")


def default_text_path() -> Path:
    """The English evaluation text shipped with the app (resources/eval, see its README)."""
    return Path(str(resources.files("resources").joinpath("eval", TEXT_FILE)))


def _threads(threads: int) -> int:
    if threads and threads > 0:
        return threads
    from runtime.engine.types import default_threads

    return default_threads()


# --- the reference -------------------------------------------------------------------------------------

def pick_reference(paths: Sequence[str | os.PathLike]) -> Path:
    """The highest-precision variant: best quantization rank (F32 > F16/BF16 > Q8_0 > ...), then the
    biggest file. Raises ModelFileError for a file whose header cannot be read."""
    from runtime.models.gguf_info import read_gguf_info
    from runtime.models.quants import quant_from_name, quant_rank

    def rank(path) -> tuple[int, int]:
        info = read_gguf_info(path)
        quant = info.file_type if quant_rank(info.file_type) else quant_from_name(Path(path).name)
        return quant_rank(quant), info.size_bytes

    if not paths:
        raise BenchError("No models were given to compare.")
    return Path(max(paths, key=rank))


def reference_figures(reference: Reference) -> QualityFigures:
    """The reference model's own figures: its perplexity, KLD 0, top-1 agreement 1, ratio 1."""
    return QualityFigures(perplexity=reference.perplexity, kld_mean=0.0, kld_p99=0.0, top1_agreement=1.0,
                          ppl_ratio=1.0, tokens_scored=reference.meta.n_scored, is_reference=True)


def prepare_reference(model_path: str | os.PathLike, text_path: str | os.PathLike | None = None, *,
                      n_ctx: int = DEFAULT_N_CTX, k: int = DEFAULT_K, max_windows: int | None = None,
                      threads: int = 0, n_gpu_layers: int = -1, use_cache: bool = True,
                      progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> Reference:
    """The reference log-probabilities of ``model_path`` on the text (default: the shipped one).

    Cached under ``reference.cache_dir()`` by (file path, size, mtime; text hash; n_ctx; k;
    max_windows): a second call with the same inputs reads the file and runs nothing. ``progress``
    counts windows. Raises BenchError (text too short: how many tokens it has and needs, the longest
    context that works), ModelFileError, ProcessCrashed, Cancelled; no partial file is left.
    """
    from runtime.models.gguf_info import read_gguf_info

    cancel = cancel or CancelToken()
    model = Path(model_path)
    text = Path(text_path) if text_path is not None else default_text_path()
    if n_ctx < 16:
        raise BenchError(f"A context of {n_ctx} tokens is too small to measure quality: use 16 or more.")
    if not text.is_file():
        raise BenchError(f"The evaluation text {text} does not exist or is not a file.", path=str(text))
    info = read_gguf_info(model)  # a damaged header is refused before any child starts
    source = {**ref.gguf_source(model), "name": model.name, "quant": info.file_type}

    def child_args(out: Path, meta: str) -> list[str]:
        return ["reference", str(model), "--text", str(text), "--n-ctx", str(n_ctx), "--k", str(k), "--out",
                str(out), "--meta", meta, "--max-windows", str(max_windows or 0), "--threads", str(_threads(threads)),
                "--gpu-layers", str(n_gpu_layers)]

    return cached_reference(source, text, n_ctx=n_ctx, k=k, max_windows=max_windows, child_args=child_args,
                            label=model.name, use_cache=use_cache, progress=progress, cancel=cancel)


def cached_reference(source: dict, text: Path, *, n_ctx: int, k: int, max_windows: int | None,
                     child_args: Callable[[Path, str], list[str]], label: str, module: str = CHILD_MODULE,
                     name: str = "quality process", use_cache: bool = True, progress: ProgressCallback = no_progress,
                     cancel: CancelToken | None = None) -> Reference:
    """The reference of ``source`` (``gguf_source`` or another producer's identity) on ``text``: the cached
    file when there is one for the same inputs, else computed by the child ``module`` run with
    ``child_args(partial_file, meta_json)``, written under a temporary name and renamed once complete."""
    cancel = cancel or CancelToken()
    text_hash = ref.text_sha256(text)
    key = ref.cache_key(source, text_hash, n_ctx, k, max_windows)
    final = ref.cache_path(key)
    if use_cache and final.exists():
        try:
            cached = Reference.open(final)
            if cached.meta.key == key:
                os.utime(final)   # recently used: the last to be pruned
                progress(1, 1, f"Reference {label}: cached")
                return cached
        except BenchError:
            pass
        _remove(final)  # damaged or not ours: computed again below
    folder = final.parent
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(folder)
    fd, temp_name = tempfile.mkstemp(prefix=f"{key}.", suffix=ref.PARTIAL_SUFFIX, dir=folder)
    os.close(fd)
    temp = Path(temp_name)
    meta = json.dumps({"source": source, "key": key, "text_sha256": text_hash, "text_name": text.name})
    try:
        _run_child(child_args(temp, meta), f"Reference {label}", progress, cancel,
                   doing=f"computing the reference {label}", module=module, name=name)
        Reference.open(temp)  # complete and readable before it gets its name
        os.replace(temp, final)
    finally:
        _remove(temp)
    prune_cache(folder, keep=final)
    return Reference.open(final)


def load_reference(path: str | os.PathLike) -> Reference:
    """A reference file made earlier (by this app or another producer, e.g. a PyTorch checkpoint)."""
    return Reference.open(path)


# --- scoring ------------------------------------------------------------------------------------------

@dataclass
class QualityScore:
    """Everything one scoring run measured; ``figures`` is the shared ``QualityFigures``."""

    figures: QualityFigures
    reference_perplexity: float
    kld_median: float
    kld_max: float
    kld_mean_by_k: dict[int, float] = field(default_factory=dict)  # as if the reference kept only k tokens
    n_windows: int = 0
    load_s: float = 0.0
    seconds: float = 0.0


def score_model(model_path: str | os.PathLike, reference: Reference, *, threads: int = 0, n_gpu_layers: int = -1,
                compare_k: Sequence[int] = (), progress: ProgressCallback = no_progress,
                cancel: CancelToken | None = None) -> QualityScore:
    """Score ``model_path`` on ``reference``'s windows: perplexity, KLD (mean, p99), top-1 agreement,
    perplexity ratio. ``compare_k``: also the mean KLD as if the reference had kept fewer tokens.
    Raises BenchError (other vocabulary), ModelFileError, ProcessCrashed, Cancelled."""
    from runtime.models.gguf_info import read_gguf_info

    cancel = cancel or CancelToken()
    model = Path(model_path)
    read_gguf_info(model)
    args = ["score", str(model), "--reference", str(reference.path), "--threads", str(_threads(threads)),
            "--gpu-layers", str(n_gpu_layers)]
    if compare_k:
        args += ["--compare-k", ",".join(str(int(k)) for k in compare_k)]
    done = _run_child(args, model.name, progress, cancel, doing=f"scoring {model.name}")
    return score_from_event(done)


def score_from_event(done: dict) -> QualityScore:
    """A QualityScore from a scoring child's ``done`` event (``reference.WindowScorer.figures()`` and timings)."""
    figures = QualityFigures(
        perplexity=done["perplexity"], kld_mean=max(0.0, done["kld_mean"]), kld_p99=max(0.0, done["kld_p99"]),
        top1_agreement=done["top1_agreement"], ppl_ratio=math.exp(done["nll_mean"] - done["reference_nll_mean"]),
        tokens_scored=done["tokens_scored"], is_reference=False)
    return QualityScore(figures, reference_perplexity=done["reference_perplexity"], kld_median=done["kld_median"],
                        kld_max=done["kld_max"], kld_mean_by_k={int(k): v for k, v in done["kld_mean_by_k"].items()},
                        n_windows=done["n_windows"], load_s=done["load_s"], seconds=done["seconds"])


def score_against(model_path: str | os.PathLike, reference: Reference, *, threads: int = 0, n_gpu_layers: int = -1,
                  progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> QualityFigures:
    """``score_model``'s figures: the quality of one variant against ``reference``; for the very file
    the reference was computed from, ``reference_figures`` without running it again."""
    if is_reference_model(model_path, reference):
        return reference_figures(reference)
    return score_model(model_path, reference, threads=threads, n_gpu_layers=n_gpu_layers, progress=progress,
                       cancel=cancel).figures


def is_reference_model(model_path: str | os.PathLike, reference: Reference) -> bool:
    """True when ``reference`` was computed from this very file (same path, size and modification time)."""
    try:
        mine = ref.gguf_source(model_path)
    except OSError:
        return False
    theirs = reference.meta.source
    return all(theirs.get(key) == mine[key] for key in ("kind", "path", "size", "mtime_ns"))


def measure_quality(paths: Sequence[str | os.PathLike], text_path: str | os.PathLike | None = None, *,
                    n_ctx: int = DEFAULT_N_CTX, reference_path: str | os.PathLike | None = None, threads: int = 0,
                    n_gpu_layers: int = -1, k: int = DEFAULT_K, max_windows: int | None = None,
                    progress: ProgressCallback = no_progress,
                    cancel: CancelToken | None = None) -> dict[str, QualityFigures]:
    """Quality figures for each model in ``paths`` (keyed by the path as given), against
    ``reference_path`` (a GGUF, or a ``.wbref`` reference file; default ``pick_reference(paths)``).

    The first failure is raised (a per-model caller uses ``prepare_reference`` and ``score_against``
    to keep the other rows). ``progress`` counts windows over all models.
    """
    cancel = cancel or CancelToken()
    paths = [str(p) for p in paths]
    chosen = Path(reference_path) if reference_path is not None else pick_reference(paths)
    state = {"base": 0.0, "total": 0.0}

    def step(done: float, total: float, message: str) -> None:
        if not state["total"] and total:
            state["total"] = total * (len(paths) + 1)
        progress(state["base"] + done, state["total"], message)

    if chosen.suffix == ref.SUFFIX:
        reference = load_reference(chosen)
    else:
        reference = prepare_reference(chosen, text_path, n_ctx=n_ctx, k=k, max_windows=max_windows, threads=threads,
                                      n_gpu_layers=n_gpu_layers, progress=step, cancel=cancel)
    state["base"], state["total"] = reference.n_windows, reference.n_windows * (len(paths) + 1)
    results: dict[str, QualityFigures] = {}
    for path in paths:
        cancel.check()
        results[path] = score_against(path, reference, threads=threads, n_gpu_layers=n_gpu_layers,
                                      progress=step, cancel=cancel)
        state["base"] += reference.n_windows
    progress(state["total"], state["total"], "Quality: done")
    return results


# --- the child ----------------------------------------------------------------------------------------

def _run_child(args: list[str], label: str, progress: ProgressCallback, cancel: CancelToken, doing: str,
               module: str = CHILD_MODULE, name: str = "quality process") -> dict:
    """Run one quality child (``module``: quality_child, or torch_child for a checkpoint) to its ``done``
    event; its window events become progress."""
    child = ChildProcess(module, args, name=name, error_class=ProcessCrashed)
    started = time.monotonic()

    def on_event(event: dict) -> None:
        if event.get("event") == "window":
            progress(event["index"], event["total"], f"{label}: window {event['index']}/{event['total']}")
        elif event.get("event") == "windows":
            progress(0, event["n_windows"], f"{label}: {event['n_tokens']:,} tokens, {event['n_windows']} windows")

    try:
        child.start()
        child.wait_for("started", START_TIMEOUT_S, cancel, doing="starting", hint=_CRASH_HINT)
        done = child.wait_for("done", RUN_TIMEOUT_S, cancel, on_event=on_event, doing=doing, hint=_CRASH_HINT)
        child.wait(10)
    finally:
        child.kill()
    done.setdefault("wall_s", round(time.monotonic() - started, 3))
    return done


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def prune_cache(folder: Path, keep: Path, limit: int = CACHE_FILES) -> list[Path]:
    """Remove all but the ``limit`` most recently used reference files (each can be 100+ MiB);
    ``keep`` stays whatever its age. Returns the removed files."""
    try:
        files = sorted(folder.glob(f"*{ref.SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    removed = [p for p in files[limit:] if p != keep]
    for path in removed:
        _remove(path)
    return removed


def _remove_stale_partials(folder: Path) -> None:
    """Partial files a killed app left behind (a running one renames or removes its own)."""
    now = time.time()
    for partial in folder.glob(f"*{ref.PARTIAL_SUFFIX}"):
        try:
            if now - partial.stat().st_mtime > STALE_PARTIAL_S:
                partial.unlink()
        except OSError:
            pass
