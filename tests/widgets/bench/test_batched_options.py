"""Batching in the Benchmark tab: the options panel's "Measure batching" field gives
``SpeedOptions.parallel``, and a run with batched rows draws the Batching chart page."""
from __future__ import annotations

from runtime.bench.results import BatchedPoint
from tests.runtime.bench.sample_results import sample_run


def test_options_panel_gives_the_parallel_sequences(qtbot):
    from widgets.bench.options_panel import OptionsPanel, parse_parallel

    panel = OptionsPanel()
    qtbot.addWidget(panel)
    assert panel.options().parallel == [] and not panel.parallel.isEnabled()   # off by default
    with qtbot.waitSignal(panel.sig_changed):
        panel.batching.setChecked(True)
    assert panel.parallel.isEnabled() and panel.options().parallel == [1, 2, 4, 8]
    panel.parallel.setText("")
    qtbot.keyClicks(panel.parallel, "1, 3,16 x")   # the validator drops what is not a digit, comma or space
    assert panel.parallel.text() == "1, 3,16 " and panel.options().parallel == [1, 3, 16]
    panel.set_enabled(False)
    assert not panel.parallel.isEnabled() and not panel.batching.isEnabled()
    panel.set_enabled(True)
    assert panel.parallel.isEnabled()
    panel.set_parallel([])
    assert panel.options().parallel == [] and not panel.parallel.isEnabled()
    panel.set_parallel([2, 4])
    assert panel.options().parallel == [2, 4]
    assert parse_parallel("1 2,,4") == [1, 2, 4] and parse_parallel("") == []


def test_the_batching_page_draws_a_run_with_batched_rows(qtbot, workbench_home):
    from widgets.bench.tab import NO_BATCHING, BenchmarkTab

    tab = BenchmarkTab()
    qtbot.addWidget(tab, before_close_func=lambda w: w.shutdown())
    run = sample_run()
    tab._show_run(run)
    assert not tab.batching_view.has_chart   # no batched figures: the page says so
    assert tab.batching_view.picture.text() == NO_BATCHING
    for r in run.results[:2]:
        r.batched = [BatchedPoint(n, 40.0 * n ** 0.7, 40.0 * n ** 0.7 / n, 300.0) for n in (1, 2, 4, 8)]
    tab.show()
    charts = tab.right.widget(1)
    tab.right.setCurrentWidget(charts)
    charts.setCurrentWidget(tab.batching_view)
    assert charts.tabText(charts.currentIndex()) == "Batching"
    with qtbot.waitSignal(tab.batching_view.sig_rendered, timeout=30_000):
        tab._show_run(run)
    assert tab.batching_view.has_chart and tab.batching_view.figure() is not None
    from runtime.bench.charts import hover_of

    assert any(text.startswith("F16, 4 sequences:") for text in hover_of(tab.batching_view.figure()).texts())
