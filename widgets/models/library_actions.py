"""What the library's buttons and menu do: add (by reference or a copy), remove, show in a folder.

``LibraryActions`` runs every disk access on a worker: checking a dropped file's header, writing
the references list, copying (with progress and Cancel), planning and doing a deletion. The
questions it asks go through three replaceable functions, so tests answer them without dialogs:
``ask_add_mode(parent, paths) -> "reference" | "copy" | None``,
``confirm_delete(parent, entry, plan) -> bool`` and ``open_folder(path) -> bool``.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox

from widgets.workers import Worker, error_text


def ask_add_mode(parent, files: list[Path]) -> str | None:
    """Ask whether to add ``files`` where they are or copy them into the models folder."""
    from runtime import paths

    names = "\n".join(f"• {f.name}" for f in files[:8]) + ("\n…" if len(files) > 8 else "")
    box = QMessageBox(QMessageBox.Icon.Question, "Add to the library", f"Add to the library:\n{names}", parent=parent)
    box.setInformativeText(
        "Add by reference: the file stays where it is (if you move or delete it, the library says so).\n"
        f"Copy: a copy goes into the app's models folder ({paths.models_dir()}); the original stays too.")
    reference = box.addButton("Add by reference", QMessageBox.ButtonRole.AcceptRole)
    copy = box.addButton("Copy into models folder", QMessageBox.ButtonRole.AcceptRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(reference)
    box.exec()
    return {reference: "reference", copy: "copy"}.get(box.clickedButton()) if box.clickedButton() is not cancel else None


def delete_question(entry, plan) -> tuple[str, str]:
    """The confirmation's question and details: the model, its files and their size."""
    from runtime.models.gguf_info import format_size
    from runtime.models.library import readable

    files = "\n".join(f"• {readable(str(f))}" for f in plan.files)
    question = f"Delete {entry.display_name} ({format_size(plan.size_bytes)}) from this computer?"
    details = (f"This deletes:\n{files}\n\nIt cannot be undone; you would have to download or copy "
               "the model again.")
    return question, details


def confirm_delete(parent, entry, plan) -> bool:
    """Ask before deleting (see ``delete_question``); Cancel is the default. True to delete."""
    question, details = delete_question(entry, plan)
    box = QMessageBox(QMessageBox.Icon.Warning, "Delete model file", question, parent=parent)
    box.setInformativeText(details)
    delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
    keep = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(keep)
    box.exec()
    return box.clickedButton() is delete


def open_folder(path: Path) -> bool:
    """Open ``path`` (a folder) in the system's file manager."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


def check_files(files: list[str]) -> tuple[list[Path], list[str]]:
    """(readable GGUF paths, one sentence per file that is not). Reads headers: run it on a worker."""
    from runtime.errors import ModelFileError
    from runtime.models.gguf_info import read_gguf_info

    good, bad = [], []
    for name in files:
        path = Path(name)
        try:
            read_gguf_info(path)
        except ModelFileError as exc:
            bad.append(exc.user_text())
        else:
            good.append(path)
    return good, bad


def add_files(files: list[Path], mode: str, job) -> Path | None:
    """Add each file by reference or as a copy; return the last one's library path. On a worker."""
    from runtime.models.local_files import copy_into_models
    from runtime.models.references import add_reference

    added = None
    for path in files:
        job.cancel.check()
        if mode == "copy":
            added = copy_into_models(path, progress=job.progress, cancel=job.cancel)
        else:
            added = add_reference(path)
    return added


class LibraryActions(QObject):
    """Adds, removes and shows library files off the UI thread; one piece of work at a time."""

    sig_busy = Signal(str)                   # long work started: what it is
    sig_progress = Signal(float, float, str)
    sig_idle = Signal()
    sig_message = Signal(str, str)           # text, kind ("error" | "info")
    sig_changed = Signal(object)             # the library changed: a path to select, or None

    def __init__(self, parent_widget=None):
        super().__init__(parent_widget)
        self.parent_widget = parent_widget
        self.ask_add_mode = ask_add_mode
        self.confirm_delete = confirm_delete
        self.open_folder = open_folder
        self._worker: Worker | None = None

    @property
    def busy(self) -> bool:
        return self._worker is not None and self._worker.running

    # -- adding -----------------------------------------------------------------------------------

    def add_files(self, files: list[str]) -> bool:
        """Check ``files``, ask how to add the good ones, then add them. False when busy or empty."""
        files = [str(f) for f in files if str(f)]
        if not files or not self._can_start():
            return False
        self._run(lambda job: check_files(files), self._on_checked, "check-model-files")
        return True

    def _on_checked(self, result) -> None:
        good, bad = result
        if bad:
            self.sig_message.emit("Not added:\n" + "\n".join(bad), "error")
        if not good:
            return
        mode = self.ask_add_mode(self.parent_widget, good)
        if mode not in ("reference", "copy"):
            return
        if mode == "copy":
            self.sig_busy.emit(f"Copying {good[0].name} into the models folder…")
        self._run(lambda job: add_files(good, mode, job), self._on_added, f"add-models-{mode}")

    def _on_added(self, path) -> None:
        self.sig_message.emit(f"Added {Path(path).name} to the library.", "info")
        self.sig_changed.emit(path)

    # -- removing ---------------------------------------------------------------------------------

    def remove(self, row) -> bool:
        """Forget a referenced model, or delete a downloaded/copied one after asking. False when busy."""
        if not self._can_start():
            return False
        from runtime.models.local_files import removal_plan

        entry = row.entry
        self._run(lambda job: removal_plan(entry), lambda plan: self._on_plan(entry, plan), "plan-removal")
        return True

    def _on_plan(self, entry, plan) -> None:
        from runtime.models.local_files import delete_model_files
        from runtime.models.references import forget_reference

        if plan.action == "none":
            self.sig_message.emit(f"{entry.display_name} cannot be removed here. {plan.reason}", "error")
        elif plan.action == "forget":
            self._run(lambda job: forget_reference(entry.path),
                      lambda _r: self._on_removed(f"Removed {entry.display_name} from the library; "
                                                  f"the file is still at {entry.path}."), "forget-reference")
        elif self.confirm_delete(self.parent_widget, entry, plan):
            self._run(lambda job: delete_model_files(entry),
                      lambda _r: self._on_removed(f"Deleted {entry.display_name}."), "delete-model")

    def _on_removed(self, text: str) -> None:
        self.sig_message.emit(text, "info")
        self.sig_changed.emit(None)

    # -- folders ----------------------------------------------------------------------------------

    def show_in_folder(self, row) -> bool:
        return self.open_folder(Path(row.entry.path).parent)

    def show_models_folder(self) -> bool:
        """Open the app's models folder, creating it first."""
        from runtime import paths

        try:
            folder = paths.ensure_dir(paths.models_dir())
        except OSError as exc:
            self.sig_message.emit(f"Could not create the models folder {paths.models_dir()}: "
                                  f"{exc.strerror or exc}", "error")
            return False
        return self.open_folder(folder)

    # -- the worker -------------------------------------------------------------------------------

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    def _can_start(self) -> bool:
        if self.busy:
            self.sig_message.emit("Wait until the copy in progress has finished (or cancel it).", "info")
            return False
        return True

    def _run(self, fn, on_done, name: str) -> None:
        worker = Worker(fn, name=name)
        worker.sig_done.connect(on_done)
        worker.sig_failed.connect(lambda error: self.sig_message.emit(error_text(error), "error"))
        worker.sig_cancelled.connect(lambda: self.sig_message.emit("Cancelled: nothing was added.", "info"))
        worker.sig_progress.connect(self.sig_progress)
        worker.sig_finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def _on_finished(self) -> None:
        if self._worker is not None and not self._worker.running:
            self.sig_idle.emit()

    def shutdown(self) -> None:
        """Cancel a copy in progress and join the worker (the temporary file is removed)."""
        if self._worker is not None:
            self._worker.cancel()
            self._worker.wait()
