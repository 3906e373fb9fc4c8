"""What one Hugging Face repo holds: its files with sizes and hashes, at one commit.

``fetch_listing`` asks the hub (through huggingface_hub's ``HfApi.model_info``) and returns a
``RepoListing`` whose every file name has been checked: a name that would land outside the folder
it is downloaded into (``../x``, ``/etc/x``, ``a\\b``, empty parts) refuses the whole listing with a
HubError before anything is written, so such a listing never reaches the downloader.
"""
from __future__ import annotations

import json
import re

from runtime.errors import HubError, HubOffline, RepoNotFound, WorkbenchError
from runtime.hub.types import RemoteFile, RepoListing

CONFIG_FILE = "config.json"
CONFIG_MAX_BYTES = 4 * 1024**2     # a real config.json is a few KiB
LISTING_TIMEOUT_S = 20.0

# The hub's rule: letters, digits, "-", "_", "."; no "-" or "." first or last; at most 96 characters.
_REPO_PART = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
_LICENCE_TAG = "license:"


class UnsafeListing(HubError):
    """A repo listing names a file that would be written outside its download folder."""

    kind = "unsafe_listing"
    default_hint = ("This repo's file list is malformed or hostile; nothing was downloaded. "
                    "Do not download from it, or report it to Hugging Face.")


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` stripped, if it reads as ``organisation/name``; else RepoNotFound saying what is wrong."""
    text = (repo_id or "").strip().strip("/")
    if text.startswith(("https://huggingface.co/", "http://huggingface.co/", "huggingface.co/")):
        text = text.split("huggingface.co/", 1)[1].strip("/")
        text = "/".join(text.split("/")[:2])
    parts = text.split("/")
    if len(parts) != 2 or not all(_REPO_PART.match(p) for p in parts) or ".." in text or "--" in text:
        raise RepoNotFound(f"{repo_id!r} is not a Hugging Face model name.",
                           hint="Write it as organisation/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF.",
                           repo_id=repo_id)
    return text


def check_repo_path(path: str, repo_id: str = "") -> str:
    """``path`` if it is a safe relative file name inside a repo; else UnsafeListing explaining why.

    Safe means: not empty, "/"-separated, relative, no empty, "." or ".." part, no backslash, no
    drive letter or colon, no control character. Such a name stays inside any folder it is joined to.
    """
    def refuse(why: str) -> UnsafeListing:
        return UnsafeListing(f"{repo_id or 'The repo'} lists a file named {path!r}, which {why}; "
                             "the listing was refused.", repo_id=repo_id or None, filename=path)

    if not isinstance(path, str) or not path:
        raise refuse("is empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise refuse("contains control characters")
    if "\\" in path:
        raise refuse("contains a backslash (a folder separator on Windows)")
    if path.startswith("/"):
        raise refuse("is an absolute path")
    if ":" in path:
        raise refuse("contains a colon (a drive letter or stream name on Windows)")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise refuse("would leave the download folder" if ".." in parts else "has an empty or '.' folder name")
    return path


def licence_of(card_data, tags: list[str] | None) -> str | None:
    """The licence the model card states (its ``license``, or ``license_name`` for "other"), else the tag."""
    card = card_data.to_dict() if hasattr(card_data, "to_dict") else card_data if isinstance(card_data, dict) else {}
    value = card.get("license")
    if isinstance(value, list):
        value = value[0] if value else None
    if value == "other" and isinstance(card.get("license_name"), str):
        value = card["license_name"]
    if isinstance(value, str) and value.strip():
        return value.strip()
    for tag in tags or []:
        if isinstance(tag, str) and tag.startswith(_LICENCE_TAG):
            return tag[len(_LICENCE_TAG):]
    return None


def listing_from_info(repo_id: str, info) -> RepoListing:
    """A RepoListing from huggingface_hub's ModelInfo (fetched with ``files_metadata=True``), names checked."""
    files = []
    for sibling in info.siblings or []:
        path = check_repo_path(sibling.rfilename, repo_id)
        lfs = sibling.lfs
        size = sibling.size if isinstance(sibling.size, int) else (lfs.size if lfs is not None else 0)
        if not isinstance(size, int) or size < 0:
            raise UnsafeListing(f"{repo_id} lists {path!r} with an impossible size ({size!r}); "
                                "the listing was refused.", repo_id=repo_id, filename=path)
        sha256 = lfs.sha256 if lfs is not None else None
        if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", str(sha256)):
            raise UnsafeListing(f"{repo_id} lists {path!r} with a malformed sha256; the listing was refused.",
                                repo_id=repo_id, filename=path)
        files.append(RemoteFile(path=path, size=size, sha256=sha256, blob_id=sibling.blob_id))
    seen = set()
    for f in files:
        key = f.path.casefold()  # two names one case-insensitive disk would make one file
        if key in seen:
            raise UnsafeListing(f"{repo_id} lists {f.path!r} twice (or in two spellings that differ only in case); "
                                "the listing was refused.", repo_id=repo_id, filename=f.path)
        seen.add(key)
    if not info.sha or not re.fullmatch(r"[0-9a-f]{40}", str(info.sha)):
        raise HubError(f"Hugging Face gave no commit for {repo_id}.", repo_id=repo_id,
                       hint="Try again in a moment.")
    return RepoListing(repo_id=info.id or repo_id, revision=info.sha, files=files, gated=bool(info.gated),
                       private=bool(info.private), licence=licence_of(info.card_data, info.tags))


def fetch_listing(repo_id: str, revision: str | None = None, token: str | None = None) -> RepoListing:
    """The files of ``repo_id`` at ``revision`` (default: main), with sizes, LFS sha256 and the commit sha.

    Blocking (network): call it off the UI thread. ``token``: the access token to send
    (runtime.hub.token.get_token()); None sends none. config.json, when the repo has one, is fetched
    into the Hugging Face cache and parsed into ``config`` (None when missing, unreadable, or behind a
    gate). Raises RepoNotFound, GatedRepo, BadToken, HubOffline (HF_HUB_OFFLINE is set), HubError
    (network, server errors) and UnsafeListing (a file name that would escape the download folder).
    """
    from huggingface_hub import HfApi

    from runtime.hub.endpoint import endpoint, offline, sync_huggingface_hub
    from runtime.hub.failures import hub_error

    repo_id = check_repo_id(repo_id)
    if offline():
        raise HubOffline(f"Offline mode is on (HF_HUB_OFFLINE): the files of {repo_id} cannot be listed.",
                         repo_id=repo_id)
    sync_huggingface_hub()
    try:
        info = HfApi(endpoint=endpoint()).model_info(repo_id, revision=revision, files_metadata=True,
                                                      token=token or False, timeout=LISTING_TIMEOUT_S)
    except WorkbenchError:
        raise
    except Exception as exc:
        raise hub_error(exc, repo_id, token_given=bool(token)) from None
    listing = listing_from_info(repo_id, info)
    config_file = next((f for f in listing.files if f.path == CONFIG_FILE), None)
    if config_file is not None and config_file.size <= CONFIG_MAX_BYTES:
        listing.config = _fetch_config(listing, token)
    return listing


def _fetch_config(listing: RepoListing, token: str | None) -> dict | None:
    """config.json of the listing's commit, through the Hugging Face cache; None if it cannot be had."""
    from huggingface_hub import hf_hub_download

    from runtime import paths
    from runtime.hub.endpoint import endpoint

    try:
        path = hf_hub_download(listing.repo_id, CONFIG_FILE, revision=listing.revision,
                               cache_dir=paths.hf_cache_dir(), endpoint=endpoint(), token=token or False)
        with open(path, "rb") as fh:
            data = json.loads(fh.read(CONFIG_MAX_BYTES + 1))
    except Exception:  # gated without a token, a network hiccup, bad JSON: the listing is still useful
        return None
    return data if isinstance(data, dict) else None
