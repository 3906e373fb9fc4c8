""""Serve to other apps" in the chat tab, on the real starter model in a real engine (nothing mocked)."""
from __future__ import annotations

import socket

from PySide6.QtGui import QGuiApplication

from engine_helpers import free_port, refused
from runtime.engine.client import ChatClient
from runtime.engine.types import LoadOptions, SamplingParams
from tests.widgets.conftest import LOAD_TIMEOUT_MS

WAIT_MS = 30_000


def switch_on(qtbot, panel, port: int):
    panel.port.setValue(port)
    with qtbot.waitSignal(panel.sig_serving, timeout=WAIT_MS) as blocker:
        panel.switch.setChecked(True)
    return blocker.args[0]


def test_off_until_a_model_is_loaded(chat_tab):
    panel = chat_tab.serve_panel
    assert not panel.switch.isChecked() and not panel.switch.isEnabled()
    assert panel.address.text() == "127.0.0.1" and panel.details.isHidden()


def test_serve_shows_url_key_and_curl_answers_and_switches_off(qtbot, loaded_chat_tab):
    panel = loaded_chat_tab.serve_panel
    assert panel.switch.isEnabled() and not panel.switch.isChecked()
    port = free_port()
    api = switch_on(qtbot, panel, port)
    assert panel.url.text() == f"http://127.0.0.1:{port}/v1" == api.base_url
    assert panel.key.text() == api.api_key != loaded_chat_tab.engine.api_key
    assert panel.curl.toPlainText().startswith(f"curl {api.base_url}/chat/completions")
    assert api.api_key in panel.curl.toPlainText() and panel.details.isVisible()
    assert not panel.port.isEnabled() and not panel.address.isEnabled()
    panel.copy_key.click()
    assert QGuiApplication.clipboard().text() == api.api_key
    panel.copy_curl.click()
    assert QGuiApplication.clipboard().text() == panel.curl.toPlainText()

    reply = ChatClient(panel.url.text(), panel.key.text()).stream_chat(
        [{"role": "user", "content": "Say hello."}], SamplingParams(temperature=0, max_tokens=8))
    assert reply.text.strip()

    with qtbot.waitSignal(panel.sig_stopped, timeout=WAIT_MS):
        panel.switch.setChecked(False)
    assert refused(port) and panel.details.isHidden() and panel.served is None
    qtbot.waitUntil(lambda: panel.port.isEnabled(), timeout=WAIT_MS)


def test_a_taken_port_is_explained_and_the_switch_stays_off(qtbot, loaded_chat_tab):
    panel = loaded_chat_tab.serve_panel
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        panel.port.setValue(taken.getsockname()[1])
        with qtbot.waitSignal(panel.sig_failed, timeout=WAIT_MS):
            panel.switch.setChecked(True)
    assert not panel.switch.isChecked()
    assert "already in use by another program: choose another port" in panel.status.text()


def test_another_address_needs_confirmation(qtbot, loaded_chat_tab):
    panel = loaded_chat_tab.serve_panel
    asked = []
    panel.confirm_public = lambda host: asked.append(host) or False
    panel.address.setText("0.0.0.0")
    panel.switch.setChecked(True)
    assert asked == ["0.0.0.0"] and not panel.switch.isChecked() and panel.served is None
    assert "127.0.0.1" in panel.status.text()
    assert loaded_chat_tab.engine.served is None  # nothing was opened


def test_loading_another_model_turns_serving_off(qtbot, loaded_chat_tab, starter_model):
    tab = loaded_chat_tab
    panel = tab.serve_panel
    port = free_port()
    switch_on(qtbot, panel, port)
    with qtbot.waitSignal(panel.sig_stopped, timeout=LOAD_TIMEOUT_MS):
        with qtbot.waitSignal(tab.sig_model_ready, timeout=LOAD_TIMEOUT_MS):
            tab.load_local(str(starter_model), LoadOptions(n_ctx=1024, n_threads=2))
    assert not panel.switch.isChecked() and "stopped" in panel.status.text()
    qtbot.waitUntil(lambda: refused(port), timeout=WAIT_MS)
    assert panel.switch.isEnabled()
    switch_on(qtbot, panel, port)  # the new engine serves on the same port
    assert panel.served is tab.engine.served


def test_a_dead_engine_turns_serving_off(qtbot, loaded_chat_tab):
    import os
    import signal

    tab = loaded_chat_tab
    panel = tab.serve_panel
    switch_on(qtbot, panel, free_port())
    with qtbot.waitSignal(panel.sig_stopped, timeout=WAIT_MS) as blocker:
        os.kill(tab.engine.pid, signal.SIGKILL)
    assert "stopped" in blocker.args[0] and not panel.switch.isChecked() and panel.served is None
    assert not panel.switch.isEnabled()  # nothing to serve until a model is loaded again
