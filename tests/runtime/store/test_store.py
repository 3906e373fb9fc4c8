"""ConversationStore: migrations, CRUD, ordering, search, cascade, threads, damaged files."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from runtime.store import conversations as store_mod
from runtime.engine.types import LoadOptions, ReplyStats, SamplingParams
from runtime.errors import StoreError, WorkbenchError
from runtime.store.conversations import MIGRATIONS, ConversationStore


@pytest.fixture
def store(db_path):
    with ConversationStore(db_path) as s:
        yield s


# -- opening and migrations -----------------------------------------------------------------------

def test_migrates_empty_file_to_latest(store, db_path):
    assert store.schema_version() == len(MIGRATIONS)
    con = sqlite3.connect(db_path)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"conversations", "messages"} <= tables
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


def test_default_path_comes_from_paths_module(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home" / "nested"))
    with ConversationStore() as s:
        assert s.path == tmp_path / "home" / "nested" / "workbench.sqlite3"
        s.create_conversation()
    assert s.path.is_file()


def test_reopen_keeps_data(db_path):
    sampling = SamplingParams(temperature=0.2, top_k=7, seed=42)
    load = LoadOptions(n_ctx=1024, n_threads=3, n_gpu_layers=5)
    with ConversationStore(db_path) as s:
        conv = s.create_conversation("Kept", backend="remote", model_ref="qwen2.5:7b",
                                     remote_base_url="http://127.0.0.1:8080/v1", system_prompt="Be terse.",
                                     sampling=sampling, load=load)
        s.add_message(conv.id, "user", "hello")
        s.add_message(conv.id, "assistant", "hi", stats=ReplyStats(completion_tokens=1))
        conv = s.get_conversation(conv.id)
    with ConversationStore(db_path) as s:  # the app restarted
        assert s.schema_version() == len(MIGRATIONS)
        again = s.get_conversation(conv.id)
        assert again == conv
        assert again.sampling == sampling and again.load == load
        assert [(m.role, m.content) for m in s.messages(conv.id)] == [("user", "hello"), ("assistant", "hi")]


def test_refuses_database_from_newer_app(db_path):
    ConversationStore(db_path).close()
    con = sqlite3.connect(db_path)
    con.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    con.close()
    with pytest.raises(StoreError) as info:
        ConversationStore(db_path)
    assert "newer" in str(info.value)
    assert info.value.path == str(db_path)
    assert info.value.hint


def test_new_migration_is_applied_on_open(db_path, monkeypatch):
    with ConversationStore(db_path) as s:
        conv = s.create_conversation("Before")
    monkeypatch.setattr(store_mod, "MIGRATIONS",
                        MIGRATIONS + ["CREATE TABLE extra (x INTEGER);"])
    with ConversationStore(db_path) as s:
        assert s.schema_version() == len(MIGRATIONS) + 1
        assert s.get_conversation(conv.id).title == "Before"


def test_failed_migration_rolls_back(db_path, monkeypatch):
    ConversationStore(db_path).close()
    broken = "CREATE TABLE half (x INTEGER); THIS IS NOT SQL;"
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS + [broken])
    with pytest.raises(StoreError):
        ConversationStore(db_path)
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0
    finally:
        con.close()


def test_garbage_file_gives_store_error(db_path):
    db_path.write_bytes(b"this is certainly not SQLite " * 200)
    with pytest.raises(StoreError) as info:
        ConversationStore(db_path)
    assert isinstance(info.value, WorkbenchError) and isinstance(info.value, OSError)
    assert info.value.path == str(db_path)
    assert "damaged" in info.value.hint


def test_closed_store_raises_store_error(db_path):
    s = ConversationStore(db_path)
    s.close()
    s.close()  # twice is fine
    with pytest.raises(StoreError):
        s.list_conversations()


# -- conversations --------------------------------------------------------------------------------

def test_create_defaults(store):
    conv = store.create_conversation()
    assert conv.title == "New chat" and conv.backend == "local"
    assert conv.model_ref == conv.remote_base_url == conv.system_prompt == ""
    assert conv.sampling == SamplingParams()
    assert conv.created_at == conv.updated_at > 0
    assert store.messages(conv.id) == []


def test_update_and_rename(store):
    conv = store.create_conversation("Old")
    new_sampling = SamplingParams(temperature=1.3, max_tokens=64)
    updated = store.update_conversation(conv.id, system_prompt="You are a pirate.", sampling=new_sampling,
                                        backend="remote", model_ref="llama3")
    assert updated.system_prompt == "You are a pirate."
    assert updated.sampling == new_sampling and updated.backend == "remote" and updated.model_ref == "llama3"
    assert updated.updated_at > conv.updated_at
    renamed = store.rename(conv.id, "  New title ")
    assert renamed.title == "New title"
    assert store.get_conversation(conv.id) == renamed


def test_bad_arguments(store):
    conv = store.create_conversation()
    with pytest.raises(ValueError):
        store.rename(conv.id, "   ")
    with pytest.raises(ValueError):
        store.create_conversation(backend="cloud")
    with pytest.raises(ValueError):
        store.add_message(conv.id, "tool", "x")
    with pytest.raises(TypeError):
        store.update_conversation(conv.id, api_key="secret")
    assert store.get_conversation(conv.id).title == "New chat"


def test_unknown_ids_raise_store_error(store):
    for call in (lambda: store.get_conversation(999), lambda: store.rename(999, "x"),
                 lambda: store.delete_conversation(999), lambda: store.add_message(999, "user", "x"),
                 lambda: store.messages(999), lambda: store.chat_messages(999),
                 lambda: store.delete_messages_from(999, 0), lambda: store.update_message(999, "x")):
        with pytest.raises(StoreError):
            call()


def test_list_is_newest_updated_first(store):
    a = store.create_conversation("a")
    b = store.create_conversation("b")
    c = store.create_conversation("c")
    assert [x.title for x in store.list_conversations()] == ["c", "b", "a"]
    store.add_message(a.id, "user", "bump")
    assert [x.title for x in store.list_conversations()] == ["a", "c", "b"]
    store.rename(b.id, "b2")
    assert [x.title for x in store.list_conversations()] == ["b2", "a", "c"]
    store.update_message(store.messages(a.id)[0].id, content="bumped again")
    assert [x.title for x in store.list_conversations()] == ["a", "b2", "c"]
    assert c.id in {x.id for x in store.list_conversations()}


def test_delete_cascades_to_messages(store, db_path):
    keep = store.create_conversation("keep")
    gone = store.create_conversation("gone")
    store.add_message(keep.id, "user", "k")
    for text in ("1", "2", "3"):
        store.add_message(gone.id, "user", text)
    store.delete_conversation(gone.id)
    assert [x.id for x in store.list_conversations()] == [keep.id]
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("SELECT count(*) FROM messages WHERE conversation_id = ?",
                           (gone.id,)).fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    finally:
        con.close()


# -- search ---------------------------------------------------------------------------------------

def test_search_title_and_content_ignoring_case(store):
    recipes = store.create_conversation("Pasta recipes")
    physics = store.create_conversation("Homework")
    store.add_message(physics.id, "user", "Explain QUANTUM tunnelling")
    store.create_conversation("Unrelated")
    assert [x.id for x in store.list_conversations("pasta")] == [recipes.id]
    assert [x.id for x in store.list_conversations("quantum")] == [physics.id]
    assert [x.id for x in store.list_conversations("  Quantum  ")] == [physics.id]
    assert store.list_conversations("nothing like this") == []
    assert len(store.list_conversations("")) == 3


def test_search_escapes_like_wildcards(store):
    pct = store.create_conversation("Growth of 100%")
    under = store.create_conversation("snake_case names")
    slash = store.create_conversation("C:\\temp")
    store.create_conversation("Growth of 1000 and snakeXcase")
    assert [x.id for x in store.list_conversations("100%")] == [pct.id]
    assert [x.id for x in store.list_conversations("%")] == [pct.id]
    assert [x.id for x in store.list_conversations("e_c")] == [under.id]
    assert [x.id for x in store.list_conversations("_")] == [under.id]
    assert [x.id for x in store.list_conversations("\\")] == [slash.id]


def test_search_non_ascii_ignores_case(store):
    conv = store.create_conversation("Über Straßen")
    other = store.create_conversation("Other")
    store.add_message(other.id, "user", "ПРИВЕТ мир")
    assert [x.id for x in store.list_conversations("über")] == [conv.id]
    assert [x.id for x in store.list_conversations("STRASSEN")] == [conv.id]
    assert [x.id for x in store.list_conversations("привет")] == [other.id]


def test_message_search_folds_case_simply_and_keeps_diacritics(store):
    """The trigram index folds case (Ä/ä) but not ß to ss, and naïve is not naive (documented)."""
    conv = store.create_conversation("Chat")
    store.add_message(conv.id, "user", "Die Straße ist NAÏVE")
    assert [x.id for x in store.list_conversations("STRAßE")] == [conv.id]
    assert [x.id for x in store.list_conversations("straße")] == [conv.id]
    assert [x.id for x in store.list_conversations("naïve")] == [conv.id]
    assert store.list_conversations("naive") == []
    assert store.list_conversations("strasse") == []


def test_message_search_goes_through_the_index_and_follows_edits_and_deletes(store, db_path):
    conv = store.create_conversation("Chat")
    msg = store.add_message(conv.id, "user", "Tell me about Ärger with the naïve café owner")
    other = store.create_conversation("Other")
    store.add_message(other.id, "user", "nothing relevant")
    assert [x.id for x in store.list_conversations("ärger")] == [conv.id]
    assert [x.id for x in store.list_conversations("NAÏVE CAF")] == [conv.id]
    assert [x.id for x in store.list_conversations("bout ärg")] == [conv.id]  # inside words too
    plan = " ".join(r[-1] for r in store._connection().execute(
        "EXPLAIN QUERY PLAN " + "SELECT rowid FROM message_search WHERE message_search MATCH '\"aerg\"'"))
    assert "VIRTUAL TABLE INDEX" in plan
    store.update_message(msg.id, content="now about gardening")
    assert store.list_conversations("ärger") == []
    assert [x.id for x in store.list_conversations("gardening")] == [conv.id]
    store.delete_messages_from(conv.id, 0)
    assert store.list_conversations("gardening") == []
    store.add_message(other.id, "assistant", "gardening tips")
    store.delete_conversation(other.id)  # messages go by cascade; the index follows
    assert store.list_conversations("gardening") == []
    indexed = sqlite3.connect(db_path).execute("SELECT count(*) FROM message_search").fetchone()[0]
    assert indexed == 0


@pytest.mark.parametrize("text", ['"', '""', 'a OR b', "NEAR(x y)", "x*", "col:val", "'; DROP TABLE messages; --",
                                  "^start", "(unbalanced", "-minus", "AND"])
def test_search_text_is_never_search_syntax(store, text):
    hit = store.create_conversation("Chat")
    store.add_message(hit.id, "user", f"before {text} after")
    store.create_conversation("Miss")
    assert [x.id for x in store.list_conversations(text)] == [hit.id]


def test_an_old_database_is_indexed_on_upgrade(db_path, monkeypatch):
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS[:2])
    with ConversationStore(db_path) as old:
        conv = old.create_conversation("Old chat")
        old.add_message(conv.id, "user", "a message written before the index existed")
        assert old.schema_version() == 2
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS)
    with ConversationStore(db_path) as new:
        assert new.schema_version() == len(MIGRATIONS)
        assert [x.id for x in new.list_conversations("before the index")] == [conv.id]


def _hold_write_lock(db_path):
    """Another program writing: a second connection holding the database's write lock."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('x', 0, 0)")
    return other


def test_a_locked_database_fails_fast_on_a_short_timeout_thread_and_reads_go_on(store, db_path):
    import time

    conv = store.create_conversation("Mine")
    store.add_message(conv.id, "user", "hello there")
    store.set_busy_timeout(0.2)
    other = _hold_write_lock(db_path)
    try:
        started = time.perf_counter()
        assert [x.id for x in store.list_conversations("hello")] == [conv.id]  # WAL: reads do not wait
        with pytest.raises(StoreError) as info:
            store.rename(conv.id, "Renamed")
        assert time.perf_counter() - started < 2.0
        assert "using the database" in info.value.hint
    finally:
        other.rollback()
        other.close()
    assert store.rename(conv.id, "Renamed").title == "Renamed"


def test_a_worker_waiting_for_the_lock_does_not_hold_up_other_threads(store, db_path):
    """A write on one thread waits for the lock; meanwhile another thread reads at once."""
    import time

    conv = store.create_conversation("Mine")
    other = _hold_write_lock(db_path)
    done = threading.Event()

    def slow_write():
        store.add_message(conv.id, "user", "written once the lock is free")
        done.set()

    writer = threading.Thread(target=slow_write)
    writer.start()
    try:
        time.sleep(0.3)  # the writer is now waiting for the lock (its timeout is the default 10 s)
        started = time.perf_counter()
        assert [x.id for x in store.list_conversations()] == [conv.id]
        assert time.perf_counter() - started < 0.5
        assert not done.is_set()
    finally:
        other.rollback()
        other.close()
    writer.join(timeout=10)
    assert done.is_set() and store.messages(conv.id)[0].content == "written once the lock is free"


# -- messages -------------------------------------------------------------------------------------

def test_messages_are_ordered_with_positions(store):
    conv = store.create_conversation()
    added = [store.add_message(conv.id, role, text)
             for role, text in [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]]
    listed = store.messages(conv.id)
    assert listed == added
    assert [m.position for m in listed] == [0, 1, 2, 3]
    assert all(m.conversation_id == conv.id and m.stats is None for m in listed)


def test_stats_round_trip_and_update(store, db_path):
    conv = store.create_conversation()
    stats = ReplyStats(prompt_tokens=30, prompt_tokens_evaluated=12, completion_tokens=120, ttft_s=0.125,
                       gen_tokens_per_s=42.5, total_s=3.0, finish_reason="length")
    msg = store.add_message(conv.id, "assistant", "draft")
    assert msg.stats is None
    updated = store.update_message(msg.id, content="final", stats=stats)
    assert updated.content == "final" and updated.stats == stats
    with ConversationStore(db_path) as again:
        assert again.messages(conv.id)[0].stats == stats
    assert store.update_message(msg.id, content="edited").stats == stats  # stats omitted: kept
    cleared = store.update_message(msg.id, stats=None)
    assert cleared.stats is None and cleared.content == "edited"


def test_delete_messages_from(store):
    conv = store.create_conversation()
    for i in range(5):
        store.add_message(conv.id, "user" if i % 2 == 0 else "assistant", f"m{i}")
    before = store.get_conversation(conv.id).updated_at
    assert store.delete_messages_from(conv.id, 3) == 2
    assert [m.content for m in store.messages(conv.id)] == ["m0", "m1", "m2"]
    assert store.get_conversation(conv.id).updated_at > before
    # regenerate: the next reply takes the freed position
    assert store.add_message(conv.id, "assistant", "again").position == 3
    assert store.delete_messages_from(conv.id, 10) == 0
    assert store.delete_messages_from(conv.id, 0) == 4
    assert store.messages(conv.id) == []


def test_chat_messages_in_openai_form(store):
    conv = store.create_conversation(system_prompt="Be brief.")
    store.add_message(conv.id, "user", "Hi")
    store.add_message(conv.id, "assistant", "Hello!", stats=ReplyStats(completion_tokens=2))
    assert store.chat_messages(conv.id) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    store.update_conversation(conv.id, system_prompt="")
    assert store.chat_messages(conv.id)[0] == {"role": "user", "content": "Hi"}


# -- threads --------------------------------------------------------------------------------------

def test_concurrent_writers(store):
    conv = store.create_conversation()
    n_threads, per_thread = 6, 25
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def writer(k: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                store.add_message(conv.id, "user", f"t{k}-{i}")
                store.list_conversations("t")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    listed = store.messages(conv.id)
    assert [m.position for m in listed] == list(range(n_threads * per_thread))
    assert len({m.content for m in listed}) == n_threads * per_thread
    for k in range(n_threads):  # each thread's own messages stay in its order
        mine = [m.content for m in listed if m.content.startswith(f"t{k}-")]
        assert mine == [f"t{k}-{i}" for i in range(per_thread)]


def test_each_thread_has_its_own_connection_closed_when_the_thread_ends(store):
    import gc

    conv = store.create_conversation("Shared")
    seen = []

    def work():
        seen.append(id(store._connection()))
        store.add_message(conv.id, "user", "from a thread")

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
        t.join()
    gc.collect()
    assert len(store.messages(conv.id)) == 12
    assert len(store._connections) == 1  # only this thread's remains open
