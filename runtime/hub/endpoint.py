"""Which hub to talk to and whether to talk at all, read from the environment at each call.

huggingface_hub copies HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_CACHE into module constants when it is
first imported; the app reads the variables itself and passes ``endpoint=`` / ``cache_dir=`` to every
call, so a value set later (tests, a settings change) is honoured.
"""
from __future__ import annotations

import os

DEFAULT_ENDPOINT = "https://huggingface.co"


def endpoint() -> str:
    """HF_ENDPOINT without a trailing slash, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def sync_huggingface_hub() -> None:
    """Make huggingface_hub's import-time copy of the offline flag agree with the environment now."""
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = offline()
