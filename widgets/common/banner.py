"""A message strip shown above the transcript: an error, a warning or a note, with optional actions."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton

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
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(8, 6, 6, 6)
        self._layout.addWidget(self.label, 1)
        self._layout.addWidget(self.action_button)
        self._layout.addWidget(close)
        self._more: list[QPushButton] = []   # buttons of the further actions
        self.kind = ""
        self.action = ""
        self.hide()

    def show_message(self, text: str, kind: str = "error", action: str = "", action_text: str = "",
                     more_actions: tuple[tuple[str, str], ...] = ()) -> None:
        """Show ``text``; with ``action`` a button labelled ``action_text`` emits sig_action(action).

        ``more_actions``: further (key, label) buttons after it.
        """
        self.kind, self.action = kind, action
        self.setStyleSheet(f"#banner {{ {_STYLES.get(kind, _STYLES['info'])} border-radius: 4px; }}")
        self.label.setText(text)
        self.action_button.setText(action_text or action)
        self.action_button.setVisible(bool(action))
        self._set_more(more_actions)
        self.show()

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
        self.hide()

    def actions(self) -> list[str]:
        """The keys of the shown action buttons, in order."""
        keys = [self.action] if self.action else []
        return keys + [b.property("action") for b in self._more]
