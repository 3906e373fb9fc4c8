"""One benchmark run over several GGUF variants: speed for each, then quality against a reference.

``run_benchmark(paths, options, ...)`` is what the Benchmark tab and ``workbench bench`` run. Every
variant gets one row (``VariantResult``) and a row is final before the next variant starts, so a
caller may store it at once (``on_result``): a cancel leaves only complete rows behind. Per row:

- a damaged file fails that row with its reason (the others go on);
- a model that does not fit in memory is skipped with the numbers;
- speed: ``runtime.bench.speed.measure_speed_and_batching`` in a fresh child, the same options for
  all (with ``options.parallel`` also the batched test: ``row.batched``);
- KV cache reuse (``options.kv_reuse``, GGUF rows): ``runtime.bench.kv_reuse.measure_kv_reuse``
  after speed and quality (``row.kv_reuse``); its failure only adds a ``note``;
- quality (``quality=True``): the reference (the highest-precision variant unless one is chosen)
  is computed once, first, and cached; every other variant is scored on the same token windows. A
  variant with another vocabulary keeps its speed figures and says why it has no quality figures
  (``note``); a reference that cannot be computed leaves every row without them, with the reason.

The original checkpoint (``original=FOLDER``) adds PyTorch rows first, one per precision of
``original_precisions`` (``runtime.bench.torch_rows``: FP32, BF16, dynamic INT8), ``engine="pytorch"``,
named "<folder> PyTorch FP32", their ``path`` the checkpoint folder (the rows share it), their
``size_bytes`` the weights' size in memory in that precision as the child measured it (FP32: 4 bytes
a parameter even for a BF16 checkpoint; INT8: the packed int8 Linear weights plus the FP32
embeddings and norms), so sizes compare what each recipe holds in memory. With ``quality`` and no
``reference_path`` (or the folder as ``reference_path``) the FP32 original is the reference: every
GGUF row's KLD and top-1 agreement are against the real original, on windows tokenized by a GGUF of
the run (its vocabulary; the checkpoint's tokenizer must agree, else no row gets quality figures and
the note says where they differ).
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from runtime.bench.results import BenchRun, SpeedOptions, VariantResult
from runtime.errors import BenchError, InsufficientMemoryError, WorkbenchError
from runtime.jobs import CancelToken, ProgressCallback, no_progress

SPEED_STEP, QUALITY_STEP, REFERENCE_STEP = 1.0, 1.0, 1.0  # progress weights of each step
KV_STEP = 1.0  # the KV cache reuse test of one row (options.kv_reuse)


def speed_options_for(options: SpeedOptions) -> SpeedOptions:
    """The speed runner's options: its context holds the longest test even when the quality context
    (``options.n_ctx``, the chunk size of the perplexity text) is shorter."""
    return dataclasses.replace(options, n_ctx=max(options.n_ctx, options.prompt_tokens, options.gen_tokens))


def _describe(path: str) -> VariantResult:
    """A row for ``path`` from its header; a failed row when the header cannot be read."""
    from runtime.models.gguf_info import read_gguf_info

    name = Path(path).name
    try:
        info = read_gguf_info(path)
    except WorkbenchError as exc:
        try:
            size = Path(path).stat().st_size
        except OSError:
            size = 0
        return VariantResult(str(path), name, None, size, status="failed", error=exc.message)
    return VariantResult(str(path), name, info.file_type, info.size_bytes)


def _failure(result: VariantResult, exc: WorkbenchError) -> None:
    result.status = "skipped" if isinstance(exc, InsufficientMemoryError) else "failed"
    result.error = exc.message
    result.speed = result.quality = None


class _Steps:
    """Progress over the whole run from each step's own progress: ``step(weight)`` gives the callback
    for the next step, which then counts as ``weight`` of the total."""

    def __init__(self, total: float, progress: ProgressCallback):
        self.total, self.done, self._progress = total, 0.0, progress

    def step(self, weight: float) -> ProgressCallback:
        start = self.done
        self.done += weight
        return lambda d, t, message: self._progress(start + weight * min(1.0, d / t if t else 0.0), self.total,
                                                    message)


def run_benchmark(paths: Sequence[str | os.PathLike], options: SpeedOptions | None = None, *,
                  quality: bool = False, text_path: str | os.PathLike | None = None,
                  reference_path: str | os.PathLike | None = None, machine: dict | None = None, store=None,
                  on_result: Callable[[VariantResult], None] | None = None,
                  original: str | os.PathLike | None = None,
                  original_precisions: Sequence[str] = ("fp32", "bf16", "int8"),
                  progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> BenchRun:
    """Measure every file of ``paths`` the same way; return the run with one row per file, in order.

    ``on_result(row)`` gets each row once it is final; ``store`` (a ``BenchStore``) keeps the run and
    each final row as it comes, and drops the run if it ends with none. ``reference_path`` is measured
    too when it is not among ``paths``. ``original``: the checkpoint folder measured in PyTorch too (see
    the module docstring). Raises BenchError before anything runs for options that cannot work, no
    file, a folder that is not a checkpoint or an unknown precision; Cancelled when cancelled (the
    rows handed on so far are complete; the one in progress is dropped).
    """
    from runtime.bench import quality as q
    from runtime.bench.machine import machine_facts
    from runtime.bench.speed import check_options

    cancel = cancel or CancelToken()
    options = options or SpeedOptions()
    paths = [str(p) for p in paths]
    original_rows = _original_rows(original, original_precisions) if original is not None else []
    original = original_rows[0].path if original_rows else None
    if reference_path is not None and original is not None and \
            Path(reference_path).expanduser().resolve() == Path(original):
        reference_path = None   # the folder itself: its FP32 reference, the default
    if reference_path is not None and str(reference_path) not in paths:
        paths.insert(0, str(reference_path))
    if not paths and not original_rows:
        raise BenchError("No models were chosen.", hint="Pick one or more GGUF files to measure.")
    if len(set(paths)) != len(paths):
        raise BenchError("The same file was chosen twice.", hint="Choose each model once.")
    speed_opts = speed_options_for(options)
    check_options(speed_opts)
    if quality and options.n_ctx < 16:
        raise BenchError(f"A context of {options.n_ctx} tokens is too small to measure quality: use 16 or more.")
    text = Path(text_path) if text_path is not None else q.default_text_path()
    run = BenchRun(machine=machine if machine is not None else machine_facts(speed_opts.threads or None),
                   options=options, text_name=text.name if quality else None, started_at=time.time())
    rows = [_describe(p) for p in paths]
    readable = [r for r in rows if r.status == "ok"]
    torch_reference = quality and original is not None and reference_path is None
    if torch_reference:
        run.reference_path = original
    elif quality and readable:
        run.reference_path = str(reference_path or q.pick_reference([r.path for r in readable]))
    quality = quality and bool(readable or torch_reference)
    vocab_gguf = _vocab_gguf(readable, reference_path) if original is not None else None
    steps = _Steps((len(rows) + len(original_rows)) * SPEED_STEP
                   + ((len(readable) + len(original_rows)) * QUALITY_STEP + REFERENCE_STEP if quality else 0)
                   + (len(rows) * KV_STEP if options.kv_reuse else 0),
                   progress)
    if store is not None:
        store.start_run(run)
    try:
        reference, problem = (_reference(run, text, speed_opts, steps, cancel, torch_reference, vocab_gguf)
                              if quality else (None, None))
        for row in original_rows + rows:
            cancel.check()
            if row.engine == "pytorch":
                _measure_torch_row(row, speed_opts, steps, cancel, quality=quality, reference=reference,
                                   problem=problem, text=text, vocab_gguf=vocab_gguf)
            else:
                _measure_row(row, speed_opts, steps, cancel, quality=quality and row in readable,
                             reference=reference, problem=problem)
            run.results.append(row)
            if store is not None:
                store.add_result(run.run_id, row)
            if on_result is not None:
                on_result(row)
    finally:
        if store is not None:
            store.finish_run(run.run_id)
    progress(steps.total, steps.total, "Done")
    return run


def _reference(run: BenchRun, text: Path, options: SpeedOptions, steps: _Steps, cancel: CancelToken,
               torch_reference: bool = False, vocab_gguf: str | None = None):
    """(the reference, None), or (None, why every row lacks quality figures)."""
    from runtime.bench import quality as q
    from runtime.bench import torch_rows

    name = torch_rows.row_name(run.reference_path, "fp32") if torch_reference else Path(run.reference_path).name
    try:
        if torch_reference:
            return torch_rows.prepare_torch_reference(
                run.reference_path, text, vocab_gguf=vocab_gguf, n_ctx=run.options.n_ctx, threads=options.threads,
                progress=steps.step(REFERENCE_STEP), cancel=cancel), None
        return q.prepare_reference(run.reference_path, text, n_ctx=run.options.n_ctx, threads=options.threads,
                                   n_gpu_layers=options.n_gpu_layers, progress=steps.step(REFERENCE_STEP),
                                   cancel=cancel), None
    except WorkbenchError as exc:
        return None, f"no quality figures (reference {name}): {exc.message}"


# --- the original checkpoint in PyTorch ------------------------------------------------------------

def _original_rows(folder: str | os.PathLike, precisions: Sequence[str]) -> list[VariantResult]:
    """One row per precision of the checkpoint (FP32 first); BenchError for a folder that is not one."""
    from runtime.bench import torch_rows

    info = torch_rows.check_checkpoint(folder)
    path = str(Path(info.path).resolve())
    return [VariantResult(path, torch_rows.row_name(path, p), torch_rows.LABELS[p],
                          torch_rows.estimated_memory_bytes(info, p), engine="pytorch")
            for p in torch_rows.check_precisions(precisions)]


def _precision_of(row: VariantResult) -> str:
    from runtime.bench.torch_rows import LABELS

    return next(p for p, label in LABELS.items() if label == row.quant)


def _vocab_gguf(readable: list[VariantResult], reference_path) -> str | None:
    """The GGUF whose vocabulary tokenizes the text for the original's reference: the chosen reference
    when it is a GGUF of the run, else the first readable GGUF (None: the checkpoint's own tokenizer)."""
    paths = [r.path for r in readable]
    if reference_path is not None and str(reference_path) in paths:
        return str(reference_path)
    return paths[0] if paths else None


def _measure_torch_row(row: VariantResult, options: SpeedOptions, steps: _Steps, cancel: CancelToken, *,
                       quality: bool, reference, problem: str | None, text: Path, vocab_gguf: str | None) -> None:
    """Speed, then quality, of one PyTorch row (in place); a failure fails or skips only this row."""
    from runtime.bench import torch_rows

    speed_step = steps.step(SPEED_STEP)
    quality_step = steps.step(QUALITY_STEP) if quality else None
    precision = _precision_of(row)
    try:
        measured = torch_rows.measure_torch_speed(row.path, precision, options, progress=speed_step, cancel=cancel)
    except WorkbenchError as exc:
        _failure(row, exc)
        return
    row.speed, row.size_bytes = measured.figures, measured.memory_bytes
    if not quality:
        return
    if reference is None:
        row.note = problem
        return
    try:
        row.quality = torch_rows.score_torch(row.path, precision, reference, text_path=text,
                                             vocab_gguf=vocab_gguf, threads=options.threads,
                                             progress=quality_step, cancel=cancel)
    except WorkbenchError as exc:
        row.note = f"no quality figures: {exc.message}"


def _measure_row(row: VariantResult, options: SpeedOptions, steps: _Steps, cancel: CancelToken, *,
                 quality: bool, reference, problem: str | None) -> None:
    """Speed, then quality, of one row (in place); a failure fails or skips only this row."""
    from runtime.bench.speed import measure_speed_and_batching

    speed_step = steps.step(SPEED_STEP)
    quality_step = steps.step(QUALITY_STEP) if quality else None
    kv_step = steps.step(KV_STEP) if options.kv_reuse else None
    if row.status != "ok":
        return
    try:
        row.speed, row.batched = measure_speed_and_batching(row.path, options, progress=speed_step, cancel=cancel)
    except WorkbenchError as exc:
        _failure(row, exc)
        return
    if quality:
        row.quality, row.note = (None, problem) if reference is None else \
            _quality_of(row, reference, options, quality_step, cancel)
    if kv_step is not None and row.engine == "llama.cpp":
        _kv_reuse_of(row, options, kv_step, cancel)


def _kv_reuse_of(row: VariantResult, options: SpeedOptions, progress: ProgressCallback, cancel: CancelToken) -> None:
    """The row's KV cache reuse figures (``runtime.bench.kv_reuse``); a failure keeps its other figures
    and says why in its note."""
    from runtime.bench.kv_reuse import measure_kv_reuse

    try:
        row.kv_reuse = measure_kv_reuse(row.path, options, progress=progress, cancel=cancel)
    except WorkbenchError as exc:
        row.note = "; ".join(filter(None, [row.note, f"no KV cache figures: {exc.message}"]))


def _quality_of(row: VariantResult, reference, options: SpeedOptions, progress: ProgressCallback,
                cancel: CancelToken):
    """(figures, note) of one variant against the reference: the reference's own figures for itself;
    (None, why) when it cannot be compared."""
    from runtime.bench import quality as q

    if q.is_reference_model(row.path, reference):
        progress(1, 1, f"{row.name}: the reference")
        return q.reference_figures(reference), None
    try:
        return q.score_against(row.path, reference, threads=options.threads, n_gpu_layers=options.n_gpu_layers,
                               progress=progress, cancel=cancel), None
    except WorkbenchError as exc:
        return None, f"no quality figures: {exc.message}"
