"""Remote servers the chat can talk to: checking an address before anything is sent, and their API keys.

``check_base_url(text)`` (``runtime.engine.client``'s, the check every ChatClient makes) says in
plain words what is wrong with an address (no ``http://``, no host, a bad port) before any network
call, and returns it normalised. ``ServerKeys`` keeps each saved
server's API key in the OS keyring (service ``SERVICE``, user name the server's ``key_ref``), and,
where no usable keyring exists (a headless Linux without a Secret Service, CI), for this session
only, in memory. Keys never go to the database, logs, exports or error messages. Keyring calls may
block on an unlock prompt: call them off the UI thread.

Whether a keyring is usable is decided by ``runtime.hub.token.keyring_available`` (one rule for the
Hugging Face token and these keys).
"""
from __future__ import annotations

import threading

from runtime.errors import WorkbenchError

SERVICE = "model-workbench-remote"
NO_KEYRING_TEXT = ("No OS keyring is available on this computer (on Linux it needs a Secret Service such as "
                   "GNOME Keyring or KWallet), so an API key is kept for this session only and must be "
                   "entered again after a restart.")


def keyring_status() -> tuple[bool, str]:
    """(True, "") when the OS keyring can keep API keys, else (False, what happens instead, in words)."""
    from runtime.hub.token import keyring_available

    ok, _why = keyring_available()
    return (True, "") if ok else (False, NO_KEYRING_TEXT)


class ServerKeys:
    """API keys of saved servers: the OS keyring when usable, else memory for this session only."""

    def __init__(self) -> None:
        self._session: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key_ref: str) -> str:
        """The key saved for ``key_ref`` ('' when none). Never raises: a broken keyring means no key."""
        with self._lock:
            if key_ref in self._session:
                return self._session[key_ref]
        if not keyring_status()[0]:
            return ""
        try:
            import keyring

            return keyring.get_password(SERVICE, key_ref) or ""
        except Exception:  # noqa: BLE001 - any keyring failure means "no saved key"
            return ""

    def put(self, key_ref: str, key: str) -> str:
        """Keep ``key``: returns "keyring" or "session" (no usable keyring). WorkbenchError when the
        keyring refuses; the backend's own text is never shown (it might quote the key)."""
        key = (key or "").strip()
        if not key:
            self.forget(key_ref)
            return ""
        if not keyring_status()[0]:
            with self._lock:
                self._session[key_ref] = key
            return "session"
        failure = None
        try:
            import keyring

            keyring.set_password(SERVICE, key_ref, key)
        except Exception as exc:  # noqa: BLE001
            failure = type(exc).__name__
        if failure:  # raised out here so that the backend's exception is not kept as the context
            with self._lock:
                self._session[key_ref] = key
            raise WorkbenchError(f"The OS keyring refused to save the API key ({failure}); it is kept for this "
                                 "session only.", hint="Unlock the keyring (log in to the desktop session) and "
                                                       "save again.")
        with self._lock:
            self._session.pop(key_ref, None)
        return "keyring"

    def forget(self, key_ref: str) -> None:
        """Remove the key (keyring and session). Never raises."""
        with self._lock:
            self._session.pop(key_ref, None)
        if not keyring_status()[0]:
            return
        try:
            import keyring

            if keyring.get_password(SERVICE, key_ref) is not None:
                keyring.delete_password(SERVICE, key_ref)
        except Exception:  # noqa: BLE001 - a stale entry is harmless: its key_ref is never reused
            pass
