"""One benchmark run over several GGUF variants: speed for each, then quality against a reference.

``run_benchmark(paths, options, ...)`` is what the Benchmark tab and ``workbench bench`` run. Every
variant gets one row (``VariantResult``) and a row is final before the next variant starts, so a
caller may store it at once (``on_result``): a cancel leaves only complete rows behind. Per row:

- a damaged file fails that row with its reason (the others go on);
- a model that does not fit in memory is skipped with the numbers;
- speed: ``runtime.bench.speed.measure_speed`` in a fresh child, the same options for all;
- quality (``quality=True``): the reference (the highest-precision variant unless one is chosen)
  is computed once, first, and cached; every other variant is scored on the same token windows. A
  variant with another vocabulary keeps its speed figures and says why it has no quality figures
  (``note``); a reference that cannot be computed leaves every row without them, with the reason.
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
                  progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> BenchRun:
    """Measure every file of ``paths`` the same way; return the run with one row per file, in order.

    ``on_result(row)`` gets each row once it is final; ``store`` (a ``BenchStore``) keeps the run and
    each final row as it comes, and drops the run if it ends with none. ``reference_path`` is measured
    too when it is not among ``paths``. Raises BenchError before anything runs for options that cannot
    work or no file, Cancelled when cancelled (the rows handed on so far are complete; the one in
    progress is dropped).
    """
    from runtime.bench import quality as q
    from runtime.bench.machine import machine_facts
    from runtime.bench.speed import check_options

    cancel = cancel or CancelToken()
    options = options or SpeedOptions()
    paths = [str(p) for p in paths]
    if reference_path is not None and str(reference_path) not in paths:
        paths.insert(0, str(reference_path))
    if not paths:
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
    if quality and readable:
        run.reference_path = str(reference_path or q.pick_reference([r.path for r in readable]))
    quality = quality and bool(readable)
    steps = _Steps(len(rows) * SPEED_STEP + (len(readable) * QUALITY_STEP + REFERENCE_STEP if quality else 0),
                   progress)
    if store is not None:
        store.start_run(run)
    try:
        reference, problem = _reference(run, text, speed_opts, steps, cancel) if quality else (None, None)
        for row in rows:
            cancel.check()
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


def _reference(run: BenchRun, text: Path, options: SpeedOptions, steps: _Steps, cancel: CancelToken):
    """(the reference, None), or (None, why every row lacks quality figures)."""
    from runtime.bench import quality as q

    try:
        return q.prepare_reference(run.reference_path, text, n_ctx=run.options.n_ctx, threads=options.threads,
                                   n_gpu_layers=options.n_gpu_layers, progress=steps.step(REFERENCE_STEP),
                                   cancel=cancel), None
    except WorkbenchError as exc:
        return None, f"no quality figures (reference {Path(run.reference_path).name}): {exc.message}"


def _measure_row(row: VariantResult, options: SpeedOptions, steps: _Steps, cancel: CancelToken, *,
                 quality: bool, reference, problem: str | None) -> None:
    """Speed, then quality, of one row (in place); a failure fails or skips only this row."""
    from runtime.bench.speed import measure_speed

    speed_step = steps.step(SPEED_STEP)
    quality_step = steps.step(QUALITY_STEP) if quality else None
    if row.status != "ok":
        return
    try:
        row.speed = measure_speed(row.path, options, progress=speed_step, cancel=cancel)
    except WorkbenchError as exc:
        _failure(row, exc)
        return
    if quality:
        row.quality, row.note = (None, problem) if reference is None else \
            _quality_of(row, reference, options, quality_step, cancel)


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
