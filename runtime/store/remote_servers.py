"""Saved remote servers (name, base URL, model), in the app's SQLite file. Qt-free, thread-safe.

A server's API key is never stored here: ``key_ref`` (a random id made when the server is saved) is
the user name under which ``runtime.chat.remote_servers.ServerKeys`` keeps the key in the OS
keyring. Names are unique, ignoring case. Deleting a server leaves the conversations bound to it
intact (their ``remote_server_id`` becomes NULL; they keep the server's URL and model).
"""
from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass

from runtime.store.database import Database


@dataclass
class RemoteServer:
    id: int
    name: str
    base_url: str
    model: str          # "" means the server's first model
    key_ref: str        # the keyring user name of its API key (not secret, not the key)
    created_at: float
    updated_at: float


class RemoteServerStore(Database):
    """Saved remote servers in ``paths.database_path()`` (or ``path``); see the module docstring."""

    what = "server list"

    def list_servers(self) -> list[RemoteServer]:
        """Every saved server, by name (ignoring case)."""
        with self._tx() as db:
            rows = db.execute("SELECT * FROM remote_servers ORDER BY name COLLATE NOCASE, id").fetchall()
        return [_server(r) for r in rows]

    def get_server(self, server_id: int) -> RemoteServer | None:
        with self._tx() as db:
            row = db.execute("SELECT * FROM remote_servers WHERE id = ?", (server_id,)).fetchone()
        return _server(row) if row is not None else None

    def find_server(self, name: str) -> RemoteServer | None:
        """The server saved under ``name`` (ignoring case), or None."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM remote_servers WHERE name = ? COLLATE NOCASE",
                             (name.strip(),)).fetchone()
        return _server(row) if row is not None else None

    def add_server(self, name: str, base_url: str, model: str = "") -> RemoteServer:
        """Save a new server; ValueError when the name is empty or taken."""
        name = _check_name(name)
        with self._tx(write=True) as db:
            _check_free(db, name, None)
            now = self._now()
            cur = db.execute(
                "INSERT INTO remote_servers (name, base_url, model, key_ref, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, base_url.strip(), model.strip(), f"server-{uuid.uuid4().hex}", now, now))
            row = db.execute("SELECT * FROM remote_servers WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _server(row)

    def update_server(self, server_id: int, name: str | None = None, base_url: str | None = None,
                      model: str | None = None) -> RemoteServer:
        """Change a saved server's name, URL or model; ValueError when the new name is empty or taken,
        LookupError when the server is gone."""
        with self._tx(write=True) as db:
            row = db.execute("SELECT * FROM remote_servers WHERE id = ?", (server_id,)).fetchone()
            if row is None:
                raise LookupError(f"The saved server {server_id} no longer exists.")
            fields = {"name": _check_name(name) if name is not None else row["name"],
                      "base_url": base_url.strip() if base_url is not None else row["base_url"],
                      "model": model.strip() if model is not None else row["model"]}
            _check_free(db, fields["name"], server_id)
            db.execute("UPDATE remote_servers SET name = ?, base_url = ?, model = ?, updated_at = ? WHERE id = ?",
                       (fields["name"], fields["base_url"], fields["model"], self._now(), server_id))
            row = db.execute("SELECT * FROM remote_servers WHERE id = ?", (server_id,)).fetchone()
        return _server(row)

    def delete_server(self, server_id: int) -> bool:
        """Forget a saved server (not its keyring entry: see ServerKeys.forget). True if it was there."""
        with self._tx(write=True) as db:
            return db.execute("DELETE FROM remote_servers WHERE id = ?", (server_id,)).rowcount > 0


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValueError("Give the server a name, e.g. Home GPU.")
    return name


def _check_free(db: sqlite3.Connection, name: str, server_id: int | None) -> None:
    row = db.execute("SELECT id FROM remote_servers WHERE name = ? COLLATE NOCASE", (name,)).fetchone()
    if row is not None and row["id"] != server_id:
        raise ValueError(f"A server named '{name}' is saved already; choose another name.")


def _server(row: sqlite3.Row) -> RemoteServer:
    return RemoteServer(id=row["id"], name=row["name"], base_url=row["base_url"], model=row["model"],
                        key_ref=row["key_ref"], created_at=row["created_at"], updated_at=row["updated_at"])
