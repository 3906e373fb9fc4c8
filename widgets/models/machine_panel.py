"""Help > This machine…: the processor, memory and graphics in plain words, what new loads use, and
what to do when a GPU is there that this llama.cpp build cannot use (the rebuild command, with Copy).

The facts are gathered on a worker (``collect_machine_facts``): asking llama.cpp for its GPUs starts a
short-lived engine child, and nvidia-smi may take a moment; the UI thread only shows the result.
"""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QApplication, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QVBoxLayout, QWidget)

from widgets.workers import Worker, error_text


def collect_machine_facts():
    """This machine's facts, with the GPUs llama.cpp lists from its engine child (blocking: run it
    on a worker)."""
    from runtime.engine.local import list_gpus
    from runtime.models.this_machine import gather_facts

    return gather_facts(list_gpus())


class MachinePanel(QWidget):
    """describe() lines, the GPU notice with its command and a Copy button, and the load defaults."""

    sig_facts = Signal(object)       # MachineFacts, once gathered

    def __init__(self, parent=None, *, gather: Callable[[], object] = collect_machine_facts):
        super().__init__(parent)
        self._gather = gather
        self.worker: Worker | None = None
        self.facts = None
        self.status = QLabel("Looking at this computer…")
        self.status.setWordWrap(True)
        self.form = QFormLayout()
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice.setStyleSheet("color: #8a4b00;")
        self.command = QLineEdit()
        self.command.setReadOnly(True)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the command, to paste it into a terminal")
        self.copy_button.clicked.connect(self.copy_command)
        command_row = QHBoxLayout()
        command_row.addWidget(self.command, 1)
        command_row.addWidget(self.copy_button)
        self.command_box = QWidget()
        self.command_box.setLayout(command_row)
        command_row.setContentsMargins(0, 0, 0, 0)
        self.defaults = QLabel()
        self.defaults.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addLayout(self.form)
        layout.addWidget(self.notice)
        layout.addWidget(self.command_box)
        layout.addWidget(self.defaults)
        layout.addStretch(1)
        self._show_notice(None)

    def refresh(self) -> Worker:
        """Gather the facts again, off the UI thread."""
        if self.worker is not None and self.worker.running:
            return self.worker
        self.status.setText("Looking at this computer…")
        self.status.show()
        gather = self._gather
        self.worker = Worker(lambda job: gather(), name="machine facts")
        self.worker.sig_done.connect(self.show_facts)
        self.worker.sig_failed.connect(self._on_failed)
        return self.worker.start()

    def show_facts(self, facts) -> None:
        from runtime.models.this_machine import describe, recommended_threads, unusable_gpu_notice

        self.facts = facts
        self.status.hide()
        while self.form.rowCount():
            self.form.removeRow(0)
        for label, text in describe(facts):
            value = QLabel(text)
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.form.addRow(f"{label}:", value)
        self._show_notice(unusable_gpu_notice(facts))
        threads, why = recommended_threads(facts)
        if facts.gpus:
            gpu = ("GPU layers on Auto: every layer on the GPU when the model fits in its free memory, "
                   "as many as fit otherwise, the rest on the processor.")
        else:
            gpu = "GPU layers: none (the processor runs the whole model)."
        self.defaults.setText(f"New models load with {threads} thread{'s' if threads != 1 else ''} "
                              f"({why}). {gpu}")
        self.sig_facts.emit(facts)

    def _show_notice(self, notice: str | None) -> None:
        from runtime.models.this_machine import notice_command

        command = notice_command(notice)
        self.notice.setText(notice[: -len(command)].rstrip(": ") + ":" if command else (notice or ""))
        self.notice.setVisible(bool(notice))
        self.command.setText(command)
        self.command_box.setVisible(bool(command))

    def copy_command(self) -> None:
        QApplication.clipboard().setText(self.command.text())

    def _on_failed(self, error) -> None:
        self.status.setText(f"Could not look at this computer: {error_text(error)}")
        self.status.show()


class MachineDialog(QDialog):
    """The panel in a window of its own (Help > This machine…)."""

    def __init__(self, parent=None, *, gather: Callable[[], object] = collect_machine_facts):
        super().__init__(parent)
        self.setWindowTitle("This machine")
        self.panel = MachinePanel(self, gather=gather)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.panel)
        layout.addWidget(buttons)
        self.resize(560, 360)


def show_machine_dialog(parent, *, gather: Callable[[], object] | None = None) -> MachineDialog:
    """Open (or raise) the This machine window of ``parent`` and gather the facts anew."""
    dialog = getattr(parent, "_machine_dialog", None)
    if dialog is None:
        dialog = MachineDialog(parent, gather=gather or collect_machine_facts)
        parent._machine_dialog = dialog
    dialog.panel.refresh()
    dialog.show()
    dialog.raise_()
    return dialog
