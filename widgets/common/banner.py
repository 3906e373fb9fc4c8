"""A message strip shown above the transcript: an error, a warning or a note, with optional actions.

An error is said in a person's words; the technical facts (the error's kind, file, system message,
engine log) sit behind a "Details" button (``show_error``), one click away, selectable for a bug report.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QToolButton, QVBoxLayout

_STYLES = {
    "error": "background: #fdecea; border: 1px solid #f5c2c0; color: #611a15;",
    "warning": "background: #fff4d6; border: 1px solid #f0d58c; color: #5c4300;",
    "info": "background: #e8f1fb; border: 1px solid #b9d3f0; color: #0d3c61;",
}


class Banner(QFrame):
    """Hidden until ``show_message``; each action button emits ``sig_action`` with its key."""

    sig_action = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("banner")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action_button = QPushButton()
        self.action_button.clicked.connect(lambda: self.sig_action.emit(self.action))
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.setAutoRaise(True)
        close.clicked.connect(self.dismiss)
        self.details_button = QPushButton("Details")
        self.details_button.setCheckable(True)
        self.details_button.setToolTip("Show the technical details (for a bug report)")
        self.details_button.toggled.connect(self._show_details)
        self.details_view = QPlainTextEdit()
        self.details_view.setReadOnly(True)
        self.details_view.setMaximumHeight(120)
        self.details_view.hide()
        self._layout = QHBoxLayout()
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.addWidget(self.label, 1)
        self._layout.addWidget(self.action_button)
        self._layout.addWidget(self.details_button)
        self._layout.addWidget(close)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 6, 6, 6)
        outer.addLayout(self._layout)
        outer.addWidget(self.details_view)
        self._more: list[QPushButton] = []   # buttons of the further actions
        self.kind = ""
        self.action = ""
        self.hide()

    def show_message(self, text: str, kind: str = "error", action: str = "", action_text: str = "",
                     more_actions: tuple[tuple[str, str], ...] = (), details: str = "") -> None:
        """Show ``text``; with ``action`` a button labelled ``action_text`` emits sig_action(action).

        ``more_actions``: further (key, label) buttons after it; ``details``: the technical text the
        Details button shows (no button without it).
        """
        self.kind, self.action = kind, action
        self.setStyleSheet(f"#banner {{ {_STYLES.get(kind, _STYLES['info'])} border-radius: 4px; }}")
        self.label.setText(text)
        self.action_button.setText(action_text or action)
        self.action_button.setVisible(bool(action))
        self._set_more(more_actions)
        self.details_view.setPlainText(details)
        self.details_button.setChecked(False)
        self.details_button.setVisible(bool(details))
        self.show()

    def show_error(self, error: BaseException, before: str = "", after: str = "", kind: str = "error",
                   **actions) -> None:
        """Show a failure in words (``error_text``), with ``before``/``after`` lines around it and its
        technical details behind the Details button; ``actions`` as for ``show_message``."""
        from widgets.workers import error_details, error_text

        text = "\n".join(part for part in (before, error_text(error), after) if part)
        self.show_message(text, kind, details=error_details(error), **actions)

    def details(self) -> str:
        """The technical details of the shown message ('' when there are none)."""
        return "" if self.isHidden() or self.details_button.isHidden() else self.details_view.toPlainText()

    def _show_details(self, shown: bool) -> None:
        self.details_view.setVisible(shown)
        self.details_button.setText("Hide details" if shown else "Details")

    def _set_more(self, actions) -> None:
        for button in self._more:
            self._layout.removeWidget(button)
            button.deleteLater()
        self._more = []
        for key, label in actions:
            button = QPushButton(label)
            button.setProperty("action", key)
            button.clicked.connect(lambda _checked=False, key=key: self.sig_action.emit(key))
            self._layout.insertWidget(self._layout.count() - 1, button)  # before the close button
            self._more.append(button)

    def button(self, action: str) -> QPushButton | None:
        """The shown button of ``action``, or None."""
        if self.action and action == self.action:
            return self.action_button
        return next((b for b in self._more if b.property("action") == action), None)

    def text(self) -> str:
        """The shown message, or '' while dismissed."""
        return "" if self.isHidden() else self.label.text()

    def dismiss(self) -> None:
        self.kind = self.action = ""
        self._set_more(())
        self.details_view.clear()
        self.details_button.setChecked(False)
        self.hide()

    def actions(self) -> list[str]:
        """The keys of the shown action buttons, in order."""
        keys = [self.action] if self.action else []
        return keys + [b.property("action") for b in self._more]
