"""Benchmark runs, in the app's SQLite file (the same one as conversations). Qt-free, thread-safe.

A run is stored as it goes: ``start_run`` records the machine and options, ``add_result`` one
complete row per model file ("ok" with its figures, or "failed"/"skipped" with the reason), each row
in a transaction of its own, so a cancel or a crash never leaves half a row. ``finish_run`` closes
the run; a run that ended with no row at all is removed then (and runs left empty by a crash do not
show in the lists).

The store speaks plain data in the shape of ``runtime.bench.results``: it takes a ``BenchRun`` or
``VariantResult`` (anything with ``to_dict()``) or their dicts, and gives back ``BenchRun.to_dict()``
dicts, to be read with ``BenchRun.from_dict`` (runtime/bench sits above the store, so the store
does not import it). ``history(model)`` finds runs by model: the file names' ``group_key``, as the
library groups variants.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import StoreError
from runtime.models.grouping import base_name, group_key
from runtime.store.database import Database

STATUSES = ("ok", "failed", "skipped")
# A row's keys kept together in its extra_json column (absent or None: not stored, read back as absent)
EXTRA_KEYS = ("note", "engine", "batched", "kv_reuse")
STALE_EMPTY_S = 24 * 3600   # an empty, unfinished run this old was left by a crash: removed on the next start


@dataclass
class RunSummary:
    """One stored run, for a history list."""

    run_id: int
    started_at: float
    finished_at: float | None      # None: cancelled or cut short (its complete rows are kept)
    text_name: str | None
    reference_path: str | None
    models: list[str] = field(default_factory=list)   # base names of the models measured
    quants: list[str] = field(default_factory=list)
    ok: int = 0
    failed: int = 0
    skipped: int = 0


class BenchStore(Database):
    """Benchmark runs in ``paths.database_path()`` (or ``path``); see the module docstring."""

    what = "benchmark store"

    def start_run(self, run) -> int:
        """Record a new run (a BenchRun or its dict) and any results it already holds; return its id.

        The run's ``run_id`` attribute is set when it has one.
        """
        data = _as_dict(run)
        rows = [_result_row(r) for r in data.get("results") or []]
        with self._tx(write=True) as db:
            db.execute("DELETE FROM bench_runs WHERE finished_at IS NULL AND started_at < ? AND NOT EXISTS "
                       "(SELECT 1 FROM bench_results WHERE run_id = bench_runs.id)",
                       (self._now() - STALE_EMPTY_S,))
            cur = db.execute(
                "INSERT INTO bench_runs (started_at, machine_json, options_json, text_name, reference_path)"
                " VALUES (?, ?, ?, ?, ?)",
                (float(data.get("started_at") or self._now()), json.dumps(data.get("machine") or {}),
                 json.dumps(data.get("options") or {}), data.get("text_name"), data.get("reference_path")))
            run_id = cur.lastrowid
            for position, row in enumerate(rows):
                _insert_result(db, run_id, position, row)
        if hasattr(run, "run_id"):
            run.run_id = run_id
        return run_id

    def add_result(self, run_id: int, result) -> None:
        """Add one complete row (a VariantResult or its dict) to a run, in one transaction.

        Raises ValueError for an incomplete row: an unknown status, a failed or skipped row without
        its reason, an "ok" row without figures.
        """
        row = _result_row(result)
        with self._tx(write=True) as db:
            self._check_run(db, run_id)
            position = db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM bench_results WHERE run_id = ?",
                                  (run_id,)).fetchone()[0]
            _insert_result(db, run_id, position, row)

    def finish_run(self, run_id: int) -> bool:
        """Close a run (finished, or cancelled with the rows completed so far). A run without any row
        is removed; returns whether the run was kept."""
        with self._tx(write=True) as db:
            self._check_run(db, run_id)
            if _count(db, run_id) == 0:
                db.execute("DELETE FROM bench_runs WHERE id = ?", (run_id,))
                return False
            db.execute("UPDATE bench_runs SET finished_at = ? WHERE id = ?", (self._now(), run_id))
            return True

    def save_run(self, run) -> int:
        """Store a whole run at once (start, every result, finish); return its id."""
        run_id = self.start_run(run)
        self.finish_run(run_id)
        return run_id

    def list_runs(self) -> list[RunSummary]:
        """Every run with at least one row, newest first."""
        with self._tx() as db:
            runs = db.execute("SELECT * FROM bench_runs WHERE EXISTS (SELECT 1 FROM bench_results "
                              "WHERE run_id = bench_runs.id) ORDER BY started_at DESC, id DESC").fetchall()
            results = db.execute("SELECT run_id, name, quant, status FROM bench_results "
                                 "ORDER BY run_id, position").fetchall()
        by_run: dict[int, list[sqlite3.Row]] = {}
        for row in results:
            by_run.setdefault(row["run_id"], []).append(row)
        return [_summary(run, by_run.get(run["id"], [])) for run in runs]

    def load_run(self, run_id: int) -> dict:
        """The run as ``BenchRun.to_dict()`` (with ``run_id`` set), its results in the order added."""
        with self._tx() as db:
            run = self._check_run(db, run_id)
            rows = db.execute("SELECT * FROM bench_results WHERE run_id = ? ORDER BY position",
                              (run_id,)).fetchall()
        return _run_dict(run, rows)

    def history(self, model: str) -> list[dict]:
        """The runs that measured files of ``model`` (a model's name, group key or one of its file
        names or paths), oldest first, each holding only that model's results."""
        key = group_key(Path(model).name)
        with self._tx() as db:
            rows = db.execute("SELECT * FROM bench_results WHERE group_key = ? ORDER BY run_id, position",
                              (key,)).fetchall()
            run_ids = sorted({row["run_id"] for row in rows})
            runs = db.execute(f"SELECT * FROM bench_runs WHERE id IN ({', '.join('?' for _ in run_ids)})",
                              run_ids).fetchall() if run_ids else []
        by_run: dict[int, list[sqlite3.Row]] = {}
        for row in rows:
            by_run.setdefault(row["run_id"], []).append(row)
        out = [_run_dict(run, by_run[run["id"]]) for run in runs]
        return sorted(out, key=lambda d: (d["started_at"], d["run_id"]))

    def delete_run(self, run_id: int) -> None:
        """Forget a run and its rows."""
        with self._tx(write=True) as db:
            if db.execute("DELETE FROM bench_runs WHERE id = ?", (run_id,)).rowcount == 0:
                raise _unknown(run_id, self.path)

    def _check_run(self, db: sqlite3.Connection, run_id: int) -> sqlite3.Row:
        run = db.execute("SELECT * FROM bench_runs WHERE id = ?", (run_id,)).fetchone()
        if run is None:
            raise _unknown(run_id, self.path)
        return run


def _as_dict(obj) -> dict:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _result_row(result) -> dict:
    """A result as the columns of its row, checked to be complete."""
    data = _as_dict(result)
    status = data.get("status", "ok")
    name = data.get("name") or Path(data.get("path") or "").name
    if status not in STATUSES:
        raise ValueError(f"Unknown result status {status!r}; expected one of {', '.join(STATUSES)}.")
    if status != "ok" and not data.get("error"):
        raise ValueError(f"A {status} result must say why ({name}).")
    if status == "ok" and data.get("speed") is None and data.get("quality") is None:
        raise ValueError(f"An ok result must carry its figures ({name}).")
    if not data.get("path") or not name:
        raise ValueError("A result needs the path of its model file.")
    return {"path": str(data["path"]), "name": name, "group_key": group_key(name), "quant": data.get("quant"),
            "size_bytes": int(data.get("size_bytes") or 0), "status": status, "error": data.get("error"),
            "speed_json": _json_or_none(data.get("speed")), "quality_json": _json_or_none(data.get("quality")),
            "extra_json": _json_or_none({k: data[k] for k in EXTRA_KEYS if data.get(k) is not None} or None)}


def _insert_result(db: sqlite3.Connection, run_id: int, position: int, row: dict) -> None:
    columns = ["run_id", "position", *row]
    db.execute(f"INSERT INTO bench_results ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
               (run_id, position, *row.values()))


def _json_or_none(value) -> str | None:
    return None if value is None else json.dumps(value)


def _count(db: sqlite3.Connection, run_id: int) -> int:
    return db.execute("SELECT COUNT(*) FROM bench_results WHERE run_id = ?", (run_id,)).fetchone()[0]


def _run_dict(run: sqlite3.Row, rows: list[sqlite3.Row]) -> dict:
    return {"machine": json.loads(run["machine_json"]), "options": json.loads(run["options_json"]),
            "results": [_result_dict(row) for row in rows], "text_name": run["text_name"],
            "reference_path": run["reference_path"], "started_at": run["started_at"], "run_id": run["id"]}


def _result_dict(row: sqlite3.Row) -> dict:
    return {"path": row["path"], "name": row["name"], "quant": row["quant"], "size_bytes": row["size_bytes"],
            "status": row["status"], "error": row["error"],
            "speed": json.loads(row["speed_json"]) if row["speed_json"] else None,
            "quality": json.loads(row["quality_json"]) if row["quality_json"] else None,
            **(json.loads(row["extra_json"]) if row["extra_json"] else {})}


def _summary(run: sqlite3.Row, rows: list[sqlite3.Row]) -> RunSummary:
    models, quants = [], []
    for row in rows:
        base = base_name(row["name"])
        if base not in models:
            models.append(base)
        if row["quant"] and row["quant"] not in quants:
            quants.append(row["quant"])
    statuses = [row["status"] for row in rows]
    return RunSummary(run_id=run["id"], started_at=run["started_at"], finished_at=run["finished_at"],
                      text_name=run["text_name"], reference_path=run["reference_path"], models=models,
                      quants=quants, ok=statuses.count("ok"), failed=statuses.count("failed"),
                      skipped=statuses.count("skipped"))


def _unknown(run_id: int, path) -> StoreError:
    return StoreError(f"No benchmark run with id {run_id} in {path}.", path=path,
                      hint="It may have been deleted.", run_id=run_id)
