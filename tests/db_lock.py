"""Another program holding the conversation database's write lock, as the store's tests need it."""
from __future__ import annotations

import sqlite3


class DatabaseLock:
    """A second sqlite3 connection that takes the file's write lock (BEGIN EXCLUSIVE) from any thread."""

    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def take(self) -> None:
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.rollback()

    def close(self) -> None:
        self.release()
        self.conn.close()
