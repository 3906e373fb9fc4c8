"""The batched-throughput test (``SpeedOptions.parallel``) on a real tiny llama in the speed child:
llama-batched-bench's figures per N, their checks, the CLI, the chart and the store.

Timings are only checked for sanity and for the one thing batching is for: on a tiny model, four
sequences decoded together give more tokens per second in all than one alone.
"""
from __future__ import annotations

import json

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from quantize_models import cached_tiny_llama
from runtime.bench import speed
from runtime.bench.charts import THEMES, hover_of
from runtime.bench.charts_batched import batched_chart
from runtime.bench.results import BatchedPoint, SpeedOptions, VariantResult
from runtime.bench.speed import (MAX_PARALLEL, batched_context, check_options, child_args, describe_options,
                                 measure_speed_and_batching)
from runtime.errors import BenchError, InsufficientMemoryError
from runtime.procs import ChildProcess
from tests.runtime.bench.sample_results import sample_results, sample_run

# One thread: a busy machine (other tests, other programs) disturbs it less than two spinning threads.
QUICK = dict(prompt_tokens=32, gen_tokens=32, reps=3, n_ctx=256, threads=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "bench-models"
    folder.mkdir(exist_ok=True)
    return cached_tiny_llama(folder)


@pytest.fixture
def no_child(monkeypatch):
    def refuse(self):
        raise AssertionError(f"a child was started: {self.module}")

    monkeypatch.setattr(ChildProcess, "start", refuse)


def test_batched_figures_for_each_n(tiny):
    steps = []
    figures, points = measure_speed_and_batching(tiny, SpeedOptions(parallel=[1, 2, 4, 8], **QUICK),
                                                 progress=lambda d, t, m: steps.append((d, t, m)))
    assert [p.n for p in points] == [1, 2, 4, 8]
    for p in points:
        assert isinstance(p, BatchedPoint)
        assert p.tg_tokens_per_s_aggregate > 0 and p.pp_tokens_per_s_aggregate > 0
        assert p.tg_tokens_per_s_per_sequence == pytest.approx(p.tg_tokens_per_s_aggregate / p.n, rel=1e-5)
    by_n = {p.n: p for p in points}
    assert by_n[4].tg_tokens_per_s_aggregate > by_n[1].tg_tokens_per_s_aggregate   # what batching is for
    # the single-sequence tests ran as before, all their repetitions
    assert len(figures.tg_tokens_per_s.values) == 3 and figures.peak_rss_bytes > 0
    messages = [m.split(": ", 1)[1] for _, _, m in steps]
    assert messages[-14:] == ["batched warm-up", *[f"{n} sequence{'s' if n > 1 else ''} rep {r}/3"
                                                   for n in (1, 2, 4, 8) for r in (1, 2, 3)], "done"]
    assert messages[messages.index("batched warm-up") - 1] == "TTFT rep 3/3"   # after the single tests
    dones = [d for d, _, _ in steps]
    assert dones == sorted(dones) and dones[-1] == steps[-1][1] == 1 + (1 + 9) + (1 + 12)


def test_the_batched_context_is_its_own_and_sized_for_n_sequences(tiny):
    """Straight to the child: the single-sequence context is the one asked for (so pp and tg are
    measured as without batching), the batched one holds the largest N x (prompt + generated)."""
    options = SpeedOptions(parallel=[2, 3], **{**QUICK, "reps": 1, "prompt_tokens": 200, "gen_tokens": 100})
    child = ChildProcess(speed.CHILD_MODULE, child_args(tiny, options), name="speed runner")
    events = []
    child.start()
    try:
        loaded = child.wait_for("loaded", 60)
        done = child.wait_for("done", 120, on_event=events.append)
    finally:
        child.kill()
    assert loaded["n_ctx"] == 256 and loaded["threads"] == 1
    assert [b["n"] for b in done["batched"]] == [2, 3]
    # 300 tokens a sequence, rounded up by llama.cpp to 512 cells: 3 x 512
    assert {b["n_ctx"] for b in done["batched"]} == {batched_context(options)} == {3 * 512}
    assert all(len(b["tg_values"]) == 1 for b in done["batched"])


def test_without_parallel_there_is_no_batched_test(tiny):
    steps = []
    figures, points = measure_speed_and_batching(tiny, SpeedOptions(**{**QUICK, "reps": 1}),
                                                 progress=lambda d, t, m: steps.append(m))
    assert points is None and figures.tg_tokens_per_s.median > 0
    assert not any("sequence" in m for m in steps)


def test_run_benchmark_puts_the_points_on_the_row(tiny):
    from runtime.bench.run import run_benchmark

    run = run_benchmark([tiny], SpeedOptions(parallel=[1, 2], **{**QUICK, "reps": 1}))
    [row] = run.results
    assert row.status == "ok" and [b.n for b in row.batched] == [1, 2]
    flat = row.flat()["batched"]
    assert [set(b) for b in flat] == [{"n", "tg_tokens_per_s_aggregate", "tg_tokens_per_s_per_sequence",
                                       "pp_tokens_per_s_aggregate"}] * 2


@pytest.mark.parametrize("parallel, words", [([0], "use 1 to 64"), ([1, MAX_PARALLEL + 1], "use 1 to 64"),
                                             ([2, 4, 2], "twice"), (["4"], "use 1 to 64"), ([True], "use 1 to 64"),
                                             ("1,2", "list of numbers")])
def test_bad_parallel_options_are_refused_before_any_child(tiny, no_child, parallel, words):
    with pytest.raises(BenchError, match=words) as err:
        measure_speed_and_batching(tiny, SpeedOptions(parallel=parallel, **QUICK))
    assert err.value.facts["option"] == "parallel sequences"


def test_good_parallel_options_pass_and_are_described():
    check_options(SpeedOptions(parallel=[1, 2, 4, 8, 64]))
    check_options(SpeedOptions(parallel=[]))
    assert describe_options(SpeedOptions(threads=2, parallel=[1, 2, 4, 8])).endswith(
        "; batched: 1, 2, 4, 8 sequences of pp512 + tg128")
    assert "batched" not in describe_options(SpeedOptions(threads=2))
    assert batched_context(SpeedOptions(parallel=[1, 8])) == 8 * 768   # 640 tokens -> 768 cells each
    assert batched_context(SpeedOptions()) == 0


def test_memory_check_counts_the_batched_kv_cache(tiny, monkeypatch, no_child):
    """Fits at the single-sequence context, not with 64 sequences' KV cache: refused with those numbers."""
    from runtime.models import hardware
    from runtime.models.gguf_info import read_gguf_info

    options = SpeedOptions(parallel=[1, 64], **{**QUICK, "prompt_tokens": 512, "gen_tokens": 128, "n_ctx": 512})
    info = read_gguf_info(tiny)
    small = hardware.check_fit(info, 512, available_bytes=1).needed_bytes
    big = hardware.check_fit(info, batched_context(options), available_bytes=1).needed_bytes
    assert big > 2 * small
    monkeypatch.setattr(hardware, "available_ram", lambda: (small + big) // 2)
    speed.check_memory(tiny, SpeedOptions(**{**QUICK, "n_ctx": 512}))   # fits without batching
    with pytest.raises(InsufficientMemoryError) as err:
        measure_speed_and_batching(tiny, options)
    assert err.value.facts["n_ctx"] == batched_context(options) == 64 * 768
    assert err.value.facts["needed_bytes"] == big
    assert "64 sequences" in err.value.hint and "fewer" in err.value.hint


# -- the CLI -------------------------------------------------------------------------------------

CLI_QUICK = ["--threads", "1", "--ctx", "64", "--prompt-tokens", "16", "--gen-tokens", "8", "--reps", "1"]


def test_cli_json_has_the_batched_list(tiny, capsys):
    from app.cli import main

    assert main(["bench", str(tiny), *CLI_QUICK, "--parallel", "1,2,4", "--json"]) == 0
    captured = capsys.readouterr()
    [row] = json.loads(captured.out)
    assert [b["n"] for b in row["batched"]] == [1, 2, 4]
    for b in row["batched"]:
        assert b["tg_tokens_per_s_aggregate"] > 0
        assert b["tg_tokens_per_s_per_sequence"] == pytest.approx(b["tg_tokens_per_s_aggregate"] / b["n"], rel=1e-5)
    assert "batched tg t/s" in captured.err


def test_cli_table_prints_a_batched_line(tiny, capsys):
    from app.cli import main

    assert main(["bench", str(tiny), *CLI_QUICK, "--parallel", "1,2"]) == 0
    out = capsys.readouterr().out
    [line] = [ln for ln in out.splitlines() if "batched" in ln]
    assert line.strip().startswith("batched tg t/s (aggregate/per sequence) at N = 1: ") and ", 2: " in line


def test_cli_refuses_bad_parallel_values(tiny, capsys):
    from app.cli import main

    assert main(["bench", str(tiny), *CLI_QUICK, "--parallel", "1,65"]) == 2
    assert "use 1 to 64" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["bench", str(tiny), "--parallel", "one,two"])
    assert exit_.value.code == 2
    assert "numbers of sequences separated by commas" in capsys.readouterr().err


# -- the chart -----------------------------------------------------------------------------------

def with_batched(results: list[VariantResult]) -> list[VariantResult]:
    """The sample rows, the first three measured with batching (aggregate rising, each sequence slower)."""
    for scale, r in zip((1.0, 1.6, 1.8), results[:3]):
        r.batched = [BatchedPoint(n, tg_tokens_per_s_aggregate=agg * scale,
                                  tg_tokens_per_s_per_sequence=agg * scale / n, pp_tokens_per_s_aggregate=400.0 * scale)
                     for n, agg in ((1, 50.0), (2, 88.0), (4, 140.0), (8, 170.0))]
    return results


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_chart_two_lines_per_model_with_hover_texts(theme):
    results = with_batched(sample_results())
    fig = batched_chart(results, theme)
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    assert len(ax.lines) == 6   # aggregate and per sequence for F16, Q8_0, Q6_K
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8"]
    assert ax.get_xlabel() == "Sequences decoded together (N)" and "tokens/s" in ax.get_ylabel()
    texts = hover_of(fig).texts()
    assert len(texts) == 24
    assert "F16, 4 sequences: 140.00 tokens/s in all (2.80x one sequence)\nprompts: 400.00 tokens/s in all" in texts
    assert "F16, 8 sequences: 21.25 tokens/s each (42% of one alone)" in texts
    assert "F16, 1 sequence: 50.00 tokens/s in all\nprompts: 400.00 tokens/s in all" in texts
    note = fig.get_supxlabel()
    assert "Q4_K_M (batching not measured)" in note and "Q2_K (failed)" in note and "Q3_K_M (skipped)" in note
    from matplotlib.colors import to_hex

    assert to_hex(fig.get_facecolor()) == THEMES[theme].background


def test_chart_hover_finds_the_point_under_the_mouse():
    from matplotlib.backend_bases import MouseEvent

    fig = batched_chart(with_batched(sample_results())[:1], "light")
    FigureCanvasAgg(fig).draw()
    aggregate = fig.axes[0].lines[0]
    x, y = aggregate.get_transform().transform(aggregate.get_xydata()[2])
    text = hover_of(fig).text_at(MouseEvent("motion_notify_event", fig.canvas, x, y))
    assert text.startswith("F16, 4 sequences: 140.00 tokens/s in all")


def test_chart_without_batched_rows_says_no_data():
    fig = batched_chart(sample_results(), "light")
    assert [t.get_text() for t in fig.axes[0].texts] == ["No data"]
    assert "F16 (batching not measured)" in fig.get_supxlabel()


# -- the store -----------------------------------------------------------------------------------

def test_store_round_trip_keeps_the_batched_points():
    from runtime.bench.results import BenchRun
    from runtime.store.bench_runs import BenchStore

    run = sample_run(results=with_batched(sample_results()))
    with BenchStore() as store:
        run_id = store.save_run(run)
        back = BenchRun.from_dict(store.load_run(run_id))
    assert back.results[0].batched == run.results[0].batched
    assert back.results[3].batched is None
