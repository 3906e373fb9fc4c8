"""Export a chart (PNG, SVG) and a run's figures (CSV, JSON). Qt-free.

Every file is written safely: to a temporary name in the destination folder, then renamed over the
target, so a failure leaves no half file (and an older file at the path stays as it was). A path that
cannot be written raises ExportError with a hint.

CSV: one row per variant, ``VariantResult.flat()`` (timings as medians) followed by the run's columns
(``run_id``, ``run_started_at`` as local ISO time, ``text_name``, ``reference_path``, ``option_*`` and
``machine_*``; a machine value that is a list or dict is written as JSON). JSON: ``BenchRun.to_dict()``
(one object), or a list of them for several runs; a NaN or infinite figure is written as null.
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
        extra.update({f"option_{k}": v for k, v in asdict(run.options).items()})
        extra.update({f"machine_{k}": json.dumps(v) if isinstance(v, (list, dict)) else v
                      for k, v in (run.machine or {}).items()})
        rows.extend({**result.flat(), **extra} for result in run.results)
    return rows


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
    """Write one run as ``BenchRun.to_dict()`` (several runs: a list of them)."""
    data = runs.to_dict() if isinstance(runs, BenchRun) else [run.to_dict() for run in runs]
    text = json.dumps(_finite(data), indent=2, ensure_ascii=False, allow_nan=False)
    return write_safely(Path(path), lambda handle: handle.write(text + "\n"), binary=False)


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


