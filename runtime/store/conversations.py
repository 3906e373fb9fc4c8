"""Saved chat conversations, in SQLite. Qt-free; safe to use from several threads.

One connection per thread; WAL journal (reads never wait for a writer); foreign keys on (that
machinery is ``runtime.store.database.Database``, shared with the other stores of the same file). The
schema of the whole file grows through ``MIGRATIONS``, an append-only list of SQL scripts; the number
applied is kept in ``PRAGMA user_version``. API keys and access tokens never go in this database.

Search is a plain, case-insensitive substring match (no search syntax). Message text goes through an
FTS5 index with the trigram tokenizer (migration 3, kept in step by triggers), so part of a word is
found; it folds case the Unicode "simple" way (Ä/ä, Ω/ω, Я/я) and keeps diacritics significant
(naïve is not naive), but does not fold ß to ss. Searches shorter than three characters, and titles,
are scanned with Python's casefold. FTS5 ships with CPython's SQLite on Linux, macOS and Windows;
a build without it fails to open the store with a StoreError saying so.

A file that cannot be opened or upgraded because of its own state (damaged, tables this version cannot
upgrade, written by a newer version) raises StoreError with the fact ``unusable=True``;
``move_aside(path)`` renames it (never deletes it) so that a fresh database can start.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from runtime.engine.types import LoadOptions, ReplyStats, SamplingParams
from runtime.errors import StoreError
from runtime.store.database import DEFAULT_BUSY_TIMEOUT_S, Database, move_aside  # noqa: F401 - re-exported

# Append only: never edit a migration that has shipped; add a new one instead.
MIGRATIONS: list[str] = [
    # 1: conversations and their messages
    """
    CREATE TABLE conversations (
        id              INTEGER PRIMARY KEY,
        title           TEXT NOT NULL,
        created_at      REAL NOT NULL,
        updated_at      REAL NOT NULL,
        backend         TEXT NOT NULL DEFAULT 'local' CHECK (backend IN ('local', 'remote')),
        model_ref       TEXT NOT NULL DEFAULT '',
        remote_base_url TEXT NOT NULL DEFAULT '',
        system_prompt   TEXT NOT NULL DEFAULT '',
        sampling_json   TEXT NOT NULL DEFAULT '{}',
        load_json       TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX conversations_by_updated ON conversations (updated_at DESC);
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        position        INTEGER NOT NULL,
        role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content         TEXT NOT NULL,
        stats_json      TEXT,
        created_at      REAL NOT NULL,
        UNIQUE (conversation_id, position)
    );
    """,
    # 2: what to do when a conversation outgrows the loaded context (see runtime/chat/context.py)
    """
    ALTER TABLE conversations ADD COLUMN context_policy TEXT NOT NULL DEFAULT 'drop_oldest'
        CHECK (context_policy IN ('drop_oldest', 'stop'));
    """,
    # 3: a full-text index of message contents for search (trigrams: substrings, any case)
    """
    CREATE VIRTUAL TABLE message_search USING fts5(
        content, content = 'messages', content_rowid = 'id', tokenize = 'trigram');
    CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN
        INSERT INTO message_search (rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER message_search_delete AFTER DELETE ON messages BEGIN
        INSERT INTO message_search (message_search, rowid, content) VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER message_search_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO message_search (message_search, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO message_search (rowid, content) VALUES (new.id, new.content);
    END;
    INSERT INTO message_search (message_search) VALUES ('rebuild');
    """,
    # 4: the memory a loaded model really used, next to the estimate the fit badge showed
    """
    CREATE TABLE model_memory (
        model_path      TEXT PRIMARY KEY,
        n_ctx           INTEGER NOT NULL,
        estimated_bytes INTEGER NOT NULL,
        measured_bytes  INTEGER NOT NULL,
        measured_at     REAL NOT NULL
    );
    """,
    # 5: downloads from Hugging Face and where they stand (see runtime/store/downloads.py)
    """
    CREATE TABLE downloads (
        id           INTEGER PRIMARY KEY,
        repo_id      TEXT NOT NULL,
        revision     TEXT NOT NULL,
        commit_sha   TEXT,
        label        TEXT NOT NULL DEFAULT '',
        files_json   TEXT NOT NULL,
        dest         TEXT,
        status       TEXT NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'paused', 'failed', 'done', 'cancelled')),
        done_bytes   INTEGER NOT NULL DEFAULT 0,
        total_bytes  INTEGER NOT NULL DEFAULT 0,
        error_json   TEXT,
        paths_json   TEXT NOT NULL DEFAULT '[]',
        created_at   REAL NOT NULL,
        updated_at   REAL NOT NULL,
        finished_at  REAL
    );
    CREATE INDEX downloads_by_status ON downloads (status, updated_at);
    """,
    # 6: benchmark runs and one complete row per model file (see runtime/store/bench_runs.py)
    """
    CREATE TABLE bench_runs (
        id             INTEGER PRIMARY KEY,
        started_at     REAL NOT NULL,
        finished_at    REAL,
        machine_json   TEXT NOT NULL DEFAULT '{}',
        options_json   TEXT NOT NULL DEFAULT '{}',
        text_name      TEXT,
        reference_path TEXT
    );
    CREATE INDEX bench_runs_by_start ON bench_runs (started_at);
    CREATE TABLE bench_results (
        id           INTEGER PRIMARY KEY,
        run_id       INTEGER NOT NULL REFERENCES bench_runs (id) ON DELETE CASCADE,
        position     INTEGER NOT NULL,
        path         TEXT NOT NULL,
        name         TEXT NOT NULL,
        group_key    TEXT NOT NULL,
        quant        TEXT,
        size_bytes   INTEGER NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'skipped')),
        error        TEXT,
        speed_json   TEXT,
        quality_json TEXT,
        CHECK (status = 'ok' OR (error IS NOT NULL AND error != '')),
        CHECK (status != 'ok' OR speed_json IS NOT NULL OR quality_json IS NOT NULL),
        UNIQUE (run_id, position)
    );
    CREATE INDEX bench_results_by_group ON bench_results (group_key, run_id);
    """,
    # 7: saved remote servers (their API keys live in the OS keyring under key_ref, never here), and
    # which saved server a conversation is bound to (see runtime/store/remote_servers.py)
    """
    CREATE TABLE remote_servers (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE COLLATE NOCASE CHECK (trim(name) != ''),
        base_url   TEXT NOT NULL,
        model      TEXT NOT NULL DEFAULT '',
        key_ref    TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    ALTER TABLE conversations ADD COLUMN remote_server_id INTEGER
        REFERENCES remote_servers (id) ON DELETE SET NULL;
    """,
    # 8: a benchmark row's other figures and words, as one JSON object (see runtime/store/bench_runs.py
    # EXTRA_KEYS): its note, the engine (llama.cpp or PyTorch), batched generation, KV-reuse turns
    """
    ALTER TABLE bench_results ADD COLUMN extra_json TEXT;
    """,
]

SEARCH_MIN_CHARS = 3            # the trigram index needs three characters; shorter searches scan

BACKENDS = ("local", "remote")
ROLES = ("system", "user", "assistant")
CONTEXT_POLICIES = ("drop_oldest", "stop")
_UPDATABLE = ("title", "backend", "model_ref", "remote_base_url", "system_prompt", "sampling", "load",
              "context_policy", "remote_server_id")
_UNSET = object()  # "leave unchanged" marker for optional arguments that accept None


@dataclass
class Conversation:
    id: int
    title: str
    created_at: float
    updated_at: float
    backend: str
    model_ref: str
    remote_base_url: str
    system_prompt: str
    sampling: SamplingParams
    load: LoadOptions
    context_policy: str = "drop_oldest"   # drop_oldest | stop: when the conversation outgrows the context
    remote_server_id: int | None = None   # the saved remote server it is bound to (runtime/store/remote_servers.py)


@dataclass
class Message:
    id: int
    conversation_id: int
    position: int
    role: str
    content: str
    stats: ReplyStats | None
    created_at: float


class ConversationStore(Database):
    """Conversations and messages in one SQLite file (default: ``paths.database_path()``).

    Each thread gets its own connection, so with the WAL journal a read on the UI thread never waits
    for a write that a worker thread (or another process) has in progress. How long a *write* waits
    for the database lock is set per thread: ``busy_timeout_s`` by default, shorter on the UI thread
    (``set_busy_timeout``), where a busy database raises StoreError at once instead of freezing.
    The connection and migration machinery is ``runtime.store.database.Database``'s.
    """

    what = "conversation store"

    def _migrations(self) -> list[str]:
        return MIGRATIONS

    def _setup_connection(self, conn: sqlite3.Connection) -> None:
        conn.create_function("workbench_fold", 1, _fold, deterministic=True)

    def __enter__(self) -> "ConversationStore":
        return self

    def _touch(self, db: sqlite3.Connection, conversation_id: int) -> float:
        now = self._now()
        cur = db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
        if cur.rowcount == 0:
            raise _unknown_conversation(conversation_id, self.path)
        return now

    # -- conversations --------------------------------------------------------------------------

    def create_conversation(self, title: str = "New chat", backend: str = "local", model_ref: str = "",
                            remote_base_url: str = "", system_prompt: str = "",
                            sampling: SamplingParams | None = None,
                            load: LoadOptions | None = None, context_policy: str = "drop_oldest",
                            remote_server_id: int | None = None) -> Conversation:
        """Insert a conversation with no messages and return it."""
        title = _check_title(title)
        _check_backend(backend)
        _check_policy(context_policy)
        sampling = sampling or SamplingParams()
        load = load or LoadOptions()
        with self._tx(write=True) as db:
            now = self._now()
            columns = {"title": title, "created_at": now, "updated_at": now, "backend": backend,
                       "model_ref": model_ref, "remote_base_url": remote_base_url, "system_prompt": system_prompt,
                       "sampling_json": json.dumps(sampling.to_dict()), "load_json": json.dumps(load.to_dict()),
                       "context_policy": context_policy}
            if remote_server_id is not None:  # (a column since migration 7)
                columns["remote_server_id"] = remote_server_id
            cur = db.execute(
                f"INSERT INTO conversations ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                tuple(columns.values()))
            row = db.execute("SELECT * FROM conversations WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _conversation(row)

    def get_conversation(self, conversation_id: int) -> Conversation:
        with self._tx() as db:
            row = db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise _unknown_conversation(conversation_id, self.path)
        return _conversation(row)

    def list_conversations(self, search: str = "") -> list[Conversation]:
        """Newest-updated first. ``search`` matches the title or any message, ignoring case.

        The text is a plain substring (no search syntax). Messages are searched through the trigram
        index (migration 3); a search shorter than three characters, which trigrams cannot serve,
        scans the messages instead. Titles are few and short, so they are always scanned.
        """
        raw = search.strip()
        search = raw.casefold()
        sql = "SELECT c.* FROM conversations c"
        if len(raw) >= SEARCH_MIN_CHARS:
            sql += (" WHERE c.id IN (SELECT id FROM conversations WHERE instr(workbench_fold(title), :q)"
                    " UNION SELECT conversation_id FROM messages WHERE id IN"
                    " (SELECT rowid FROM message_search WHERE message_search MATCH :phrase))")
        elif search:  # instr, not LIKE: % and _ in the search text are plain characters
            sql += (" WHERE instr(workbench_fold(c.title), :q)"
                    " OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id"
                    " AND instr(workbench_fold(m.content), :q))")
        sql += " ORDER BY c.updated_at DESC, c.id DESC"
        # One FTS phrase: double quotes inside are doubled, so nothing in it is search syntax. The
        # tokenizer folds case itself; casefold() would turn "Straße" into "strasse" and miss it.
        phrase = '"' + raw.replace('"', '""') + '"'
        with self._tx() as db:
            rows = db.execute(sql, {"q": search, "phrase": phrase}).fetchall()
        return [_conversation(r) for r in rows]

    # -- measured model memory ------------------------------------------------------------------

    def record_model_memory(self, model_path: str, n_ctx: int, estimated_bytes: int, measured_bytes: int) -> None:
        """Keep what a loaded model really used (the latest load per file; within one load and context,
        the highest figure seen)."""
        with self._tx(write=True) as db:
            db.execute(
                "INSERT INTO model_memory (model_path, n_ctx, estimated_bytes, measured_bytes, measured_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (model_path) DO UPDATE SET"
                " measured_bytes = CASE WHEN n_ctx = excluded.n_ctx AND estimated_bytes = excluded.estimated_bytes"
                " THEN max(measured_bytes, excluded.measured_bytes) ELSE excluded.measured_bytes END,"
                " n_ctx = excluded.n_ctx, estimated_bytes = excluded.estimated_bytes,"
                " measured_at = excluded.measured_at",
                (str(model_path), int(n_ctx), int(estimated_bytes), int(measured_bytes), self._now()))

    def model_memory(self) -> dict[str, dict]:
        """Every recorded measurement by model path: n_ctx, estimated_bytes, measured_bytes, measured_at."""
        with self._tx() as db:
            rows = db.execute("SELECT * FROM model_memory").fetchall()
        return {r["model_path"]: {k: r[k] for k in ("n_ctx", "estimated_bytes", "measured_bytes", "measured_at")}
                for r in rows}

    def update_conversation(self, conversation_id: int, **fields) -> Conversation:
        """Change any of title, backend, model_ref, remote_base_url, system_prompt, sampling, load,
        context_policy, remote_server_id."""
        unknown = set(fields) - set(_UPDATABLE)
        if unknown:
            raise TypeError(f"update_conversation() got unknown fields: {', '.join(sorted(unknown))}")
        columns: dict[str, object] = {}
        for name, value in fields.items():
            if name == "title":
                columns["title"] = _check_title(value)
            elif name == "backend":
                columns["backend"] = _check_backend(value)
            elif name == "sampling":
                columns["sampling_json"] = json.dumps(value.to_dict())
            elif name == "load":
                columns["load_json"] = json.dumps(value.to_dict())
            elif name == "context_policy":
                columns["context_policy"] = _check_policy(value)
            else:
                columns[name] = value
        with self._tx(write=True) as db:
            self._touch(db, conversation_id)
            if columns:
                assignments = ", ".join(f"{name} = ?" for name in columns)
                db.execute(f"UPDATE conversations SET {assignments} WHERE id = ?",
                           (*columns.values(), conversation_id))
            row = db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        return _conversation(row)

    def rename(self, conversation_id: int, title: str) -> Conversation:
        """Set the title; an empty title raises ValueError."""
        return self.update_conversation(conversation_id, title=title)

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete the conversation and (by cascade) its messages."""
        with self._tx(write=True) as db:
            cur = db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            if cur.rowcount == 0:
                raise _unknown_conversation(conversation_id, self.path)

    # -- messages -------------------------------------------------------------------------------

    def add_message(self, conversation_id: int, role: str, content: str,
                    stats: ReplyStats | None = None) -> Message:
        """Append a message at the next position."""
        if role not in ROLES:
            raise ValueError(f"Unknown message role {role!r}; expected one of {', '.join(ROLES)}.")
        with self._tx(write=True) as db:
            now = self._touch(db, conversation_id)
            position = db.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM messages WHERE conversation_id = ?",
                (conversation_id,)).fetchone()[0]
            cur = db.execute(
                "INSERT INTO messages (conversation_id, position, role, content, stats_json, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (conversation_id, position, role, content, _stats_json(stats), now))
            row = db.execute("SELECT * FROM messages WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _message(row)

    def update_message(self, message_id: int, content: str | None = None, stats=_UNSET) -> Message:
        """Change a message's content and/or stats (``stats=None`` clears them; omitted keeps them)."""
        with self._tx(write=True) as db:
            row = db.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise StoreError(f"No message with id {message_id} in {self.path}.", path=self.path,
                                 hint="The message or its conversation may have been deleted.",
                                 message_id=message_id)
            if content is not None:
                db.execute("UPDATE messages SET content = ? WHERE id = ?", (content, message_id))
            if stats is not _UNSET:
                db.execute("UPDATE messages SET stats_json = ? WHERE id = ?", (_stats_json(stats), message_id))
            self._touch(db, row["conversation_id"])
            row = db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _message(row)

    def messages(self, conversation_id: int) -> list[Message]:
        """The conversation's messages in order."""
        with self._tx() as db:
            self._require_conversation(db, conversation_id)
            rows = db.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY position",
                              (conversation_id,)).fetchall()
        return [_message(r) for r in rows]

    def delete_messages_from(self, conversation_id: int, position: int) -> int:
        """Delete the message at ``position`` and all after it (regenerate, edit and resend).

        Returns how many were deleted.
        """
        with self._tx(write=True) as db:
            self._touch(db, conversation_id)
            cur = db.execute("DELETE FROM messages WHERE conversation_id = ? AND position >= ?",
                             (conversation_id, position))
        return cur.rowcount

    def chat_messages(self, conversation_id: int) -> list[dict]:
        """The conversation in OpenAI form, system prompt first when there is one."""
        with self._tx() as db:
            conv = self._require_conversation(db, conversation_id)
            rows = db.execute("SELECT role, content FROM messages WHERE conversation_id = ?"
                              " ORDER BY position", (conversation_id,)).fetchall()
        out = [{"role": "system", "content": conv["system_prompt"]}] if conv["system_prompt"] else []
        return out + [{"role": r["role"], "content": r["content"]} for r in rows]

    def _require_conversation(self, db: sqlite3.Connection, conversation_id: int) -> sqlite3.Row:
        row = db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise _unknown_conversation(conversation_id, self.path)
        return row


# -- helpers ------------------------------------------------------------------------------------

def _unknown_conversation(conversation_id: int, path: Path) -> StoreError:
    return StoreError(f"No conversation with id {conversation_id} in {path}.", path=path,
                      hint="It may have been deleted.", conversation_id=conversation_id)


def _check_title(title: str) -> str:
    title = (title or "").strip()
    if not title:
        raise ValueError("A conversation title cannot be empty.")
    return title


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; expected 'local' or 'remote'.")
    return backend


def _check_policy(policy: str) -> str:
    if policy not in CONTEXT_POLICIES:
        raise ValueError(f"Unknown context policy {policy!r}; expected one of {', '.join(CONTEXT_POLICIES)}.")
    return policy


def _fold(text: str | None) -> str | None:
    """Unicode-aware case folding for search (SQLite's own only folds ASCII)."""
    return text.casefold() if text is not None else None


def _stats_json(stats: ReplyStats | None) -> str | None:
    return json.dumps(stats.to_dict()) if stats is not None else None


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"], title=row["title"], created_at=row["created_at"], updated_at=row["updated_at"],
        backend=row["backend"], model_ref=row["model_ref"], remote_base_url=row["remote_base_url"],
        system_prompt=row["system_prompt"],
        sampling=SamplingParams.from_dict(json.loads(row["sampling_json"] or "{}")),
        load=LoadOptions.from_dict(json.loads(row["load_json"] or "{}")),
        context_policy=row["context_policy"],
        remote_server_id=row["remote_server_id"] if "remote_server_id" in row.keys() else None)


def _message(row: sqlite3.Row) -> Message:
    stats = ReplyStats.from_dict(json.loads(row["stats_json"])) if row["stats_json"] else None
    return Message(id=row["id"], conversation_id=row["conversation_id"], position=row["position"],
                   role=row["role"], content=row["content"], stats=stats, created_at=row["created_at"])
