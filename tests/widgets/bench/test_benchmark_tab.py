"""The Benchmark tab on real tiny variants: run, rows as they finish, reference marked, charts,
summary, export, history, a damaged file, cancel."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest



@pytest.fixture
def tab(qtbot, workbench_home, short_text):
    from widgets.bench.tab import BenchmarkTab

    widget = BenchmarkTab()
    qtbot.addWidget(widget)
    o = widget.options
    o.threads.setValue(2)
    o.ctx.setValue(64)
    o.prompt_tokens.setValue(32)
    o.gen_tokens.setValue(8)
    o.reps.setValue(1)
    o.set_text_path(str(short_text))
    yield widget
    widget.shutdown()


def run_to_end(qtbot, tab, timeout=180_000):
    with qtbot.waitSignal(tab.controller.sig_done, timeout=timeout) as done:
        assert tab.run()
        assert tab.cancel_button.isEnabled() and not tab.run_button.isEnabled()
    return done.args[0]


def test_a_run_fills_the_table_charts_summary_and_history(qtbot, tab, tiny_variants, tmp_path):
    tab.picker.add_paths([str(tiny_variants["Q4_0"])])
    assert tab.step.text().startswith("1 file chosen: it is measured on its own")
    tab.picker.add_paths([str(tiny_variants["F16"]), str(tiny_variants["Q8_0"])])
    assert tab.step.text() == "3 files chosen." and tab.side_by_side.paths and tab.run_button.isEnabled()
    rows = []
    tab.controller.sig_result.connect(rows.append)
    run = run_to_end(qtbot, tab)
    assert len(rows) == 3 and [r.path for r in run.results] == [r.path for r in rows]
    table = tab.table
    assert table.proxy.rowCount() == 3
    names = [table.cell_text(i, "Variant") for i in range(3)]
    assert "F16  ★ reference" in names
    f16_row = names.index("F16  ★ reference")
    assert table.cell_text(f16_row, "KLD mean") == "0.0000" and table.cell_text(f16_row, "Same next word") == "100.0%"
    assert all(table.cell_text(i, "Generation t/s") for i in range(3))
    # sorting by a figure sorts by its number
    table.sortByColumn(1, table.horizontalHeader().sortIndicatorOrder().AscendingOrder)
    sizes = [r.size_bytes for r in sorted(run.results, key=lambda r: r.size_bytes)]
    assert [table.proxy.index(i, 0).data() for i in range(3)][0].startswith("Q4_0") and sizes[0] < sizes[-1]
    assert "F16" in tab.summary.text() and "smaller" in tab.summary.text()
    assert all(view.has_chart for view in (*tab.charts.values(), tab.scatter, tab.history_view))
    tab.show()
    with qtbot.waitSignal(tab.scatter.sig_rendered, timeout=30_000):
        tab.right.setCurrentIndex(1)        # the charts: the first shown is size against quality
    assert tab.scatter.figure().axes[0].get_yscale() == "log" and tab.scatter.export_png.isEnabled()
    assert tab.step.text() == "Done."
    # export
    out = tab.export_figures(str(tmp_path / "figures.csv"))
    with open(out, newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == 3
    data = json.loads(Path(tab.export_figures(str(tmp_path / "figures.json"))).read_text())
    assert len(data[0]["results"] if isinstance(data, list) else data["results"]) == 3
    # the history knows the run and reopens it
    assert tab.past_runs.count() == 1
    tab.table.set_results([])
    assert tab.open_run(tab.past_runs.itemData(0)) and tab.table.proxy.rowCount() == 3


def test_a_damaged_file_fails_its_row_only(qtbot, tab, tiny_variants, tmp_path):
    bad = tmp_path / "broken-Q4_0.gguf"
    bad.write_bytes(Path(tiny_variants["Q4_0"]).read_bytes()[:3000])
    tab.options.quality.setChecked(False)
    tab.picker.add_paths([str(tiny_variants["Q8_0"]), str(bad)])
    run = run_to_end(qtbot, tab)
    good, broken = run.results
    assert good.status == "ok" and broken.status == "failed"
    status = [tab.table.cell_text(i, "Status") for i in range(2)]
    assert "done" in status and any(s.startswith("failed:") and "damaged" in s for s in status)
    assert "1 of 2 could not be measured" in tab.step.text()


def test_cancel_keeps_the_finished_rows_only(qtbot, tab, tiny_variants):
    tab.options.quality.setChecked(False)
    tab.options.reps.setValue(3)
    tab.picker.add_paths([str(tiny_variants["F16"]), str(tiny_variants["Q8_0"]), str(tiny_variants["Q4_0"])])
    tab.controller.sig_result.connect(lambda _row: tab.cancel())   # cancel once the first row is in
    with qtbot.waitSignal(tab.controller.sig_cancelled, timeout=180_000):
        assert tab.run()
    assert tab.table.proxy.rowCount() == 1 and tab.step.text().startswith("Cancelled. The 1 finished row is kept")
    assert tab.run_button.isEnabled() and not tab.cancel_button.isEnabled()
    run = tab.bench_store.load_run(tab.past_runs.itemData(0))
    assert len(run["results"]) == 1


def test_before_any_run_the_charts_say_so_and_draw_nothing(tab):
    from widgets.bench.tab import NO_RUN

    for view in (*tab.charts.values(), tab.scatter):
        assert view.picture.text() == NO_RUN and not view.has_chart and not view.export_png.isEnabled()
    assert "No earlier runs" in tab.history_view.picture.text()
