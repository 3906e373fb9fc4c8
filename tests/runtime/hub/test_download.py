"""Downloads through the real huggingface_hub client against the fake hub: where files go, checks, resume."""
from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from runtime import paths
from runtime.errors import Cancelled, ChecksumMismatch, DownloadError, RepoNotFound
from runtime.hub import download as dl
from runtime.hub.download import bytes_on_disk, discard_partial, download_files, local_paths
from runtime.hub.repo import UnsafeListing
from runtime.hub.types import RemoteFile
from runtime.jobs import CancelToken

REPO = "org/model-GGUF"
BIG = "model-Q4_K_M.gguf"


def remote(hub, repo_id: str, name: str) -> RemoteFile:
    """What a repo listing says about a file (size, LFS sha256 or git blob id)."""
    f = hub.repos[repo_id].files[name]
    return RemoteFile(name, f.size, f.sha256 if f.lfs else None, f.git_oid)


def storage(repo_id: str = REPO) -> Path:
    return paths.hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def partials(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"*{dl.PARTIAL_SUFFIX}")] if root.exists() else []


@pytest.fixture
def big():
    return os.urandom(3_000_000)


@pytest.fixture
def repo(hub, big):
    commit = hub.add_repo(REPO, {BIG: big, "config.json": b'{"model_type": "llama"}',
                                 "sub/README.md": "# a model"})
    hub.commit = commit
    return hub


@pytest.fixture
def fast_retries(monkeypatch):
    """Retry pauses of 10 ms, so tests of giving up do not wait 15 s."""
    monkeypatch.setattr(dl, "BACKOFF_S", (0.01,) * 5)


# -- where files go -------------------------------------------------------------------------------

def test_into_the_hf_cache_in_its_own_layout_so_huggingface_hub_finds_it(repo, big):
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    files = [remote(repo, REPO, BIG), remote(repo, REPO, "config.json")]
    got = download_files(REPO, files, revision="main", token=False)
    snap = storage() / "snapshots" / repo.commit
    assert got == [snap / BIG, snap / "config.json"]
    assert got[0].read_bytes() == big and got[1].read_bytes() == b'{"model_type": "llama"}'
    # blobs/<sha256> for LFS files, blobs/<git blob id> for small ones; relative links; refs/main
    assert got[0].is_symlink() and not os.path.isabs(os.readlink(got[0]))
    assert got[0].resolve() == storage() / "blobs" / hashlib.sha256(big).hexdigest()
    assert got[1].resolve() == storage() / "blobs" / repo.repos[REPO].files["config.json"].git_oid
    assert (storage() / "refs" / "main").read_text() == repo.commit
    assert partials(storage()) == []
    cache = str(paths.hf_cache_dir())
    assert try_to_load_from_cache(REPO, BIG, cache_dir=cache) == str(got[0])
    assert hf_hub_download(REPO, BIG, cache_dir=cache, local_files_only=True) == str(got[0])
    assert repo.served(REPO, BIG) == len(big)


def test_into_a_folder_with_subfolders_and_no_partial_left(repo, tmp_path, big):
    files = [remote(repo, REPO, BIG), remote(repo, REPO, "sub/README.md")]
    got = download_files(REPO, files, revision="main", dest=tmp_path / "models", token=False)
    assert got == [tmp_path / "models" / BIG, tmp_path / "models" / "sub" / "README.md"]
    assert got[0].read_bytes() == big and got[1].read_text() == "# a model"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [BIG, "sub"]  # nothing hidden left


def test_a_complete_file_is_not_fetched_again(repo):
    files = [remote(repo, REPO, BIG)]
    first = download_files(REPO, files, revision="main", token=False)
    gets = [r for r in repo.requests if r[0] == "GET" and "/resolve/" in r[1]]
    again = download_files(REPO, files, revision="main", token=False)
    assert again == first and [r for r in repo.requests if r[0] == "GET" and "/resolve/" in r[1]] == gets
    # pinned to the commit: not even a HEAD
    count = len(repo.requests)
    assert download_files(REPO, files, revision=repo.commit, token=False) == first
    assert len(repo.requests) == count


def test_a_blob_that_huggingface_hub_downloaded_is_reused(repo, big):
    from huggingface_hub import hf_hub_download

    theirs = hf_hub_download(REPO, BIG, cache_dir=str(paths.hf_cache_dir()))
    served = repo.served(REPO, BIG)
    ours = download_files(REPO, [remote(repo, REPO, BIG)], revision="main", token=False)
    assert str(ours[0]) == theirs and repo.served(REPO, BIG) == served


def test_split_gguf_parts_download_as_one_choice_with_one_progress(hub):
    parts = {f"big-Q8_0-0000{i}-of-00003.gguf": os.urandom(400_000 + i) for i in (1, 2, 3)}
    hub.add_repo("org/split", parts)
    files = [remote(hub, "org/split", name) for name in parts]
    seen = []
    got = download_files("org/split", files, revision="main", token=False,
                         progress=lambda done, total, msg: seen.append((done, total, msg)))
    assert [p.name for p in got] == list(parts) and [p.read_bytes() for p in got] == list(parts.values())
    total = sum(len(v) for v in parts.values())
    assert {t for _, t, _ in seen} == {total}
    dones = [d for d, _, _ in seen]
    assert dones == sorted(dones) and dones[-1] == total
    assert "Downloaded 3 files" in seen[-1][2]


def test_unsafe_names_are_refused_before_any_request(repo, tmp_path):
    for name in ("../escape.gguf", "/etc/passwd", "a/../../b", "dir\\file.gguf", "C:/x.gguf", ""):
        with pytest.raises(UnsafeListing, match="the listing was refused"):
            download_files(REPO, [RemoteFile(name, 10)], revision="main", dest=tmp_path, token=False)
    assert repo.requests == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(RepoNotFound, match="not a Hugging Face model name"):
        download_files("../../etc", [RemoteFile("x.gguf", 1)], revision="main", token=False)


# -- checks ---------------------------------------------------------------------------------------

def test_sha256_mismatch_leaves_no_file_at_all(repo, tmp_path):
    repo.corrupt.add((REPO, BIG))
    for dest in (None, tmp_path):
        with pytest.raises(ChecksumMismatch) as info:
            download_files(REPO, [remote(repo, REPO, BIG)], revision="main", dest=dest, token=False)
        assert "sha256" in info.value.message and info.value.facts["filename"] == BIG
        root = storage() if dest is None else tmp_path
        left = [p for p in root.rglob("*") if (p.is_file() or p.is_symlink()) and "refs" not in p.parts]
        assert left == []  # no blob, no snapshot link, no partial (refs/main, as huggingface_hub writes, may stay)


def test_a_small_git_file_is_checked_by_its_blob_id(repo):
    repo.corrupt.add((REPO, "config.json"))
    with pytest.raises(ChecksumMismatch, match="git blob id"):
        download_files(REPO, [remote(repo, REPO, "config.json")], revision="main", token=False)
    assert partials(storage()) == [] and list(storage().rglob("config.json")) == []


def test_a_partial_with_wrong_bytes_is_caught_by_the_rehash_and_removed(repo, big):
    files = [remote(repo, REPO, BIG)]
    blob_partial = storage() / "blobs" / f"{files[0].sha256}{dl.PARTIAL_SUFFIX}"
    blob_partial.parent.mkdir(parents=True)
    blob_partial.write_bytes(b"\0" * 1000 + big[1000:1_000_000])  # right length, wrong start
    with pytest.raises(ChecksumMismatch):
        download_files(REPO, files, revision="main", token=False)
    assert not blob_partial.exists()
    assert repo.served(REPO, BIG) == len(big) - 1_000_000  # only the rest was asked for
    assert download_files(REPO, files, revision="main", token=False)[0].read_bytes() == big


def test_a_file_that_changed_since_the_listing_is_refused(repo):
    stale = RemoteFile(BIG, 3_000_000, "0" * 64)
    with pytest.raises(DownloadError, match="changed on Hugging Face"):
        download_files(REPO, [stale], revision="main", token=False)
    with pytest.raises(DownloadError, match="changed"):
        download_files(REPO, [RemoteFile(BIG, 123, None)], revision="main", token=False)


# -- never losing work ----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [3_000_000, 20_000_000], ids=["small", "several-blocks"])
def test_dropped_connections_are_resumed_within_the_call(hub, size):
    data = os.urandom(size)
    hub.add_repo("org/flaky", {"m.gguf": data})
    hub.drop_after = size // 3 + 12345
    messages = []
    got = download_files("org/flaky", [remote(hub, "org/flaky", "m.gguf")], revision="main", token=False,
                         progress=lambda d, t, m: messages.append(m))
    assert got[0].read_bytes() == data
    assert hub.served("org/flaky", "m.gguf") == size  # every byte once: each retry asked for the rest
    ranges = [r[2] for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]]
    assert ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:]) and len(ranges) == 3
    assert any("connection dropped" in m and "retrying" in m for m in messages)


def test_after_the_retries_the_partial_is_kept_and_the_next_call_continues(repo, big, fast_retries):
    files = [remote(repo, REPO, BIG)]
    repo.drop_after = 1_000_000

    def progress(done, total, message):
        if done >= 1_000_000:
            repo.fail_status = 503  # the hub goes down after the first drop

    with pytest.raises(DownloadError) as info:
        download_files(REPO, files, revision="main", token=False, progress=progress)
    assert "continues from where it stopped" in info.value.hint
    assert bytes_on_disk(REPO, files) == 1_000_000 and local_paths(REPO, files) == [None]
    repo.fail_status = None
    repo.drop_after = None
    got = download_files(REPO, files, revision="main", token=False)
    assert got[0].read_bytes() == big and repo.served(REPO, BIG) == len(big)


def _download_in_thread(repo_id, files, **kwargs):
    token = CancelToken()
    outcome = {}
    started = threading.Event()

    def progress(done, total, message):
        outcome["done"] = done
        if done > 200_000:
            started.set()

    def run():
        try:
            outcome["paths"] = download_files(repo_id, files, revision="main", token=False, progress=progress,
                                              cancel=token, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            outcome["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run)
    thread.start()
    return token, thread, outcome, started


@pytest.mark.parametrize("to_folder", [False, True], ids=["cache", "folder"])
def test_cancel_keeps_the_partial_and_the_next_call_resumes_from_it(repo, big, tmp_path, to_folder):
    repo.throttle = 2_000_000
    dest = tmp_path / "out" if to_folder else None
    files = [remote(repo, REPO, BIG)]
    token, thread, outcome, started = _download_in_thread(REPO, files, dest=dest)
    assert started.wait(10)
    cancelled_at = time.monotonic()
    token.cancel()
    thread.join(10)
    assert time.monotonic() - cancelled_at < 1.0
    assert isinstance(outcome.get("error"), Cancelled)
    kept = bytes_on_disk(REPO, files, dest=dest)
    assert 200_000 <= kept < len(big)
    final = (dest / BIG) if to_folder else storage() / "snapshots" / repo.commit / BIG
    assert not final.exists()  # a partial never appears under the final name
    assert partials(dest if to_folder else storage())
    repo.throttle = None
    got = download_files(REPO, files, revision="main", dest=dest, token=False)
    assert got[0] == final and final.read_bytes() == big
    assert repo.served(REPO, BIG) <= len(big) + 256 * 1024  # what was in flight at the cancel, at most
    assert partials(dest if to_folder else storage()) == []


def test_discard_partial_removes_it_for_good(repo, tmp_path):
    repo.throttle = 2_000_000
    files = [remote(repo, REPO, BIG)]
    for dest in (None, tmp_path):
        token, thread, outcome, started = _download_in_thread(REPO, files, dest=dest)
        assert started.wait(10)
        token.cancel()
        thread.join(10)
        kept = bytes_on_disk(REPO, files, dest=dest)
        assert kept > 0
        assert discard_partial(REPO, files, dest=dest) == kept
        assert bytes_on_disk(REPO, files, dest=dest) == 0
        assert partials(tmp_path) == [] and partials(storage()) == []
        assert discard_partial(REPO, files, dest=dest) == 0  # twice is fine


def test_two_downloads_of_one_file_never_write_the_same_partial(repo, big):
    repo.throttle = 2_000_000
    files = [remote(repo, REPO, BIG)]
    token, thread, outcome, started = _download_in_thread(REPO, files)
    try:
        assert started.wait(10)
        with pytest.raises(DownloadError, match="being downloaded by another"):
            download_files(REPO, files, revision="main", token=False)
        with pytest.raises(DownloadError, match="still being downloaded"):
            discard_partial(REPO, files)
    finally:
        repo.throttle = None
        thread.join(20)
    assert outcome["paths"][0].read_bytes() == big


def test_progress_carries_speed_and_time_left(repo):
    repo.throttle = 3_000_000
    seen = []
    download_files(REPO, [remote(repo, REPO, BIG)], revision="main", token=False,
                   progress=lambda d, t, m: seen.append((d, t, m)))
    assert any("/s" in m and "left" in m for _, _, m in seen), seen
    assert any(f"{BIG}: " in m and " of 2.9 MiB" in m for _, _, m in seen)
    gaps = [b[0] - a[0] for a, b in zip(seen, seen[1:])]
    assert min(gaps) >= 0 and len(seen) < 60  # throttled to about ten a second


def test_cancel_before_the_start_raises_cancelled_and_writes_nothing(repo):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        download_files(REPO, [remote(repo, REPO, BIG)], revision="main", token=False, cancel=token)
    assert not storage().exists()
