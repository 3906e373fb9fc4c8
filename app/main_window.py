"""The main window: a menu bar (``app.menu_bar``), four tabs, a status bar, and the wiring between them.

A fresh install opens on the Chat tab (the starter model loads there); later starts reopen the tab
last used. The window can shrink to 800x600: the tabs lay themselves out narrower (the Chat tab folds
its side panels away) rather than forcing a bigger window.

Nothing heavy is imported here: the library scan and the version lookup start after the window is
shown (``start_background_work``), on worker threads.

The conversation database is opened through ``open_store``: when it cannot be opened a dialog
(``ask_about_store``, replaceable in tests) says why and offers to move a damaged file aside and
start afresh (or to try again), or to quit.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QMessageBox, QTabWidget

from app.settings import AppSettings
from runtime.errors import StoreError
from widgets import workers
from widgets.chat.tab import ChatTab
from widgets.bench.tab import BenchmarkTab
from widgets.compress.tab import CompressTab
from widgets.models.tab import ModelsTab
from widgets.workers import Worker

TAB_NAMES = ("Models", "Compress", "Chat", "Benchmark")
FIRST_TAB = "Chat"          # what a fresh install opens on
MIN_SIZE = (800, 600)       # the smallest window that stays usable


def engine_version(_job=None) -> str:
    """'llama.cpp (llama-cpp-python 0.3.x)', read from the package metadata, without loading llama.cpp."""
    from importlib import metadata

    try:
        return f"llama.cpp via llama-cpp-python {metadata.version('llama-cpp-python')}"
    except metadata.PackageNotFoundError:
        try:
            import llama_cpp

            return f"llama.cpp via llama-cpp-python {llama_cpp.__version__}"
        except ImportError:
            return "llama-cpp-python is not installed: local models cannot run"


def ask_about_store(error: StoreError) -> str:
    """Show why the database cannot be opened; returns "move_aside", "retry" or "quit"."""
    unusable = bool(error.facts.get("unusable"))
    box = QMessageBox(QMessageBox.Icon.Critical, "Model Workbench: conversation database",
                      f"Model Workbench cannot open its conversation database:\n{error.path}\n\n{error.message}")
    if unusable:
        box.setInformativeText(
            f"{error.hint}\n\nMove it aside: the file is renamed (to {Path(error.path).stem}.damaged-<date>"
            f"{Path(error.path).suffix}, in the same folder; nothing is deleted) and Model Workbench starts "
            "with a new, empty database.")
        choices = {box.addButton("Move it aside and start afresh", QMessageBox.ButtonRole.AcceptRole): "move_aside"}
    else:
        box.setInformativeText(error.hint)
        choices = {box.addButton("Try again", QMessageBox.ButtonRole.AcceptRole): "retry"}
    quit_button = box.addButton("Quit", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(quit_button)
    box.exec()
    return choices.get(box.clickedButton(), "quit")


def open_store(ask=None):
    """The conversation database and the path a damaged one was moved to (or None).

    When it cannot be opened, ``ask(error)`` (default ``ask_about_store``) decides: "move_aside"
    (rename the file, see ``runtime.store.conversations.move_aside``), "retry", or "quit", which
    returns (None, None).
    """
    from runtime.store.conversations import ConversationStore, move_aside

    error, moved = None, None
    while True:
        choice = (ask or ask_about_store)(error) if error is not None else "retry"
        if choice == "quit":
            return None, None
        try:
            if choice == "move_aside":
                moved = move_aside(error.path)
            return ConversationStore(), moved
        except StoreError as exc:
            error = exc


class MainWindow(QMainWindow):
    """Tabs Models, Compress, Chat and Benchmark; window state persists through AppSettings."""

    def __init__(self, settings: AppSettings | None = None, store=None, auto_load: bool = True):
        super().__init__()
        self.setWindowTitle("Model Workbench")
        self.resize(1200, 780)
        self.settings = settings or AppSettings()
        self._owns_store = store is None
        moved = None
        if store is None:
            store, moved = open_store()
            if store is None:
                raise SystemExit(1)  # the person chose Quit in the database dialog
        self.store = store

        self.models_tab = ModelsTab(store)
        self.compress_tab = CompressTab(store)
        self.chat_tab = ChatTab(store)
        self.benchmark_tab = BenchmarkTab(store)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for name, widget in zip(TAB_NAMES, (self.models_tab, self.compress_tab, self.chat_tab,
                                            self.benchmark_tab)):
            self.tabs.addTab(widget, name)
        self.setCentralWidget(self.tabs)
        self.setMinimumSize(*MIN_SIZE)
        from app.menu_bar import build_menu_bar

        self.menu_actions = build_menu_bar(self)
        self.version_label = QLabel("llama.cpp version: …")
        self.statusBar().addPermanentWidget(self.version_label)

        self.models_tab.sig_library_loaded.connect(self._on_library_loaded)
        self.models_tab.sig_open_requested.connect(self.open_model_in)
        self.chat_tab.sig_library_refresh_requested.connect(self.models_tab.refresh)
        # A compressed model lands in the library (grouped with its source); Chat/Benchmark from its job.
        self.compress_tab.sig_library_changed.connect(lambda _path: self.models_tab.refresh())
        self.compress_tab.sig_open_requested.connect(self.open_model_in)
        # A reply records what the model really used (runtime.chat.session): show it in the library.
        self.chat_tab.sig_reply_finished.connect(lambda _message: self.models_tab.refresh())
        self.chat_tab.sig_model_ready.connect(self._on_model_ready)
        self._version_worker: Worker | None = None
        self._closed = False
        self._auto_load = auto_load  # load the preselected model after the first scan, if it fits
        # The model each other tab was last asked to work on: {"compress": path, "benchmark": path}
        self.model_requests: dict[str, str] = {}
        self.setAcceptDrops(True)   # a .gguf dropped anywhere on the window goes to the library
        self._restore()
        if moved is not None:
            self.statusBar().showMessage(f"The damaged conversation database was moved to {moved}.")

    # -- start-up ---------------------------------------------------------------------------------

    def _restore(self) -> None:
        s = self.settings
        if s.geometry() is not None:
            self.restoreGeometry(s.geometry())
        if s.window_state() is not None:
            self.restoreState(s.window_state())
        self.tabs.setCurrentIndex(TAB_NAMES.index(s.current_tab_name(FIRST_TAB, TAB_NAMES)))
        self.tabs.currentChanged.connect(self._focus_tab)
        self._focus_tab()
        self.chat_tab.set_splitter_sizes(s.splitter_sizes("chat"))
        serve_port = self.chat_tab.serve_panel.port
        serve_port.setValue(s.serve_port(serve_port.value()))
        last = s.last_conversation()
        if last is not None and last in self.chat_tab.conversations.ids():
            self.chat_tab.open_conversation(last)

    def start_background_work(self) -> None:
        """Scan the library and look up the engine version; call once the window is shown."""
        if self._closed:
            return
        self.models_tab.refresh()
        self.models_tab.start_downloads()   # unfinished downloads of the last session continue
        self._version_worker = Worker(engine_version, name="engine-version")
        self._version_worker.sig_done.connect(self.version_label.setText)
        self._version_worker.start()

    def _on_library_loaded(self, rows: list) -> None:
        self.chat_tab.set_library(rows, prefer=self.settings.last_model())
        self.compress_tab.set_library(rows)
        self.benchmark_tab.set_library(rows)
        if self._auto_load:
            self._auto_load = False
            self.chat_tab.load_preferred_model()

    def _on_model_ready(self, description: str) -> None:
        self.statusBar().showMessage(description, 8000)
        if self.chat_tab.session.backend == "local":
            self.settings.set_last_model(self.chat_tab.session.model_ref)

    # -- between tabs -----------------------------------------------------------------------------

    def open_model_in(self, action: str, path: str) -> bool:
        """"Chat with it" (switch to Chat and load it), "Compress it" (the Compress tab reads it as its
        source), "Benchmark it" (the Benchmark tab shows that model's variants, ticked)."""
        if action == "chat":
            self.tabs.setCurrentWidget(self.chat_tab)
            session = self.chat_tab.session
            if session.local_model_ref == path and session.local_ready:
                self.chat_tab.choose_target("local")  # loaded already: only make it the target
                return True
            if self.chat_tab.load_local(path):
                return True
            self.statusBar().showMessage("The Chat tab is busy (a model is loading or a reply is running): "
                                         "try again when it is done.", 8000)
            return False
        page = {"compress": self.compress_tab, "benchmark": self.benchmark_tab}.get(action)
        if page is None:
            return False
        self.model_requests[action] = path
        if action == "compress":
            self.compress_tab.open_source(path)
        elif hasattr(page, "show_request"):
            page.show_request(path, action)
        self.tabs.setCurrentWidget(page)
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.tabs.setCurrentWidget(self.models_tab)
        self.models_tab.add_files(files)

    def _focus_tab(self, *_args) -> None:
        """Coming to the Chat tab puts the cursor in the message box, ready to type."""
        if self.tabs.currentWidget() is self.chat_tab:
            self.chat_tab.input.setFocus()

    # -- menu commands ----------------------------------------------------------------------------

    def new_chat(self) -> None:
        self.tabs.setCurrentWidget(self.chat_tab)
        self.chat_tab.new_conversation()
        self.chat_tab.input.setFocus()

    def export_conversation(self, fmt: str, path: str | None = None) -> Path | None:
        """Save the open conversation as Markdown ("md") or JSON ("json"); ``path`` skips the dialog.

        Returns the file written, or None (nothing open, cancelled, or failed: the status bar says why).
        """
        from runtime.chat.transfer import export_json, export_markdown
        from runtime.errors import WorkbenchError

        conv_id = self.chat_tab.conversation_id
        if conv_id is None:
            self.statusBar().showMessage("Open a conversation in the Chat tab first, then export it.", 8000)
            return None
        if path is None:
            title = self.store.get_conversation(conv_id).title
            safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip() or "conversation"
            kinds = {"md": "Markdown (*.md)", "json": "Model Workbench conversation (*.json)"}
            path, _filter = QFileDialog.getSaveFileName(self, "Export conversation", str(Path.home() / f"{safe}.{fmt}"),
                                                        kinds[fmt])
            if not path:
                return None
        try:
            written = (export_markdown if fmt == "md" else export_json)(self.store, conv_id, path)
        except (WorkbenchError, OSError) as exc:
            self._show_failure(exc, "The conversation was not exported.")
            return None
        self.statusBar().showMessage(f"Exported to {written}", 8000)
        return written

    def import_conversation(self, path: str | None = None) -> int | None:
        """Add a conversation exported as JSON and open it; None when cancelled or refused (said why)."""
        from runtime.chat.transfer import import_json
        from runtime.errors import WorkbenchError

        if path is None:
            path, _filter = QFileDialog.getOpenFileName(self, "Import conversation", str(Path.home()),
                                                        "Model Workbench conversation (*.json);;All files (*)")
            if not path:
                return None
        try:
            conv_id = import_json(self.store, path)
        except (WorkbenchError, OSError) as exc:
            self._show_failure(exc, "The conversation was not imported; nothing was added.")
            return None
        self.tabs.setCurrentWidget(self.chat_tab)
        self.chat_tab.conversations.reload(conv_id)
        self.chat_tab.open_conversation(conv_id)
        self.statusBar().showMessage(f"Imported “{self.store.get_conversation(conv_id).title}”.", 8000)
        return conv_id

    def _show_failure(self, error: BaseException, before: str) -> None:
        """Say in the Chat tab's banner (with Details) why a File menu command failed."""
        self.tabs.setCurrentWidget(self.chat_tab)
        self.chat_tab.banner.show_error(error, before=before)

    def show_about(self) -> None:
        from app.about import show_about

        show_about(self)

    def open_data_folder(self) -> bool:
        from runtime import paths

        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(paths.ensure_dir(paths.app_home()))))

    # -- shut-down --------------------------------------------------------------------------------

    def save_state(self) -> None:
        s = self.settings
        s.set_geometry(self.saveGeometry())
        s.set_window_state(self.saveState())
        s.set_current_tab_name(TAB_NAMES[self.tabs.currentIndex()])
        s.set_splitter_sizes("chat", self.chat_tab.splitter_sizes())
        s.set_serve_port(self.chat_tab.serve_panel.port.value())
        s.set_last_conversation(self.chat_tab.conversation_id)
        if self.chat_tab.picker.local.current_path():
            s.set_last_model(self.chat_tab.picker.local.current_path())
        s.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        if not self._closed:
            self._closed = True
            self.save_state()
            self.chat_tab.shutdown()
            self.compress_tab.shutdown()
            self.benchmark_tab.shutdown()
            self.models_tab.shutdown()
            if self._version_worker is not None:
                self._version_worker.wait()
            workers.shutdown_all()
            if self._owns_store:
                self.store.close()
        super().closeEvent(event)
