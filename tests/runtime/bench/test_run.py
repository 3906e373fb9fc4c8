"""A whole benchmark run on real tiny variants: rows in order, the reference's figures, bad rows that
fail alone, a store that keeps only complete rows, and cancel."""
from __future__ import annotations

from pathlib import Path

import pytest

from runtime.bench.results import BenchRun, SpeedOptions
from runtime.bench.run import run_benchmark, speed_options_for
from runtime.errors import BenchError, Cancelled
from runtime.jobs import CancelToken

QUICK = SpeedOptions(threads=2, n_ctx=64, prompt_tokens=32, gen_tokens=8, reps=1, warmup=False)


def test_speed_and_quality_for_each_variant_against_the_highest_precision(tiny_variants, short_text, tmp_path):
    bad = tmp_path / "damaged.gguf"
    bad.write_bytes(Path(tiny_variants["Q4_0"]).read_bytes()[:5000])
    order = [tiny_variants["Q4_0"], bad, tiny_variants["F16"], tiny_variants["Q8_0"]]
    seen, steps = [], []
    run = run_benchmark(order, QUICK, quality=True, text_path=short_text, on_result=seen.append,
                        progress=lambda d, t, m: steps.append((d, t)))
    assert [r.path for r in run.results] == [str(p) for p in order] and seen == run.results
    q4, broken, f16, q8 = run.results
    assert run.reference_path == str(tiny_variants["F16"]) and run.text_name == "short.txt"
    assert broken.status == "failed" and "damaged" in broken.error and broken.speed is None
    for row in (q4, f16, q8):
        assert row.status == "ok" and row.speed.tg_tokens_per_s.median > 0 and row.quality.perplexity > 1
    assert f16.quality.is_reference and f16.quality.kld_mean == 0 and f16.quality.top1_agreement == 1
    assert 0 < q8.quality.kld_mean < q4.quality.kld_mean
    assert run.machine["threads"] == 2
    assert all(b[0] >= a[0] for a, b in zip(steps, steps[1:])) and steps[-1][0] == steps[-1][1]


def test_a_text_too_short_leaves_speed_and_says_why_quality_is_missing(tiny_variants, tmp_path):
    short = tmp_path / "tiny.txt"
    short.write_text("Too short.", encoding="utf-8")
    run = run_benchmark([tiny_variants["F16"], tiny_variants["Q8_0"]], QUICK, quality=True, text_path=short)
    for row in run.results:
        assert row.status == "ok" and row.speed is not None and row.quality is None
        assert row.note.startswith("no quality figures") and "tokens" in row.note


def test_a_model_too_big_for_memory_is_skipped_with_numbers(tiny_variants, monkeypatch):
    import runtime.models.hardware as hardware

    monkeypatch.setattr(hardware, "available_ram", lambda: 1024**2)
    run = run_benchmark([tiny_variants["Q8_0"]], QUICK)
    (row,) = run.results
    assert row.status == "skipped" and "does not fit" in row.error and "MiB" in row.error


def test_the_store_keeps_complete_rows_and_a_cancel_drops_the_one_in_progress(tiny_variants, workbench_home):
    from runtime.store.bench_runs import BenchStore

    cancel = CancelToken()
    stored = []

    def on_result(row):
        stored.append(row)
        cancel.cancel()     # cancel while the second variant is being measured

    with BenchStore() as store:
        with pytest.raises(Cancelled):
            run_benchmark([tiny_variants["F16"], tiny_variants["Q4_0"]], QUICK, store=store, on_result=on_result,
                          cancel=cancel)
        (summary,) = store.list_runs()
        kept = BenchRun.from_dict(store.load_run(summary.run_id))
    assert [r.path for r in kept.results] == [str(tiny_variants["F16"])] == [r.path for r in stored]
    assert kept.results[0].speed.pp_tokens_per_s.median == stored[0].speed.pp_tokens_per_s.median


def test_a_run_cancelled_before_any_row_leaves_no_run(tiny_variants, workbench_home):
    from runtime.store.bench_runs import BenchStore

    cancel = CancelToken()

    def progress(done, total, message):
        if "loading" in message:
            cancel.cancel()     # while the first (only) row is being measured

    with BenchStore() as store:
        with pytest.raises(Cancelled):
            run_benchmark([tiny_variants["F16"]], QUICK, store=store, progress=progress, cancel=cancel)
        assert store.list_runs() == []


def test_refused_before_anything_runs(tiny_variants):
    with pytest.raises(BenchError, match="No models"):
        run_benchmark([], QUICK)
    with pytest.raises(BenchError, match="twice"):
        run_benchmark([tiny_variants["F16"], tiny_variants["F16"]], QUICK)
    with pytest.raises(BenchError, match="repetitions"):
        run_benchmark([tiny_variants["F16"]], SpeedOptions(reps=0))


def test_the_speed_context_holds_the_longest_test():
    assert speed_options_for(SpeedOptions(n_ctx=256, prompt_tokens=512)).n_ctx == 512
    assert speed_options_for(SpeedOptions(n_ctx=4096)).n_ctx == 4096
