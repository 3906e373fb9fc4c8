"""A database that cannot be used says so (fact ``unusable``) and can be moved aside, never deleted."""
from __future__ import annotations

import os
import sqlite3

import pytest

from runtime.errors import StoreError
from runtime.store import conversations as store_mod
from runtime.store.conversations import ConversationStore, move_aside


def test_a_file_that_is_not_a_database_is_unusable_and_the_error_names_the_fix(db_path):
    db_path.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError) as info:
        ConversationStore(db_path)
    error = info.value
    assert error.facts.get("unusable") is True and error.path == str(db_path)
    assert str(db_path) in error.hint and "aside" in error.hint


def test_a_schema_that_cannot_be_upgraded_is_unusable(db_path):
    con = sqlite3.connect(db_path)
    con.execute("CREATE TABLE messages (x)")  # in the way of migration 1
    con.commit()
    con.close()
    with pytest.raises(StoreError) as info:
        ConversationStore(db_path)
    assert info.value.facts.get("unusable") is True and "cannot upgrade" in info.value.hint


def test_a_database_from_a_newer_version_is_unusable(db_path, monkeypatch):
    ConversationStore(db_path).close()
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:-1])
    with pytest.raises(StoreError) as info:
        ConversationStore(db_path)
    assert info.value.facts.get("unusable") is True and "newer" in info.value.message


def test_a_locked_or_unopenable_database_is_not_unusable(db_path):
    db_path.mkdir()
    with pytest.raises(StoreError) as info:
        ConversationStore(db_path)
    assert not info.value.facts.get("unusable")


def test_move_aside_renames_the_file_and_its_journal_and_never_overwrites(db_path):
    content = os.urandom(4096)
    db_path.write_bytes(content)
    (db_path.parent / "workbench.sqlite3-wal").write_bytes(b"wal")
    first = move_aside(db_path)
    assert first.parent == db_path.parent and not db_path.exists()
    assert first.name.startswith("workbench.damaged-") and first.suffix == ".sqlite3"
    assert first.read_bytes() == content and (first.parent / f"{first.name}-wal").read_bytes() == b"wal"
    db_path.write_bytes(b"second")
    second = move_aside(db_path)  # within the same second: a new name, the first is kept
    assert second != first and second.read_bytes() == b"second" and first.read_bytes() == content
    with ConversationStore(db_path) as fresh:
        assert fresh.list_conversations() == []


def test_move_aside_failing_says_why(tmp_path):
    with pytest.raises(StoreError) as info:
        move_aside(tmp_path / "missing" / "workbench.sqlite3")
    assert "Cannot move" in info.value.message
