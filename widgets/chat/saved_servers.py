"""Saved remote servers of the Chat tab: the picker's server list, Save, Delete and Connect.

The servers (name, URL, model) live in the database (``RemoteServerStore``); their API keys in the
OS keyring through ``ServerKeys``, or for this session only where no keyring exists. Keyring calls
may block on an unlock prompt, so they run on workers. What happened is said on the tab's banner.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from runtime.chat.remote_servers import ServerKeys, keyring_status
from runtime.engine.client import check_base_url
from runtime.errors import RemoteServerError, StoreError
from runtime.store.remote_servers import RemoteServerStore
from widgets.workers import Worker, error_text


class SavedServers(QObject):
    """Saves, lists and forgets the servers of one ``RemoteServerForm``, keys in the OS keyring."""

    sig_saved = Signal(object)     # the RemoteServer saved (its key, if any, is stored by then)
    sig_deleted = Signal(object)   # the RemoteServer forgotten
    sig_connect = Signal(str, str, str, object)  # url, typed API key, model, the saved server or None

    def __init__(self, store_path, form, banner, dialog_parent: QWidget, busy_timeout_s: float):
        super().__init__(dialog_parent)
        self.form = form
        self.banner = banner
        self._dialog_parent = dialog_parent
        self.servers = RemoteServerStore(store_path)
        self.servers.set_busy_timeout(busy_timeout_s)
        self.keys = ServerKeys()             # API keys: OS keyring, else this session only
        self.keyring_ok: bool | None = None  # None until checked (on a worker: it may block)
        self._workers: list[Worker] = []
        form.sig_save.connect(self.save)
        form.sig_delete.connect(self.delete)
        form.sig_connect.connect(self._on_connect_clicked)
        self.reload()
        self._check_keyring()

    def reload(self, select_id: int | None = None) -> list:
        """Offer the saved servers in the form (selecting ``select_id``); [] when they cannot be read."""
        try:
            servers = self.servers.list_servers()
        except StoreError as exc:
            self.banner.show_error(exc, before="The saved servers could not be read.")
            return []
        self.form.set_servers(servers, select_id)
        return servers

    def get(self, server_id: int | None):
        """The saved RemoteServer with this id, or None."""
        return self.servers.get_server(server_id) if server_id else None

    def key_lookup(self, server):
        """A function reading ``server``'s saved key (call it off the UI thread); None without a server."""
        keys = self.keys
        return (lambda: keys.get(server.key_ref)) if server is not None else None

    def save(self):
        """Save the server in the form (name, URL, model; its API key into the OS keyring, or for this
        session only when there is none). Returns the RemoteServer, or None (the banner says why).
        ``sig_saved`` follows once the key is stored."""
        form = self.form
        try:
            url = check_base_url(form.base_url.text())
        except RemoteServerError as exc:
            self.banner.show_error(exc)
            return None
        name, model, key = form.name.text().strip(), form.model.text().strip(), form.api_key.text().strip()
        current = form.current_server()
        try:
            if current is not None:
                server = self.servers.update_server(current.id, name=name, base_url=url, model=model)
            else:
                server = self.servers.add_server(name, url, model)
        except (ValueError, LookupError) as exc:
            self.banner.show_message(str(exc).strip("'\""), "error")
            return None
        except StoreError as exc:
            self.banner.show_error(exc, before="The server was not saved.")
            return None
        self.reload(server.id)
        form.api_key.clear()
        if not key:
            self.banner.show_message(f"Saved server '{server.name}'.", "info")
            self.sig_saved.emit(server)
            return server
        keys = self.keys
        worker = Worker(lambda job: keys.put(server.key_ref, key), name="keyring-save")
        worker.sig_done.connect(lambda where: self._on_key_saved(server, where))
        worker.sig_failed.connect(lambda error: self._on_key_saved(server, "", error))
        self._start(worker)
        return server

    def delete(self, confirm: bool | None = None) -> bool:
        """Forget the chosen saved server and its key (``confirm=None``: ask first). False if nothing was."""
        server = self.form.current_server()
        if server is None:
            return False
        if confirm is None:
            answer = QMessageBox.question(
                self._dialog_parent, "Delete server", f"Forget the server '{server.name}' and its saved API key?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            confirm = answer == QMessageBox.StandardButton.Yes
        if not confirm:
            return False
        try:
            self.servers.delete_server(server.id)
        except StoreError as exc:
            self.banner.show_error(exc, before="The server was not deleted.")
            return False
        keys = self.keys
        self._start(Worker(lambda job: keys.forget(server.key_ref), name="keyring-forget"))
        self.reload()
        self.sig_deleted.emit(server)
        return True

    def shutdown(self) -> None:
        """Wait for the keyring workers, then close the database connection."""
        for worker in self._workers:
            worker.wait()
        self._workers = []
        self.servers.close()

    def _on_connect_clicked(self) -> None:
        form = self.form
        server = form.current_server()
        url = form.url()
        if server is not None and url.rstrip("/") != server.base_url.rstrip("/"):
            server = None  # the address was changed and not saved: connect to what is typed
        self.sig_connect.emit(url, form.api_key.text().strip(), form.model.text().strip(), server)

    def _check_keyring(self) -> None:
        """Say next to the key field whether keys can be kept (the keyring may block: on a worker)."""
        worker = Worker(lambda job: keyring_status(), name="keyring-check")
        worker.sig_done.connect(self._on_keyring_checked)
        self._start(worker)

    def _on_keyring_checked(self, status) -> None:
        self.keyring_ok, why = status
        self.form.set_key_note("Saved keys are kept in the OS keyring, never in the app's database."
                               if self.keyring_ok else why)

    def _on_key_saved(self, server, where: str, error=None) -> None:
        if error is not None:
            self.banner.show_message(f"Saved server '{server.name}'. {error_text(error)}", "warning")
        elif where == "session":
            self.banner.show_message(f"Saved server '{server.name}'. Its API key is kept for this session only: "
                                     "no OS keyring is available on this computer.", "warning")
        else:
            self.banner.show_message(f"Saved server '{server.name}'; its API key is in the OS keyring.", "info")
        self.sig_saved.emit(server)

    def _start(self, worker: Worker) -> None:
        self._workers = [w for w in self._workers if w.running]
        self._workers.append(worker)
        worker.start()
