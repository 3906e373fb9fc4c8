"""Downloads from Hugging Face that never lose work: resumable from any process, verified, safe.

``download_files(repo_id, files, revision=..., dest=None, token=None, progress, cancel)`` fetches one
choice (one file, or every part of a split GGUF or checkpoint) and returns the local paths.

Where files go
  dest=None: the Hugging Face cache (``paths.hf_cache_dir()``: HF_HUB_CACHE / HF_HOME) in its own
  layout, so huggingface_hub and other tools find them: ``models--org--name/blobs/<etag>`` (the
  sha256 of LFS files, the git blob id of small ones), ``snapshots/<commit>/<path>`` (a relative
  symlink to the blob; a hard link, or the file itself, where links fail) and ``refs/<revision>``.
  dest=a folder: ``<folder>/<path>``.

Never losing work
  Bytes go to a partial file with a fixed name that is never the final one:
  ``blobs/<etag>.workbench.incomplete`` in the cache, ``<folder>/.<name>.workbench.incomplete`` in a
  folder. A later call, from this process or a new one after a crash or ``kill -9``, re-hashes the
  bytes on disk and asks only for the rest (HTTP Range). A dropped connection is retried with
  backoff within the call (``RETRIES`` failures in a row without new bytes), then DownloadError,
  keeping the partial. Cancel raises ``Cancelled`` and keeps it too (a pause); ``discard_partial``
  deletes it (cancel for good). Two programs never write one partial: the second gets DownloadError.

Checks
  The size and sha256 (LFS files) or git blob id (small files) are verified before the file gets
  its final name; a mismatch deletes the partial and raises ChecksumMismatch. Free disk space for the
  whole choice is checked before the first byte (DiskFull with the figures); ENOSPC while writing
  becomes DiskFull (the partial keeps what was written, under its partial name). With HF_HUB_OFFLINE
  set, files already complete on disk are returned and anything else raises HubOffline.

Throughput: the network is read on the calling thread; writing and hashing run on a thread of their
own (both release the GIL on large buffers), handed 4 MiB blocks, so neither stalls the reader.
"""
from __future__ import annotations

import errno
import hashlib
import os
import queue
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from runtime import paths
from runtime.errors import (Cancelled, ChecksumMismatch, DiskFull, DownloadError, HubError, HubOffline,
                            WorkbenchError)
from runtime.hub.endpoint import endpoint, offline, sync_huggingface_hub
from runtime.hub.failures import hub_error
from runtime.hub.types import RemoteFile
from runtime.jobs import CancelToken, ProgressCallback, RateMeter, no_progress

PARTIAL_SUFFIX = ".workbench.incomplete"
BLOCK_BYTES = 4 << 20            # what the reader hands the writer at once
QUEUE_BLOCKS = 4                 # blocks waiting between reader and writer (memory: about 24 MiB in all)
HAND_OVER_S = 0.25               # a slow network's bytes reach the disk at least this often (a kill loses less)
RETRIES = 5                      # failed attempts in a row, without new bytes, before giving up
BACKOFF_S = (0.2, 1.0, 2.0, 4.0, 8.0)
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0            # a stalled connection counts as dropped after this long
PROGRESS_EVERY_S = 0.1
USER_AGENT = "model-workbench"

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RETRY_STATUS = (408, 429, 500, 502, 503, 504)


# -- public API -----------------------------------------------------------------------------------

def download_files(repo_id: str, files: list[RemoteFile], *, revision: str = "main", dest: str | Path | None = None,
                   token: str | bool | None = None, progress: ProgressCallback = no_progress,
                   cancel: CancelToken | None = None) -> list[Path]:
    """Download ``files`` of ``repo_id`` at ``revision`` and return their local paths, in order.

    ``dest``: None for the Hugging Face cache, else a folder. ``token``: None looks it up
    (``runtime.hub.token.get_token()``: HF_TOKEN, then the keyring); False sends none.
    ``progress(done_bytes, total_bytes, message)`` (message with speed and time left) over all files.
    Raises Cancelled (partial kept), DownloadError (partial kept), ChecksumMismatch (partial removed),
    DiskFull, HubOffline, and the HubError family (RepoNotFound, GatedRepo, BadToken, ...). Blocking:
    call it off the UI thread. Files already complete are not fetched again.
    """
    if token is None:
        from runtime.hub.token import get_token

        token = get_token()
    token = token or None  # False / "" -> no token
    job = _Download(repo_id, list(files), revision, dest, token, progress, cancel or CancelToken())
    try:
        return job.run()
    except Cancelled:
        raise
    except WorkbenchError as exc:
        raise _scrub(exc, token)
    except Exception as exc:  # noqa: BLE001 - every failure leaves as one of the app's errors
        raise _scrub(job.translate(exc), token) from exc


def local_paths(repo_id: str, files: list[RemoteFile], revision: str = "main",
                dest: str | Path | None = None) -> list[Path | None]:
    """Where each file already lies complete (its final name, right size), or None. No network."""
    layout = _Layout(repo_id, dest)
    commit = layout.commit_for(revision)
    return [layout.complete(f, commit) for f in files]


def cached_file(repo_id: str, path: str, revision: str = "main", dest: str | Path | None = None) -> Path | None:
    """Where one file of the repo lies under its final name (whatever its size), or None. No network."""
    layout = _Layout(repo_id, dest)
    final = layout.final(RemoteFile(path, 0), layout.commit_for(revision))
    return final if final is not None and final.is_file() else None


def bytes_on_disk(repo_id: str, files: list[RemoteFile], revision: str = "main",
                  dest: str | Path | None = None) -> int:
    """Bytes of this choice already on disk (complete files plus partials): what a paused row shows."""
    layout = _Layout(repo_id, dest)
    commit = layout.commit_for(revision)
    total = 0
    for f in files:
        if layout.complete(f, commit) is not None:
            total += f.size
        else:
            partial = layout.partial(f, _etag_of(f))
            total += _size(partial) or 0
    return total


def discard_partial(repo_id: str, files: list[RemoteFile], revision: str = "main",
                    dest: str | Path | None = None) -> int:
    """Delete the partial files of this choice (cancel for good); return the bytes freed.

    Complete files are kept. Raises DownloadError if a download of one of them is still running
    (cancel it and wait for it to stop first). In the cache, a file whose listing gave neither a
    sha256 nor a blob id cannot be found and is skipped.
    """
    layout = _Layout(repo_id, dest)
    freed = 0
    for f in files:
        partial = layout.partial(f, _etag_of(f))
        if partial is None or not partial.exists():
            continue
        with open(partial, "rb+") as fh:
            if not _try_lock(fh):
                raise DownloadError(f"{f.path} is still being downloaded, so its partial file cannot be removed.",
                                    hint="Cancel the download and wait for it to stop, then try again.",
                                    path=str(partial), repo_id=repo_id, filename=f.path)
            size = os.fstat(fh.fileno()).st_size
            if os.name != "nt":
                partial.unlink()  # while locked: no download can start on it in between
        if os.name == "nt":
            partial.unlink(missing_ok=True)  # Windows deletes only closed files
        freed += size
    return freed


# -- where things lie -----------------------------------------------------------------------------

class _Layout:
    """Final and partial paths of a repo's files: in the Hugging Face cache, or in a folder."""

    def __init__(self, repo_id: str, dest: str | Path | None):
        from runtime.hub.repo import check_repo_id

        self.repo_id = repo_id = check_repo_id(repo_id)
        self.folder = Path(dest).expanduser() if dest is not None else None
        self.storage = paths.hf_cache_dir() / ("models--" + repo_id.replace("/", "--")) if dest is None else None

    @property
    def root(self) -> Path:
        """The folder everything of this repo goes under (for the disk check and messages)."""
        return self.folder if self.folder is not None else self.storage

    def commit_for(self, revision: str) -> str | None:
        """The commit ``revision`` names: itself if it is one, else the cache's ref (None if unknown)."""
        if _COMMIT.match(revision):
            return revision
        if self.storage is None:
            return None
        try:
            text = (self.storage / "refs" / revision).read_text().strip()
        except (OSError, ValueError):
            return None
        return text if _COMMIT.match(text) else None

    def final(self, f: RemoteFile, commit: str | None) -> Path | None:
        parts = _relative_parts(f.path)
        if self.folder is not None:
            return self.folder.joinpath(*parts)
        return self.storage.joinpath("snapshots", commit, *parts) if commit else None

    def blob(self, etag: str) -> Path:
        return self.storage / "blobs" / etag

    def partial(self, f: RemoteFile, etag: str | None) -> Path | None:
        if self.folder is not None:
            final = self.final(f, None)
            return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")
        return self.storage / "blobs" / f"{etag}{PARTIAL_SUFFIX}" if etag else None

    def complete(self, f: RemoteFile, commit: str | None, etag: str | None = None) -> Path | None:
        """The final path if the file is there with the right size (linking a cached blob if needed)."""
        final = self.final(f, commit)
        if final is None:
            return None
        if _size(final) == f.size and final.is_file():
            return final
        etag = etag or _etag_of(f)
        if self.storage is not None and etag and _size(self.blob(etag)) == f.size and self.blob(etag).is_file():
            _link_into_snapshot(self.blob(etag), final)  # the blob is there (another revision, another tool)
            return final
        return None

    def write_ref(self, revision: str, commit: str) -> None:
        if self.storage is None or revision == commit:
            return
        ref = self.storage / "refs" / Path(*_relative_parts(revision, self.repo_id))
        ref.parent.mkdir(parents=True, exist_ok=True)
        try:
            if ref.read_text() == commit:
                return
        except OSError:
            pass
        tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
        tmp.write_text(commit)
        os.replace(tmp, ref)


# -- one call -------------------------------------------------------------------------------------

@dataclass
class _Target:
    """One file to fetch, with what the hub said about it."""

    remote: RemoteFile
    url: str
    etag: str
    size: int
    sha256: str | None
    git_oid: str | None
    final: Path
    partial: Path
    blob: Path | None            # cache only: the blob the partial becomes


class _Download:
    def __init__(self, repo_id, files, revision, dest, token, progress, cancel):
        if not files:
            raise WorkbenchError("Nothing to download: no file was given.", hint="Choose at least one file.")
        self.layout = _Layout(repo_id, dest)
        repo_id = self.layout.repo_id
        for f in files:
            _relative_parts(f.path, repo_id)
        self.repo_id, self.files, self.revision = repo_id, files, revision or "main"
        self.token = token
        self.progress, self.cancel = progress, cancel
        self.total = sum(f.size for f in files)
        self.meter = RateMeter(self.total)
        self._last_report = 0.0
        self._current = ""          # the file being fetched, for messages and errors

    # -- the steps ------------------------------------------------------------------------------

    def run(self) -> list[Path]:
        if offline():
            return self._offline()
        sync_huggingface_hub()
        self.cancel.check()
        commit = self.layout.commit_for(self.revision) if _COMMIT.match(self.revision) else None
        found = {i: p for i, f in enumerate(self.files)
                 if commit and (p := self.layout.complete(f, commit)) is not None}
        if len(found) == len(self.files):
            return self._finish(found, fetched=0)
        self._say(sum(self.files[i].size for i in found),
                  f"Asking Hugging Face about {self._count_text(len(self.files) - len(found))} ...")
        targets: list[tuple[int, _Target]] = []
        for i, f in enumerate(self.files):
            if i in found:
                continue
            self.cancel.check()
            self._current = f.path
            meta = self._head(f)
            if meta is None:  # the hub could not be reached but every file is complete in the cache
                return self._finish(dict(enumerate(self._local())), fetched=0)
            if not meta.commit_hash or not _COMMIT.match(meta.commit_hash):
                raise DownloadError(f"The server did not say which commit of {self.repo_id} it serves, so the "
                                    "files cannot be put in the Hugging Face cache or checked.",
                                    hint="Check that HF_ENDPOINT points at a Hugging Face hub (or a mirror of one).",
                                    repo_id=self.repo_id, filename=f.path)
            if commit is None:
                commit = meta.commit_hash
            elif meta.commit_hash != commit:
                raise DownloadError(f"{self.repo_id} changed on Hugging Face while its files were being checked.",
                                    hint="Try again: the files will all come from the newest version.",
                                    repo_id=self.repo_id)
            target = self._target(f, meta, commit)
            path = self.layout.complete(f, commit, target.etag)
            if path is not None:
                found[i] = path
            else:
                targets.append((i, target))
        self.layout.write_ref(self.revision, commit)
        self._check_space([t for _, t in targets])
        for n, (i, target) in enumerate(targets):
            self._current = target.remote.path
            base = self.total - sum(t.size for _, t in targets[n:])  # the files finished before this one
            found[i] = self._fetch(target, n, len(targets), base)
        return self._finish(found, fetched=len(targets))

    def _local(self) -> list[Path | None]:
        return local_paths(self.repo_id, self.files, self.revision, self.layout.folder)

    def _offline(self) -> list[Path]:
        found = self._local()
        missing = [f.path for f, p in zip(self.files, found) if p is None]
        if not missing:
            return self._finish(dict(enumerate(found)), fetched=0)
        on_disk = bytes_on_disk(self.repo_id, self.files, self.revision, self.layout.folder)
        names = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        kept = f" ({_fmt(on_disk)} of {_fmt(self.total)} are on disk and will be kept)" if on_disk else ""
        raise HubOffline(f"Offline mode is on (HF_HUB_OFFLINE), and {names} from {self.repo_id} "
                         f"{'is' if len(missing) == 1 else 'are'} not downloaded yet{kept}.",
                         repo_id=self.repo_id, filename=missing[0], status=None)

    def _head(self, f: RemoteFile):
        """The hub's metadata for one file (commit, etag, size, location); None when the hub cannot be
        reached but every file of the choice is complete in the cache already (then they are used)."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(self.repo_id, f.path, revision=self.revision, endpoint=endpoint())
        try:
            return get_hf_file_metadata(url, token=self.token or False, timeout=CONNECT_TIMEOUT_S,
                                        library_name=USER_AGENT, endpoint=endpoint())
        except Exception as exc:  # noqa: BLE001
            error = hub_error(exc, self.repo_id, f.path, token_given=bool(self.token))
            unreachable = type(error) is HubError  # network down or a server error, not a refusal
            if unreachable and all(p is not None for p in self._local()):
                return None
            raise error from exc

    def _target(self, f: RemoteFile, meta, commit: str) -> _Target:
        from huggingface_hub import hf_hub_url

        etag = (meta.etag or "").strip()
        if not etag or not re.fullmatch(r"[0-9A-Za-z._-]{8,128}", etag):
            raise DownloadError(f"The server did not identify {f.path} properly (no usable ETag), so it cannot be "
                                "verified or resumed.", hint="Check that HF_ENDPOINT points at a Hugging Face hub.",
                                repo_id=self.repo_id, filename=f.path)
        size = meta.size if meta.size is not None else f.size
        sha256 = f.sha256 or (etag if _SHA256.match(etag) else None)
        git_oid = etag if (_COMMIT.match(etag) and not sha256) else None
        changed = ((meta.size is not None and f.size not in (None, meta.size))
                   or (f.sha256 and _SHA256.match(etag) and f.sha256 != etag)
                   or (f.blob_id and git_oid and f.blob_id != etag))
        if changed:
            raise DownloadError(f"{f.path} in {self.repo_id} is not the file that was listed: it changed on "
                                "Hugging Face since its file list was read.",
                                hint="Refresh the repo's file list and download again.",
                                repo_id=self.repo_id, filename=f.path)
        url = hf_hub_url(self.repo_id, f.path, revision=commit, endpoint=endpoint())  # every file from one commit
        if meta.location and urlsplit(meta.location).netloc != urlsplit(url).netloc:
            url = meta.location  # redirected to a CDN: its signed URL
        final = self.layout.final(f, commit)
        partial = self.layout.partial(f, etag)
        blob = self.layout.blob(etag) if self.layout.storage is not None else None
        return _Target(f, url, etag, size, sha256, git_oid, final, partial, blob)

    def _check_space(self, targets: list[_Target]) -> None:
        needed = sum(max(0, t.size - (_size(t.partial) or 0)) for t in targets)
        if not needed:
            return
        folder = _existing_ancestor(self.layout.root)
        free = shutil.disk_usage(folder).free
        if needed > free:
            raise DiskFull(f"Not enough free disk space in {folder}: {self._choice_text(targets)} needs "
                           f"{_fmt(needed)} more, and {_fmt(free)} is free.",
                           hint=f"Free {_fmt(needed - free)} or more, or choose another folder, then try again.",
                           path=str(folder), needed_bytes=needed, free_bytes=free, repo_id=self.repo_id)

    # -- one file -------------------------------------------------------------------------------

    def _fetch(self, t: _Target, n: int, count: int, base: int) -> Path:
        """Fetch one file into its partial (continuing what is there), verify it, give it its name."""
        label = t.remote.path if count == 1 else f"{t.remote.path} ({n + 1} of {count})"
        t.partial.parent.mkdir(parents=True, exist_ok=True)
        fh = open(t.partial, "ab+", buffering=0)
        try:
            if not _try_lock(fh):
                raise DownloadError(f"{t.remote.path} is being downloaded by another program (or window) right now.",
                                    hint="Wait for that download to finish, or stop it, then try again.",
                                    path=str(t.partial), repo_id=self.repo_id, filename=t.remote.path)
            have = os.fstat(fh.fileno()).st_size
            if not have and self._finished_meanwhile(t):  # another program completed it while we looked
                fh.close()
                t.partial.unlink(missing_ok=True)
                return t.final
            if have > t.size:
                fh.truncate(0)
                have = 0
            hashes = _Hashes(t)
            if have:
                have = self._rehash(fh, have, hashes, label, base)
            sink = _Sink(fh, hashes, have)
            try:
                self._stream(t, sink, label, base)
            finally:
                sink.close()  # writes what is queued; raises the writer's error if it had one
            self.cancel.check()
            on_disk = os.fstat(fh.fileno()).st_size
            self._verify(t, hashes, on_disk)
        except Cancelled:
            raise
        except OSError as exc:
            if isinstance(exc, WorkbenchError):
                raise
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise self._disk_full_during(t, fh) from None
            raise DownloadError(f"Cannot write {t.partial.parent}: {exc.strerror or exc}.",
                                hint="Check that the folder exists and is writable, or choose another one.",
                                path=str(t.partial.parent), repo_id=self.repo_id, filename=t.remote.path) from exc
        finally:
            fh.close()
        return self._install(t)

    def _finished_meanwhile(self, t: _Target) -> bool:
        if _size(t.final) == t.size and t.final.is_file():
            return True
        if t.blob is not None and _size(t.blob) == t.size:
            _link_into_snapshot(t.blob, t.final)
            return True
        return False

    def _rehash(self, fh, have: int, hashes: "_Hashes", label: str, base: int) -> int:
        """Hash the bytes a previous attempt left, so the final check covers the whole file; returns how
        many there are (0 if the file shrank meanwhile: then it starts over)."""
        fh.seek(0)
        left = have
        while left:
            self.cancel.check()
            block = fh.read(min(BLOCK_BYTES, left))
            if not block:
                break
            hashes.update(block)
            left -= len(block)
            self._say(base + have - left, f"{label}: checking the {_fmt(have)} already downloaded ...", force=False)
        self.meter = RateMeter(self.total)  # speed counts only what comes over the network
        if left:  # the file shrank under us: start over
            fh.truncate(0)
            hashes.reset()
            return 0
        return have

    def _stream(self, t: _Target, sink: "_Sink", label: str, base: int) -> None:
        """GET the rest of the file (from ``sink.received`` on), retrying dropped connections."""
        import httpx2

        failures = 0
        while sink.received < t.size:
            self.cancel.check()
            before, error = sink.received, None
            try:
                self._get(t, sink, label, base)
            except (httpx2.TransportError, _Retry) as exc:
                error = exc
            except Exception:
                if self.cancel.cancelled:
                    raise Cancelled() from None
                raise
            if self.cancel.cancelled:
                raise Cancelled()
            have = sink.received
            if have >= t.size:
                break
            failures = 1 if have > before else failures + 1
            if failures > RETRIES:
                what = _reason(error) if error is not None else "the server stopped sending"
                raise DownloadError(
                    f"The download of {t.remote.path} from {self.repo_id} stopped at {_fmt(have)} of "
                    f"{_fmt(t.size)} ({what}); {RETRIES} retries did not get further.",
                    hint="Check the network and try again: the download continues from where it stopped.",
                    repo_id=self.repo_id, filename=t.remote.path, done_bytes=have, total_bytes=t.size,
                    path=str(t.partial)) from error
            delay = BACKOFF_S[min(failures, len(BACKOFF_S)) - 1]
            self._say(base + have, f"{label}: {_reason(error) if error else 'the server stopped sending'}; "
                                   f"retrying in {delay:g} s (attempt {failures + 1} of {RETRIES + 1}) ...")
            if self.cancel.wait(delay):
                raise Cancelled()

    def _get(self, t: _Target, sink: "_Sink", label: str, base: int) -> None:
        """One GET from byte ``sink.received`` on, into the sink, until the body ends or breaks."""
        import httpx2
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        headers = build_hf_headers(token=self.token or False, library_name=USER_AGENT)
        if urlsplit(t.url).netloc != urlsplit(endpoint()).netloc:
            headers.pop("authorization", None)  # a CDN's signed URL: the token stays with the hub
        headers["Accept-Encoding"] = "identity"
        have = sink.received
        if have:
            headers["Range"] = f"bytes={have}-"
        timeout = httpx2.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        with get_session().stream("GET", t.url, headers=headers, timeout=timeout) as response:
            def hang_up():  # from the cancelling thread: wake a read that waits for the network
                try:
                    response.extensions["network_stream"].get_extra_info("socket").shutdown(socket.SHUT_RDWR)
                except Exception:  # noqa: BLE001 - already closed, or no socket to reach: the loop sees the flag
                    pass

            self.cancel.add_callback(hang_up)
            try:
                status = response.status_code
                if status == 416 and have:
                    return  # nothing past what we hold: the check will tell whether it is all
                if status in _RETRY_STATUS:
                    raise _Retry(f"the server answered {status}")
                if status >= 400:
                    response.read()
                    try:
                        hf_raise_for_status(response)
                    except Exception as exc:  # noqa: BLE001
                        raise hub_error(exc, self.repo_id, t.remote.path, token_given=bool(self.token)) from exc
                encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
                if have and (status == 200 or encoded):  # the server ignored the Range: start over
                    if status != 200:
                        raise DownloadError(f"The server sent part of {t.remote.path} compressed, which cannot be "
                                            "resumed.", repo_id=self.repo_id, filename=t.remote.path)
                    sink.restart()
                elif status == 206 and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                    raise _Retry("the server sent the wrong part of the file")
                self._read_body(response, encoded, sink, t, label, base)
            finally:
                self.cancel.remove_callback(hang_up)

    def _read_body(self, response, encoded: bool, sink: "_Sink", t: _Target, label: str, base: int) -> None:
        """Move the body into the sink, decoded when the server compressed it."""
        self._read_chunks(response.iter_bytes() if encoded else response.iter_raw(), sink, t, label, base)

    def _read_chunks(self, chunks, sink: "_Sink", t: _Target, label: str, base: int) -> None:
        pieces: list[bytes] = []
        held = 0
        now = time.monotonic
        cancel = self.cancel
        since = now()
        try:
            for piece in chunks:
                if not pieces:
                    since = now()
                pieces.append(piece)
                held += len(piece)
                if held >= BLOCK_BYTES or now() - since >= HAND_OVER_S:
                    sink.put(b"".join(pieces))
                    pieces.clear()
                    held = 0
                    if sink.received > t.size:
                        break  # more than the hub announced: the check rejects it
                if cancel.cancelled:
                    break
                if now() - self._last_report >= PROGRESS_EVERY_S:
                    self._report(base + sink.received + held, label, sink.received + held, t.size)
        finally:
            if pieces:  # what arrived before a drop or a cancel is good: keep it
                sink.put(b"".join(pieces))

    def _verify(self, t: _Target, hashes: "_Hashes", on_disk: int) -> None:
        problem = None
        if on_disk != t.size:
            problem = f"it has {on_disk:,} bytes instead of {t.size:,}"
        elif t.sha256 and hashes.sha256.hexdigest() != t.sha256:
            problem = f"its sha256 is {hashes.sha256.hexdigest()}, the hub's is {t.sha256}"
        elif t.git_oid and hashes.git.hexdigest() != t.git_oid:
            problem = f"its git blob id is {hashes.git.hexdigest()}, the hub's is {t.git_oid}"
        if problem:
            t.partial.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{t.remote.path} from {self.repo_id} arrived damaged ({problem}); it was removed "
                                   "and is not used.", repo_id=self.repo_id, filename=t.remote.path,
                                   path=str(t.final))

    def _install(self, t: _Target) -> Path:
        """Give the verified partial its final name (atomically), and link it into the snapshot."""
        if t.blob is None:
            t.final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(t.partial, t.final)
            return t.final
        os.replace(t.partial, t.blob)
        _link_into_snapshot(t.blob, t.final, new_blob=True)
        return t.final

    # -- errors and progress --------------------------------------------------------------------

    def translate(self, exc: BaseException) -> WorkbenchError:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            folder = _existing_ancestor(self.layout.root)
            return DiskFull(f"The disk is full ({folder}).", path=str(folder), repo_id=self.repo_id,
                            free_bytes=shutil.disk_usage(folder).free)
        if isinstance(exc, OSError) and not _is_network(exc) and not type(exc).__module__.startswith("huggingface_hub"):
            return DownloadError(f"Cannot write the download of {self._current or self.repo_id}: {exc.strerror or exc}.",
                                 hint="Check that the folder exists and is writable, or choose another one.",
                                 path=getattr(exc, "filename", None), repo_id=self.repo_id)
        return hub_error(exc, self.repo_id, self._current or None, token_given=bool(self.token))

    def _disk_full_during(self, t: _Target, fh) -> DiskFull:
        kept = os.fstat(fh.fileno()).st_size
        folder = t.partial.parent
        return DiskFull(f"The disk filled up while downloading {t.remote.path} ({_fmt(kept)} of {_fmt(t.size)} "
                        f"written, kept under a temporary name in {folder}).",
                        hint=f"Free at least {_fmt(t.size - kept)} and try again: the download continues from where "
                             "it stopped. Or cancel it for good to remove the partial file.",
                        path=str(folder), repo_id=self.repo_id, filename=t.remote.path,
                        needed_bytes=t.size - kept, free_bytes=shutil.disk_usage(folder).free)

    def _report(self, done: int, label: str, file_done: int, file_size: int) -> None:
        """Progress with speed and time left (over the whole choice)."""
        self._last_report = time.monotonic()
        self.meter.update(done)
        self.progress(done, self.total, f"{label}: {_fmt(file_done)} of {_fmt(file_size)}, {self.meter.text(_fmt)}")

    def _say(self, done: int, message: str, force: bool = True) -> None:
        """Progress with a plain message (asking the hub, checking bytes on disk, retrying)."""
        now = time.monotonic()
        if not force and now - self._last_report < PROGRESS_EVERY_S:
            return
        self._last_report = now
        self.progress(done, self.total, message)

    def _finish(self, found: dict[int, Path], fetched: int) -> list[Path]:
        result = [found[i] for i in range(len(self.files))]
        if fetched:
            text = f"Downloaded {self._count_text(fetched)} ({_fmt(self.total)} in all)."
        else:
            text = f"Already downloaded: {self._count_text(len(result))} ({_fmt(self.total)})."
        self.progress(self.total, self.total, text)
        return result

    def _count_text(self, n: int) -> str:
        return f"{n} file" if n == 1 else f"{n} files"

    def _choice_text(self, targets: list[_Target]) -> str:
        return targets[0].remote.path if len(targets) == 1 else f"the {len(targets)} files of {self.repo_id}"


class _Retry(Exception):
    """A transient answer (429, 5xx, a wrong range): try again after a pause."""


# -- writing and hashing off the reader's thread --------------------------------------------------

class _Hashes:
    """The running hashes a file is checked with: sha256 (LFS) and/or the git blob id (small files)."""

    def __init__(self, t: _Target):
        self.size = t.size
        self.want_sha256, self.want_git = bool(t.sha256), bool(t.git_oid)
        self.reset()

    def reset(self) -> None:
        self.sha256 = hashlib.sha256()
        self.git = hashlib.sha1(b"blob %d\0" % self.size)

    def update(self, block: bytes) -> None:
        if self.want_sha256:
            self.sha256.update(block)
        if self.want_git:
            self.git.update(block)


class _Sink:
    """Appends blocks to the partial file on one thread and hashes them on another.

    ``put(bytes)`` blocks when ``QUEUE_BLOCKS`` are waiting, so memory stays bounded, and raises the error of either thread (ENOSPC, ...) once there was one; ``close`` waits
    for both to finish what is queued and raises it too. Writing and hashing release the GIL, so the
    reader, the writer and the hasher run at once on as many cores as the machine has.
    """

    def __init__(self, fh, hashes: _Hashes, received: int):
        self.fh, self.hashes = fh, hashes
        self.received = received  # bytes in the file once the queues are done
        self._error: BaseException | None = None
        self._queues = [queue.Queue(QUEUE_BLOCKS), queue.Queue(QUEUE_BLOCKS)]
        self._threads = [threading.Thread(target=self._run, args=(q, work), name=f"download-{name}", daemon=True)
                         for q, work, name in zip(self._queues, (self._write, hashes.update), ("writer", "hasher"))]
        for thread in self._threads:
            thread.start()

    def put(self, block: bytes) -> None:
        self._check()
        for q in self._queues:
            q.put(block)
        self.received += len(block)

    def restart(self) -> None:
        """Empty the file and the hashes (the server sends the whole file again)."""
        self._wait()
        self.fh.truncate(0)
        self.hashes.reset()
        self.received = 0

    def close(self) -> None:
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join()
        self._check()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _wait(self) -> None:
        """Until both threads have done everything queued so far."""
        events = [threading.Event() for _ in self._queues]
        for q, event in zip(self._queues, events):
            q.put(event)
        for event in events:
            event.wait()
        self._check()

    def _write(self, view: memoryview) -> None:
        while view:
            view = view[self.fh.write(view):]

    def _run(self, q: queue.Queue, work) -> None:
        while True:
            block = q.get()
            if block is None:
                return
            if isinstance(block, threading.Event):
                block.set()
                continue
            try:
                if self._error is None:  # after an error keep taking blocks: the reader never waits on a dead thread
                    with memoryview(block) as view:
                        work(view)
            except BaseException as exc:  # noqa: BLE001 - handed to the reader's thread
                self._error = exc


def _etag_of(f: RemoteFile) -> str | None:
    """The cache's blob name for a listed file: its LFS sha256, else its git blob id."""
    return f.sha256 or f.blob_id or None


def _relative_parts(path: str, repo_id: str = "") -> list[str]:
    """The parts of a repo path that is safe to put under a folder; raises UnsafeListing otherwise."""
    from runtime.hub.repo import check_repo_path

    return check_repo_path(path, repo_id).split("/")


def _link_into_snapshot(blob: Path, pointer: Path, new_blob: bool = False) -> None:
    """snapshots/<commit>/<path> -> the blob: a relative symlink, else a hard link, else the file itself."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(pointer):
        pointer.unlink()
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
        return
    except OSError:
        pass
    try:
        os.link(blob, pointer)
        return
    except OSError:
        pass
    if new_blob:
        os.replace(blob, pointer)  # as huggingface_hub does where links are impossible
    else:
        shutil.copyfile(blob, pointer)


def _try_lock(fh) -> bool:
    """Take an exclusive lock on an open partial file without waiting; False if another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: lock the first byte
        import msvcrt

        try:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _size(path: Path | None) -> int | None:
    """The file's size, or None when it is missing or unreadable."""
    try:
        return os.stat(path).st_size if path is not None else None
    except OSError:
        return None


def _existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _is_network(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"TransportError", "ConnectError", "TimeoutException", "NetworkError"}) or \
        isinstance(exc, (ConnectionError, TimeoutError))


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, _Retry):
        return str(exc)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"TimeoutException", "ReadTimeout"}:
        return "the connection stalled"
    if names & {"ConnectError"}:
        return "the server could not be reached"
    return "the connection dropped"


def _fmt(n: float) -> str:
    from runtime.models.gguf_info import format_size

    return format_size(n)


def _scrub(exc: WorkbenchError, token: str | None) -> WorkbenchError:
    """The error with every trace of the token removed from its text and facts."""
    if not token:
        return exc

    def clean(value):
        if isinstance(value, str):
            return value.replace(token, "***")
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(clean(v) for v in value)
        return value

    exc.message = clean(exc.message)
    exc.args = tuple(clean(a) for a in exc.args)
    exc.hint = clean(exc.hint)
    exc.path = clean(exc.path)
    exc.facts = clean(exc.facts)
    return exc


__all__ = ["download_files", "discard_partial", "local_paths", "cached_file", "bytes_on_disk", "PARTIAL_SUFFIX"]
