"""Find models: the beginner catalog first (offline), then Hugging Face search with filters and paging.

Every page is fetched on a worker (``runtime.hub.search.ModelSearch.next_page``). Each search has a
number; an answer for an older search is dropped, so typing fast never shows stale results.
``sig_results_shown(count, seconds)`` reports how long the results took from the hub's answer to
being on screen (the benchmark reads it).
"""
from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from widgets.workers import Worker, error_text

KIND_CHOICES = (("gguf", "GGUF files (ready to run)"), ("checkpoint", "Original checkpoints"), ("all", "All"))
SORT_CHOICES = (("downloads", "Most downloaded"), ("likes", "Most liked"), ("updated", "Recently updated"))
COLUMNS = ("Model", "Kind", "Downloads", "Likes", "Updated")   # the licence is in the tooltip and the repo view
SUMMARY_ROLE = Qt.ItemDataRole.UserRole + 1
KIND_LABELS = {"gguf": "GGUF", "checkpoint": "Checkpoint", "other": "Other"}
PAGE_SIZE = 20


def _count(n: int | None) -> str:
    if n is None:
        return ""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + suffix
    return str(n)


def fetch_page(search, job=None) -> tuple[list, bool, float]:
    """The next page of ``search`` (blocking); also whether there is more and when the hub answered."""
    results = search.next_page()
    return results, search.has_more, time.perf_counter()


def new_search(query: str, kind: str, sort: str):
    """A ModelSearch with the saved token (the keyring may block: call it on the worker)."""
    from runtime.hub.search import ModelSearch
    from runtime.hub.token import get_token

    return ModelSearch(query, kind=kind, sort=sort, page_size=PAGE_SIZE, token=get_token())


class SearchPanel(QWidget):
    """Query box, kind and sort, the results (catalog first) and "More results"."""

    sig_repo_chosen = Signal(object)          # RepoSummary
    sig_results_shown = Signal(int, float)    # results added, seconds from the hub's answer to the screen

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search text-generation models on Hugging Face, e.g. qwen 0.5b")
        self.query.setClearButtonEnabled(True)
        self.search_button = QPushButton("Search")
        self.kind = QComboBox()
        for key, text in KIND_CHOICES:
            self.kind.addItem(text, key)
        self.sort = QComboBox()
        for key, text in SORT_CHOICES:
            self.sort.addItem(text, key)
        for combo in (self.kind, self.sort):  # narrow windows (800 px) shorten the choices, never widen
            combo.setMinimumContentsLength(8)
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.results = QTreeWidget()
        self.results.setHeaderLabels(list(COLUMNS))
        self.results.setRootIsDecorated(False)
        self.results.setUniformRowHeights(True)
        self.results.setAlternatingRowColors(True)
        self.results.setTextElideMode(Qt.TextElideMode.ElideMiddle)   # keep both the org and the model
        header = self.results.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        self.more_button = QPushButton("More results")
        self.more_button.setEnabled(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)

        row = QHBoxLayout()
        row.addWidget(self.query, 1)
        row.addWidget(self.search_button)
        filters = QHBoxLayout()
        filters.addWidget(QLabel("Show"))
        filters.addWidget(self.kind)
        filters.addWidget(QLabel("sorted by"))
        filters.addWidget(self.sort)
        filters.addStretch(1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.more_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addLayout(filters)
        layout.addWidget(self.results, 1)
        layout.addLayout(bottom)

        self.query.returnPressed.connect(self.search)
        self.search_button.clicked.connect(self.search)
        self.kind.currentIndexChanged.connect(self._on_filter_changed)
        self.sort.currentIndexChanged.connect(self._on_filter_changed)
        self.more_button.clicked.connect(self.more)
        self.results.currentItemChanged.connect(self._on_current)
        self.results.itemActivated.connect(self._on_current)

        self.offline = False
        self._search = None               # the ModelSearch of the shown results
        self._generation = 0              # the number of the newest search
        self._worker: Worker | None = None
        self._workers: list[Worker] = []  # every started page fetch, until it has finished
        self.show_catalog()

    # -- catalog (offline) --------------------------------------------------------------------------

    def show_catalog(self, query: str = "") -> int:
        """List the catalog entries matching ``query`` (all when empty). Returns how many."""
        from runtime.hub.catalog import catalog_summaries

        self.results.clear()
        kind = self.kind.currentData()
        summaries = catalog_summaries(query, kind="all" if kind == "all" else kind)
        for summary in summaries:
            self._add_item(summary)
        return len(summaries)

    def set_offline(self, offline: bool) -> None:
        """Offline: no searching, the catalog only."""
        self.offline = offline
        for widget in (self.query, self.search_button, self.sort):
            widget.setEnabled(not offline)
        if offline:
            self.more_button.setEnabled(False)
            self.status.setText("Offline: showing the beginner catalog only.")

    # -- searching ----------------------------------------------------------------------------------

    @property
    def searching(self) -> bool:
        return self._worker is not None and self._worker.running

    def search(self) -> bool:
        """Start a new search for the query box's text (the catalog's matches stay on top)."""
        text = self.query.text().strip()
        self._generation += 1
        self._search = None
        shown = self.show_catalog(text)
        if self.offline:
            self.status.setText(f"Offline: {shown} catalog model{'s' if shown != 1 else ''} match; "
                                "searching Hugging Face needs a connection.")
            return False
        kind, sort = self.kind.currentData(), self.sort.currentData()
        generation = self._generation
        self.status.setText("Searching Hugging Face…")
        self.more_button.setEnabled(False)

        def first_page(job):
            search = new_search(text, kind, sort)
            return (search, *fetch_page(search))

        self._start(first_page, generation)
        return True

    def more(self) -> bool:
        """Fetch the next page of the current search."""
        search = self._search
        if search is None or not search.has_more or self.searching:
            return False
        self.more_button.setEnabled(False)
        self.status.setText("Loading more results…")
        self._start(lambda job: (search, *fetch_page(search)), self._generation)
        return True

    def _start(self, fn, generation: int) -> None:
        worker = Worker(fn, name="hub-search")
        worker.sig_done.connect(lambda result: self._on_page(generation, result))
        worker.sig_failed.connect(lambda error: self._on_failed(generation, error))
        worker.sig_finished.connect(lambda: self._forget(worker))
        self._worker = worker
        self._workers.append(worker)
        worker.start()

    def _on_page(self, generation: int, result) -> None:
        if generation != self._generation:
            return   # an answer to an older search: dropped
        search, results, has_more, answered_at = result
        self._search = search
        known = {self.results.topLevelItem(i).data(0, SUMMARY_ROLE).repo_id.lower(): self.results.topLevelItem(i)
                 for i in range(self.results.topLevelItemCount())}
        self.results.setUpdatesEnabled(False)
        added = 0
        for summary in results:
            item = known.get(summary.repo_id.lower())
            if item is None:
                self._add_item(summary)
                added += 1
            elif item.data(0, SUMMARY_ROLE).downloads is None:   # a catalog entry: show the hub's figures
                self._fill_item(item, summary)
        self.results.setUpdatesEnabled(True)
        self.more_button.setEnabled(has_more)
        total = self.results.topLevelItemCount()
        self.status.setText(f"{total} model{'s' if total != 1 else ''} shown"
                            + (" (more available)" if has_more else "") if total else
                            "No text-generation model matches; try fewer or other words.")
        self.sig_results_shown.emit(added, time.perf_counter() - answered_at)

    def _on_failed(self, generation: int, error) -> None:
        if generation != self._generation:
            return
        self.status.setText(f"Search failed: {error_text(error)}")
        self.more_button.setEnabled(self._search is not None and self._search.has_more)

    def _on_filter_changed(self) -> None:
        if self._search is not None or self.query.text().strip():
            self.search()
        else:
            self._generation += 1
            self.show_catalog()

    def _forget(self, worker: Worker) -> None:
        if worker in self._workers:
            self._workers.remove(worker)

    # -- items --------------------------------------------------------------------------------------

    def _add_item(self, summary) -> QTreeWidgetItem:
        item = QTreeWidgetItem()
        self._fill_item(item, summary)
        self.results.addTopLevelItem(item)
        return item

    def _fill_item(self, item: QTreeWidgetItem, summary) -> None:
        from runtime.hub.catalog import catalog_entry_for

        entry = summary.catalog or catalog_entry_for(summary.repo_id)
        if entry is not None and summary.catalog is None:
            summary.catalog = entry
        name = f"★ {summary.repo_id}" if entry is not None else summary.repo_id
        updated = (summary.last_modified or "")[:10]
        licence = summary.licence or (entry.licence if entry is not None else "")
        for col, text in enumerate([name, KIND_LABELS.get(summary.kind, summary.kind), _count(summary.downloads),
                                    _count(summary.likes), updated]):
            item.setText(col, text)
        item.setData(0, SUMMARY_ROLE, summary)
        tip = summary.repo_id
        if entry is not None:
            tip = f"{entry.name} ({entry.parameters} parameters): {entry.description}\n{summary.repo_id}"
        if licence:
            tip += f"\nLicence: {licence}"
        if summary.gated:
            tip += "\nGated: accept the licence on huggingface.co and add a token (Token…) to download."
        item.setToolTip(0, tip)
        for col in (2, 3):
            item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def repo_ids(self) -> list[str]:
        """The repos listed, in order (for tests)."""
        return [self.results.topLevelItem(i).data(0, SUMMARY_ROLE).repo_id
                for i in range(self.results.topLevelItemCount())]

    def choose(self, repo_id: str) -> bool:
        """Select the result ``repo_id`` (which opens it). False when it is not listed."""
        for i in range(self.results.topLevelItemCount()):
            item = self.results.topLevelItem(i)
            if item.data(0, SUMMARY_ROLE).repo_id == repo_id:
                self.results.setCurrentItem(item)
                return True
        return False

    def _on_current(self, item, *_args) -> None:
        if item is not None:
            self.sig_repo_chosen.emit(item.data(0, SUMMARY_ROLE))

    def shutdown(self) -> None:
        """Join the page fetches (each ends within the search's network time-out)."""
        for worker in list(self._workers):
            worker.wait()
