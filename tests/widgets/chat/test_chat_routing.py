"""Where a message goes is explicit (real engines on the starter model; nothing mocked).

The "remote server" is a second real engine process: it speaks the OpenAI protocol with an API key.
Which server answered is read from what the conversation saved and from the requests each client made.
"""
from __future__ import annotations

import pytest

from runtime.chat.remote_servers import SERVICE
from tests.widgets.conftest import LOAD_TIMEOUT_MS, REPLY_TIMEOUT_MS


def reply(qtbot, tab, text):
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as blocker:
        assert tab.send(text) is True
    return blocker.args[0]


def count_requests(monkeypatch, client) -> list:
    """Record each stream_chat the client makes (the reply still comes from the real server)."""
    calls = []
    real = client.stream_chat
    monkeypatch.setattr(client, "stream_chat", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    return calls


@pytest.fixture
def remote_server(starter_model):
    """A second real engine, used as a remote OpenAI-compatible server (it wants its API key)."""
    from runtime.engine.local import LocalEngine
    from runtime.engine.types import LoadOptions

    server = LocalEngine(starter_model, LoadOptions(n_ctx=2048, n_threads=1))
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("address, words", [
    ("http://127.0.0.1:9/v1", "127.0.0.1:9"),
    ("127.0.0.1:9/v1", "Add http:// or https:// in front, e.g. http://192.168.1.20:8080/v1"),
])
def test_a_failed_connect_leaves_the_local_model_loaded_and_answering(qtbot, loaded_chat_tab, store, monkeypatch,
                                                                      address, words):
    tab = loaded_chat_tab
    engine, status = tab.engine, tab.picker.status.text()
    assert status == "Messages go to: SmolLM2-135M-Instruct Q4_1 on this computer."
    local = count_requests(monkeypatch, tab.session.client)
    tab.connect_remote(address)
    qtbot.waitUntil(lambda: words in tab.banner.text(), timeout=30_000)
    qtbot.waitUntil(lambda: not tab.session.loading, timeout=30_000)
    assert tab.banner.kind == "error"
    assert tab.engine is engine and engine.alive and tab.session.ready
    assert tab.picker.status.text() == status and tab.picker.choice() == "local"
    message = reply(qtbot, tab, "Say hi.")
    assert message is not None and message.content.strip() and local == [1]
    conv = store.get_conversation(tab.conversation_id)
    assert conv.backend == "local" and conv.model_ref == str(engine.model_path)


def test_a_wrong_address_typed_in_the_form_is_refused_before_any_network_call(qtbot, loaded_chat_tab):
    tab = loaded_chat_tab
    engine = tab.engine
    tab.picker.remote_choice.setChecked(True)
    tab.picker.remote.base_url.setText("192.168.1.20:8080/v1")
    tab.picker.remote.connect_button.click()
    assert not tab.session.loading  # refused at once: nothing started, nothing stopped
    assert "Add http:// or https:// in front, e.g. http://192.168.1.20:8080/v1" in tab.banner.text()
    assert tab.engine is engine and engine.alive


def test_remote_chosen_but_not_connected_sends_nothing_anywhere(qtbot, loaded_chat_tab, store, monkeypatch):
    tab = loaded_chat_tab
    local = count_requests(monkeypatch, tab.session.client)
    tab.picker.remote_choice.setChecked(True)
    assert tab.session.active == "remote" and not tab.session.ready
    assert "not connected" in tab.picker.status.text().lower()
    assert "Nothing is sent until Connect succeeds" in tab.picker.status.text()
    tab.input.setPlainText("Hello?")
    assert tab.send() is False
    assert "nothing was sent" in tab.banner.text()
    assert tab.input.toPlainText() == "Hello?"  # kept for when the server is connected
    assert local == [] and all(store.messages(c.id) == [] for c in store.list_conversations())
    assert tab.engine.alive  # still loaded: the banner offers to use it
    tab.banner.button("use_local").click()
    assert tab.picker.choice() == "local" and tab.session.ready


def test_connecting_keeps_the_local_model_and_switching_back_sends_locally(
        qtbot, loaded_chat_tab, store, remote_server, memory_keyring, monkeypatch):
    tab = loaded_chat_tab
    engine = tab.engine
    local = count_requests(monkeypatch, tab.session.client)
    url = remote_server.client().base_url

    # a saved server: its key goes to the keyring, the form forgets it
    tab.picker.remote_choice.setChecked(True)
    form = tab.picker.remote
    form.name.setText("Home GPU")
    form.base_url.setText(url)
    form.api_key.setText(remote_server.api_key)
    with qtbot.waitSignal(tab.sig_server_saved, timeout=10_000) as saved:
        form.save_button.click()
    server = saved.args[0]
    assert memory_keyring.items == {(SERVICE, server.key_ref): remote_server.api_key}
    assert form.api_key.text() == ""

    with qtbot.waitSignal(tab.sig_model_ready, timeout=LOAD_TIMEOUT_MS):
        form.connect_button.click()  # the key comes from the keyring
    assert tab.engine is engine and engine.alive  # connecting did not stop the local engine
    assert tab.session.active == "remote"
    model = tab.session.remote.model
    assert tab.picker.status.text() == f"Messages go to: server 'Home GPU' (model {model})."
    remote = count_requests(monkeypatch, tab.session.remote)
    first = reply(qtbot, tab, "Say hello.")
    assert first.content.strip() and remote == [1] and local == []
    conv = store.get_conversation(tab.conversation_id)
    assert (conv.backend, conv.remote_base_url, conv.remote_server_id) == ("remote", url, server.id)

    tab.picker.local_choice.setChecked(True)  # back to this computer: ready at once
    assert tab.picker.status.text() == "Messages go to: SmolLM2-135M-Instruct Q4_1 on this computer."
    second = reply(qtbot, tab, "Say bye.")
    assert second.content.strip() and remote == [1] and local == [1]
    conv = store.get_conversation(tab.conversation_id)
    assert conv.backend == "local" and conv.model_ref == str(engine.model_path) and conv.remote_server_id is None

    # reopening the conversation while the remote is active says where messages go now
    tab.picker.remote_choice.setChecked(True)
    other = tab.new_conversation()
    tab.open_conversation(conv.id)
    assert tab.banner.action == "switch_target"
    assert "SmolLM2-135M-Instruct Q4_1 on this computer" in tab.banner.text()
    assert "server 'Home GPU'" in tab.banner.text()
    tab.banner.action_button.click()
    assert tab.session.active == "local" and tab.picker.choice() == "local"
    assert other != conv.id


def test_switching_conversations_new_and_rename_while_a_reply_streams(qtbot, loaded_chat_tab, store):
    from widgets.chat.message_view import MessageView

    tab = loaded_chat_tab
    other = store.create_conversation("Other chat")
    store.add_message(other.id, "user", "An older question")
    store.add_message(other.id, "assistant", "An older answer")
    tab.conversations.reload()
    streaming = tab.new_conversation()
    tab.settings_panel.sampling.max_tokens.setValue(1500)
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as finished:
        assert tab.send("Write a very long story about a lighthouse keeper and his cat.")
        qtbot.waitUntil(lambda: len(tab.view.streamed_text) > 20, timeout=REPLY_TIMEOUT_MS)
        assert tab.conversations.isEnabled() and tab.conversations.new_button.isEnabled()

        tab.conversations.select(other.id)  # as a click in the list does
        assert tab.conversation_id == other.id
        seen = len(tab.session.streamed_text)
        qtbot.waitUntil(lambda: len(tab.session.streamed_text) > seen + 20, timeout=REPLY_TIMEOUT_MS)
        expected = MessageView()
        qtbot.addWidget(expected)
        expected.set_messages(store.messages(other.id))
        assert tab.view.toPlainText() == expected.toPlainText()  # no stray text from the other reply
        assert "being written in" in tab.stream_note.text() and not tab.stop_button.isEnabled()

        tab.input.setPlainText("A question here")
        assert tab.send() is False  # one reply at a time: it says so, the text stays
        assert "only one reply" in tab.banner.text() and tab.input.toPlainText() == "A question here"
        tab.input.clear()

        fresh = tab.new_conversation()
        assert fresh not in (-1, streaming, other.id) and tab.conversation_id == fresh
        assert tab.conversations.rename_selected("Renamed meanwhile")
        assert store.get_conversation(fresh).title == "Renamed meanwhile"

        tab.open_conversation(streaming)  # back: the reply shows, streaming on
        assert tab.view.streaming and tab.stop_button.isEnabled()
        shown = tab.view.toPlainText()
        assert "lighthouse keeper" in shown and tab.session.streamed_text.strip()[:30] in shown
        qtbot.waitUntil(lambda: len(tab.view.toPlainText()) > len(shown) + 20, timeout=REPLY_TIMEOUT_MS)
        tab.open_conversation(other.id)
        tab.stop()  # stopped from elsewhere: it is saved into its own conversation
    message = finished.args[0]
    assert message is not None and message.content.strip()
    saved = store.messages(streaming)
    assert [m.role for m in saved] == ["user", "assistant"] and saved[1].content == message.content
    assert [m.content for m in store.messages(other.id)] == ["An older question", "An older answer"]
    assert store.messages(fresh) == []
    assert tab.view.toPlainText() == expected.toPlainText() and not tab.stream_note.isVisibleTo(tab)
    tab.open_conversation(streaming)
    assert message.content.strip()[:30] in tab.view.toPlainText()


def test_deleting_the_conversation_a_reply_streams_into_stops_it_quietly(qtbot, loaded_chat_tab, store):
    tab = loaded_chat_tab
    keep = tab.new_conversation()
    doomed = tab.new_conversation()
    tab.settings_panel.sampling.max_tokens.setValue(1500)
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS):
        assert tab.send("Write a very long story about a dragon.")
        qtbot.waitUntil(lambda: len(tab.session.streamed_text) > 20, timeout=REPLY_TIMEOUT_MS)
        assert tab.conversations.current_id() == doomed
        assert tab.conversations.delete_selected(confirm=True)
    assert [c.id for c in store.list_conversations()] == [keep]
    assert tab.conversation_id == keep and tab.session.unsaved is None
    assert tab.banner.kind != "error" or tab.banner.text() == ""
    assert not tab.session.generating and tab.send_button.isEnabled()


def test_the_local_model_keeps_answering_while_a_server_is_being_checked(qtbot, loaded_chat_tab, store, monkeypatch):
    """A server that accepts the connection but never answers: until the check gives up, chat goes on."""
    import socket

    from widgets.chat import session as session_mod

    monkeypatch.setattr(session_mod, "CHECK_TIMEOUT_S", 4)
    tab = loaded_chat_tab
    status = tab.picker.status.text()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # connections are queued, never answered
        assert tab.connect_remote(f"http://127.0.0.1:{silent.getsockname()[1]}/v1")
        assert tab.session.loading and tab.session.ready and tab.send_button.isEnabled()
        assert tab.picker.status.text() == status
        message = reply(qtbot, tab, "Say hi.")
        assert message is not None and message.content.strip()
        assert store.get_conversation(tab.conversation_id).backend == "local"
        qtbot.waitUntil(lambda: not tab.session.loading, timeout=30_000)
    assert tab.banner.kind == "error" and tab.session.active == "local" and tab.engine.alive
    assert tab.picker.status.text() == status
