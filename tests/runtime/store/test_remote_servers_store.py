"""Saved remote servers in SQLite (migration 7): names, URLs, models; never their API keys."""
from __future__ import annotations

import pytest

from runtime.store import conversations as store_mod
from runtime.store.conversations import MIGRATIONS, ConversationStore
from runtime.store.remote_servers import RemoteServerStore

SERVERS_MIGRATION = next(i for i, script in enumerate(MIGRATIONS) if "CREATE TABLE remote_servers" in script) + 1


def test_servers_are_saved_listed_changed_and_deleted(tmp_path):
    path = tmp_path / "w.sqlite3"
    with RemoteServerStore(path) as servers:
        assert SERVERS_MIGRATION == 7 and servers.schema_version() == len(MIGRATIONS)
        home = servers.add_server("  Home GPU ", "http://192.168.1.20:8080/v1", "qwen")
        lab = servers.add_server("lab", "https://lab.example/v1")
        assert home.name == "Home GPU" and home.model == "qwen" and lab.model == ""
        assert home.key_ref != lab.key_ref and home.key_ref.startswith("server-")
        assert [s.name for s in servers.list_servers()] == ["Home GPU", "lab"]
        with pytest.raises(ValueError, match="saved already"):
            servers.add_server("home gpu", "http://x/v1")  # names are unique, ignoring case
        with pytest.raises(ValueError, match="name"):
            servers.add_server("  ", "http://x/v1")
        changed = servers.update_server(home.id, model="llama", base_url="http://192.168.1.21:8080/v1")
        assert (changed.name, changed.model, changed.key_ref) == ("Home GPU", "llama", home.key_ref)
        with pytest.raises(ValueError, match="saved already"):
            servers.update_server(lab.id, name="HOME gpu")
    with RemoteServerStore(path) as again:  # they persist
        assert again.find_server("home gpu").base_url == "http://192.168.1.21:8080/v1"
        assert again.delete_server(lab.id) and not again.delete_server(lab.id)
        assert [s.name for s in again.list_servers()] == ["Home GPU"]
        with pytest.raises(LookupError):
            again.update_server(lab.id, name="gone")


def test_a_conversation_bound_to_a_deleted_server_keeps_its_messages(tmp_path):
    path = tmp_path / "w.sqlite3"
    with ConversationStore(path) as store, RemoteServerStore(path) as servers:
        server = servers.add_server("Home GPU", "http://192.168.1.20:8080/v1", "qwen")
        conv = store.create_conversation("Chat", backend="remote", model_ref="qwen",
                                         remote_base_url=server.base_url, remote_server_id=server.id)
        store.add_message(conv.id, "user", "hi")
        assert store.get_conversation(conv.id).remote_server_id == server.id
        servers.delete_server(server.id)
        kept = store.get_conversation(conv.id)
        assert kept.remote_server_id is None and kept.remote_base_url == server.base_url
        assert [m.content for m in store.messages(conv.id)] == ["hi"]
        store.update_conversation(conv.id, remote_server_id=None, backend="local")


def test_an_older_database_gains_the_servers_table(tmp_path, monkeypatch):
    path = tmp_path / "w.sqlite3"
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS[:SERVERS_MIGRATION - 1])
    with ConversationStore(path) as old:
        conv = old.create_conversation("Before", backend="remote", remote_base_url="http://a/v1")
        assert old.get_conversation(conv.id).remote_server_id is None
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS)
    with ConversationStore(path) as new, RemoteServerStore(path) as servers:
        assert new.schema_version() == len(MIGRATIONS)
        assert new.get_conversation(conv.id).remote_base_url == "http://a/v1"
        assert servers.list_servers() == []
