"""The Chat tab's side panels (conversation list, model and settings) fold away so the conversation
keeps the room: below ``NARROW_PX`` of width both fold, and a toggle opens one at a time; wider, each
shows unless the person closed it. Two small checkable buttons above the transcript ("Chats",
"Model & settings") and the View menu open and close them.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QScrollArea, QSplitter, QToolButton, QWidget

NARROW_PX = 1000  # below this the conversation would be squeezed by two side panels


class FoldingPanels(QObject):
    """Shows and hides the named splitter panes; ``sig_changed`` after any change."""

    sig_changed = Signal()

    def __init__(self, panes: dict[str, int], labels: dict[str, str], parent=None):
        """``panes``: name -> index in the splitter; ``labels``: name -> toggle button text."""
        super().__init__(parent)
        self.splitter: QSplitter | None = None
        self._panes = panes
        self._wanted = {name: True for name in panes}  # the person's choice for a wide window
        self._narrow = False
        self._wide_sizes: list[int] = []  # the splitter's sizes before it folded, given back when it widens
        self.buttons: dict[str, QToolButton] = {}
        for name, label in labels.items():
            button = QToolButton()
            button.setText(label)
            button.setCheckable(True)
            button.setChecked(True)
            button.setAutoRaise(True)
            button.setToolTip(f"Show or hide the {label.lower()} panel")
            button.toggled.connect(lambda shown, name=name: self.set_shown(name, shown))
            self.buttons[name] = button

    def attach(self, splitter: QSplitter) -> None:
        """Manage these panes of ``splitter`` (call once it holds them)."""
        self.splitter = splitter
        splitter.installEventFilter(self)
        splitter.splitterMoved.connect(self._remember_sizes)

    def button_row(self) -> QHBoxLayout:
        """The toggle buttons as a row: left panel's on the left, right panel's on the right."""
        row = QHBoxLayout()
        names = sorted(self._panes, key=self._panes.get)
        row.addWidget(self.buttons[names[0]])
        row.addStretch(1)
        for name in names[1:]:
            row.addWidget(self.buttons[name])
        return row

    @property
    def narrow(self) -> bool:
        return self._narrow

    def shown(self, name: str) -> bool:
        return not self.splitter.widget(self._panes[name]).isHidden()

    def set_shown(self, name: str, shown: bool) -> None:
        """Open or close a panel; in a narrow window opening one closes the other."""
        if self.shown(name) == shown:
            self._sync()
            return
        if not self._narrow:
            self._wanted[name] = shown
        elif shown:
            for other in self._panes:
                if other != name:
                    self._set_visible(other, False)
        self._set_visible(name, shown)
        self._sync()

    def fit(self, width: int) -> None:
        """Fold both panels when ``width`` gets narrow, bring back the chosen ones when it widens."""
        narrow = width < NARROW_PX
        if narrow == self._narrow:
            return
        self._narrow = narrow
        for name in self._panes:
            self._set_visible(name, False if narrow else self._wanted[name])
        if not narrow and self._wide_sizes:
            self.splitter.setSizes(self._wide_sizes)
        self._sync()

    def sizes(self) -> list[int]:
        """The splitter's sizes as a wide window shows them (what to save and restore)."""
        return list(self._wide_sizes) if self._wide_sizes else self.splitter.sizes()

    def set_sizes(self, sizes: list[int]) -> None:
        """Restore saved sizes: at once in a wide window, when it widens in a narrow one."""
        self._wide_sizes = list(sizes)
        if not self._narrow:
            self.splitter.setSizes(sizes)

    def _remember_sizes(self, *_args) -> None:
        if not self._narrow:  # the person dragged a divider in a wide window
            self._wide_sizes = self.splitter.sizes()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt API
        if watched is self.splitter and event.type() == QEvent.Type.Resize:
            self.fit(event.size().width())
        return False

    def _set_visible(self, name: str, visible: bool) -> None:
        self.splitter.widget(self._panes[name]).setVisible(visible)

    def _sync(self) -> None:
        for name, button in self.buttons.items():
            button.blockSignals(True)
            button.setChecked(self.shown(name))
            button.blockSignals(False)
        self.sig_changed.emit()


class VerticalScroll(QScrollArea):
    """Scrolls ``content`` up and down only; always as wide as the content needs, so nothing is cut
    at the right edge (a long model name widens the panel instead)."""

    def __init__(self, content: QWidget, parent=None):
        super().__init__(parent)
        self.setWidget(content)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        content.installEventFilter(self)
        self._fit_width()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt API
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self._fit_width()
        return False

    def _fit_width(self) -> None:
        bar = self.verticalScrollBar().sizeHint().width()
        self.setMinimumWidth(self.widget().minimumSizeHint().width() + bar)
