"""Export a chart (PNG, SVG) and a run's figures (CSV, JSON). Qt-free.

Every file is written safely: to a temporary name in the destination folder, then renamed over the
target, so a failure leaves no half file (and an older file at the path stays as it was). A path that
cannot be written raises ExportError with a hint.

CSV: one row per variant, ``VariantResult.flat()`` (timings as medians) followed by the run's columns
(``run_id``, ``run_started_at`` as local ISO time, ``text_name``, ``reference_path``, ``option_*`` and
``machine_*``); a value that is a list or dict (``batched``, ``kv_reuse``, a machine's GPUs) is written
as JSON in its cell. JSON: ``BenchRun.to_dict()`` plus ``recipes`` (the guides' claims checked,
``runtime.bench.recipes``) as one object, or a list of them for several runs; a NaN or infinite
figure is written as null. Markdown (``export_markdown``): a report per run with the machine, the
options, the figures, the summary and the recipes.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from runtime.bench.results import BenchRun
from runtime.errors import ExportError
from runtime.paths import write_safely

CHART_FORMATS = ("png", "svg")
PNG_DPI = 150   # sharper than the screen's 100 for slides and reports


def export_chart(figure, path: str | os.PathLike, fmt: str | None = None, dpi: int = PNG_DPI) -> Path:
    """Write ``figure`` (a matplotlib Figure) as PNG or SVG; ``fmt`` defaults to the path's suffix."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in CHART_FORMATS:
        raise ExportError(f"Cannot save a chart as {fmt or 'a file without a suffix'!r}.", path=path,
                          hint="Name the file .png or .svg.")

    def write(handle) -> None:
        figure.savefig(handle, format=fmt, dpi=dpi, facecolor=figure.get_facecolor(),
                       metadata={"Software": "Model Workbench"} if fmt == "png" else {"Creator": "Model Workbench"})
    return write_safely(path, write, binary=True)


def csv_rows(runs: BenchRun | Sequence[BenchRun]) -> list[dict]:
    """The CSV's rows: each variant's flat figures plus its run's columns (see the module doc)."""
    rows = []
    for run in _as_list(runs):
        extra = {"run_id": run.run_id,
                 "run_started_at": dt.datetime.fromtimestamp(run.started_at).isoformat(timespec="seconds"),
                 "text_name": run.text_name, "reference_path": run.reference_path}
        extra.update({f"option_{k}": _cell(v) for k, v in asdict(run.options).items()})
        extra.update({f"machine_{k}": _cell(v) for k, v in (run.machine or {}).items()})
        rows.extend({**{k: _cell(v) for k, v in result.flat().items()}, **extra} for result in run.results)
    return rows


def _cell(value):
    """A CSV cell: a list or dict as JSON (null for NaN), anything else as it is."""
    return json.dumps(_finite(value), ensure_ascii=False) if isinstance(value, (list, dict)) else value


def export_csv(runs: BenchRun | Sequence[BenchRun], path: str | os.PathLike) -> Path:
    """Write the figures of one run (or several) as CSV."""
    rows = csv_rows(runs)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)   # runs on other machines may add columns

    def write(handle) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
        handle.write(text.getvalue())
    return write_safely(Path(path), write, binary=False)


def export_json(runs: BenchRun | Sequence[BenchRun], path: str | os.PathLike) -> Path:
    """Write one run as ``BenchRun.to_dict()`` with its ``recipes`` (several runs: a list of them)."""
    data = run_json(runs) if isinstance(runs, BenchRun) else [run_json(run) for run in runs]
    text = json.dumps(_finite(data), indent=2, ensure_ascii=False, allow_nan=False)
    return write_safely(Path(path), lambda handle: handle.write(text + "\n"), binary=False)


def run_json(run: BenchRun) -> dict:
    """One run as the JSON export writes it: ``BenchRun.to_dict()`` and ``recipes``."""
    from runtime.bench.recipes import recipes

    return {**run.to_dict(), "recipes": [r.to_dict() for r in recipes(run)]}


def export_markdown(runs: BenchRun | Sequence[BenchRun], path: str | os.PathLike) -> Path:
    """Write a Markdown report of one run (or several, one after another)."""
    text = "\n".join(markdown_report(run) for run in _as_list(runs))
    return write_safely(Path(path), lambda handle: handle.write(text), binary=False)


def markdown_report(run: BenchRun) -> str:
    """The run in Markdown: when and where, how it was measured, the figures, the summary, the recipes."""
    from runtime.bench.compare import labels
    from runtime.bench.recipes import recipes, recipes_markdown
    from runtime.bench.speed import describe_options
    from runtime.bench.summary import summarize
    from runtime.models.gguf_info import format_size

    when = dt.datetime.fromtimestamp(run.started_at).strftime("%Y-%m-%d %H:%M")
    machine = run.machine or {}
    lines = [f"# Benchmark run of {when}", ""]
    facts = [f"{k.removesuffix('_bytes').replace('_', ' ')}: {_fact(k, v)}"
             for k, v in machine.items() if v not in (None, "", []) and not isinstance(v, dict)]
    if facts:
        lines += ["Machine: " + "; ".join(facts) + ".", ""]
    kv = "; KV cache reuse: a multi-turn chat replayed" if run.options.kv_reuse else ""
    lines += [f"Measured with: {describe_options(run.options)}{kv}."
              + (f" Quality on {run.text_name}." if run.text_name else ""), ""]
    names = labels(run.results)
    lines += ["| Variant | Engine | Size | Generation t/s | Prompt t/s | First token | Peak memory | KLD | Status |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in run.results:
        s, q = r.speed, r.quality
        cells = [names[id(r)], r.engine, format_size(r.size_bytes),
                 f"{s.tg_tokens_per_s.median:.1f}" if s else "", f"{s.pp_tokens_per_s.median:.1f}" if s else "",
                 f"{s.ttft_s.median * 1000:.0f} ms" if s else "",
                 format_size(s.peak_rss_bytes) if s and s.peak_rss_bytes else "",
                 f"{q.kld_mean:.4f}" if q is not None and q.kld_mean is not None else "",
                 r.status if r.status == "ok" else f"{r.status}: {r.error}"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    summary = summarize(run.results, run.reference_path)
    if summary:
        lines += ["", summary]
    return "\n".join(lines) + "\n\n" + recipes_markdown(recipes(run))


def _fact(key: str, value) -> str:
    from runtime.models.gguf_info import format_size

    if isinstance(value, list):
        return ", ".join(map(str, value))
    if key.endswith("_bytes") and isinstance(value, int):
        return format_size(value)
    return str(value)


def _finite(value):
    """``value`` with NaN and infinities as None: strict JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _as_list(runs) -> list[BenchRun]:
    return [runs] if isinstance(runs, BenchRun) else list(runs)


