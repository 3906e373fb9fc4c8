"""The Models tab: the library on this computer, finding models on Hugging Face, and the downloads.

It composes small widgets and one controller per job: ``LibraryView`` + ``LibraryActions`` (the
local files), ``HubPage`` (search, catalog and a repo's files) and ``DownloadsPanel`` on a
``DownloadController`` (the queue, kept in the store and resumed on start). The tab itself only
routes: a finished download refreshes the library, "Chat with it" and friends leave as
``sig_open_requested(action, path)`` for the main window to act on.

Test hooks: ``refresh()``, ``add_files(paths)``, ``library`` (its ``model`` and ``cell``),
``actions`` (replace ``ask_add_mode`` / ``confirm_delete`` / ``open_folder``), ``hub``,
``downloads`` (the controller) and ``downloads_panel``.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QSplitter, QTabWidget, QVBoxLayout, QWidget

from widgets.common.banner import Banner
from widgets.models.library_actions import LibraryActions
from widgets.models.library_model import scan_library_rows
from widgets.models.library_view import LibraryView
from widgets.workers import Worker, error_text


class ModelsTab(QWidget):
    """Library + Hugging Face + downloads. Emits the scanned rows for other tabs."""

    sig_library_loaded = Signal(list)      # list[LibraryRow]
    sig_open_requested = Signal(str, str)  # "chat" | "compress" | "benchmark", model path

    def __init__(self, store=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store   # ConversationStore (the measured memory of loaded models), or None
        self.banner = Banner()
        self.library = LibraryView()
        self.actions = LibraryActions(self)
        self.pages = QTabWidget()
        self.pages.addTab(self.library, "On this computer")
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.pages)
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.splitter, 1)
        self._worker: Worker | None = None
        self._rescan = False
        self._select_after_scan = None
        self._wire()

    @property
    def model(self):
        """The library's tree model (kept under this name for callers of the table it replaced)."""
        return self.library.model

    @property
    def status(self):
        return self.library.status

    @property
    def notice(self):
        return self.library.notice

    def _wire(self) -> None:
        lib, actions = self.library, self.actions
        lib.sig_refresh_requested.connect(self.refresh)
        lib.sig_add_requested.connect(self.choose_files)
        lib.sig_show_folder_requested.connect(actions.show_models_folder)
        lib.sig_file_action.connect(self._on_file_action)
        lib.busy.sig_cancel.connect(actions.cancel)
        actions.sig_busy.connect(lib.busy.start)
        actions.sig_progress.connect(lib.busy.set_progress)
        actions.sig_idle.connect(lib.busy.finish)
        actions.sig_message.connect(self.show_message)
        actions.sig_changed.connect(self._on_library_changed)

    # -- library ----------------------------------------------------------------------------------

    @property
    def scanning(self) -> bool:
        return self._worker is not None and self._worker.running

    def refresh(self) -> None:
        """Rescan the library on a worker thread (once more after the running scan, if one runs)."""
        if self.scanning:
            self._rescan = True
            return
        self.library.set_scanning(True)
        measured = self.store.model_memory if self.store is not None else None
        self._worker = Worker(lambda job: scan_library_rows(measured), name="library-scan")
        self._worker.sig_done.connect(self._on_rows)
        self._worker.sig_failed.connect(lambda error: self.status.setText(f"Scan failed: {error_text(error)}"))
        self._worker.sig_finished.connect(self._on_scan_finished)
        self._worker.start()

    def _on_rows(self, result: tuple) -> None:
        rows, problems = result
        self.library.set_rows(rows, problems)
        if self._select_after_scan is not None:
            self.library.select_path(self._select_after_scan)
            self._select_after_scan = None
        self.sig_library_loaded.emit(rows)

    def _on_scan_finished(self) -> None:
        self.library.set_scanning(False)
        if self._rescan:
            self._rescan = False
            self.refresh()

    def _on_library_changed(self, path) -> None:
        self._select_after_scan = path
        self.refresh()

    def choose_files(self) -> None:
        """'Add model…': pick .gguf files in a dialog, then add them."""
        from PySide6.QtWidgets import QFileDialog

        files, _filter = QFileDialog.getOpenFileNames(self, "Add a model", "", "GGUF models (*.gguf);;All files (*)")
        if files:
            self.add_files(files)

    def add_files(self, files: list[str]) -> bool:
        """Add model files (from the dialog or a drop): checked, then by reference or copied."""
        self.pages.setCurrentWidget(self.library)
        return self.actions.add_files(files)

    def _on_file_action(self, action: str, row) -> None:
        if action in ("chat", "compress", "benchmark"):
            self.sig_open_requested.emit(action, str(row.entry.path))
        elif action == "show":
            self.actions.show_in_folder(row)
        elif action == "remove":
            self.actions.remove(row)

    def show_message(self, text: str, kind: str = "info") -> None:
        self.banner.show_message(text, kind)

    # -- shut-down --------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Cancel a copy, join every thread of the tab."""
        self.actions.shutdown()
        if self._worker is not None:
            self._worker.wait()
