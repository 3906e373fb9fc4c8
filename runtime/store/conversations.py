"""Saved chat conversations, in SQLite. Qt-free; safe to use from several threads.

One connection per thread; WAL journal (reads never wait for a writer); foreign keys on. The
schema grows through ``MIGRATIONS``, an append-only list of SQL scripts; the number applied is kept in
``PRAGMA user_version``. API keys never go in this database.

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
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from runtime import paths
from runtime.engine.types import LoadOptions, ReplyStats, SamplingParams
from runtime.errors import StoreError

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
]

DEFAULT_BUSY_TIMEOUT_S = 10.0   # how long a write waits for another writer (per thread: set_busy_timeout)
SEARCH_MIN_CHARS = 3            # the trigram index needs three characters; shorter searches scan

BACKENDS = ("local", "remote")
ROLES = ("system", "user", "assistant")
CONTEXT_POLICIES = ("drop_oldest", "stop")
_UPDATABLE = ("title", "backend", "model_ref", "remote_base_url", "system_prompt", "sampling", "load",
              "context_policy")
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


@dataclass
class Message:
    id: int
    conversation_id: int
    position: int
    role: str
    content: str
    stats: ReplyStats | None
    created_at: float


class ConversationStore:
    """Conversations and messages in one SQLite file (default: ``paths.database_path()``).

    Each thread gets its own connection, so with the WAL journal a read on the UI thread never waits
    for a write that a worker thread (or another process) has in progress. How long a *write* waits
    for the database lock is set per thread: ``busy_timeout_s`` by default, shorter on the UI thread
    (``set_busy_timeout``), where a busy database raises StoreError at once instead of freezing.
    """

    def __init__(self, path: Path | str | None = None, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S):
        self.path = Path(path) if path is not None else paths.database_path()
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()         # guards the connection registry and _last_time
        self._local = threading.local()       # .conn: this thread's _ThreadConnection
        self._connections: weakref.WeakSet[_ThreadConnection] = weakref.WeakSet()
        self._closed = False
        self._last_time = 0.0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"Cannot create the folder for the database {self.path}: {exc}",
                             path=self.path, hint="Check that the folder is writable.") from exc
        try:
            self._migrate(self._connection())
        except sqlite3.Error as exc:
            self.close()
            raise self._error(exc, opening=True) from exc
        except StoreError:
            self.close()
            raise

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection. Safe to call twice."""
        with self._lock:
            self._closed = True
            connections = list(self._connections)
        for holder in connections:
            holder.close()

    def __enter__(self) -> "ConversationStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_busy_timeout(self, seconds: float) -> None:
        """How long writes from *this thread* wait for a locked database before raising StoreError."""
        self._local.busy_timeout_s = seconds
        holder = getattr(self._local, "conn", None)
        if holder is not None:
            holder.conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    def schema_version(self) -> int:
        with self._tx() as db:
            return db.execute("PRAGMA user_version").fetchone()[0]

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use and closed when the thread ends."""
        holder = getattr(self._local, "conn", None)
        if holder is not None:
            return holder.conn
        if self._closed:
            raise StoreError(f"The conversation store {self.path} is closed.", path=self.path)
        timeout = getattr(self._local, "busy_timeout_s", self.busy_timeout_s)
        # check_same_thread=False only so that close() may close it from another thread
        conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.create_function("workbench_fold", 1, _fold, deterministic=True)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error:
            conn.close()
            raise
        holder = _ThreadConnection(conn)
        with self._lock:
            self._connections.add(holder)
        self._local.conn = holder
        return conn

    def _migrate(self, db: sqlite3.Connection) -> None:
        while True:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"The database {self.path} was written by a newer Model Workbench "
                    f"(schema version {version}; this version knows up to {len(MIGRATIONS)}).",
                    path=self.path, unusable=True,
                    hint=f"Update Model Workbench, or move {self.path} aside to start with an empty database.")
            if version == len(MIGRATIONS):
                return
            target = version + 1
            script = f"BEGIN IMMEDIATE;\n{MIGRATIONS[version]}\nPRAGMA user_version = {target};\nCOMMIT;"
            try:
                db.executescript(script)
            except sqlite3.Error:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                # Another process may have applied it meanwhile: then carry on from there.
                if db.execute("PRAGMA user_version").fetchone()[0] < target:
                    raise

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction on this thread's connection; sqlite errors come out as StoreError."""
        try:
            db = self._connection()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        if self._closed:
            raise StoreError(f"The conversation store {self.path} is closed.", path=self.path)
        try:
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from exc
            raise

    def _error(self, exc: sqlite3.Error, opening: bool = False) -> StoreError:
        """``exc`` as a StoreError with a hint. ``opening``: it came from opening or upgrading the file;
        when the file itself is at fault (damaged, tables this version cannot upgrade) the error
        carries the fact ``unusable=True``, and ``move_aside`` is the fix."""
        text = str(exc)
        low = text.lower()
        move = f"Move {self.path} aside (rename it; the app's window offers to) to start with an empty database."
        unusable = False
        if "not a database" in low or "malformed" in low or "corrupt" in low:
            hint, unusable = f"The database file is damaged. {move}", opening
        elif "full" in low:
            hint = "The disk is full. Free some space and try again."
        elif "no such module: fts5" in low:
            hint = "This Python's SQLite lacks FTS5, which conversation search needs; use a standard Python build."
        elif "locked" in low or "busy" in low:
            hint = "Another program (or a second copy of the app) is using the database. Close it and retry."
        elif "readonly" in low or "unable to open" in low or "disk i/o" in low:
            hint = f"Check that {self.path.parent} exists and is writable."
        elif opening:  # a migration failed on this file
            hint, unusable = f"The database file is damaged or has tables this version cannot upgrade. {move}", True
        else:
            hint = "Restart the app. If it keeps happening, move the database file aside."
        facts = {"unusable": True} if unusable else {}
        return StoreError(f"Database error in {self.path}: {text}", path=self.path, hint=hint, **facts)

    def _now(self) -> float:
        """time.time(), nudged so that successive writes always get increasing times."""
        with self._lock:
            self._last_time = max(time.time(), self._last_time + 1e-6)
            return self._last_time

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
                            load: LoadOptions | None = None, context_policy: str = "drop_oldest") -> Conversation:
        """Insert a conversation with no messages and return it."""
        title = _check_title(title)
        _check_backend(backend)
        _check_policy(context_policy)
        sampling = sampling or SamplingParams()
        load = load or LoadOptions()
        with self._tx(write=True) as db:
            now = self._now()
            cur = db.execute(
                "INSERT INTO conversations (title, created_at, updated_at, backend, model_ref,"
                " remote_base_url, system_prompt, sampling_json, load_json, context_policy)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (title, now, now, backend, model_ref, remote_base_url, system_prompt,
                 json.dumps(sampling.to_dict()), json.dumps(load.to_dict()), context_policy))
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
        context_policy."""
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


class _ThreadConnection:
    """One thread's connection, held by that thread's local storage and weakly by the store.

    When the thread ends its local storage goes, and with it the last reference: the connection is
    then closed by sqlite3's own clean-up. (An explicit close() in ``__del__`` crashed the process
    when it ran during a QThread's teardown.)
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def close(self) -> None:
        self.conn.close()


def move_aside(path: Path | str) -> Path:
    """Rename a database that cannot be used to ``<stem>.damaged-YYYYmmdd-HHMMSS<suffix>`` next to it.

    Its ``-wal`` and ``-shm`` files go along (they hold part of its data). Nothing is deleted or
    overwritten. Returns the new path; raises StoreError when the file cannot be renamed.
    """
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = path.with_name(f"{path.stem}.damaged-{stamp}{path.suffix}"), 1
    while any(Path(f"{target}{end}").exists() for end in ("", "-wal", "-shm")):
        n += 1
        target = path.with_name(f"{path.stem}.damaged-{stamp}-{n}{path.suffix}")
    try:
        path.rename(target)
        for end in ("-wal", "-shm"):
            if Path(f"{path}{end}").exists():
                Path(f"{path}{end}").rename(f"{target}{end}")
    except OSError as exc:
        raise StoreError(f"Cannot move {path} aside: {exc}", path=path,
                         hint="Close every program that uses it and check that its folder is writable, "
                              "or rename the file yourself.") from exc
    return target


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
        context_policy=row["context_policy"])


def _message(row: sqlite3.Row) -> Message:
    stats = ReplyStats.from_dict(json.loads(row["stats_json"])) if row["stats_json"] else None
    return Message(id=row["id"], conversation_id=row["conversation_id"], position=row["position"],
                   role=row["role"], content=row["content"], stats=stats, created_at=row["created_at"])
