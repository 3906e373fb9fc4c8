"""AppSettings: values survive a new instance (a restart) and live where runtime.paths says."""
from __future__ import annotations

from PySide6.QtCore import QByteArray

from app.settings import AppSettings
from runtime import paths


def test_values_persist_across_instances(qtbot, workbench_home):
    first = AppSettings()
    assert first.path == paths.settings_path()
    assert first.current_tab_name("Chat", ("Models", "Chat")) == "Chat" and first.last_conversation() is None and first.last_model() == ""
    first.set_geometry(QByteArray(b"\x01\x02geometry"))
    first.set_window_state(QByteArray(b"state"))
    first.set_current_tab_name("Models")
    first.set_last_model("/models/a.gguf")
    first.set_last_conversation(7)
    first.set_splitter_sizes("chat", [200, 600, 300])
    first.sync()
    assert paths.settings_path().is_file()

    second = AppSettings()
    assert bytes(second.geometry()) == b"\x01\x02geometry"
    assert bytes(second.window_state()) == b"state"
    assert second.current_tab_name("Chat", ("Models", "Chat")) == "Models"
    assert second.last_model() == "/models/a.gguf"
    assert second.last_conversation() == 7
    assert second.splitter_sizes("chat") == [200, 600, 300]
    assert second.splitter_sizes("unknown") == []


def test_clearing_the_last_conversation(qtbot):
    s = AppSettings()
    s.set_last_conversation(3)
    s.set_last_conversation(None)
    s.sync()
    assert AppSettings().last_conversation() is None
