"""Benchmark charts built for real result sets: bars per metric, size against quality, history."""
from __future__ import annotations

import copy

import pytest
from matplotlib.backend_bases import MouseEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from runtime.bench import charts
from runtime.bench.charts import (BAR_METRICS, THEMES, history_chart, hover_of, metric_bars,
                                  size_quality_scatter)
from runtime.bench.compare import best_tradeoff, find_reference, labels, pareto_front
from tests.runtime.bench.sample_results import MIB, sample_results, sample_run, variant

OK_LABELS = ["F16", "Q8_0", "Q6_K", "Q4_K_M", "Q4_0"]


def note(fig: Figure) -> str:
    return fig.get_supxlabel()


def drawn(fig: Figure) -> Figure:
    FigureCanvasAgg(fig).draw()
    return fig


def hover_at(fig: Figure, artist) -> str | None:
    """The hover text for a mouse at the centre of ``artist`` (a bar) or its single point."""
    if hasattr(artist, "get_offsets"):   # a scatter point
        x, y = artist.get_offset_transform().transform(artist.get_offsets()[0])
    else:
        box = artist.get_window_extent()
        x, y = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    event = MouseEvent("motion_notify_event", fig.canvas, x, y)
    return hover_of(fig).text_at(event)


@pytest.mark.parametrize("metric", BAR_METRICS)
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_one_bar_per_complete_variant_with_units_and_the_left_out_rows_named(metric, theme):
    fig = drawn(metric_bars(sample_results(), metric, theme))
    ax = fig.axes[0]
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == OK_LABELS
    assert len(ax.patches) == 5
    unit = {"size_bytes": "(MiB)", "pp_tokens_per_s": "(tokens/s)", "tg_tokens_per_s": "(tokens/s)",
            "ttft_s": "(ms)", "peak_rss_bytes": "(MiB)"}[metric]
    assert ax.get_ylabel().endswith(unit)
    texts = hover_of(fig).texts()
    assert len(texts) == 5 and not any("Q2_K" in t or "Q3_K_M" in t for t in texts)
    assert "Not shown: Q2_K (failed), Q3_K_M (skipped)." in note(fig)
    assert to_hex(fig.get_facecolor()) == THEMES[theme].background


def test_bars_show_the_median_and_the_spread_exactly():
    results = sample_results()
    fig = drawn(metric_bars(results, "tg", "light"))
    ax = fig.axes[0]
    q4 = results[3]
    assert ax.patches[3].get_height() == pytest.approx(q4.speed.tg_tokens_per_s.median)
    assert hover_at(fig, ax.patches[3]) == ("Q4_K_M: 118.90 tokens/s (median of 3; 115.20 tokens/s to "
                                            "121.30 tokens/s)")
    caps = [line for line in ax.lines if line.get_marker() == "_"]   # the error bars' caps
    assert len(caps) == 2 and len(caps[0].get_xdata()) == 5
    assert "(reference)" in ax.get_xticklabels()[0].get_text()


def test_size_units_switch_to_gib_and_the_hover_keeps_the_bytes():
    big = [variant("F16", 14_500.0, [8.0, 8.1, 8.2]), variant("Q4_K_M", 4_370.0, [20.0, 21.0, 22.0])]
    fig = drawn(metric_bars(big, "size", "light"))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "File size (GiB)"
    assert ax.patches[0].get_height() == pytest.approx(14_500 / 1024)
    assert hover_at(fig, ax.patches[1]) == f"Q4_K_M: 4.3 GiB ({4_370 * MIB:,} bytes)"


def test_a_time_of_a_second_or_more_reads_in_seconds():
    slow = [variant("F16", 100.0, [1.0], ttft=[1.2, 1.5, 2.5])]
    fig = metric_bars(slow, "ttft", "dark")
    assert fig.axes[0].get_ylabel() == "Time to first token (s)"
    assert "1.500 s (median of 3; 1.200 s to 2.500 s)" in hover_of(fig).texts()[0]


def test_empty_and_all_failed_charts_say_no_data():
    for results in ([], sample_results()[5:]):
        fig = drawn(metric_bars(results, "tg", "light"))
        assert "No data" in [t.get_text() for t in fig.axes[0].texts]
        assert hover_of(fig).texts() == []
    assert "Q2_K (failed)" in note(metric_bars(sample_results()[5:], "tg"))


def test_unknown_metric_and_theme_are_refused():
    with pytest.raises(ValueError, match="Unknown metric"):
        metric_bars(sample_results(), "speed")
    with pytest.raises(ValueError, match="Unknown theme"):
        metric_bars(sample_results(), "tg", "sepia")


# -- size against quality -----------------------------------------------------------------------

def test_scatter_is_on_a_log_axis_with_the_reference_at_a_visible_floor():
    results = sample_results()
    fig = drawn(size_quality_scatter(results, "kld_mean", theme="light"))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    points = {text.split("\n")[0].split(" (")[0]: coll for coll, text in
              ((t.artist, t.texts[0]) for t in hover_of(fig).targets)}
    assert set(points) == set(OK_LABELS)
    ref_y = points["F16"].get_offsets()[0][1]
    q8_y = points["Q8_0"].get_offsets()[0][1]
    assert 0 < ref_y < q8_y and ref_y == pytest.approx(0.0011 / 4)
    low, high = ax.get_ylim()
    assert low < ref_y and high > 0.052
    assert "KLD is 0: drawn at the bottom" in note(fig)
    assert "drawn at the bottom of the log axis" in hover_at(fig, points["F16"])


def test_scatter_marks_the_pareto_front_and_the_best_tradeoff():
    results = sample_results()
    dominated = variant("Q5_0", 150.0, [80.0], kld=0.02, top1=0.94, ppl=18.3, ppl_ratio=1.02)
    results.append(dominated)   # larger than Q6_K and worse: off the front
    fig = size_quality_scatter(results, "kld_mean")
    texts = {t.texts[0].split("\n")[0].split(" (")[0]: t.texts[0] for t in hover_of(fig).targets}
    for name in OK_LABELS:
        assert "on the Pareto front" in texts[name]
    assert "Pareto front" not in texts["Q5_0"]
    assert "best trade-off" in texts["Q4_K_M"]
    assert sum("best trade-off" in t for t in texts.values()) == 1
    assert "Q4_K_M\nbest trade-off" in [t.get_text() for t in fig.axes[0].texts]
    front_line = [line for line in fig.axes[0].lines if line.get_linestyle() == "--"]
    assert len(front_line) == 1 and len(front_line[0].get_xdata()) == 5
    assert [h.get_label() for h in fig.axes[0].get_legend().legend_handles][:3] == [
        "reference", "best trade-off", "Pareto front"]


def test_scatter_marks_what_fits_by_budget_or_by_callable():
    results = sample_results()
    fig = size_quality_scatter(results, "kld_mean", fits=150 * MIB)   # peak memory 1.4x the file
    by_name = {t.texts[0].split("\n")[0].split(" (")[0]: t for t in hover_of(fig).targets}
    for name, fits in (("Q4_K_M", True), ("Q4_0", True), ("Q6_K", False), ("Q8_0", False), ("F16", False)):
        target = by_name[name]
        assert ("fits this machine" in target.texts[0]) is fits
        assert (len(target.artist.get_facecolors()) > 0) is fits   # hollow when it does not fit
    assert "Q8_0\ntoo big here" in [t.get_text() for t in fig.axes[0].texts]

    def fit(result):
        return "tight" if result.quant == "Q8_0" else result.size_bytes < 200 * MIB
    fig = size_quality_scatter(results, "kld_mean", fits=fit, theme="dark")
    texts = hover_of(fig).texts()
    assert sum("tight on this machine" in t for t in texts) == 1
    assert sum("does not fit this machine" in t for t in texts) == 1


def test_scatter_by_perplexity_ratio_and_without_quality():
    fig = drawn(size_quality_scatter(sample_results(), "ppl_ratio", theme="dark"))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "Perplexity" in ax.get_ylabel()
    assert ax.get_ylim()[0] < 1.0 < 1.0726 < ax.get_ylim()[1]
    assert all(label.get_text() and "10^" not in label.get_text() for label in ax.get_yticklabels())

    no_quality = copy.deepcopy(sample_results())
    for r in no_quality:
        r.quality = None
    fig = size_quality_scatter(no_quality, "kld_mean")
    assert "No data" in [t.get_text() for t in fig.axes[0].texts]
    assert "Q4_K_M (quality not measured)" in note(fig)
    with pytest.raises(ValueError):
        size_quality_scatter(sample_results(), "perplexity_gap")


# -- history ------------------------------------------------------------------------------------

def test_history_has_one_line_per_quant_across_runs():
    runs = []
    for i in range(3):
        results = sample_results()
        for r in results:
            if r.speed:
                r.speed.tg_tokens_per_s.median += i
        runs.append(sample_run(started_at=1_795_000_000 + 86_400 * i, results=results))
    runs[1].results = runs[1].results[:2]      # a later run measured only two of them
    fig = drawn(history_chart(list(reversed(runs)), "tg", "dark"))
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines if isinstance(line, Line2D)}
    assert list(lines) == OK_LABELS   # highest precision first
    assert len(lines["F16"].get_xdata()) == 3 and len(lines["Q4_K_M"].get_xdata()) == 2
    assert list(lines["F16"].get_ydata()) == pytest.approx([49.0, 50.0, 51.0])
    assert ax.get_title() == "SmolLM2-135M-Instruct: Generation speed across runs"
    target = next(t for t in hover_of(fig).targets if t.artist is lines["F16"])
    assert len(target.texts) == 3 and target.texts[2].endswith("51.00 tokens/s (median of 3; "
                                                              "48.10 tokens/s to 50.20 tokens/s)")
    x, y = ax.transData.transform((lines["F16"].get_xdata(orig=False)[1], 50.0))
    assert hover_of(fig).text_at(MouseEvent("motion_notify_event", fig.canvas, x, y)) == target.texts[1]


def test_history_without_runs_says_no_data():
    fig = history_chart([], "tg", "light")
    assert "No data" in [t.get_text() for t in fig.axes[0].texts]
    fig = history_chart([sample_run(results=sample_results()[5:])], "kld_mean")
    assert "No data" in [t.get_text() for t in fig.axes[0].texts]


# -- shared pieces ------------------------------------------------------------------------------

def test_both_themes_colour_the_text_and_keep_the_okabe_ito_palette():
    for name, theme in THEMES.items():
        fig = metric_bars(sample_results(), "size", name)
        ax = fig.axes[0]
        assert to_hex(ax.get_facecolor()) == theme.background
        assert to_hex(ax.title.get_color()) == to_hex(theme.foreground)
        assert [to_hex(p.get_facecolor()).upper() for p in ax.patches] == [c.upper() for c in theme.palette[:5]]
    assert set(charts.OKABE_ITO) == {"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9",
                                     "#F0E442", "#000000"}


def test_hover_misses_outside_the_artists():
    fig = drawn(metric_bars(sample_results(), "tg"))
    event = MouseEvent("motion_notify_event", fig.canvas, 2, 2)
    assert hover_of(fig).text_at(event) is None
    assert hover_of(Figure()).texts() == []


def test_compare_reference_labels_front_and_best():
    results = sample_results()
    assert find_reference(results).quant == "F16"
    assert find_reference(results, "/models/SmolLM2-135M-Instruct.Q8_0.gguf").quant == "Q8_0"
    twins = [variant("Q4_K_M", 80.0, [1.0], name="a"), variant("Q4_K_M", 81.0, [1.0], name="b")]
    assert sorted(labels(twins).values()) == ["Q4_K_M · a", "Q4_K_M · b"]
    copies = [variant("Q8_0", 138.0, [1.0]), variant("Q8_0", 138.0, [1.0])]
    assert list(labels(copies).values()) == ["Q8_0 · SmolLM2-135M-Inst… #1", "Q8_0 · SmolLM2-135M-Inst… #2"]
    assert [r.quant for r in pareto_front(results)] == ["Q4_0", "Q4_K_M", "Q6_K", "Q8_0", "F16"]
    assert best_tradeoff(results).quant == "Q4_K_M"
    # Nothing close to the reference: the one that loses least.
    far = [results[0], variant("Q3_K_S", 60.0, [1.0], kld=0.4, top1=0.7, ppl=25.0, ppl_ratio=1.4),
           variant("Q2_K", 50.0, [1.0], kld=0.9, top1=0.5, ppl=40.0, ppl_ratio=2.2)]
    assert best_tradeoff(far).quant == "Q3_K_S"
    assert best_tradeoff(results, "ppl_ratio").quant == "Q6_K"   # 10% more file ~ a tenth of the 5% allowed
