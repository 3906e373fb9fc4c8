"""One Hugging Face repo: its model files with size, quant, fit badge and the recommended one.

``open_repo`` fetches the listing and judges every choice on a worker
(``runtime.hub.repo.fetch_listing`` + ``runtime.hub.choices.model_choices``); changing the context
length judges again (debounced). Answers for another repo or an older context are dropped. Each
downloadable choice has a Download button, which emits ``sig_download(listing, choice, dest)``;
``dest`` is None for the Hugging Face cache, else a folder.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QSpinBox, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from widgets.common.fit_badge import fit_colours, fit_label
from widgets.workers import Worker, error_text

COLUMNS = ("File", "Type", "Size", "Fit", "Needs", "")
REASON_ROLE = Qt.ItemDataRole.UserRole + 1   # a choice row's reason, note and fit figures, shown below the list
RECOMMENDED_BACKGROUND = "#e8f5e9"
CONTEXT_DEBOUNCE_MS = 300
SUMMARY_STYLES = {
    "recommended": "background: #e8f5e9; border: 1px solid #b7dfb9; border-radius: 4px; padding: 4px;",
    "none": "background: #fff4d6; border: 1px solid #f0d58c; border-radius: 4px; padding: 4px;",
}
DEST_CHOICES = (("hf-cache", "the Hugging Face cache"), ("models", "the app's models folder"),
                ("other", "another folder…"))


def judge_repo(repo_id: str, n_ctx: int, listing=None, available_bytes: int | None = None):
    """(listing, choices) for ``repo_id`` at ``n_ctx`` tokens; reuses ``listing`` when given. Blocking.

    ``available_bytes``: the free memory to judge against (None: what this machine has free now, and
    the free memory of the GPUs this llama.cpp can use).
    """
    from runtime.engine.local import list_gpus
    from runtime.hub.choices import model_choices
    from runtime.hub.repo import fetch_listing
    from runtime.hub.token import get_token

    token = get_token()
    if listing is None:
        listing = fetch_listing(repo_id, token=token)
    gpus = list_gpus() if available_bytes is None else []  # a fixed figure (tests) judges RAM alone
    return listing, model_choices(listing, n_ctx or None, available_bytes=available_bytes, token=token, gpus=gpus)


class RepoView(QWidget):
    """Header, context length, the recommendation, and the files with their Download buttons."""

    sig_download = Signal(object, object, object)   # RepoListing, ModelChoice, dest folder (str) or None
    sig_judged = Signal(str)                        # repo id: the badges on screen are for the current context

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = QLabel("<i>Choose a model on the left to see its files.</i>")
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.context = QSpinBox()
        self.context.setRange(256, 1_048_576)
        self.context.setSingleStep(1024)
        self.context.setValue(4096)
        self.context.setSuffix(" tokens")
        self.context.setToolTip("The context length you will load the model with: the fit badges follow it.")
        self.dest = QComboBox()
        for key, text in DEST_CHOICES:
            self.dest.addItem(text, key)
        self.dest.setToolTip("The Hugging Face cache lets other tools reuse the files.")
        self.dest.setMinimumContentsLength(10)  # narrow windows shorten the choice, never widen
        self.dest.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.hide()
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.files = QTreeWidget()
        self.files.setHeaderLabels(list(COLUMNS))
        self.files.setUniformRowHeights(True)
        header = self.files.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        self.files.currentItemChanged.connect(self._on_current_file)
        self.detail = QLabel()   # why the selected file is (or is not) the recommended one, with the figures
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.PlainText)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setStyleSheet("color: #333333;")

        options = QHBoxLayout()
        options.addWidget(QLabel("Context length"))
        options.addWidget(self.context)
        options.addSpacing(8)
        options.addWidget(QLabel("Save into"))
        options.addWidget(self.dest)
        options.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addLayout(options)
        layout.addWidget(self.summary)
        layout.addWidget(self.status)
        layout.addWidget(self.files, 1)
        layout.addWidget(self.detail)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(CONTEXT_DEBOUNCE_MS)
        self._debounce.timeout.connect(self.rejudge)
        self.context.valueChanged.connect(lambda _v: self._debounce.start() if self.listing is not None else None)

        self.repo_id = ""
        self.summary_info = None     # the RepoSummary the repo was opened from, if any
        self.listing = None
        self.choices: list = []
        self.buttons: dict[str, QPushButton] = {}   # choice name -> its Download button
        self.available_bytes: int | None = None   # free memory to judge against; None: measured each time
        self.local_rows: list = []   # the library's LibraryRows: a repo's files already on disk
        self._generation = 0
        self._workers: list[Worker] = []

    # -- opening ------------------------------------------------------------------------------------

    def open_repo(self, repo_id: str, summary=None) -> None:
        """Fetch and judge ``repo_id``'s files on a worker (an open one is replaced at once)."""
        self.repo_id, self.summary_info = repo_id, summary
        self.listing, self.choices = None, []
        self._show_title()
        self.files.clear()
        self.buttons = {}
        self.summary.hide()
        self.status.setText(f"Reading the files of {repo_id}…")
        self._judge(repo_id, None)

    def rejudge(self) -> None:
        """Judge the listed files again at the context length now set (no new listing)."""
        if self.listing is None:
            return
        self.status.setText(f"Checking the fit at {self.context.value():,} tokens…")
        self._judge(self.repo_id, self.listing)

    def _judge(self, repo_id: str, listing) -> None:
        self._generation += 1
        generation, n_ctx, available = self._generation, self.context.value(), self.available_bytes
        worker = Worker(lambda job: judge_repo(repo_id, n_ctx, listing, available), name="hub-repo")
        worker.sig_done.connect(lambda result: self._on_judged(generation, result))
        worker.sig_failed.connect(lambda error: self._on_failed(generation, error))
        worker.sig_finished.connect(lambda: self._workers.remove(worker) if worker in self._workers else None)
        self._workers.append(worker)
        worker.start()

    @property
    def busy(self) -> bool:
        return any(w.running for w in self._workers)

    def _on_judged(self, generation: int, result) -> None:
        if generation != self._generation:
            return
        from runtime.hub.choices import summarize

        self.listing, self.choices = result
        self._show_title()
        best = next((c for c in self.choices if c.recommended), None)
        self.summary.setText(("★ " if best is not None else "") + summarize(self.choices))
        self.summary.setStyleSheet(SUMMARY_STYLES["recommended" if best is not None else "none"])
        self.summary.show()
        self.status.setText("")
        self._fill()
        self.sig_judged.emit(self.repo_id)

    def _on_failed(self, generation: int, error) -> None:
        if generation != self._generation:
            return
        from runtime.errors import HubOffline

        text = error_text(error)
        if isinstance(error, HubOffline):
            local = [r.entry.display_name for r in self.local_rows
                     if (r.entry.repo_id or "").lower() == self.repo_id.lower()]
            text += ("\nAlready on this computer (see “On this computer”): " + ", ".join(local) if local else
                     "\nNone of its files are on this computer yet.")
        self.status.setText(text)

    # -- showing ------------------------------------------------------------------------------------

    def _show_title(self) -> None:
        from html import escape

        listing, summary = self.listing, self.summary_info
        entry = getattr(summary, "catalog", None)
        parts = [f"<b>{escape(self.repo_id)}</b>"]
        licence = (listing.licence if listing else None) or getattr(summary, "licence", None)
        if licence:
            parts.append(f"licence {escape(licence)}")
        gated = (listing.gated if listing else False) or getattr(summary, "gated", False)
        if gated:
            parts.append("<span style='color:#8a5a00'>gated: needs a token (Token…)</span>")
        text = " · ".join(parts)
        if entry is not None:
            text += f"<br>{escape(entry.name)}: {escape(entry.description)}"
        self.title.setText(text)

    def _fill(self) -> None:
        from runtime.models.gguf_info import format_size

        self.files.clear()
        self.buttons = {}
        for choice in self.choices:
            item = self._choice_item(choice)
            self.files.addTopLevelItem(item)
            if len(choice.files) > 1:
                for f in choice.files:
                    item.addChild(QTreeWidgetItem([f.path, "", format_size(f.size)]))
            button = QPushButton("Download")
            button.setEnabled(choice.downloadable)
            if not choice.downloadable:
                button.setToolTip(choice.reason)
            button.clicked.connect(lambda _c=False, choice=choice: self.download(choice))
            self.files.setItemWidget(item, COLUMNS.index(""), button)
            self.buttons[choice.name] = button
        others = self._other_files()
        if others:
            group = QTreeWidgetItem([f"Other files ({len(others)})", "", format_size(sum(f.size for f in others))])
            for f in others:
                group.addChild(QTreeWidgetItem([f.path, "", format_size(f.size)]))
            self.files.addTopLevelItem(group)
        if not self.choices:
            self.status.setText("This repo has no GGUF file and no checkpoint to download.")
        best = next((i for i in range(self.files.topLevelItemCount())
                     if self.choices and i < len(self.choices) and self.choices[i].recommended), None)
        self.files.setCurrentItem(self.files.topLevelItem(best if best is not None else 0))

    def _choice_item(self, choice) -> QTreeWidgetItem:
        from runtime.models.gguf_info import format_size

        fit = choice.fit
        kind = choice.quant or choice.dtype or ("checkpoint" if choice.kind == "checkpoint" else "?")
        if choice.kind == "checkpoint":
            kind = f"checkpoint {choice.dtype or ''}".strip()
        on_disk = self._local_info(choice)
        if on_disk is not None and on_disk.file_type:
            kind = on_disk.file_type  # once downloaded, the file's own header says what it is
        label = choice.name if len(choice.files) == 1 else f"{choice.label}: {choice.name} ({len(choice.files)} files)"
        item = QTreeWidgetItem([("★ " if choice.recommended else "") + label, kind, format_size(choice.size_bytes),
                                fit_label(fit.status if fit else None),
                                format_size(fit.needed_bytes) if fit else "", ""])
        reason = "\n".join(filter(None, [choice.reason, choice.note, choice.unusable]))
        item.setData(0, REASON_ROLE, "\n".join(filter(None, [f"{choice.name}: {reason}" if reason else choice.name,
                                                            fit.tooltip if fit is not None else ""])))
        item.setToolTip(0, "\n".join([*(f.path for f in choice.files), reason]))
        if on_disk is not None:
            item.setToolTip(COLUMNS.index("Type"), f"{on_disk.file_type}: read from the downloaded file's header")
        if fit is not None:
            col = COLUMNS.index("Fit")
            item.setToolTip(col, fit.tooltip if hasattr(fit, "tooltip") else fit.message)
            item.setToolTip(COLUMNS.index("Needs"), item.toolTip(col))
            colours = fit_colours(fit.status)
            if colours:
                item.setForeground(col, QBrush(colours[0]))
                item.setBackground(col, QBrush(colours[1]))
        if choice.recommended:
            font = QFont()
            font.setBold(True)
            for col in range(len(COLUMNS)):
                item.setFont(col, font)
                if col != COLUMNS.index("Fit"):
                    item.setBackground(col, QBrush(QColor(RECOMMENDED_BACKGROUND)))
        return item

    def _local_info(self, choice):
        """The GGUF header of this choice's file when it is in the library already (else None)."""
        if choice.kind != "gguf" or not choice.files:
            return None
        first = choice.files[0].path.rsplit("/", 1)[-1]
        for row in self.local_rows:
            entry = row.entry
            if entry.repo_id == self.repo_id and entry.path.name == first and entry.info is not None:
                return entry.info
        return None

    def _on_current_file(self, item, _previous=None) -> None:
        self.detail.setText(item.data(0, REASON_ROLE) or "" if item is not None else "")

    def reason_of(self, name: str) -> str:
        """What the list says about the choice ``name`` when it is selected (for tests)."""
        item = self.row_of(name)
        return item.data(0, REASON_ROLE) or "" if item is not None else ""

    def _other_files(self) -> list:
        if self.listing is None:
            return []
        used = {f.path for c in self.choices for f in c.files}
        return [f for f in self.listing.files if f.path not in used]

    # -- downloading --------------------------------------------------------------------------------

    def download(self, choice) -> bool:
        """Ask for ``choice`` to be downloaded into the chosen place. False when nothing is asked."""
        if self.listing is None or not choice.downloadable:
            return False
        dest = self.destination()
        if dest == "":
            return False
        self.sig_download.emit(self.listing, choice, dest)
        return True

    def destination(self) -> str | None:
        """None (Hugging Face cache), the models folder, a folder the person picks, or "" (cancelled)."""
        from runtime import paths

        key = self.dest.currentData()
        if key == "models":
            return str(paths.models_dir())
        if key == "other":
            return QFileDialog.getExistingDirectory(self, "Save the model into") or ""
        return None

    def choice(self, name: str):
        """The shown choice whose (first) file is ``name``, or None."""
        return next((c for c in self.choices if c.name == name), None)

    def row_of(self, name: str) -> QTreeWidgetItem | None:
        for i in range(self.files.topLevelItemCount()):
            item = self.files.topLevelItem(i)
            if item.toolTip(0).split("\n")[0] == name:
                return item
        return None

    def shutdown(self) -> None:
        self._debounce.stop()
        for worker in list(self._workers):
            worker.wait()
