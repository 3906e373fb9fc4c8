"""Help > About: which versions run, and where the app keeps its files (for a bug report or a backup)."""
from __future__ import annotations

import html
import importlib.metadata
import platform
import sys

from runtime import paths

PACKAGES = (("Model Workbench", "model-workbench"), ("llama-cpp-python (llama.cpp)", "llama-cpp-python"),
            ("PySide6 (Qt)", "PySide6-Essentials"), ("huggingface_hub", "huggingface-hub"), ("gguf", "gguf"))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions() -> list[tuple[str, str]]:
    """(what, version) for the app, Python, the OS and the libraries that matter; reads no library."""
    from PySide6.QtCore import qVersion

    found = [(name, _version(package)) for name, package in PACKAGES]
    found[2] = (found[2][0], f"{found[2][1]} (Qt {qVersion()})")
    found.insert(1, ("Python", f"{platform.python_version()} ({sys.executable})"))
    found.insert(2, ("System", f"{platform.system()} {platform.release()} on {platform.machine()}"))
    return found


def file_locations() -> list[tuple[str, str]]:
    """(what, where) for every folder and file the app keeps."""
    from runtime.chat.defaults import defaults_path

    return [("App folder", str(paths.app_home())), ("Models", str(paths.models_dir())),
            ("Conversations (database)", str(paths.database_path())),
            ("Window settings", str(paths.settings_path())), ("New-chat defaults", str(defaults_path())),
            ("Hugging Face cache", str(paths.hf_cache_dir()))]


def about_html() -> str:
    def rows(pairs):
        return "".join(f"<tr><td><b>{html.escape(k)}</b>&nbsp;&nbsp;</td><td>{html.escape(v)}</td></tr>"
                       for k, v in pairs)

    return ("<h3>Model Workbench</h3><p>Run language models on this computer, shrink them, and see what "
            "the compression costs.</p>"
            f"<p><b>Versions</b></p><table>{rows(versions())}</table>"
            f"<p><b>Where files are kept</b></p><table>{rows(file_locations())}</table>"
            "<p>Set <code>WORKBENCH_HOME</code> to keep everything in another folder.</p>")


def show_about(parent) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(parent)
    box.setWindowTitle("About Model Workbench")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(about_html())
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setStandardButtons(QMessageBox.StandardButton.Close)
    box.exec()
