"""Benchmark runs in the app's SQLite file: migration, round trip, history by model, no half rows."""
from __future__ import annotations

import sqlite3

import pytest

from runtime.bench.results import BenchRun
from runtime.errors import StoreError
from runtime.store import conversations as store_mod
from runtime.store import bench_runs
from runtime.store.bench_runs import BenchStore
from runtime.store.conversations import MIGRATIONS, ConversationStore
from runtime.store.downloads import DownloadStore
from tests.runtime.bench.sample_results import sample_results, sample_run, variant


BENCH_MIGRATION = next(i for i, script in enumerate(MIGRATIONS) if "CREATE TABLE bench_runs" in script) + 1


@pytest.fixture
def store(db_path):
    with BenchStore(db_path) as s:
        yield s


def test_the_migration_adds_the_run_tables_to_the_shared_file(db_path):
    with BenchStore(db_path) as s:
        assert s.schema_version() == len(MIGRATIONS) >= BENCH_MIGRATION == 6
    with sqlite3.connect(db_path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"bench_runs", "bench_results", "conversations", "downloads"} <= tables
    with ConversationStore(db_path) as conversations, DownloadStore(db_path) as downloads:
        assert conversations.schema_version() == downloads.schema_version() == len(MIGRATIONS)


def test_reopening_an_old_database_upgrades_it_and_keeps_its_data(db_path, monkeypatch):
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS[:BENCH_MIGRATION - 1])
    with ConversationStore(db_path) as old:
        conv = old.create_conversation("Before benchmarks were kept")
        assert old.schema_version() == BENCH_MIGRATION - 1
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS)
    with BenchStore(db_path) as s:
        assert s.schema_version() == len(MIGRATIONS)
        s.save_run(sample_run())
        assert len(s.list_runs()) == 1
    with ConversationStore(db_path) as new:
        assert new.get_conversation(conv.id).title == "Before benchmarks were kept"


def test_a_run_round_trips_figure_for_figure(store):
    run = sample_run()
    run_id = store.save_run(run)
    assert run.run_id == run_id
    again = BenchRun.from_dict(store.load_run(run_id))
    assert again == run
    assert [r.status for r in again.results] == ["ok"] * 5 + ["failed", "skipped"]
    assert again.results[3].speed.tg_tokens_per_s.values == [115.2, 118.9, 121.3]
    assert again.results[6].error.startswith("needs about 9.1 GiB")


def test_a_rows_note_engine_batched_and_kv_turns_survive_the_store(store):
    from runtime.bench.results import BatchedPoint, KvTurn

    run = sample_run()
    row = run.results[3]
    row.note = "no quality figures: another vocabulary"
    row.engine = "pytorch"
    row.batched = [BatchedPoint(1, 94.0, 94.0, 300.0), BatchedPoint(4, 162.0, 40.5, 410.0)]
    row.kv_reuse = [KvTurn(turn=1, prompt_tokens=67, ttft_reuse_s=0.2, ttft_fresh_s=0.2),
                    KvTurn(turn=2, prompt_tokens=142, ttft_reuse_s=0.05, ttft_fresh_s=0.4)]
    again = BenchRun.from_dict(store.load_run(store.save_run(run)))
    assert again == run
    assert again.results[3].batched[1].tg_tokens_per_s_per_sequence == 40.5
    assert again.results[3].kv_reuse[1].ttft_fresh_s == 0.4
    assert again.results[0].engine == "llama.cpp" and again.results[0].batched is None


def test_rows_are_added_as_the_run_goes_and_listed(store):
    run = sample_run(results=[])
    run_id = store.start_run(run)
    assert store.list_runs() == []          # nothing to show until a row is complete
    for result in sample_results():
        store.add_result(run_id, result)
    assert store.finish_run(run_id) is True
    (summary,) = store.list_runs()
    assert (summary.run_id, summary.ok, summary.failed, summary.skipped) == (run_id, 5, 1, 1)
    assert summary.models == ["SmolLM2-135M-Instruct"] and summary.quants[:2] == ["F16", "Q8_0"]
    assert summary.finished_at is not None and summary.text_name == "wiki-sample.txt"
    loaded = store.load_run(run_id)
    assert [r["quant"] for r in loaded["results"]] == [r.quant for r in sample_results()]


def test_a_cancelled_run_keeps_its_complete_rows_and_an_empty_one_goes(store):
    run_id = store.start_run(sample_run(results=[]))
    store.add_result(run_id, sample_results()[0])
    assert store.finish_run(run_id) is True       # cancelled after one variant: that row stays
    assert len(BenchRun.from_dict(store.load_run(run_id)).results) == 1

    empty = store.start_run(sample_run(results=[]))
    assert store.finish_run(empty) is False       # cancelled before any variant finished
    with pytest.raises(StoreError, match=f"No benchmark run with id {empty}"):
        store.load_run(empty)
    assert [s.run_id for s in store.list_runs()] == [run_id]


def test_half_rows_are_impossible(store, db_path, monkeypatch):
    run_id = store.start_run(sample_run(results=[]))
    incomplete = [variant("Q4_0", 80.0, None, status="failed"),          # failed without a reason
                  variant("Q4_0", 80.0, None, status="skipped", error=""),
                  variant("Q4_0", 80.0, None),                            # ok without figures
                  variant("Q4_0", 80.0, [1.0], status="running")]
    for result in incomplete:
        with pytest.raises(ValueError):
            store.add_result(run_id, result)
    # The table refuses them too, whatever writes to it.
    with sqlite3.connect(db_path) as db:
        for status, error, speed in (("failed", None, None), ("ok", None, None), ("done", "x", "{}")):
            with pytest.raises(sqlite3.IntegrityError):
                db.execute("INSERT INTO bench_results (run_id, position, path, name, group_key, size_bytes,"
                           " status, error, speed_json) VALUES (?, 9, 'p', 'n', 'k', 1, ?, ?, ?)",
                           (run_id, status, error, speed))
    # A failure after the row is written (in its transaction) leaves nothing: one transaction per row.
    good = sample_results()[0]
    insert = bench_runs._insert_result

    def insert_then_fail(*args):
        insert(*args)
        raise RuntimeError("the process is being killed")
    monkeypatch.setattr(bench_runs, "_insert_result", insert_then_fail)
    with pytest.raises(RuntimeError):
        store.add_result(run_id, sample_results()[1])
    monkeypatch.setattr(bench_runs, "_insert_result", insert)
    broken = variant("Q8_0", 138.0, [90.0])
    broken.speed.load_s = object()   # cannot be stored as JSON: refused before writing
    with pytest.raises(TypeError):
        store.add_result(run_id, broken)
    store.add_result(run_id, good)
    assert [r["quant"] for r in store.load_run(run_id)["results"]] == ["F16"]
    # A run started with an incomplete row is refused whole.
    before = len(store.list_runs())
    with pytest.raises(ValueError):
        store.start_run(sample_run(results=[good, incomplete[0]]))
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM bench_runs").fetchone()[0] == 1
    assert len(store.list_runs()) == before


def test_history_finds_one_model_across_runs_in_time_order(store):
    other = [variant("Q4_K_M", 400.0, [30.0], name="Qwen2.5-0.5B-Instruct", kld=0.02, top1=0.9, ppl=12.0,
                     ppl_ratio=1.03)]
    later = store.save_run(sample_run(started_at=1_795_200_000.0, results=sample_results()[:2] + other))
    earlier = store.save_run(sample_run(started_at=1_795_000_000.0))
    store.save_run(sample_run(started_at=1_795_100_000.0, results=other))
    runs = [BenchRun.from_dict(d) for d in store.history("SmolLM2-135M-Instruct")]
    assert [r.run_id for r in runs] == [earlier, later]
    assert [len(r.results) for r in runs] == [7, 2]          # only that model's rows
    same = store.history("smollm2-135m-instruct.q8_0.gguf")  # a file name (any case) finds the same
    assert [d["run_id"] for d in same] == [earlier, later]
    assert [d["run_id"] for d in store.history("/models/SmolLM2-135M-Instruct.F16.gguf")] == [earlier, later]
    assert len(store.history("Qwen2.5-0.5B-Instruct")) == 2
    assert store.history("no-such-model") == []


def test_delete_run_removes_its_rows(store, db_path):
    run_id = store.save_run(sample_run())
    store.delete_run(run_id)
    assert store.list_runs() == [] and store.history("SmolLM2-135M-Instruct") == []
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM bench_results").fetchone()[0] == 0
    with pytest.raises(StoreError):
        store.delete_run(run_id)
    with pytest.raises(StoreError):
        store.add_result(run_id, sample_results()[0])


def test_the_default_path_is_the_apps_database(workbench_home):
    with BenchStore() as s:
        s.save_run(sample_run())
        assert s.path == workbench_home / "workbench.sqlite3"
