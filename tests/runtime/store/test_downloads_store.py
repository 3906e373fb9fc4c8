"""Download records: same SQLite file as conversations, statuses, errors as payloads, what to resume."""
from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from runtime.errors import DiskFull, StoreError
from runtime.hub.types import RemoteFile
from runtime.store import conversations as store_mod
from runtime.store.conversations import MIGRATIONS, ConversationStore
from runtime.store.downloads import DownloadStore

PARTS = [RemoteFile("m-00001-of-00002.gguf", 1000, "a" * 64), RemoteFile("m-00002-of-00002.gguf", 500, "b" * 64)]


@pytest.fixture
def store(db_path):
    with DownloadStore(db_path) as s:
        yield s


def test_one_file_and_one_schema_for_both_stores(db_path):
    with DownloadStore(db_path) as downloads:
        downloads.add("org/model", "main", PARTS)
        assert downloads.schema_version() == len(MIGRATIONS)
    with ConversationStore(db_path) as conversations:  # opens the file the download store made
        assert conversations.schema_version() == len(MIGRATIONS)
        conv = conversations.create_conversation("Chat")
        assert conversations.get_conversation(conv.id).title == "Chat"
    with DownloadStore(db_path) as downloads:
        assert [r.repo_id for r in downloads.records()] == ["org/model"]


def test_default_path_is_the_apps_database(workbench_home):
    with DownloadStore() as s:
        s.add("org/model", "main", PARTS[:1])
    with ConversationStore() as c:
        assert c.path == s.path == workbench_home / "workbench.sqlite3"


def test_an_old_conversation_database_gains_the_downloads_table(db_path, monkeypatch):
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS[:3])
    with ConversationStore(db_path) as old:
        conv = old.create_conversation("Before downloads existed")
        assert old.schema_version() == 3
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS)
    with DownloadStore(db_path) as s:
        assert s.schema_version() == len(MIGRATIONS)
        s.add("org/model", "main", PARTS)
    with ConversationStore(db_path) as new:
        assert new.get_conversation(conv.id).title == "Before downloads existed"


def test_add_keeps_files_sizes_hashes_and_totals(store):
    record = store.add("org/model", "main", PARTS, dest=None, label="Q4_K_M")
    again = store.get(record.id)
    assert again.files == PARTS and again.total_bytes == 1500 and again.done_bytes == 0
    assert again.status == "queued" and again.dest is None and again.label == "Q4_K_M"
    assert again.paths == [] and again.error is None and again.finished_at is None


def test_life_of_a_download(store, tmp_path):
    record = store.add("org/model", "main", PARTS, dest=tmp_path / "models")
    assert store.get(record.id).dest == str(tmp_path / "models")
    store.update(record.id, status="running", done_bytes=300, commit_sha="c" * 40)
    paused = store.update(record.id, status="paused", done_bytes=700)
    assert (paused.status, paused.done_bytes, paused.commit_sha) == ("paused", 700, "c" * 40)
    assert [r.id for r in store.unfinished()] == [record.id]
    done = store.update(record.id, status="done", done_bytes=1500, paths=[tmp_path / "a", tmp_path / "b"])
    assert done.status == "done" and done.finished_at is not None and done.fraction == 1.0
    assert done.paths == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert store.unfinished() == []


def test_errors_are_kept_as_payloads_and_come_back_as_their_class(store):
    record = store.add("org/model", "main", PARTS)
    err = DiskFull("Not enough space: needs 1.0 GiB, 10.0 MiB free.", path="/x", needed_bytes=2**30, free_bytes=10 << 20)
    failed = store.update(record.id, status="failed", error=err)
    back = failed.error_object()
    assert isinstance(back, DiskFull) and back.facts["needed_bytes"] == 2**30 and back.hint == err.hint
    assert failed.error["kind"] == "disk_full"
    # running again clears the old error; an explicit error=None clears it too
    assert store.update(record.id, status="running").error is None
    store.update(record.id, error=err)
    assert store.update(record.id, error=None).error is None


def test_unfinished_lists_queued_running_and_paused_oldest_first(store):
    ids = {s: store.add(f"org/{s}", "main", PARTS[:1]).id for s in ("queued", "running", "paused", "failed",
                                                                    "done", "cancelled")}
    for status, rid in ids.items():
        store.update(rid, status=status)
    assert [r.repo_id for r in store.unfinished()] == ["org/queued", "org/running", "org/paused"]
    assert [r.repo_id for r in store.records(("failed", "done"))] == ["org/failed", "org/done"]


def test_a_restarted_process_sees_what_to_resume(db_path):
    with DownloadStore(db_path) as first:
        rid = first.add("org/model", "main", PARTS).id
        first.update(rid, status="running", done_bytes=900)
    # a new process (here: a new store on the same file, from another thread)
    seen = []
    thread = threading.Thread(target=lambda: seen.extend(DownloadStore(db_path).unfinished()))
    thread.start()
    thread.join()
    assert [(r.id, r.status, r.done_bytes) for r in seen] == [(rid, "running", 900)]


def test_find_unfinished_matches_repo_files_and_destination(store, tmp_path):
    cached = store.add("org/model", "main", PARTS)
    folder = store.add("org/model", "main", PARTS, dest=tmp_path)
    assert store.find_unfinished("org/model", [p.path for p in reversed(PARTS)]).id == cached.id
    assert store.find_unfinished("org/model", [p.path for p in PARTS], dest=tmp_path).id == folder.id
    assert store.find_unfinished("org/model", [PARTS[0].path]) is None
    assert store.find_unfinished("org/other", [p.path for p in PARTS]) is None
    store.update(cached.id, status="failed")
    assert store.find_unfinished("org/model", [p.path for p in PARTS]).id == cached.id  # a retry continues it
    store.update(cached.id, status="done")
    assert store.find_unfinished("org/model", [p.path for p in PARTS]) is None


def test_bad_status_and_unknown_ids_are_clear(store):
    with pytest.raises(ValueError, match="Unknown download status"):
        store.add("org/model", "main", PARTS, status="almost")
    rid = store.add("org/model", "main", PARTS).id
    with pytest.raises(ValueError):
        store.update(rid, status="exploded")
    with pytest.raises(StoreError, match="No download with id 999"):
        store.update(999, status="paused")
    with pytest.raises(StoreError):
        store.get(999)
    with pytest.raises(ValueError):
        store.add("org/model", "main", [])
    store.delete(rid)
    with pytest.raises(StoreError):
        store.delete(rid)


def test_the_table_rejects_statuses_it_does_not_know(db_path, store):
    store.add("org/model", "main", PARTS)
    con = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("UPDATE downloads SET status = 'bogus'")
    con.close()


def test_closed_store_raises_store_error(db_path):
    s = DownloadStore(db_path)
    s.close()
    with pytest.raises(StoreError, match="download store"):
        s.records()


def test_files_survive_as_json_the_gui_can_read(store, db_path):
    store.add("org/model", "abc", PARTS)
    con = sqlite3.connect(db_path)
    files = json.loads(con.execute("SELECT files_json FROM downloads").fetchone()[0])
    con.close()
    assert files[0] == {"path": PARTS[0].path, "size": 1000, "sha256": "a" * 64, "blob_id": None}
