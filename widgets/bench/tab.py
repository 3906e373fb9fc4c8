"""The Benchmark tab: pick variants of one model, measure them the same way, see what compression
bought (size, speed, memory) and what it cost (quality), in a table, charts and plain words.

Left: ``VariantPicker`` (a library group or any files, and the quality reference), ``OptionsPanel``,
Run / Cancel and the progress of the current step. Right, in tabs: the results table with the
summary and the figures' export (CSV, JSON), the charts (each exportable as PNG / SVG), the history
of the model across runs (and any past run to reopen), and the side-by-side answers.

One ``BenchController`` runs the benchmark off the UI thread; its rows are stored as they finish
(``runtime.store.bench_runs``), so the history survives a cancel or a closed window.

Test hooks: ``set_library(rows)``, ``show_request(path, action)``, ``run()``, ``cancel()``,
``controller``, ``table``, ``charts`` ({name: ChartView}), ``history_view``, ``batching_view``,
``summary``, ``banner``, ``export_figures(path)``, ``open_run(run_id)``, ``side_by_side``, the replaceable
``choose_save_path(parent, title, name, filters) -> str | None``; ``kv_view`` (the KV cache reuse
chart), ``recipes_page`` (the guides' recipes checked, ``widgets.bench.recipes_page``), ``chart_tabs``
and ``show_chart(title)`` (what a recipe's chart button does).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea,
                               QSplitter, QTabWidget, QVBoxLayout, QWidget)

from runtime.bench.results import BenchRun, VariantResult
from widgets.bench.chart_view import ChartView
from widgets.bench.options_panel import OptionsPanel
from widgets.bench.recipes_page import RecipesPage
from widgets.bench.picker import VariantPicker
from widgets.bench.results_table import ResultsTable
from widgets.bench.runs import BenchController
from widgets.bench.side_by_side import SideBySidePanel
from widgets.common.banner import Banner
from widgets.workers import error_text

# (tab title, metric) of the bar charts; then the scatter and the history.
BAR_CHARTS = [("Size", "size_bytes"), ("Prompt speed", "pp_tokens_per_s"), ("Generation speed", "tg_tokens_per_s"),
              ("First token", "ttft_s"), ("Memory", "peak_rss_bytes")]
NO_RUN = "No figures yet: pick the variants to compare and press Run benchmark."
NO_BATCHING = "Batching was not measured in this run: tick Measure batching and run again."
NO_KV = "KV cache reuse was not measured in this run: tick Measure KV cache reuse and run again."
EXPORT_FILTERS = "CSV table (*.csv);;JSON (*.json);;Markdown report (*.md)"
HISTORY_METRICS = [("Generation speed", "tg_tokens_per_s"), ("Prompt speed", "pp_tokens_per_s"),
                   ("First token", "ttft_s"), ("Peak memory", "peak_rss_bytes"), ("Size", "size_bytes"),
                   ("KL divergence", "kld_mean"), ("Perplexity", "perplexity")]


def ask_save_path(parent, title: str, name: str, filters: str) -> str | None:
    path, _ = QFileDialog.getSaveFileName(parent, title, str(Path.home() / name), filters)
    return path or None


class BenchmarkTab(QWidget):
    def __init__(self, store=None, parent: QWidget | None = None):
        super().__init__(parent)
        from runtime.store.bench_runs import BenchStore

        self.choose_save_path = ask_save_path
        self.bench_store = self._open_store(store, BenchStore)
        self.controller = BenchController(self.bench_store, self)
        self.run_data: BenchRun | None = None
        self.banner = Banner()
        self.picker = VariantPicker()
        self.options = OptionsPanel()
        self.run_button = QPushButton("Run benchmark")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.step = QLabel("Pick the variants to compare, then Run.")
        self.step.setWordWrap(True)

        self.table = ResultsTable()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.export_button = QPushButton("Export figures…")
        self.export_button.setToolTip("Save this run's figures as CSV or JSON.")
        self.export_button.setEnabled(False)
        self.compare_button = QPushButton("Answer side by side")
        self.compare_button.setToolTip("Ask the selected rows (or the first four) the same prompt.")
        self.charts = {title: ChartView(title.lower().replace(" ", "-")) for title, _m in BAR_CHARTS}
        self.scatter = ChartView("size-vs-quality")
        self.scatter_metric = QComboBox()
        self.scatter_metric.addItem("Mean KL divergence", "kld_mean")
        self.scatter_metric.addItem("Perplexity ratio", "ppl_ratio")
        self.history_view = ChartView("history")
        self.batching_view = ChartView("batching")
        self.kv_view = ChartView("kv-cache-reuse")
        self.recipes_page = RecipesPage()
        self.chart_tabs = QTabWidget()
        self.history_metric = QComboBox()
        for title, metric in HISTORY_METRICS:
            self.history_metric.addItem(title, metric)
        self.past_runs = QComboBox()
        self.past_runs.setToolTip("Open an earlier run of this model in the table and charts.")
        self.side_by_side = SideBySidePanel()
        self.right = QTabWidget()
        self._build_layout()
        self._wire()
        self._show_run(None)
        self._load_history_list()

    @staticmethod
    def _open_store(store, cls):
        try:
            return cls(getattr(store, "path", None))
        except Exception:  # noqa: BLE001 - without a store the tab still measures; it keeps no history
            return None

    def _build_layout(self) -> None:
        setup = QWidget()
        left = QVBoxLayout(setup)
        left.addWidget(QLabel("<b>What to compare</b>"))
        left.addWidget(self.picker)
        left.addWidget(QLabel("<b>How to measure</b>"))
        left.addWidget(self.options)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        left.addLayout(buttons)
        left.addWidget(self.progress)
        left.addWidget(self.step)
        left.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(setup)
        scroll.setMinimumWidth(340)

        results = QWidget()
        r = QVBoxLayout(results)
        r.addWidget(self.table, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.compare_button)
        row.addWidget(self.export_button)
        r.addLayout(row)
        chart_tabs = self.chart_tabs
        chart_tabs.addTab(_chart_page(self.scatter, "Quality measure:", self.scatter_metric, None),
                          "Size vs quality")
        for title, _metric in BAR_CHARTS:
            chart_tabs.addTab(self.charts[title], title)
        chart_tabs.addTab(self.batching_view, "Batching")
        chart_tabs.addTab(self.kv_view, "KV cache reuse")
        history = _chart_page(self.history_view, "Figure:", self.history_metric, None, "Past run:", (self.past_runs, 1))
        self.right.addTab(results, "Results")
        self.right.addTab(chart_tabs, "Charts")
        self.right.addTab(self.recipes_page, "Recipes")
        self.right.addTab(history, "History")
        self.right.addTab(self.side_by_side, "Side by side")

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.right, 1)
        right_layout.addWidget(self.summary)     # under the table and the charts alike
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(scroll)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 840])
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(splitter, 1)

    def _wire(self) -> None:
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self._ask_export)
        self.compare_button.clicked.connect(self._compare_selected)
        self.recipes_page.sig_show_chart.connect(self.show_chart)
        self.picker.sig_changed.connect(self._on_choice_changed)
        self.scatter_metric.currentIndexChanged.connect(lambda _i: self._draw_scatter())
        self.history_metric.currentIndexChanged.connect(lambda _i: self._load_history_list())
        self.past_runs.activated.connect(lambda i: self.open_run(self.past_runs.itemData(i)))
        self.controller.sig_progress.connect(self._on_progress)
        self.controller.sig_result.connect(self._on_result)
        self.controller.sig_done.connect(self._on_done)
        self.controller.sig_failed.connect(self._on_failed)
        self.controller.sig_cancelled.connect(self._on_cancelled)

    # -- choosing ---------------------------------------------------------------------------------

    def set_library(self, rows: list) -> None:
        """The Models tab's library rows (``ModelsTab.sig_library_loaded``)."""
        self.picker.set_library(rows)

    def show_request(self, path: str, action: str = "benchmark") -> None:
        """"Benchmark it" from the library or the Compress tab: show that model's group, all ticked."""
        self.picker.select_path(path)
        self.banner.dismiss()

    def _on_choice_changed(self) -> None:
        chosen = self.picker.chosen_paths()
        if not self.controller.running:
            if not chosen:
                text = "Pick the variants to compare, then Run."
            elif len(chosen) == 1:
                text = ("1 file chosen: it is measured on its own. To compare, make smaller versions in the "
                        "Compress tab (they appear here with it) or Add files….")
            else:
                text = f"{len(chosen)} files chosen."
            self.step.setText(text)
        self.side_by_side.set_variants(chosen)
        self._update_buttons()
        self._load_history_list()

    # -- running ----------------------------------------------------------------------------------

    def run(self) -> bool:
        """Start measuring the ticked files; False when nothing is ticked or a run is going."""
        paths = self.picker.chosen_paths()
        original = self.picker.original_path()
        if not (paths or original) or self.controller.running:
            return False
        options = self.options.options()
        quality = self.options.quality.isChecked()
        self.banner.dismiss()
        self.table.set_results([])
        self.run_data = None
        started = self.controller.start(paths, options, quality=quality, text_path=self.options.text_path(),
                                        reference_path=self.picker.reference_path(), original=original,
                                        original_precisions=self.picker.original_precisions())
        if started:
            self.progress.setValue(0)
            self.step.setText("Starting…")
            self._update_buttons()
        return started

    def cancel(self) -> None:
        self.controller.cancel()
        self.step.setText("Cancelling…")

    def _on_progress(self, done: float, total: float, message: str) -> None:
        self.progress.setValue(int(1000 * done / total) if total else 0)
        self.step.setText(message)

    def _on_result(self, row: VariantResult) -> None:
        self.table.add_result(row)

    def _on_done(self, run: BenchRun) -> None:
        self._show_run(run)
        self.progress.setValue(1000)
        failed = [r for r in run.results if r.status != "ok"]
        self.step.setText("Done." + (f" {len(failed)} of {len(run.results)} could not be measured: see Status."
                                     if failed else ""))
        self._finished()

    def _on_failed(self, error) -> None:
        self.banner.show_error(error, before="The benchmark could not run.")
        self.step.setText("Failed.")
        self._finished()

    def _on_cancelled(self) -> None:
        kept = len(self.table.results)
        self.step.setText("Cancelled." + (f" The {kept} finished row{'s are' if kept != 1 else ' is'} kept in the "
                                          "history." if kept else " Nothing was kept."))
        self._finished()

    def _finished(self) -> None:
        self._update_buttons()
        self._load_history_list()

    def _update_buttons(self) -> None:
        running = self.controller.running
        self.run_button.setEnabled(not running and bool(self.picker.chosen_paths() or self.picker.original_path()))
        self.cancel_button.setEnabled(running)
        self.options.set_enabled(not running)
        self.picker.setEnabled(not running)
        self.export_button.setEnabled(self.run_data is not None and not running)
        self.compare_button.setEnabled(self.run_data is not None and
                                       sum(r.status == "ok" for r in self.run_data.results) >= 2)

    # -- showing a run ----------------------------------------------------------------------------

    def _show_run(self, run: BenchRun | None) -> None:
        from runtime.bench.summary import summarize

        self.run_data = run
        results = run.results if run else []
        if run is not None:
            self.table.set_results(results)
        for title, metric in BAR_CHARTS:
            if results:
                self.charts[title].set_builder(_builder("metric_bars", results, metric))
            else:
                self.charts[title].clear(NO_RUN)
        self._draw_scatter()
        if any(r.batched for r in results):
            self.batching_view.set_builder(_batched_builder(results))
        else:
            self.batching_view.clear(NO_RUN if not results else NO_BATCHING)
        if any(r.kv_reuse for r in results):
            self.kv_view.set_builder(_kv_builder(results))
        else:
            self.kv_view.clear(NO_RUN if not results else NO_KV)
        self.recipes_page.set_run(run)
        self.summary.setText(summarize(results, run.reference_path) if results else "")
        self._update_buttons()

    def _draw_scatter(self) -> None:
        from runtime.models.hardware import available_ram

        results = self.run_data.results if self.run_data else []
        if not results:
            self.scatter.clear(NO_RUN)
            return
        budget = available_ram()
        self.scatter.set_builder(_builder("size_quality_scatter", results, self.scatter_metric.currentData(),
                                          fits=budget))

    def _history_model(self) -> str | None:
        chosen = self.picker.chosen_paths()
        return chosen[0] if chosen else None

    def _load_history_list(self) -> None:
        """The past runs of the model shown in the picker, newest first, and its history chart."""
        self.past_runs.clear()
        model = self._history_model()
        if self.bench_store is None or model is None:
            self._draw_history([])
            return
        try:
            runs = [BenchRun.from_dict(d) for d in self.bench_store.history(model)]
        except Exception as exc:  # noqa: BLE001 - a busy or damaged store hides the history, not the tab
            self.past_runs.addItem(f"History unavailable: {error_text(exc)}", None)
            runs = []
        for past in reversed(runs):
            from datetime import datetime

            when = datetime.fromtimestamp(past.started_at).strftime("%Y-%m-%d %H:%M")
            self.past_runs.addItem(f"{when} · {len(past.results)} variant{'s' if len(past.results) != 1 else ''}",
                                   past.run_id)
        self._draw_history(runs)

    def _draw_history(self, runs: list) -> None:
        if not runs:
            self.history_view.clear("No earlier runs of this model yet: run a benchmark and each run is kept here.")
            return
        self.history_view.set_builder(_builder("history_chart", runs, self.history_metric.currentData()))

    def open_run(self, run_id: int | None) -> bool:
        """Show a stored run in the table and charts."""
        if run_id is None or self.bench_store is None or self.controller.running:
            return False
        try:
            run = BenchRun.from_dict(self.bench_store.load_run(int(run_id)))
        except Exception as exc:  # noqa: BLE001
            self.banner.show_error(exc, before="That run cannot be opened.")
            return False
        self._show_run(run)
        self.right.setCurrentIndex(0)
        return True

    # -- export and compare -----------------------------------------------------------------------

    def _ask_export(self) -> None:
        path = self.choose_save_path(self, "Export the figures", "benchmark.csv", EXPORT_FILTERS)
        if path:
            self.export_figures(path)

    def export_figures(self, path: str) -> Path | None:
        """Write this run's figures to ``path``: CSV, or by the suffix JSON (.json) or a Markdown report (.md)
        with the recipes."""
        from runtime.bench.export import export_csv, export_json, export_markdown
        from runtime.errors import WorkbenchError

        if self.run_data is None:
            return None
        try:
            suffix = Path(path).suffix.lower()
            write = {".json": export_json, ".md": export_markdown, ".markdown": export_markdown}.get(suffix, export_csv)
            written = write(self.run_data, path)
        except WorkbenchError as exc:
            self.banner.show_error(exc, before="Could not export.")
            return None
        self.banner.show_message(f"Saved the figures to {written}.", "info")
        return written

    def show_chart(self, title: str) -> bool:
        """Show the chart page called ``title`` ("KV cache reuse", "Size vs quality", ...); False if none is."""
        for i in range(self.chart_tabs.count()):
            if self.chart_tabs.tabText(i) == title:
                self.right.setCurrentWidget(self.chart_tabs)
                self.chart_tabs.setCurrentIndex(i)
                return True
        return False

    def _compare_selected(self) -> None:
        chosen = self.table.selected_paths() or [r.path for r in self.table.results if r.status == "ok"]
        self.side_by_side.set_variants(chosen)
        self.right.setCurrentWidget(self.side_by_side)

    # -- shut-down --------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.controller.shutdown()
        self.side_by_side.shutdown()
        for view in (*self.charts.values(), self.scatter, self.history_view, self.batching_view, self.kv_view):
            view.shutdown()
        if self.bench_store is not None:
            self.bench_store.close()


def _chart_page(view: ChartView, *row) -> QWidget:
    """A chart with a row of controls above it: labels (str), widgets, (widget, stretch), None: a stretch."""
    page = QWidget()
    top = QHBoxLayout()
    for item in row:
        if item is None:
            top.addStretch(1)
        elif isinstance(item, str):
            top.addWidget(QLabel(item))
        else:
            top.addWidget(*(item if isinstance(item, tuple) else (item,)))
    layout = QVBoxLayout(page)
    layout.addLayout(top)
    layout.addWidget(view, 1)
    return page


def _builder(name: str, *args, **kwargs):
    """``build(theme)`` calling ``runtime.bench.charts.<name>(*args, theme=theme)``: it runs on the
    chart's drawing worker, where matplotlib is imported (not on the UI thread, not at start-up)."""
    def build(theme: str):
        from runtime.bench import charts

        return getattr(charts, name)(*args, theme=theme, **kwargs)
    return build


def _batched_builder(results):
    """``build(theme)`` for the batching chart (``runtime.bench.charts_batched``), like ``_builder``."""
    def build(theme: str):
        from runtime.bench.charts_batched import batched_chart

        return batched_chart(results, theme=theme)
    return build


def _kv_builder(results):
    """``build(theme)`` for the KV cache reuse chart (``runtime.bench.charts_kv``), like ``_builder``."""
    def build(theme: str):
        from runtime.bench.charts_kv import kv_reuse_chart

        return kv_reuse_chart(results, theme=theme)
    return build
