"""Downloads that fail say why in plain words: disk full, refusals, no network, offline; no token leaks."""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest

from runtime import paths
from runtime.errors import BadToken, DiskFull, GatedRepo, HubError, HubOffline, RepoNotFound
from runtime.hub import download as dl
from runtime.hub.download import bytes_on_disk, download_files
from runtime.hub.types import RemoteFile

REPO = "org/model-GGUF"
NAME = "model-Q4_K_M.gguf"


def remote(hub, repo_id: str, name: str) -> RemoteFile:
    f = hub.repos[repo_id].files[name]
    return RemoteFile(name, f.size, f.sha256 if f.lfs else None, f.git_oid)


@pytest.fixture
def repo(hub):
    hub.add_repo(REPO, {NAME: os.urandom(2_000_000)})
    hub.add_repo("org/gated", {NAME: os.urandom(50_000)}, gated="manual")
    hub.add_repo("org/private", {NAME: os.urandom(50_000)}, private=True)
    return hub


# -- disk space -----------------------------------------------------------------------------------

def test_free_space_is_checked_for_the_whole_choice_before_the_first_byte(repo, monkeypatch, tmp_path):
    repo.add_repo("org/split", {f"m-0000{i}-of-00002.gguf": os.urandom(600_000) for i in (1, 2)})
    files = [remote(repo, "org/split", f"m-0000{i}-of-00002.gguf") for i in (1, 2)]
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1_000_000, 1_000_000))
    with pytest.raises(DiskFull) as info:
        download_files("org/split", files, revision="main", dest=tmp_path / "out", token=False)
    err = info.value
    assert err.facts["needed_bytes"] == 1_200_000 and err.facts["free_bytes"] == 1_000_000
    assert "1.1 MiB" in err.message and "976.6 KiB" in err.message and "Free" in err.hint
    assert not [r for r in repo.requests if r[0] == "GET" and "/resolve/" in r[1]]  # nothing was fetched
    assert not (tmp_path / "out").exists()


def test_what_is_on_disk_already_counts_towards_the_space(repo, monkeypatch):
    files = [remote(repo, REPO, NAME)]
    partial = (paths.hf_cache_dir() / "models--org--model-GGUF" / "blobs" / f"{files[0].sha256}{dl.PARTIAL_SUFFIX}")
    partial.parent.mkdir(parents=True)
    data = repo.repos[REPO].files[NAME].data
    partial.write_bytes(data[:1_500_000])
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 0, 600_000))  # enough for the rest
    assert download_files(REPO, files, revision="main", token=False)[0].read_bytes() == data


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs), where the machine lets us mount one (root on Linux)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_is_found_before_starting(repo, small_disk):
    with pytest.raises(DiskFull) as info:
        download_files(REPO, [RemoteFile(NAME, 2_000_000, repo.repos[REPO].files[NAME].sha256)], revision="main",
                       dest=small_disk / "models", token=False)
    assert info.value.facts["free_bytes"] < 2_000_000 <= info.value.facts["needed_bytes"]
    assert list(small_disk.iterdir()) == []


def test_enospc_while_writing_becomes_disk_full_and_nothing_gets_the_final_name(repo, small_disk, monkeypatch):
    """The check before passes (another program fills the disk meanwhile: here, a lying disk_usage)."""
    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(real(path).total, 0, 10**9))
    dest = small_disk / "models"
    files = [remote(repo, REPO, NAME)]
    with pytest.raises(DiskFull) as info:
        download_files(REPO, files, revision="main", dest=dest, token=False)
    err = info.value
    assert "filled up" in err.message and "continues from where it stopped" in err.hint
    assert not (dest / NAME).exists()
    kept = bytes_on_disk(REPO, files, dest=dest)
    assert 0 < kept < 2_000_000  # what fitted stays, under the partial name only
    assert [p.name for p in dest.iterdir()] == [f".{NAME}{dl.PARTIAL_SUFFIX}"]


# -- refusals and faults --------------------------------------------------------------------------

def test_gated_without_a_token_and_with_one_that_lacks_access(repo):
    files = [remote(repo, "org/gated", NAME)]
    with pytest.raises(GatedRepo) as info:
        download_files("org/gated", files, revision="main", token=False)
    assert "licence" in info.value.hint
    with pytest.raises(GatedRepo, match="not been granted"):
        download_files("org/gated", files, revision="main", token=repo.no_access_token)
    got = download_files("org/gated", files, revision="main", token=repo.token)
    assert got[0].read_bytes() == repo.repos["org/gated"].files[NAME].data


def test_a_wrong_token_is_named_as_such(repo):
    with pytest.raises(BadToken) as info:
        download_files("org/gated", [remote(repo, "org/gated", NAME)], revision="main", token="hf_wrong_token")
    assert "settings/tokens" in info.value.hint


def test_unknown_repo_private_repo_and_missing_file(repo):
    with pytest.raises(RepoNotFound, match="org/nothing"):
        download_files("org/nothing", [RemoteFile(NAME, 1)], revision="main", token=False)
    with pytest.raises(RepoNotFound):
        download_files("org/private", [RemoteFile(NAME, 50_000)], revision="main", token=False)
    with pytest.raises(RepoNotFound) as info:
        download_files(REPO, [RemoteFile("missing.gguf", 1)], revision="main", token=False)
    assert "missing.gguf" in info.value.message and "workbench files" in info.value.hint
    with pytest.raises(RepoNotFound, match="revision"):
        download_files(REPO, [remote(repo, REPO, NAME)], revision="no-such-branch", token=False)


def test_a_server_error_says_it_is_the_hubs(repo):
    repo.fail_status = 503
    with pytest.raises(HubError) as info:
        download_files(REPO, [remote(repo, REPO, NAME)], revision="main", token=False)
    assert info.value.facts["status"] == 503 and "server error" in info.value.message


def test_no_network(repo, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(HubError) as info:
        download_files(REPO, [remote(repo, REPO, NAME)], revision="main", token=False)
    assert "Could not reach Hugging Face" in info.value.message and "internet" in info.value.hint


def test_without_network_complete_cached_files_are_still_returned(repo, monkeypatch):
    files = [remote(repo, REPO, NAME)]
    got = download_files(REPO, files, revision="main", token=False)
    repo.fail_status = 503
    assert download_files(REPO, files, revision="main", token=False) == got


def test_offline_mode_returns_complete_files_and_refuses_the_rest(repo, monkeypatch, tmp_path):
    files = [remote(repo, REPO, NAME)]
    got = download_files(REPO, files, revision="main", token=False)
    folder = download_files(REPO, files, revision="main", dest=tmp_path, token=False)
    repo.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert download_files(REPO, files, revision="main", token=False) == got
    assert download_files(REPO, files, revision="main", dest=tmp_path, token=False) == folder
    with pytest.raises(HubOffline) as info:
        download_files("org/gated", [remote(repo, "org/gated", NAME)], revision="main", token=False)
    assert "HF_HUB_OFFLINE" in info.value.message and "Unset HF_HUB_OFFLINE" in info.value.hint
    assert repo.requests == []  # offline means no request at all


# -- the token never shows ------------------------------------------------------------------------

def test_the_token_never_appears_in_errors_progress_logs_or_the_store(repo, caplog, monkeypatch):
    from runtime.store.downloads import DownloadStore

    secret = "hf_SeCrEt_never_shown_0123456789"
    repo.no_access_token = secret  # a token the hub knows, without access to gated repos
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HF_TOKEN", secret)  # found by get_token() when token=None
    messages = []
    store = DownloadStore()
    record = store.add("org/gated", "main", [remote(repo, "org/gated", NAME)])
    with pytest.raises(GatedRepo) as info:
        download_files("org/gated", record.files, revision="main", progress=lambda d, t, m: messages.append(m))
    store.update(record.id, status="failed", error=info.value)
    ok = download_files(REPO, [remote(repo, REPO, NAME)], revision="main",
                        progress=lambda d, t, m: messages.append(m))
    store.update(record.id, status="done", paths=ok)
    texts = [str(info.value), info.value.user_text(), json.dumps(info.value.to_payload()), caplog.text,
             *messages, json.dumps([r.__dict__ for r in store.records()], default=str)]
    assert all(secret not in text for text in texts)
    db = Path(store.path).read_bytes() + b"".join(p.read_bytes() for p in Path(store.path).parent.glob("*-wal"))
    assert secret.encode() not in db
    store.close()


def test_a_token_inside_an_error_text_is_scrubbed():
    err = HubError("failed with Bearer hf_abc123 in it", details="token=hf_abc123", hint="x hf_abc123")
    cleaned = dl._scrub(err, "hf_abc123")
    assert "hf_abc123" not in json.dumps(cleaned.to_payload()) and "hf_abc123" not in str(cleaned)
