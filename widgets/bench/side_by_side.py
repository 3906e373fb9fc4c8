"""Side by side: one prompt, two to four variants, their answers in columns with tokens/s and TTFT.

The variants answer one after another (one model in memory at a time): one worker per column runs
``runtime.bench.side_by_side.answer_with``; when it ends the next starts. Stop cancels the running
one and leaves the rest unasked. A variant that fails (damaged, too big for memory) says why in its
column and the next one still answers.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QTextBrowser, QVBoxLayout,
                               QWidget)

from widgets.workers import Worker, error_text

MAX_COLUMNS = 4
DEFAULT_PROMPT = "Explain in three sentences why the sky is blue."


class AnswerColumn(QWidget):
    """One variant: its name, its answer as it streams, and its figures."""

    def __init__(self, path: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.path = path
        self.title = QLabel(f"<b>{Path(path).name}</b>")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.answer = QTextBrowser()
        self.answer.setOpenLinks(False)
        self.figures = QLabel("Waiting…")
        self.figures.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.answer, 1)
        layout.addWidget(self.figures)

    def append(self, text: str) -> None:
        cursor = self.answer.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        cursor.insertText(text)
        self.answer.setTextCursor(cursor)

    @property
    def text(self) -> str:
        return self.answer.toPlainText()


class SideBySidePanel(QWidget):
    """Prompt box, Answer / Stop, and one column per chosen variant (``set_variants``)."""

    sig_all_done = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.prompt = QPlainTextEdit(DEFAULT_PROMPT)
        self.prompt.setMaximumHeight(70)
        self.prompt.setToolTip("Every variant gets this prompt with the same settings (greedy: each gives its "
                               "most likely answer), so the differences come from the compression.")
        self.answer_button = QPushButton("Answer side by side")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.status = QLabel("Pick two to four variants in the table above.")
        self.status.setWordWrap(True)
        self.answer_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        top = QHBoxLayout()
        top.addWidget(self.prompt, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.answer_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        top.addLayout(buttons)
        self.columns_box = QHBoxLayout()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.status)
        layout.addLayout(self.columns_box, 1)
        self.columns: list[AnswerColumn] = []
        self.paths: list[str] = []
        self._queue: list[AnswerColumn] = []
        self._worker: Worker | None = None
        self._stopped = False
        self._update_buttons()

    # -- choosing -------------------------------------------------------------------------------

    def set_variants(self, paths: list[str]) -> None:
        """The variants to compare (the first MAX_COLUMNS); ignored while answering."""
        if self.running:
            return
        self.paths = [str(p) for p in paths][:MAX_COLUMNS]
        if len(paths) > MAX_COLUMNS:
            self.status.setText(f"Only the first {MAX_COLUMNS} chosen variants answer side by side.")
        elif len(self.paths) < 2:
            self.status.setText("Pick two to four variants in the table above.")
        else:
            self.status.setText(f"{len(self.paths)} variants will answer, one after another.")
        self._update_buttons()

    # -- running --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.running

    def start(self) -> bool:
        """Ask every chosen variant the prompt; False when there is nothing to ask or it is running."""
        prompt = self.prompt.toPlainText().strip()
        if self.running or len(self.paths) < 2 or not prompt:
            if not prompt:
                self.status.setText("Write a prompt first.")
            return False
        for column in self.columns:
            self.columns_box.removeWidget(column)
            column.deleteLater()
        self.columns = [AnswerColumn(p) for p in self.paths]
        for column in self.columns:
            self.columns_box.addWidget(column, 1)
        self._queue = list(self.columns)
        self._stopped = False
        self._prompt = prompt
        self._next()
        return True

    def stop(self) -> None:
        """Cancel the answer in progress; the variants not yet asked stay unasked."""
        self._stopped = True
        for column in self._queue:
            column.figures.setText("Not asked (stopped).")
        self._queue = []
        if self._worker is not None:
            self._worker.cancel()

    def _next(self) -> None:
        if not self._queue:
            self._worker = None
            self.status.setText("Stopped." if self._stopped else "All variants have answered.")
            self._update_buttons()
            self.sig_all_done.emit()
            return
        from runtime.bench.side_by_side import answer_with

        column = self._queue.pop(0)
        prompt = self._prompt
        column.figures.setText("Loading…")
        worker = Worker(lambda job: answer_with(column.path, prompt, on_text=job.text, progress=job.progress,
                                                cancel=job.cancel), name="side-by-side")
        worker.sig_text.connect(column.append)
        worker.sig_progress.connect(lambda _d, _t, message: self.status.setText(message))
        worker.sig_done.connect(lambda answer: self._on_answer(column, answer))
        worker.sig_failed.connect(lambda error: column.figures.setText(f"Could not answer: {error_text(error)}"))
        worker.sig_cancelled.connect(lambda: column.figures.setText("Stopped while loading."))
        worker.sig_finished.connect(self._next)
        self._worker = worker
        worker.start()
        self._update_buttons()

    def _on_answer(self, column: AnswerColumn, answer) -> None:
        if answer.text and not column.text:
            column.append(answer.text)   # nothing streamed (a one-piece answer): show it whole
        s = answer.stats
        words = [f"{s.gen_tokens_per_s:.1f} tokens/s", f"first token after {s.ttft_s:.2f} s",
                 f"{s.completion_tokens} tokens", f"loaded in {answer.load_s:.1f} s"]
        if s.finish_reason == "cancelled":
            words.append("stopped")
        elif s.finish_reason == "length":
            words.append("hit the length limit")
        column.figures.setText(" · ".join(words))

    def _update_buttons(self) -> None:
        self.answer_button.setEnabled(not self.running and len(self.paths) >= 2)
        self.stop_button.setEnabled(self.running)

    def shutdown(self) -> None:
        """Stop and join the running answer (the window is closing)."""
        self.stop()
        if self._worker is not None:
            self._worker.wait()
