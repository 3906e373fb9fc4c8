"""Saved remote servers in the Chat tab: kept in the database across restarts, API keys in the OS keyring
(here a real keyring backend kept in memory), never in the database file."""
from __future__ import annotations

from pathlib import Path

from keyring.backends import fail

from memory_keyring import installed
from runtime.chat.remote_servers import SERVICE
from runtime.store.conversations import ConversationStore
from widgets.chat.model_picker import NEW_SERVER
from widgets.chat.tab import ChatTab

SECRET = "sk-ThisIsTheSecretKey-0123456789"


def open_tab(qtbot, store) -> ChatTab:
    tab = ChatTab(store)
    qtbot.addWidget(tab, before_close_func=lambda w: w.shutdown())
    tab.show()
    qtbot.waitUntil(lambda: tab.keyring_ok is not None, timeout=10_000)
    return tab


def save(qtbot, tab, name, url, key="", model=""):
    form = tab.picker.remote
    tab.picker.remote_choice.setChecked(True)
    form.servers.setCurrentText(NEW_SERVER)
    form.name.setText(name)
    form.base_url.setText(url)
    form.api_key.setText(key)
    form.model.setText(model)
    with qtbot.waitSignal(tab.sig_server_saved, timeout=10_000) as saved:
        form.save_button.click()
    return saved.args[0]


def database_bytes(path: Path) -> bytes:
    return b"".join(Path(f"{path}{end}").read_bytes() for end in ("", "-wal", "-shm")
                    if Path(f"{path}{end}").exists())


def test_saved_servers_persist_and_their_keys_live_in_the_keyring_only(qtbot, workbench_home, memory_keyring):
    first_store = ConversationStore()
    tab = open_tab(qtbot, first_store)
    assert "OS keyring" in tab.picker.remote.key_note.text()
    server = save(qtbot, tab, "Home GPU", "http://192.168.1.20:8080/v1", SECRET, "qwen2.5-7b")
    save(qtbot, tab, "Lab", "https://lab.example.org/v1")
    assert memory_keyring.items == {(SERVICE, server.key_ref): SECRET}
    assert "in the OS keyring" in tab.banner.text() or "Saved server 'Lab'" in tab.banner.text()
    path = first_store.path
    assert SECRET.encode() not in database_bytes(path)
    tab.close()
    first_store.close()
    assert SECRET.encode() not in database_bytes(path)

    again_store = ConversationStore()
    again = open_tab(qtbot, again_store)
    form = again.picker.remote
    assert [form.servers.itemText(i) for i in range(form.servers.count())] == ["Home GPU", "Lab", NEW_SERVER]
    assert form.select_server(server.id)
    assert (form.name.text(), form.base_url.text(), form.model.text()) == (
        "Home GPU", "http://192.168.1.20:8080/v1", "qwen2.5-7b")
    assert form.api_key.text() == "" and "saved key" in form.api_key.placeholderText()
    assert again.keys.get(server.key_ref) == SECRET

    form.base_url.setText("http://192.168.1.30:8080/v1")  # change and save again: same server, same key
    with qtbot.waitSignal(again.sig_server_saved, timeout=10_000):
        form.save_button.click()
    assert [s.base_url for s in again.servers.list_servers() if s.id == server.id] == ["http://192.168.1.30:8080/v1"]
    assert form.select_server(server.id) and again.delete_server(confirm=True)
    qtbot.waitUntil(lambda: memory_keyring.items == {}, timeout=10_000)
    assert [s.name for s in again.servers.list_servers()] == ["Lab"]
    again.close()
    again_store.close()


def test_without_a_keyring_the_key_is_kept_for_this_session_and_it_says_so(qtbot, store):
    with installed(fail.Keyring()):
        tab = open_tab(qtbot, store)
        note = tab.picker.remote.key_note.text()
        assert "No OS keyring" in note and "this session only" in note
        server = save(qtbot, tab, "Home GPU", "http://192.168.1.20:8080/v1", SECRET)
        assert "this session only" in tab.banner.text()
        assert tab.keys.get(server.key_ref) == SECRET
        assert SECRET.encode() not in database_bytes(store.path)


def test_a_server_is_not_saved_without_a_valid_address_or_a_free_name(qtbot, store, memory_keyring):
    tab = open_tab(qtbot, store)
    form = tab.picker.remote
    tab.picker.remote_choice.setChecked(True)
    form.name.setText("Home GPU")
    form.base_url.setText("192.168.1.20:8080/v1")
    assert tab.save_server() is None
    assert "Add http:// or https:// in front" in tab.banner.text()
    save(qtbot, tab, "Home GPU", "http://192.168.1.20:8080/v1")
    form.servers.setCurrentText(NEW_SERVER)
    form.name.setText("home gpu")
    form.base_url.setText("http://10.0.0.2:8080/v1")
    assert tab.save_server() is None and "saved already" in tab.banner.text()
    assert len(tab.servers.list_servers()) == 1
