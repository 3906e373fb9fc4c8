"""`workbench download`: fetch a model from Hugging Face with the Models tab's downloader.

With no FILE it takes the file ``workbench files`` recommends; a FILE that is the first part of a
split GGUF (``-00001-of-00003.gguf``) brings all its parts. Files go to the Hugging Face cache (or
--dest), are verified (size, sha256) before they get their names, and are recorded in the app's
store. Killed or interrupted (Ctrl-C: exit 130), the same command continues from the bytes on disk.
Progress goes to stderr; stdout gets the local paths (with --json: one object). Honours HF_ENDPOINT,
HF_HUB_CACHE / HF_HOME, HF_TOKEN (or the token saved in the OS keyring) and HF_HUB_OFFLINE.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from app.cli import ProgressLine, run_cancellable

STORE_BUSY_TIMEOUT_S = 2.0   # the store is a record of the download, never a reason to stop it
EXIT_INTERRUPTED = 130
SPLIT_PART = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$")


def add_download_parser(subparsers) -> None:
    """Declare `workbench download`."""
    p = subparsers.add_parser(
        "download", help="download a model from Hugging Face (resumable, verified)",
        description="Download files of a Hugging Face repo into the Hugging Face cache (or --dest). "
                    "Without FILE, the file `workbench files REPO` recommends for this machine. The first part "
                    "of a split GGUF brings all its parts. Run the same command again after an interruption "
                    "to continue where it stopped.")
    p.add_argument("repo", metavar="REPO", help="organisation/name, e.g. bartowski/SmolLM2-135M-Instruct-GGUF")
    p.add_argument("files", metavar="FILE", nargs="*", help="file(s) in the repo (default: the recommended one)")
    p.add_argument("--dest", metavar="DIR", default=None,
                   help="put the files in this folder (default: the Hugging Face cache, where other tools find them)")
    p.add_argument("--revision", metavar="REV", default="main", help="branch, tag or commit (default: main)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: repo_id, revision, commit, bytes and `files` (the local paths)")
    p.set_defaults(func=cmd_download)


def cmd_download(args) -> int:
    from runtime.errors import Cancelled, HubOffline
    from runtime.hub.token import get_token
    from runtime.jobs import CancelToken
    from runtime.store.downloads import run_recorded

    token = get_token()
    dest = str(Path(args.dest).expanduser().absolute()) if args.dest else None
    try:
        files, commit, label = _choose(args, token)
    except HubOffline:
        if not args.files:
            raise HubOffline(f"Offline mode is on (HF_HUB_OFFLINE): the recommended file of {args.repo} cannot be "
                             "looked up.", hint="Name the file(s) you downloaded before, or unset HF_HUB_OFFLINE.",
                             repo_id=args.repo) from None
        files, commit, label = _cached_files(args, dest), None, ""
    store, record = _record(args, files, dest, label, commit)
    meter = ProgressLine()
    cancel = CancelToken()
    # Ctrl-C becomes a cancel: the partial file is flushed and closed, then kept for the next run.
    paths, error = run_cancellable(
        lambda: run_recorded(store, record, token=token or False, progress=meter.show, cancel=cancel),
        cancel, "download")
    meter.end()
    if store is not None:
        store.close()
    total = sum(f.size for f in files)
    if isinstance(error, Cancelled) or cancel.cancelled:
        kept = _bytes_on_disk(args, files, dest)
        print(f"paused: {_fmt(kept)} of {_fmt(total)} kept; run the same command again to continue.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if error is not None:
        raise error
    commit = commit or _commit_of(paths, dest)
    if args.json:
        print(json.dumps({"repo_id": args.repo, "revision": args.revision, "commit": commit,
                          "label": label, "dest": dest, "bytes": total, "files": [str(p) for p in paths],
                          "repo_files": [f.path for f in files]}, indent=2))
    else:
        for path in paths:
            print(path)
    return 0


# -- what to download -----------------------------------------------------------------------------

def _choose(args, token):
    """(files, commit, label): the FILEs named (split GGUFs completed), or the recommended choice."""
    from runtime.errors import RepoNotFound, WorkbenchError
    from runtime.hub.repo import fetch_listing

    listing = fetch_listing(args.repo, args.revision, token=token)
    by_path = {f.path: f for f in listing.files}
    if not args.files:
        return _recommended(listing, token)
    chosen, labels = [], []
    for name in args.files:
        name = name.strip().removeprefix("./")
        if name not in by_path:
            near = [p for p in by_path if p.lower() == name.lower() or p.endswith("/" + name)]
            hint = (f"Did you mean {near[0]}?" if near else
                    f"Run `workbench files {args.repo}` to list its model files.")
            raise RepoNotFound(f"{args.repo} has no file {name!r}.", hint=hint, repo_id=args.repo, filename=name)
        parts = _split_parts(name, by_path)
        if parts is None:
            raise WorkbenchError(f"{name} is one part of a split GGUF; name its first part to download them all.",
                                 hint="Split GGUFs download as one model: give the -00001-of-... file.",
                                 repo_id=args.repo, filename=name)
        for part in parts:
            if part not in [f.path for f in chosen]:
                chosen.append(by_path[part])
        labels.append(name)
    return chosen, listing.revision, ", ".join(labels)


def _split_parts(name: str, by_path: dict) -> list[str] | None:
    """All parts of a split GGUF for its first part; [name] for any other file; None for a later part."""
    from runtime.errors import RepoNotFound

    match = SPLIT_PART.match(name)
    if not match:
        return [name]
    if int(match["part"]) != 1:
        return None
    count = int(match["count"])
    parts = [f"{match['stem']}-{i:05d}-of-{match['count']}.gguf" for i in range(1, count + 1)]
    missing = [p for p in parts if p not in by_path]
    if missing:
        raise RepoNotFound(f"The split GGUF {name} lacks {len(missing)} of its {count} parts ({', '.join(missing[:3])}).",
                           hint="This repo is incomplete; choose another file.", filename=name)
    return parts


def _recommended(listing, token):
    """The choice ``workbench files`` recommends, or an error that says how to choose."""
    from runtime.errors import WorkbenchError

    try:
        from runtime.hub.choices import model_choices
    except ImportError:  # an install without the file choices: name the file
        raise WorkbenchError("Name the file to download.", hint=f"Run `workbench files {listing.repo_id}` to see them.")
    choices = model_choices(listing, token=token)
    best = next((c for c in choices if c.recommended), None)
    if best is None:
        if not choices:
            raise WorkbenchError(f"{listing.repo_id} has no model file this app can download (no GGUF, no checkpoint).",
                                 hint="Name the file(s) you want, or choose another repo.", repo_id=listing.repo_id)
        raise WorkbenchError(f"No file of {listing.repo_id} is recommended for this machine"
                             + (f": {choices[0].reason}" if choices[0].reason else "."),
                             hint=f"Run `workbench files {listing.repo_id}` and name the file to download.",
                             repo_id=listing.repo_id)
    print(f"recommended: {best.label} ({best.name}, {_fmt(best.size_bytes)}): {best.reason}", file=sys.stderr)
    return list(best.files), listing.revision, best.label


def _cached_files(args, dest):
    """Offline: the named files (all parts of a split GGUF) as they lie complete on disk."""
    from runtime.errors import HubOffline
    from runtime.hub.download import cached_file
    from runtime.hub.types import RemoteFile

    names = []
    for name in args.files:
        name = name.strip().removeprefix("./")
        match = SPLIT_PART.match(name)
        if match and int(match["part"]) == 1:
            names += [f"{match['stem']}-{i:05d}-of-{match['count']}.gguf" for i in range(1, int(match["count"]) + 1)]
        else:
            names.append(name)
    files = []
    for name in names:
        where = cached_file(args.repo, name, args.revision, dest)
        if where is None:
            raise HubOffline(f"Offline mode is on (HF_HUB_OFFLINE), and {name} from {args.repo} is not downloaded.",
                             repo_id=args.repo, filename=name)
        files.append(RemoteFile(name, where.stat().st_size))
    return files


def _commit_of(paths, dest) -> str | None:
    """The commit a cache download came from: the snapshot folder's name."""
    if dest is not None or not paths:
        return None
    for part in Path(paths[0]).parts[::-1]:
        if re.fullmatch(r"[0-9a-f]{40}", part):
            return part
    return None


def _bytes_on_disk(args, files, dest) -> int:
    from runtime.hub.download import bytes_on_disk

    try:
        return bytes_on_disk(args.repo, files, args.revision, dest)
    except OSError:
        return 0


# -- the record in the store ----------------------------------------------------------------------

def _record(args, files, dest, label, commit):
    """(store, record) for this download: the unfinished record of an earlier run, else a new one.

    A store that cannot be opened (locked, damaged) is reported once and the download goes on with
    a record kept in memory only."""
    from runtime.errors import StoreError
    from runtime.store.downloads import DownloadRecord, DownloadStore

    try:
        store = DownloadStore(busy_timeout_s=STORE_BUSY_TIMEOUT_S)
        record = store.find_unfinished(args.repo, [f.path for f in files], dest)
        if record is None:
            record = store.add(args.repo, args.revision, files, dest=dest, label=label, status="running")
        else:
            record = store.update(record.id, status="running", files=files)
        if commit:
            record = store.update(record.id, commit_sha=commit)
        return store, record
    except StoreError as exc:
        print(f"warning: the download is not recorded in the app's list ({exc.message})", file=sys.stderr)
        total = sum(f.size for f in files)
        return None, DownloadRecord(0, args.repo, args.revision, files, dest, "running", 0, total, 0.0, 0.0,
                                    label=label, commit_sha=commit)


# -- progress on stderr ---------------------------------------------------------------------------

def _fmt(n) -> str:
    from runtime.models.gguf_info import format_size

    return format_size(n)
