"""A small stand-in for the Hugging Face Hub on 127.0.0.1, for tests and benchmarks.

It speaks the part of the hub's HTTP API that the app (through the real ``huggingface_hub`` client)
uses: model search with Link-header paging, model info with file sizes and LFS sha256, the file
tree, and ``resolve`` with HEAD and Range; gated and private repos behind a token; the hub's error
codes (a gated repo lists its files to anyone, its downloads need the token). Faults can be switched on at any time: dropped connections, throttling, a server error for
every request, bytes that do not match the advertised hash.

    with FakeHub() as hub:
        hub.add_repo("org/name", {"model-Q4_K_M.gguf": path_or_bytes, "config.json": b"{}"})
        os.environ["HF_ENDPOINT"] = hub.url

Run as a script it serves repos made of the files given on the command line (benchmarks use it):
``python tests/hub_server.py --port 0 --repo org/name FILE...`` prints ``{"url": ...}`` on stdout.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth", ".model")
CHUNK = 1 << 20


@dataclass
class RepoFile:
    path: str
    size: int
    data: bytes | None          # small files are kept in memory
    source: Path | None         # big files are served from disk
    sha256: str
    git_oid: str
    lfs: bool

    def read(self, start: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[start:start + length]
        with open(self.source, "rb") as fh:
            fh.seek(start)
            return fh.read(length)


@dataclass
class Repo:
    repo_id: str
    sha: str
    files: dict[str, RepoFile]
    gated: bool | str = False
    private: bool = False
    downloads: int = 0
    likes: int = 0
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = "text-generation"
    licence: str | None = None
    last_modified: str = "2026-01-01T00:00:00.000Z"
    library_name: str | None = None

    def info(self, files_metadata: bool) -> dict:
        siblings = []
        for f in self.files.values():
            sibling = {"rfilename": f.path}
            if files_metadata:
                sibling.update(size=f.size, blobId=f.git_oid)
                if f.lfs:
                    sibling["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            siblings.append(sibling)
        data = self.summary()
        data.update(sha=self.sha, siblings=siblings, cardData={"license": self.licence} if self.licence else {})
        return data

    def summary(self) -> dict:
        return {"_id": self.sha[:24], "id": self.repo_id, "modelId": self.repo_id, "author": self.repo_id.split("/")[0],
                "downloads": self.downloads, "likes": self.likes, "lastModified": self.last_modified,
                "createdAt": self.last_modified, "tags": list(self.tags), "pipeline_tag": self.pipeline_tag,
                "library_name": self.library_name, "gated": self.gated, "private": self.private}


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK * 8):
            digest.update(chunk)
    return digest.hexdigest()


class FakeHub:
    """The server and its repos; every attribute may be changed while it runs (see module doc)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.repos: dict[str, Repo] = {}
        self.token: str = "hf_valid_test_token"     # full access, gated and private repos too
        self.no_access_token: str = "hf_no_access"  # a real account that has not accepted gated licences
        self.drop_after: int | None = None          # close resolve GETs after this many body bytes
        self.throttle: int | None = None            # bytes per second for resolve GETs
        self.fail_status: int | None = None         # answer every request with this status
        self.corrupt: set[tuple[str, str]] = set()  # (repo_id, path) served with wrong bytes
        self.search_delay: float = 0.0              # seconds before answering /api/models
        self.page_size: int = 1000                  # most results per /api/models page (then a Link)
        self.bytes_served: dict[tuple[str, str], int] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- repos ----------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: dict[str, bytes | str | Path], *, gated: bool | str = False,
                 private: bool = False, downloads: int = 0, likes: int = 0, tags: list[str] | None = None,
                 pipeline_tag: str | None = "text-generation", licence: str | None = "apache-2.0",
                 last_modified: str = "2026-01-01T00:00:00.000Z", library_name: str | None = None) -> str:
        """Add (or replace) a repo; values are bytes, text, or a Path served from disk. Returns its commit sha."""
        entries = {}
        for name, content in files.items():
            if isinstance(content, Path):
                size = content.stat().st_size
                entries[name] = RepoFile(name, size, None, content, _file_sha256(content),
                                         hashlib.sha1(f"{name}{size}".encode()).hexdigest(), True)
            else:
                data = content.encode() if isinstance(content, str) else bytes(content)
                lfs = name.lower().endswith(LFS_SUFFIXES)
                entries[name] = RepoFile(name, len(data), data, None, hashlib.sha256(data).hexdigest(),
                                         git_blob_oid(data), lfs)
        if tags is None:
            tags = ["gguf"] if any(n.endswith(".gguf") for n in files) else ["safetensors", "transformers"]
        sha = hashlib.sha1(json.dumps([repo_id, sorted((n, e.sha256) for n, e in entries.items())]).encode()).hexdigest()
        self.repos[repo_id] = Repo(repo_id, sha, entries, gated, private, downloads, likes, list(tags),
                                   pipeline_tag, licence, last_modified, library_name)
        return sha

    def served(self, repo_id: str, path: str) -> int:
        """Body bytes sent so far for resolve GETs of one file."""
        with self._lock:
            return self.bytes_served.get((repo_id, path), 0)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "FakeHub":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- request handling (called from the handler threads) --------------------------------------

    def _record(self, method: str, path: str, range_header: str | None) -> None:
        with self._lock:
            self.requests.append((method, path, range_header))

    def _count(self, key: tuple[str, str], n: int) -> None:
        with self._lock:
            self.bytes_served[key] = self.bytes_served.get(key, 0) + n

    def _split_repo(self, parts: list[str]) -> tuple[str, list[str]]:
        """The repo id at the start of ``parts`` (known repos first, else org/name) and the rest."""
        for n in (2, 1):
            if len(parts) >= n and "/".join(parts[:n]) in self.repos:
                return "/".join(parts[:n]), parts[n:]
        return "/".join(parts[:2]), parts[2:]

    def _access(self, repo: Repo | None, auth: str | None, content: bool = True) -> tuple[int, str | None, str] | None:
        """None when the request may see the repo, else (status, X-Error-Code, message).

        Like the real hub, a gated repo's listing is public; only its files (``content``) are gated.
        """
        token = auth.removeprefix("Bearer ").strip() if auth else None
        if token and token not in (self.token, self.no_access_token):
            return 401, None, "Invalid credentials in Authorization header"
        if repo is None:
            return 401 if not token else 404, "RepoNotFound", "Repository not found"
        if repo.private and token != self.token:
            return 401 if not token else 404, "RepoNotFound", "Repository not found"
        if repo.gated and content and token != self.token:
            if not token:
                return 401, "GatedRepo", f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in."
            return 403, "GatedRepo", f"Access to model {repo.repo_id} is restricted and you are not in the authorized list."
        return None

    def search(self, query: dict[str, list[str]]) -> tuple[list[dict], str | None]:
        """One page of /api/models results and the next page's URL (or None)."""
        text = (query.get("search") or [""])[0].lower()
        wanted_tags = query.get("filter", [])
        author = (query.get("author") or [None])[0]
        pipeline = (query.get("pipeline_tag") or [None])[0]
        found = [r for r in self.repos.values() if not r.private
                 and text in r.repo_id.lower()
                 and all(t in r.tags or t == r.library_name for t in wanted_tags)
                 and (author is None or r.repo_id.split("/")[0] == author)
                 and (pipeline is None or r.pipeline_tag == pipeline)]
        sort = (query.get("sort") or ["downloads"])[0]
        key = {"downloads": lambda r: r.downloads, "likes": lambda r: r.likes,
               "lastModified": lambda r: r.last_modified, "createdAt": lambda r: r.last_modified,
               "trendingScore": lambda r: r.likes}.get(sort, lambda r: r.downloads)
        found.sort(key=key, reverse=(query.get("direction") or ["-1"])[0] == "-1")
        limit = min(int((query.get("limit") or [str(self.page_size)])[0]), self.page_size)
        offset = int((query.get("cursor") or ["0"])[0])
        page = found[offset:offset + limit]
        next_url = None
        if offset + limit < len(found):
            params = [(k, v) for k, values in query.items() if k != "cursor" for v in values]
            next_url = f"{self.url}/api/models?{urlencode(params + [('cursor', str(offset + limit))])}"
        return [r.summary() for r in page], next_url


def _handler_for(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms wait between

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:  # noqa: N802 - http.server API
            self._dispatch(head=True)

        def do_GET(self) -> None:  # noqa: N802
            self._dispatch(head=False)

        # -- plumbing ---------------------------------------------------------------------------

        def _send_json(self, status: int, payload, headers: dict | None = None, head: bool = False) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _error(self, status: int, code: str | None, message: str, head: bool) -> None:
            self._send_json(status, {"error": message}, {"X-Error-Code": code} if code else None, head)

        def _dispatch(self, head: bool) -> None:
            url = urlsplit(self.path)
            hub._record(self.command, url.path, self.headers.get("Range"))
            if hub.fail_status:
                self._error(hub.fail_status, None, "Internal Error - We're working hard to fix this as soon as possible!", head)
                return
            parts = [unquote(p) for p in url.path.strip("/").split("/") if p]
            query = parse_qs(url.query, keep_blank_values=True)
            try:
                if parts[:2] == ["api", "models"] and len(parts) == 2:
                    self._search(query, head)
                elif parts[:2] == ["api", "models"]:
                    self._api_model(parts[2:], query, head)
                else:
                    self._resolve(parts, head)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _search(self, query, head: bool) -> None:
            if hub.search_delay:
                time.sleep(hub.search_delay)
            auth = self.headers.get("Authorization")
            token = auth.removeprefix("Bearer ").strip() if auth else None
            if token and token not in (hub.token, hub.no_access_token):
                self._error(401, None, "Invalid credentials in Authorization header", head)
                return
            page, next_url = hub.search(query)
            self._send_json(200, page, {"Link": f'<{next_url}>; rel="next"'} if next_url else None, head)

        def _api_model(self, parts: list[str], query, head: bool) -> None:
            repo_id, rest = hub._split_repo(parts)
            repo = hub.repos.get(repo_id)
            denied = hub._access(repo, self.headers.get("Authorization"), content=False)
            if denied:
                self._error(*denied, head)
                return
            if not rest or rest[0] == "revision":
                revision = rest[1] if len(rest) > 1 else "main"
                if revision not in ("main", repo.sha):
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
                    return
                blobs = (query.get("blobs") or ["false"])[0].lower() in ("1", "true")
                self._send_json(200, repo.info(blobs), head=head)
            elif rest[0] == "tree" and len(rest) >= 2:
                revision, prefix = rest[1], "/".join(rest[2:])
                if revision not in ("main", repo.sha):
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
                    return
                self._send_json(200, _tree(repo, prefix, query), head=head)
            else:
                self._error(404, None, "Not Found", head)

        def _resolve(self, parts: list[str], head: bool) -> None:
            repo_id, rest = hub._split_repo(parts)
            if len(rest) < 3 or rest[0] != "resolve":
                self._error(404, None, "Not Found", head)
                return
            repo = hub.repos.get(repo_id)
            denied = hub._access(repo, self.headers.get("Authorization"))
            if denied:
                self._error(*denied, head)
                return
            revision, path = rest[1], "/".join(rest[2:])
            if revision not in ("main", repo.sha):
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
                return
            entry = repo.files.get(path)
            if entry is None:
                self._error(404, "EntryNotFound", f"{path} does not exist on \"{revision}\"", head)
                return
            start, end = 0, entry.size - 1
            status = 200
            range_header = self.headers.get("Range")
            if range_header and range_header.startswith("bytes="):
                first, _, last = range_header[6:].split(",")[0].partition("-")
                if first == "":
                    start = max(0, entry.size - int(last))
                else:
                    start = int(first)
                    end = min(int(last), entry.size - 1) if last else entry.size - 1
                if start >= entry.size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{entry.size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            etag = f'"{entry.sha256 if entry.lfs else entry.git_oid}"'
            length = end - start + 1
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            self.send_header("X-Repo-Commit", repo.sha)
            if entry.lfs:
                self.send_header("X-Linked-Etag", etag)
                self.send_header("X-Linked-Size", str(entry.size))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{entry.size}")
            self.end_headers()
            if not head:
                self._send_body(repo_id, entry, start, length)

        def _send_body(self, repo_id: str, entry: RepoFile, start: int, length: int) -> None:
            key = (repo_id, entry.path)
            limit = hub.drop_after
            sent = 0
            chunk_size = 64 * 1024 if hub.throttle else CHUNK
            began = time.monotonic()
            corrupt = key in hub.corrupt
            while sent < length:
                n = min(chunk_size, length - sent)
                if limit is not None:
                    n = min(n, limit - sent)
                    if n <= 0:
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                data = entry.read(start + sent, n)
                if corrupt:
                    data = bytes(b ^ 0xFF for b in data[:1]) + data[1:]
                self.wfile.write(data)
                sent += n
                hub._count(key, n)
                if hub.throttle:
                    ahead = sent / hub.throttle - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)

    return Handler


def _tree(repo: Repo, prefix: str, query) -> list[dict]:
    recursive = (query.get("recursive") or ["false"])[0].lower() in ("1", "true")
    items, folders = [], set()
    for f in repo.files.values():
        if prefix and not f.path.startswith(prefix.rstrip("/") + "/"):
            continue
        rel = f.path[len(prefix.rstrip("/")) + 1:] if prefix else f.path
        if "/" in rel and not recursive:
            folders.add((prefix.rstrip("/") + "/" if prefix else "") + rel.split("/")[0])
            continue
        item = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
        if f.lfs:
            item["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
        items.append(item)
    return [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(folders)] + items


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--repo", default="test/model")
    parser.add_argument("--throttle", type=int, default=None, help="bytes per second")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    hub = FakeHub(port=args.port)
    hub.throttle = args.throttle
    hub.add_repo(args.repo, {f.name: f for f in args.files})
    hub.start()
    print(json.dumps({"url": hub.url, "repo": args.repo}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
