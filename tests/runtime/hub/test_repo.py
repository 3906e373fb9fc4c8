"""Repo listings through the real huggingface_hub client against the fake hub, and every way they fail."""
from __future__ import annotations

import hashlib
import json
import socket
import time

import pytest

from runtime.errors import BadToken, HubError, HubOffline, RepoNotFound
from runtime.hub.repo import UnsafeListing, check_repo_id, check_repo_path, fetch_listing

CONFIG = {"model_type": "llama", "num_hidden_layers": 2, "torch_dtype": "bfloat16"}


@pytest.fixture
def repos(hub):
    hub.add_repo("org/tiny-GGUF", {"tiny-Q4_K_M.gguf": b"G" * 5000, "tiny-Q8_0.gguf": b"H" * 9000,
                                   "README.md": "# tiny"}, licence="mit")
    hub.add_repo("org/tiny", {"model.safetensors": b"S" * 3000, "config.json": json.dumps(CONFIG),
                              "tokenizer.json": "{}"})
    hub.add_repo("org/locked", {"locked.gguf": b"L" * 100}, gated="manual")
    hub.add_repo("org/secret", {"secret.gguf": b"P" * 100}, private=True)
    return hub


def test_listing_has_sizes_hashes_commit_and_licence(repos):
    listing = fetch_listing("org/tiny-GGUF")
    files = {f.path: f for f in listing.files}
    assert set(files) == {"tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf", "README.md"}
    assert files["tiny-Q4_K_M.gguf"].size == 5000
    assert files["tiny-Q4_K_M.gguf"].sha256 == hashlib.sha256(b"G" * 5000).hexdigest()
    assert files["README.md"].sha256 is None and files["README.md"].blob_id  # a git file: no LFS hash
    assert listing.revision == repos.repos["org/tiny-GGUF"].sha
    assert listing.licence == "mit" and not listing.gated and not listing.private
    assert listing.config is None
    assert json.loads(json.dumps(listing.to_dict()))["files"][0]["path"]


def test_checkpoint_listing_brings_its_config(repos, workbench_home):
    listing = fetch_listing("org/tiny")
    assert listing.config == CONFIG
    # fetched into the Hugging Face cache, at the listed commit
    from runtime import paths

    cached = list(paths.hf_cache_dir().glob("models--org--tiny/snapshots/*/config.json"))
    assert [p.parent.name for p in cached] == [listing.revision]


def test_pinned_revision_and_unknown_revision(repos):
    sha = repos.repos["org/tiny"].sha
    assert fetch_listing("org/tiny", revision=sha).revision == sha
    with pytest.raises(RepoNotFound, match="no such revision"):
        fetch_listing("org/tiny", revision="not-a-branch")


def test_unknown_repo(repos):
    with pytest.raises(RepoNotFound) as err:
        fetch_listing("org/nothing-here")
    assert "no model 'org/nothing-here'" in err.value.message
    assert "spelling" in err.value.hint


def test_a_gated_repo_lists_its_files_to_anyone(repos):
    """As on the real hub: the listing is public, the downloads need a token (tests/runtime/hub/test_download*)."""
    for token in (None, repos.no_access_token, repos.token):
        listing = fetch_listing("org/locked", token=token)
        assert listing.gated and [f.path for f in listing.files] == ["locked.gguf"]


def test_private_repo(repos):
    with pytest.raises(RepoNotFound):
        fetch_listing("org/secret")
    assert fetch_listing("org/secret", token=repos.token).private


def test_wrong_token(repos):
    with pytest.raises(BadToken) as err:
        fetch_listing("org/tiny", token="hf_wrong")
    assert "rejected the access token" in err.value.message and "settings/tokens" in err.value.hint


def test_server_error_is_reported_at_once(repos):
    repos.fail_status = 503
    started = time.monotonic()
    with pytest.raises(HubError) as err:
        fetch_listing("org/tiny")
    assert "server error (503)" in err.value.message
    assert time.monotonic() - started < 5


def test_no_network(repos, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(HubError) as err:
        fetch_listing("org/tiny")
    assert "Could not reach Hugging Face" in err.value.message and "internet connection" in err.value.hint
    assert time.monotonic() - started < 5


def test_offline_mode_asks_nothing(repos, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(repos.requests)
    with pytest.raises(HubOffline, match="Offline mode is on"):
        fetch_listing("org/tiny")
    assert len(repos.requests) == before


@pytest.mark.parametrize("bad", ["", "org", "org/name/extra", "../etc", "org/..", "-org/name", "org/na me",
                                 "org/name.", "org/name-", "org/a--b", "org/" + "x" * 97])
def test_a_name_that_is_no_repo_is_refused_before_asking(repos, bad):
    before = len(repos.requests)
    with pytest.raises(RepoNotFound) as err:
        fetch_listing(bad)
    assert "not a Hugging Face model name" in err.value.message and "organisation/name" in err.value.hint
    assert len(repos.requests) == before


def test_repo_urls_are_accepted():
    assert check_repo_id("https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/tree/main") == \
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
    assert check_repo_id(" bartowski/SmolLM2-135M-Instruct-GGUF ") == "bartowski/SmolLM2-135M-Instruct-GGUF"
    assert check_repo_id("_org/x") == "_org/x" and check_repo_id("a/b") == "a/b"


UNSAFE = ["../evil.gguf", "models/../../evil.gguf", "/etc/passwd", "a\\..\\evil.gguf", "a//b.gguf", "./x.gguf",
          "dir/", "C:evil.gguf", "bad\x00name.gguf", "line\nbreak.gguf"]


@pytest.mark.parametrize("name", UNSAFE)
def test_unsafe_file_names_refuse_the_listing(repos, name, workbench_home):
    from runtime import paths

    repos.add_repo("evil/repo", {"good-Q4_K_M.gguf": b"x" * 100, name: b"owned", "config.json": "{}"})
    with pytest.raises(UnsafeListing) as err:
        fetch_listing("evil/repo")
    assert repr(name) in err.value.message and "refused" in err.value.message
    assert "nothing was downloaded" in err.value.hint
    assert isinstance(err.value, HubError) and err.value.facts["filename"] == name
    # refused before anything was fetched or written: not even config.json
    assert not [r for r in repos.requests if "/resolve/" in r[1]]
    assert not list(paths.hf_cache_dir().rglob("*.json"))


@pytest.mark.parametrize("name", ["model.gguf", "sub/dir/model-Q4_K_M.gguf", "名前.gguf", "a..b.gguf", ".gitattributes"])
def test_safe_names_pass(name):
    assert check_repo_path(name) == name


def test_two_spellings_of_one_file_are_refused(repos):
    repos.add_repo("evil/case", {"Model.gguf": b"a", "model.gguf": b"b"})
    with pytest.raises(UnsafeListing, match="twice"):
        fetch_listing("evil/case")
