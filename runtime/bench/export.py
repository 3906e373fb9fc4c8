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
import secrets
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

from runtime.bench.results import BenchRun
from runtime.errors import ExportError

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
    return _write_safely(path, write, binary=True)


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
    return _write_safely(Path(path), write, binary=False)


def export_json(runs: BenchRun | Sequence[BenchRun], path: str | os.PathLike) -> Path:
    """Write one run as ``BenchRun.to_dict()`` (several runs: a list of them)."""
    data = runs.to_dict() if isinstance(runs, BenchRun) else [run.to_dict() for run in runs]
    text = json.dumps(_finite(data), indent=2, ensure_ascii=False, allow_nan=False)
    return _write_safely(Path(path), lambda handle: handle.write(text + "\n"), binary=False)


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


def _write_safely(path: Path, write: Callable, binary: bool) -> Path:
    """Run ``write(handle)`` on a temporary file next to ``path``, then rename it to ``path``."""
    folder = path.parent
    if path.is_dir():
        raise ExportError(f"{path} is a folder.", path=path, hint="Give a file name to export to.")
    if not folder.is_dir():
        raise ExportError(f"The folder {folder} does not exist.", path=path,
                          hint="Choose an existing folder, or create it first.")
    # A plain open (not mkstemp) so the file gets the usual permissions, not mkstemp's owner-only ones.
    tmp_path = folder / f".{path.name}.{secrets.token_hex(4)}.part"
    try:
        handle = open(tmp_path, "xb") if binary else open(tmp_path, "x", encoding="utf-8", newline="")
    except OSError as exc:
        raise _error(path, exc) from exc
    try:
        with handle:
            write(handle)
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, ExportError):
            raise _error(path, exc) from exc
        raise
    return path


def _error(path: Path, exc: OSError) -> ExportError:
    return ExportError(f"Cannot write {path}: {exc.strerror or exc}", path=path, errno=exc.errno)
