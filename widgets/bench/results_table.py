"""The results of one run as a sortable table, the reference marked, failed and skipped rows with why."""
from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

from runtime.bench.results import VariantResult
from runtime.models.gguf_info import format_size

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
PATH_ROLE = Qt.ItemDataRole.UserRole + 2

# (header, how to get the number, how to show it)
COLUMNS = [
    ("Variant", None, None),
    ("Size", lambda r: r.size_bytes, format_size),
    ("Load", lambda r: r.speed and r.speed.load_s, lambda v: f"{v:.2f} s"),
    ("Prompt t/s", lambda r: r.speed and r.speed.pp_tokens_per_s.median, lambda v: f"{v:,.1f}"),
    ("Generation t/s", lambda r: r.speed and r.speed.tg_tokens_per_s.median, lambda v: f"{v:,.1f}"),
    ("First token", lambda r: r.speed and r.speed.ttft_s.median, lambda v: f"{v * 1000:,.0f} ms"),
    ("Peak memory", lambda r: r.speed and r.speed.peak_rss_bytes, format_size),
    ("Perplexity", lambda r: r.quality and r.quality.perplexity, lambda v: f"{v:,.3f}"),
    ("KLD mean", lambda r: r.quality and r.quality.kld_mean, lambda v: f"{v:.4f}"),
    ("KLD 99%", lambda r: r.quality and r.quality.kld_p99, lambda v: f"{v:.4f}"),
    ("Same next word", lambda r: r.quality and r.quality.top1_agreement, lambda v: f"{v * 100:.1f}%"),
    ("Status", None, None),
]


class _Item(QStandardItem):
    """Sorts by the number behind the text (missing figures last)."""

    def __lt__(self, other: QStandardItem) -> bool:
        a, b = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if a is None or b is None:
            return b is None and a is not None
        return a < b


class ResultsTable(QTableView):
    """``set_results(results)``; ``selected_paths()`` for the side-by-side comparison."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.source = QStandardItemModel(0, len(COLUMNS), self)
        self.source.setHorizontalHeaderLabels([c[0] for c in COLUMNS])
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.source)
        self.proxy.setSortRole(SORT_ROLE)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.results: list[VariantResult] = []

    def set_results(self, results: list[VariantResult]) -> None:
        self.results = list(results)
        self.setSortingEnabled(False)
        self.source.removeRows(0, self.source.rowCount())
        for order, result in enumerate(self.results):
            self.source.appendRow(self._row(order, result))
        self.setSortingEnabled(True)

    def add_result(self, result: VariantResult) -> None:
        self.results.append(result)
        self.source.appendRow(self._row(len(self.results) - 1, result))

    def _row(self, order: int, r: VariantResult) -> list[QStandardItem]:
        items = []
        reference = bool(r.quality and r.quality.is_reference)
        for header, get, show in COLUMNS:
            item = _Item()
            if header == "Variant":
                quant = f"PyTorch {r.quant}" if r.quant and r.engine == "pytorch" else r.quant
                item.setText(f"{quant or r.name}" + ("  ★ reference" if reference else ""))
                item.setToolTip(r.path)
                item.setData(order, SORT_ROLE)
                item.setData(r.path, PATH_ROLE)
            elif header == "Status":
                text = {"ok": "done", "failed": "failed", "skipped": "skipped"}.get(r.status, r.status)
                why = r.error or r.note
                item.setText(f"{text}: {why}" if why else text)
                item.setToolTip(why or "")
                item.setData(r.status, SORT_ROLE)
            else:
                value = get(r) if r.status == "ok" else None
                item.setText("" if value is None else show(value))
                item.setData(None if value is None else float(value), SORT_ROLE)
                if value is not None and header in ("Prompt t/s", "Generation t/s", "First token") and r.speed:
                    spread = {"Prompt t/s": r.speed.pp_tokens_per_s, "Generation t/s": r.speed.tg_tokens_per_s,
                              "First token": r.speed.ttft_s}[header]
                    item.setToolTip(f"median of {len(spread.values)}; from {show(spread.low)} to {show(spread.high)}")
            if r.status != "ok":
                item.setForeground(Qt.GlobalColor.darkRed if r.status == "failed" else Qt.GlobalColor.darkYellow)
            items.append(item)
        return items

    def cell_text(self, row: int, header: str) -> str:
        """The text shown at view row ``row`` under ``header`` (tests)."""
        column = [c[0] for c in COLUMNS].index(header)
        return self.proxy.index(row, column).data() or ""

    def selected_paths(self) -> list[str]:
        rows = sorted({i.row() for i in self.selectionModel().selectedRows()})
        return [self.proxy.index(r, 0).data(PATH_ROLE) for r in rows]
