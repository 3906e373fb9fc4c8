"""The Models tab: the library on this computer, finding models on Hugging Face, and the downloads.

It composes small widgets and one controller per job: ``LibraryView`` + ``LibraryActions`` (the
local files), ``HubPage`` (search, catalog and a repo's files) and ``DownloadsPanel`` on a
``DownloadController`` (the queue, kept in the store and resumed on start). The tab itself only
routes: a finished download refreshes the library, "Chat with it" and friends leave as
``sig_open_requested(action, path)`` for the main window to act on.

Test hooks: ``refresh()``, ``add_files(paths)``, ``start_downloads()``, ``download(listing, choice, dest)``, ``library`` (its ``model`` and ``cell``),
``actions`` (replace ``ask_add_mode`` / ``confirm_delete`` / ``open_folder``), ``hub``,
``downloads`` (the controller) and ``downloads_panel``.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QSplitter, QTabWidget, QVBoxLayout, QWidget

from runtime.errors import StoreError
from widgets.common.banner import Banner
from widgets.models.downloads import DownloadController
from widgets.models.downloads_panel import DownloadsPanel
from widgets.models.hub_page import HubPage
from widgets.models.library_actions import LibraryActions
from widgets.models.library_model import scan_library_rows
from widgets.models.library_view import LibraryView
from widgets.workers import Worker, error_text

UI_BUSY_TIMEOUT_S = 0.25   # how long a write from the UI thread waits for another writer of the database
OFFLINE_TEXT = ("Offline mode is on (HF_HUB_OFFLINE): searching and downloading are off. The beginner "
                "catalog and the models already on this computer are available.")


def open_download_store(store=None):
    """The download records, in the same SQLite file as ``store`` (or the app's default file)."""
    from runtime.store.downloads import DownloadStore

    downloads = DownloadStore(store.path if store is not None else None)
    downloads.set_busy_timeout(UI_BUSY_TIMEOUT_S)   # this (UI) thread never waits long on the database
    return downloads


class ModelsTab(QWidget):
    """Library + Hugging Face + downloads. Emits the scanned rows for other tabs."""

    sig_library_loaded = Signal(list)      # list[LibraryRow]
    sig_open_requested = Signal(str, str)  # "chat" | "compress" | "benchmark", model path

    def __init__(self, store=None, download_store=None, parent: QWidget | None = None):
        super().__init__(parent)
        from runtime.hub.endpoint import offline

        self.store = store   # ConversationStore (the measured memory of loaded models), or None
        self.banner = Banner()
        self.offline_banner = Banner()
        self.library = LibraryView()
        self.actions = LibraryActions(self)
        self.hub = HubPage()
        self.pages = QTabWidget()
        self.pages.addTab(self.library, "On this computer")
        self.pages.addTab(self.hub, "Find on Hugging Face")
        self._owns_download_store = download_store is None
        if download_store is None:
            try:
                download_store = open_download_store(store)
            except StoreError as exc:   # the database is already open for chats, so this is rare
                self.banner.show_error(exc, before="Downloads are unavailable.")
        self.download_store = download_store
        self.downloads = DownloadController(download_store, self) if download_store is not None else None
        self.downloads_panel = DownloadsPanel(self.downloads) if self.downloads is not None else None
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.pages)
        if self.downloads_panel is not None:
            self.splitter.addWidget(self.downloads_panel)
            self.splitter.setStretchFactor(0, 3)
            self.splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.offline_banner)
        layout.addWidget(self.banner)
        layout.addWidget(self.splitter, 1)
        self._worker: Worker | None = None
        self._rescan = False
        self._select_after_scan = None
        self._closing = False
        self._wire()
        self.set_offline(offline())

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
        self.hub.sig_download.connect(self.download)
        self.banner.sig_action.connect(self._on_banner_action)
        if self.downloads is not None:
            self.downloads.sig_done.connect(self._on_download_done)
            self.downloads.sig_failed.connect(self._on_download_failed)
            self.downloads.sig_store_error.connect(
                lambda error: self.banner.show_error(error, before="The download list could not be updated."))
            self.downloads_panel.sig_open_requested.connect(self.sig_open_requested)

    # -- offline ----------------------------------------------------------------------------------

    def set_offline(self, offline: bool) -> None:
        """Offline (HF_HUB_OFFLINE): a banner says so; search is off; the catalog and the library stay."""
        self.offline = offline
        self.hub.set_offline(offline)
        if offline:
            self.offline_banner.show_message(OFFLINE_TEXT, "warning")
        else:
            self.offline_banner.dismiss()

    # -- downloads --------------------------------------------------------------------------------

    def start_downloads(self) -> list[int]:
        """Bring back the unfinished downloads of the last session (running ones continue)."""
        if self.downloads is None:
            return []
        try:
            return self.downloads.restore()
        except StoreError as exc:
            self.banner.show_error(exc, before="The unfinished downloads could not be read.")
            return []

    def download(self, listing, choice, dest=None):
        """Queue ``choice`` of ``listing``; the record, or None when it could not be queued."""
        if self.downloads is None:
            return None
        if self.offline:
            self.show_message("Offline mode is on (HF_HUB_OFFLINE): nothing can be downloaded.", "warning")
            return None
        try:
            return self.downloads.enqueue(listing.repo_id, listing.revision, choice.files, label=choice.label,
                                          dest=dest)
        except StoreError as exc:
            self.banner.show_error(exc, before="The download could not be queued.")
            return None

    def _on_download_done(self, download_id: int, paths: list) -> None:
        if paths:
            self._select_after_scan = str(paths[0])
        self.refresh()

    def _on_download_failed(self, download_id: int, error) -> None:
        from runtime.errors import BadToken, GatedRepo

        record = self.downloads.records.get(download_id)
        what = f"{record.repo_id} · {record.label}" if record is not None else "A download"
        text = f"{what} failed: {error_text(error)}"
        if isinstance(error, (GatedRepo, BadToken)):   # the fix is one click away
            self.banner.show_message(text, "error", action="token", action_text="Token…")
        else:
            self.show_message(text, "error")

    def _on_banner_action(self, action: str) -> None:
        if action == "token":
            self.hub.open_token_dialog()

    # -- library ----------------------------------------------------------------------------------

    @property
    def scanning(self) -> bool:
        return self._worker is not None and self._worker.running

    def refresh(self) -> None:
        """Rescan the library on a worker thread (once more after the running scan, if one runs)."""
        if self._closing:
            return
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
        self.hub.set_local_files(rows)
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
        """Cancel a copy, stop downloads (kept for the next start), join every thread of the tab."""
        self._closing = True
        self.actions.shutdown()
        if self.downloads is not None:
            self.downloads.shutdown()
        self.hub.shutdown()
        if self._worker is not None:
            self._worker.wait()
        if self._owns_download_store and self.download_store is not None:
            self.download_store.close()
