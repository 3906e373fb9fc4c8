"""Per-conversation settings: the system prompt, the sampling panel, and what to do when the chat
outgrows the context (drop the oldest messages, or stop and say so).

"Save as default" keeps the shown settings as what every new chat starts from
(``runtime.chat.defaults``); "Reset" goes back to the built-in ones. A new chat never copies the
last chat's settings.

Edits are coalesced: ``sig_changed`` fires once, ``SAVE_DELAY_MS`` after the last keystroke or spin,
so typing a system prompt does not write to the database on every key. ``flush()`` fires it at once
(the chat tab calls it before sending and before switching conversations).
"""
from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QGroupBox, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton,
                               QVBoxLayout, QWidget)

from runtime.chat.defaults import ChatDefaults, load_defaults, reset_defaults, save_defaults
from runtime.errors import WorkbenchError

from runtime.engine.types import SamplingParams
from widgets.chat.sampling_panel import SamplingPanel

SAVE_DELAY_MS = 500
CONTEXT_POLICIES = (("drop_oldest", "Drop oldest messages"), ("stop", "Stop and tell me"))


class ConversationSettings(QWidget):
    """System prompt + sampling parameters + context policy for the open conversation."""

    sig_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText("Optional. For example: You are a concise assistant.")
        self.system_prompt.setMaximumHeight(110)
        self.sampling = SamplingPanel()
        box = QGroupBox("Sampling")
        inner = QVBoxLayout(box)
        inner.setContentsMargins(4, 4, 4, 4)
        inner.addWidget(self.sampling)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("System prompt"))
        layout.addWidget(self.system_prompt)
        layout.addWidget(box)
        self.context_policy_box = QComboBox()
        for value, label in CONTEXT_POLICIES:
            self.context_policy_box.addItem(label, value)
        outgrow = QLabel("When the chat outgrows the context:")
        outgrow.setWordWrap(True)
        layout.addWidget(outgrow)
        layout.addWidget(self.context_policy_box)
        self.save_default_button = QPushButton("Save as default")
        self.save_default_button.setToolTip("New chats start with this system prompt, these sampling settings "
                                            "and this context choice.")
        self.save_default_button.clicked.connect(self.save_as_default)
        self.reset_default_button = QPushButton("Reset defaults")
        self.reset_default_button.setToolTip("New chats start with Model Workbench's built-in settings again.")
        self.reset_default_button.clicked.connect(self.reset_defaults)
        self.default_note = QLabel()
        self.default_note.setWordWrap(True)
        self.default_note.setStyleSheet("color: #616161;")
        defaults_row = QHBoxLayout()
        defaults_row.addWidget(self.save_default_button)
        defaults_row.addWidget(self.reset_default_button)
        defaults_row.addStretch(1)
        layout.addLayout(defaults_row)
        layout.addWidget(self.default_note)
        layout.addStretch(1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SAVE_DELAY_MS)
        self._timer.timeout.connect(self.sig_changed)
        self._quiet = False
        self.system_prompt.textChanged.connect(self._schedule)
        self.sampling.sig_changed.connect(self._schedule)
        self.context_policy_box.currentIndexChanged.connect(self._schedule)

    def values(self) -> tuple[str, SamplingParams]:
        return self.system_prompt.toPlainText(), self.sampling.params()

    def context_policy(self) -> str:
        """'drop_oldest' or 'stop' (see runtime.chat.context)."""
        return self.context_policy_box.currentData()

    def set_values(self, system_prompt: str, params: SamplingParams, context_policy: str | None = None) -> None:
        """Show a conversation's settings without reporting a change."""
        self._timer.stop()
        self._quiet = True
        try:
            self.system_prompt.setPlainText(system_prompt)
            self.sampling.set_params(params)
            if context_policy is not None:
                index = self.context_policy_box.findData(context_policy)
                self.context_policy_box.setCurrentIndex(max(index, 0))
        finally:
            self._quiet = False

    def defaults(self) -> ChatDefaults:
        """What a new chat starts from (the saved defaults, else the built-in ones)."""
        return load_defaults()

    def save_as_default(self) -> bool:
        """Keep the shown settings for new chats; the note under the buttons says how it went."""
        system_prompt, sampling = self.values()
        try:
            save_defaults(ChatDefaults(system_prompt, sampling, self.context_policy()))
        except (WorkbenchError, ValueError) as exc:
            self.default_note.setText(f"Not saved: {exc}")
            return False
        self.default_note.setText("Saved: new chats start with these settings.")
        return True

    def reset_defaults(self) -> None:
        reset_defaults()
        self.default_note.setText("New chats start with the built-in settings.")

    def flush(self) -> None:
        """Emit a pending change now."""
        if self._timer.isActive():
            self._timer.stop()
            self.sig_changed.emit()

    def _schedule(self) -> None:
        if not self._quiet:
            self._timer.start()
