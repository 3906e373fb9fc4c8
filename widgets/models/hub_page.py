"""The "Find on Hugging Face" page: search and catalog on the left, the chosen repo on the right."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from widgets.models.repo_view import RepoView
from widgets.models.search_panel import SearchPanel


class HubPage(QWidget):
    """SearchPanel | RepoView, a Token… button, and the offline state of both."""

    sig_download = Signal(object, object, object)   # RepoListing, ModelChoice, dest folder or None

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.search = SearchPanel()
        self.repo = RepoView()
        self.token_button = QPushButton("Token…")
        self.token_button.setToolTip("An access token for gated and private models, kept in the OS keyring.")
        self.token_button.clicked.connect(self.open_token_dialog)
        heading = QHBoxLayout()
        title = QLabel("<b>Find a model</b> · the ★ models are a good start")
        title.setWordWrap(True)
        heading.addWidget(title, 1)
        heading.addWidget(self.token_button)
        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(heading)
        column.addWidget(self.search, 1)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.repo)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([540, 720])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)
        self.search.sig_repo_chosen.connect(lambda summary: self.repo.open_repo(summary.repo_id, summary))
        self.repo.sig_download.connect(self.sig_download)
        self.token_dialog = None

    def set_offline(self, offline: bool) -> None:
        self.search.set_offline(offline)

    def set_local_files(self, rows: list) -> None:
        """What is on disk already, so the offline repo view can name a repo's cached files."""
        self.repo.local_rows = list(rows)

    def open_token_dialog(self):
        from widgets.models.token_dialog import TokenDialog

        if self.token_dialog is None:
            self.token_dialog = TokenDialog(self)
        self.token_dialog.refresh()
        self.token_dialog.show()
        self.token_dialog.raise_()
        return self.token_dialog

    def shutdown(self) -> None:
        self.search.shutdown()
        self.repo.shutdown()
        if self.token_dialog is not None:
            self.token_dialog.shutdown()
