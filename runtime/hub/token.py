"""The Hugging Face access token: the HF_TOKEN environment variable first, else the OS keyring.

The keyring (macOS Keychain, Windows Credential Manager, the Secret Service on Linux) is reached
through the ``keyring`` package under service ``SERVICE``, user ``USER``. A token is never logged,
printed, stored in the app's database or put into an error message; this module only hands it to
the code that sends it. Keyring calls may block (an unlock prompt): call them off the UI thread.
"""
from __future__ import annotations

import os

from runtime.errors import WorkbenchError

SERVICE = "model-workbench"
USER = "huggingface"
ENV_VAR = "HF_TOKEN"

NO_KEYRING_HINT = ("Set the HF_TOKEN environment variable to your token instead "
                   "(create one at huggingface.co/settings/tokens).")


def get_token() -> str | None:
    """The token to send: HF_TOKEN if set, else the one saved in the keyring, else None.

    Never raises: a keyring that is missing, locked or broken counts as "no token".
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return env
    try:
        import keyring

        saved = keyring.get_password(SERVICE, USER)
    except Exception:  # noqa: BLE001 - any keyring backend failure means "no saved token"
        return None
    return (saved.strip() or None) if saved else None


def token_source() -> str | None:
    """Where ``get_token()`` finds a token: "env", "keyring" or None (for the UI to say so)."""
    if os.environ.get(ENV_VAR, "").strip():
        return "env"
    try:
        import keyring

        return "keyring" if keyring.get_password(SERVICE, USER) else None
    except Exception:  # noqa: BLE001
        return None


def keyring_available() -> tuple[bool, str]:
    """(True, "") when a real OS keyring can keep the token, else (False, why not, in words)."""
    try:
        import keyring
        from keyring.backends import chainer, fail
    except Exception as exc:  # noqa: BLE001 - a broken install of keyring itself
        return False, f"The keyring package cannot be loaded ({type(exc).__name__}). {NO_KEYRING_HINT}"
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # noqa: BLE001
        return False, f"The OS keyring could not be opened ({type(exc).__name__}). {NO_KEYRING_HINT}"
    backends = backend.backends if isinstance(backend, chainer.ChainerBackend) else [backend]
    usable = [b for b in backends if not isinstance(b, fail.Keyring) and _priority(b) > 0]
    if not usable:
        return False, ("No OS keyring is available on this computer (on Linux it needs a Secret Service such as "
                       f"GNOME Keyring or KWallet running in the desktop session). {NO_KEYRING_HINT}")
    return True, ""


def save_token(token: str) -> None:
    """Keep ``token`` in the OS keyring for later sessions; raises WorkbenchError when it cannot."""
    token = (token or "").strip()
    if not token:
        raise WorkbenchError("The access token is empty.", hint="Paste the token from huggingface.co/settings/tokens.")
    if any(c.isspace() for c in token) or not token.isprintable():
        raise WorkbenchError("The access token contains spaces or control characters, so it cannot be right.",
                             hint="Copy the token again from huggingface.co/settings/tokens and paste only the token.")
    ok, why = keyring_available()
    if not ok:
        raise WorkbenchError("The token cannot be saved: " + why.split(". ")[0] + ".", hint=NO_KEYRING_HINT)
    failure = None
    try:
        import keyring

        keyring.set_password(SERVICE, USER, token)
    except Exception as exc:  # noqa: BLE001 - never echo the backend's text: it might quote the secret
        failure = type(exc).__name__
    if failure:  # raised out here so that the backend's exception is not even kept as the context
        raise WorkbenchError(f"The OS keyring refused to save the token ({failure}).",
                             hint="Unlock the keyring (log in to the desktop session) and try again, or "
                                  + NO_KEYRING_HINT[0].lower() + NO_KEYRING_HINT[1:])


def forget_token() -> bool:
    """Remove the saved token from the keyring; True if one was there. HF_TOKEN is not touched."""
    failure = None
    try:
        import keyring
        from keyring.errors import PasswordDeleteError

        if keyring.get_password(SERVICE, USER) is None:
            return False
        keyring.delete_password(SERVICE, USER)
        return True
    except PasswordDeleteError:
        return False
    except Exception as exc:  # noqa: BLE001
        failure = type(exc).__name__
    raise WorkbenchError(f"The OS keyring refused to remove the token ({failure}).",
                         hint="Unlock the keyring and try again, or remove the entry "
                              f"'{SERVICE}' with the system's keyring tool.")


def _priority(backend) -> float:
    try:
        return float(backend.priority)
    except Exception:  # noqa: BLE001 - some backends raise from priority when unusable
        return 0.0
