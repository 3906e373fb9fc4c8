"""The compress job list: one row per job with progress, elapsed time, time left, Cancel and its log.

It only shows a ``CompressJobs`` controller's jobs and calls its methods. A running row shows the
percent, what the runtime says it is doing, the time elapsed and the time left
(``runtime.jobs.RateMeter``); a finished one shows the real size next to the expected one and
offers Chat and Benchmark (``sig_open_requested(action, path)``). "Log" unfolds the job's log.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton,
                               QVBoxLayout, QWidget)

from runtime.jobs import RateMeter, format_duration
from runtime.models.gguf_info import format_size
from widgets.common.row_list import RowList
from widgets.workers import error_text

STATUS_TEXT = {"queued": "Waiting", "running": "Running", "done": "Done", "failed": "Failed",
               "cancelled": "Cancelled"}
LOG_HEIGHT = 140


def size_comparison(real: int, expected: int) -> str:
    """'138.2 MiB (expected 137.9 MiB, +0.2%)', or the real size alone when nothing was expected."""
    if not expected:
        return format_size(real)
    return f"{format_size(real)} (expected {format_size(expected)}, {(real - expected) / expected:+.1%})"


def _seconds(seconds: float) -> str:
    """'0.4 s' under ten seconds (quick jobs are common), else runtime.jobs.format_duration's words."""
    return f"{seconds:.1f} s" if seconds < 9.95 else format_duration(seconds)


class JobItem(QFrame):
    """One job: title, progress bar, figures, buttons, and the log (folded)."""

    def __init__(self, job, controller, panel: "JobsPanel"):
        super().__init__()
        self.setObjectName("compressJob")
        self.setStyleSheet("#compressJob { border-bottom: 1px solid #dddddd; }")
        self.job_id = job.id
        self.controller, self.panel = controller, panel
        self.meter: RateMeter | None = None
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setMaximumHeight(16)
        self.figures = QLabel()
        self.figures.setTextFormat(Qt.TextFormat.PlainText)
        self.figures.setWordWrap(True)
        self.figures.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cancel_button = QPushButton("Cancel")
        self.log_button = QPushButton("Log")
        self.log_button.setCheckable(True)
        self.chat_button = QPushButton("Chat")
        self.bench_button = QPushButton("Benchmark")
        self.remove_button = QPushButton("Remove from list")
        self.cancel_button.clicked.connect(lambda: controller.cancel(self.job_id))
        self.log_button.toggled.connect(self._on_log_toggled)
        self.chat_button.clicked.connect(lambda: self._open("chat"))
        self.bench_button.clicked.connect(lambda: self._open("benchmark"))
        self.remove_button.clicked.connect(lambda: controller.remove(self.job_id))
        self.log_view: QPlainTextEdit | None = None   # made on the first "Log" click (rows stay cheap)

        text = QVBoxLayout()
        text.setSpacing(2)
        text.addWidget(self.title)
        text.addWidget(self.bar)
        text.addWidget(self.figures)
        # The buttons sit in a box as wide as the widest set a row can show, so every bar lines up.
        buttons = QWidget()
        button_row = QHBoxLayout(buttons)
        button_row.setContentsMargins(0, 0, 0, 0)
        button_row.addStretch(1)
        for button in (self.cancel_button, self.chat_button, self.bench_button, self.log_button,
                       self.remove_button):
            button_row.addWidget(button, 0, Qt.AlignmentFlag.AlignTop)
        widest = (self.chat_button, self.bench_button, self.log_button, self.remove_button)
        buttons.setFixedWidth(sum(b.sizeHint().width() for b in widest) + button_row.spacing() * len(widest))
        row = QHBoxLayout()
        row.addLayout(text, 1)
        row.addWidget(buttons, 0, Qt.AlignmentFlag.AlignTop)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(6, 4, 6, 4)
        self._layout.addLayout(row)
        self.update_job(job)

    @property
    def job(self):
        return self.controller.jobs.get(self.job_id) or self._job

    def update_job(self, job) -> None:
        self._job = job
        self.title.setText(f"{job.id}. {job.title}")
        self.title.setToolTip(f"From {job.source or '(the conversion before it)'}\nInto {job.out_path}")
        status = job.status
        if status == "running" and self.meter is None:
            self.meter = RateMeter(job.total)
        self.cancel_button.setVisible(status in ("queued", "running"))
        model = job.kind != "imatrix"   # an importance matrix is no model to chat with
        self.chat_button.setVisible(status == "done" and model)
        self.bench_button.setVisible(status == "done" and model)
        self.remove_button.setVisible(status in ("done", "failed", "cancelled"))
        self.refresh()

    def set_progress(self, done: float, total: float) -> None:
        if self.meter is None:
            self.meter = RateMeter(total)
        self.meter.update(done, total or None)
        self.refresh()

    def append_log(self, text: str) -> None:
        if self.log_view is not None and self.log_view.isVisible():
            self.log_view.appendPlainText(text)

    def refresh(self) -> None:
        """Redraw the bar and the figures from the job (also every second while it runs)."""
        job = self._job
        status = job.status
        fraction = min(max(job.done / job.total, 0.0), 1.0) if job.total else 0.0
        if status == "done":
            fraction = 1.0
        self.bar.setValue(int(1000 * fraction))
        self.bar.setFormat(f"{fraction:.0%}")
        label = STATUS_TEXT.get(status, status)
        if status == "queued":
            waits = f" for job {job.after} (the conversion it reads)" if job.after is not None else ""
            expected = f" · expected ≈ {format_size(job.expected_bytes)}" if job.expected_bytes else ""
            text = f"{label}{waits}{expected}"
        elif status == "running":
            parts = [f"{fraction:.0%}", job.message or "working…", f"{_seconds(job.elapsed_s)} elapsed"]
            eta = self.meter.eta_s if self.meter is not None else None
            parts.append(f"{format_duration(eta)} left" if eta is not None else "time left: measuring…")
            text = " · ".join(parts)
        elif status == "done" and job.kind == "imatrix":
            text = f"{label} in {_seconds(job.elapsed_s)} · {format_size(job.real_bytes)} · {job.result_path}"
        elif status == "done":
            where = " · added to the library by reference" if job.added_by_reference else " · in the library"
            text = (f"{label} in {_seconds(job.elapsed_s)} · "
                    f"{size_comparison(job.real_bytes, job.expected_bytes)}{where}")
        elif status == "failed":
            text = f"{label}: {error_text(job.error) if job.error is not None else 'unknown error'}"
        else:
            text = f"{label} · no partial file was left behind"
        self.figures.setText(text)
        self.figures.setStyleSheet("color: #b71c1c;" if status == "failed" else "")

    def _on_log_toggled(self, shown: bool) -> None:
        if self.log_view is None:
            self.log_view = QPlainTextEdit()
            self.log_view.setReadOnly(True)
            self.log_view.setMaximumBlockCount(2000)
            self.log_view.setFixedHeight(LOG_HEIGHT)
            self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
            self._layout.addWidget(self.log_view)
        if shown:
            self.log_view.setPlainText("\n".join(self.job.log))
        self.log_view.setVisible(shown)
        self.log_button.setText("Hide log" if shown else "Log")
        if shown:   # the newest lines, once the view has its size
            QTimer.singleShot(0, self._scroll_log_to_end)

    def _scroll_log_to_end(self) -> None:
        self.log_view.moveCursor(QTextCursor.MoveOperation.End)
        bar = self.log_view.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _open(self, action: str) -> None:
        if self._job.result_path:
            self.panel.sig_open_requested.emit(action, self._job.result_path)


class JobsPanel(RowList):
    """A titled, scrollable list of JobItems."""

    sig_open_requested = Signal(str, str)

    def __init__(self, controller, parent: QWidget | None = None):
        super().__init__("Jobs", parent)
        self.controller = controller
        self.items: dict[int, JobItem] = {}
        self._pending: list[int] = []        # jobs whose rows are not made yet
        self._clock = QTimer(self)          # elapsed time keeps counting between progress updates
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._tick)
        controller.sig_added.connect(self._on_added)
        controller.sig_changed.connect(self._on_changed)
        controller.sig_progress.connect(self._on_progress)
        controller.sig_log.connect(self._on_log)
        controller.sig_removed.connect(self._on_removed)
        for job_id in controller.ids():
            self._on_added(controller.jobs[job_id])
        self._update_summary()

    def item(self, job_id: int) -> JobItem | None:
        """The row of a job (made now if it is still waiting to be made)."""
        if job_id in self._pending:
            self._make(job_id)
        return self.items.get(job_id)

    def _on_added(self, job) -> None:
        # Rows are made one per event-loop turn: queueing many targets at once never stalls the window.
        if job.id in self.items or job.id in self._pending:
            return
        self._pending.append(job.id)
        if len(self._pending) == 1:
            QTimer.singleShot(0, self._make_next)
        self._update_summary()

    def _make_next(self) -> None:
        if self._pending:
            self._make(self._pending[0])
        if self._pending:
            QTimer.singleShot(0, self._make_next)

    def _make(self, job_id: int) -> None:
        self._pending.remove(job_id)
        job = self.controller.jobs.get(job_id)
        if job is None:
            return
        item = JobItem(job, self.controller, self)
        self.items[job_id] = item
        self.add_row(item)

    def _on_changed(self, job) -> None:
        item = self.items.get(job.id)
        if item is not None:
            item.update_job(job)
        self._update_summary()

    def _on_progress(self, job_id: int, done: float, total: float, _message: str) -> None:
        item = self.items.get(job_id)
        if item is not None:
            item.set_progress(done, total)

    def _on_log(self, job_id: int, text: str) -> None:
        item = self.items.get(job_id)
        if item is not None:
            item.append_log(text)

    def _on_removed(self, job_id: int) -> None:
        if job_id in self._pending:
            self._pending.remove(job_id)
        item = self.items.pop(job_id, None)
        if item is not None:
            self.remove_row(item)
            item.deleteLater()
        self._update_summary()

    def _tick(self) -> None:
        for item in self.items.values():
            if item.job.status == "running":
                item.refresh()

    def _update_summary(self) -> None:
        jobs = [self.controller.jobs[i] for i in self.controller.ids()]
        running = sum(1 for j in jobs if j.status == "running")
        waiting = sum(1 for j in jobs if j.status == "queued")
        if running or waiting:
            self._clock.start()
        else:
            self._clock.stop()
        if not jobs:
            self.summary.setText("Nothing queued yet. Tick the types to make and press Compress.")
        else:
            done = sum(1 for j in jobs if j.status == "done")
            self.summary.setText(f"{running} running, {waiting} waiting, {done} done"
                                 + (f", {len(jobs) - running - waiting - done} stopped"
                                    if len(jobs) - running - waiting - done else ""))
