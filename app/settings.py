"""Window state and small preferences, kept in an INI file through QSettings.

The file lives where ``runtime.paths.settings_path()`` says (``WORKBENCH_HOME`` moves it). Values are
written on ``save_*`` and flushed with ``sync()``, so they survive a restart.
"""
from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings

from runtime import paths


class AppSettings:
    """Typed accessors over one QSettings INI file."""

    def __init__(self, path=None):
        path = paths.settings_path() if path is None else path
        paths.ensure_dir(path.parent)
        self.path = path
        self._qs = QSettings(str(path), QSettings.Format.IniFormat)

    # -- window -----------------------------------------------------------------------------------

    def geometry(self) -> QByteArray | None:
        return self._bytes("window/geometry")

    def set_geometry(self, data: QByteArray) -> None:
        self._qs.setValue("window/geometry", data)

    def window_state(self) -> QByteArray | None:
        return self._bytes("window/state")

    def set_window_state(self, data: QByteArray) -> None:
        self._qs.setValue("window/state", data)

    def current_tab_name(self, default: str, names) -> str:
        """The tab last shown, by name (``default`` on a fresh install or for an unknown name)."""
        name = str(self._qs.value("window/tab", "") or "")
        return name if name in names else default

    def set_current_tab_name(self, name: str) -> None:
        self._qs.setValue("window/tab", str(name))

    def splitter_sizes(self, name: str) -> list[int]:
        """Sizes saved for the splitter called ``name``; empty when none were saved."""
        value = self._qs.value(f"splitters/{name}")
        if value is None:
            return []
        if isinstance(value, str):  # INI files give a one-element list back as a plain string
            value = [value]
        try:
            return [int(v) for v in value]
        except (TypeError, ValueError):
            return []

    def set_splitter_sizes(self, name: str, sizes: list[int]) -> None:
        self._qs.setValue(f"splitters/{name}", [int(s) for s in sizes])

    # -- chat -------------------------------------------------------------------------------------

    def last_model(self) -> str:
        return str(self._qs.value("chat/last_model", "") or "")

    def set_last_model(self, path: str) -> None:
        self._qs.setValue("chat/last_model", str(path or ""))

    def last_conversation(self) -> int | None:
        value = self._int("chat/last_conversation", -1)
        return value if value >= 0 else None

    def set_last_conversation(self, conversation_id: int | None) -> None:
        self._qs.setValue("chat/last_conversation", -1 if conversation_id is None else int(conversation_id))

    def serve_port(self, default: int) -> int:
        """The port "Serve to other apps" used last (the switch itself always starts off)."""
        port = self._int("chat/serve_port", default)
        return port if 1 <= port <= 65535 else default

    def set_serve_port(self, port: int) -> None:
        self._qs.setValue("chat/serve_port", int(port))

    # -- plumbing ---------------------------------------------------------------------------------

    def sync(self) -> None:
        self._qs.sync()

    def _int(self, key: str, default: int) -> int:
        try:
            return int(self._qs.value(key, default))
        except (TypeError, ValueError):
            return default

    def _bytes(self, key: str) -> QByteArray | None:
        value = self._qs.value(key)
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None
