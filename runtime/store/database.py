"""The app's one SQLite file, shared by every store (conversations, downloads, ...). Qt-free.

``Database`` is the machinery the stores share: one connection per thread, WAL journal (reads never
wait for a writer), foreign keys on, transactions whose sqlite errors come out as StoreError with a
hint, and the schema brought up to date from one numbered, append-only migration list (the number
applied is ``PRAGMA user_version``). Every store applies the *whole* list, so whichever store opens a
file first leaves it complete. The list itself lives in ``runtime.store.conversations.MIGRATIONS``.

A file that cannot be opened or upgraded because of its own state (damaged, tables this version cannot
upgrade, written by a newer version) raises StoreError with the fact ``unusable=True``;
``move_aside(path)`` renames it (never deletes it) so that a fresh database can start.
"""
from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from runtime import paths
from runtime.errors import StoreError

DEFAULT_BUSY_TIMEOUT_S = 10.0   # how long a write waits for another writer (per thread: set_busy_timeout)


class Database:
    """Base of the stores: per-thread connections to one SQLite file and its migrations.

    Each thread gets its own connection, so with the WAL journal a read on the UI thread never waits
    for a write that a worker thread (or another process) has in progress. How long a *write* waits
    for the database lock is set per thread: ``busy_timeout_s`` by default, shorter on the UI thread
    (``set_busy_timeout``), where a busy database raises StoreError at once instead of freezing.
    Subclasses give ``_migrations()`` and may add SQL functions in ``_setup_connection``.
    """

    what = "database"  # how messages name this store ("The conversation store ... is closed.")

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

    # -- what subclasses give -------------------------------------------------------------------

    def _migrations(self) -> list[str]:
        """The numbered migration scripts (read at call time, so tests may swap the list)."""
        from runtime.store import conversations

        return conversations.MIGRATIONS

    def _setup_connection(self, conn: sqlite3.Connection) -> None:
        """Called once for each new connection (e.g. to add SQL functions)."""

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection. Safe to call twice."""
        with self._lock:
            self._closed = True
            connections = list(self._connections)
        for holder in connections:
            holder.close()

    def __enter__(self):
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
            raise StoreError(f"The {self.what} {self.path} is closed.", path=self.path)
        timeout = getattr(self._local, "busy_timeout_s", self.busy_timeout_s)
        # check_same_thread=False only so that close() may close it from another thread
        conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            self._setup_connection(conn)
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
        migrations = self._migrations()
        while True:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(migrations):
                raise StoreError(
                    f"The database {self.path} was written by a newer Model Workbench "
                    f"(schema version {version}; this version knows up to {len(migrations)}).",
                    path=self.path, unusable=True,
                    hint=f"Update Model Workbench, or move {self.path} aside to start with an empty database.")
            if version == len(migrations):
                return
            target = version + 1
            script = f"BEGIN IMMEDIATE;\n{migrations[version]}\nPRAGMA user_version = {target};\nCOMMIT;"
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
            raise StoreError(f"The {self.what} {self.path} is closed.", path=self.path)
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
