"""The fake hub answers the real huggingface_hub client the way the real hub does (tests rely on it)."""
from __future__ import annotations

import hashlib

import pytest


@pytest.fixture
def repos(hub):
    hub.add_repo("org/tiny-GGUF", {"tiny-Q4_K_M.gguf": b"G" * 5000, "README.md": "# tiny"}, downloads=10, likes=3)
    hub.add_repo("org/tiny", {"model.safetensors": b"S" * 3000, "config.json": b"{}"}, downloads=50,
                 likes=1, last_modified="2026-05-01T00:00:00.000Z")
    hub.add_repo("org/locked", {"locked.gguf": b"L" * 100}, gated="manual")
    return hub


def test_search_sorts_filters_and_pages(repos):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=repos.url)
    assert [m.id for m in api.list_models(search="tiny", sort="downloads")] == ["org/tiny", "org/tiny-GGUF"]
    assert [m.id for m in api.list_models(search="tiny", filter="gguf")] == ["org/tiny-GGUF"]
    assert [m.id for m in api.list_models(sort="likes")][0] == "org/tiny-GGUF"
    for i in range(5):
        repos.add_repo(f"many/m{i}", {"a.gguf": b"x"}, downloads=i)
    repos.page_size = 2
    before = len(repos.requests)
    found = [m.id for m in api.list_models(author="many", sort="downloads")]
    assert found == [f"many/m{i}" for i in (4, 3, 2, 1, 0)]
    assert len(repos.requests) - before == 3  # three pages of at most two, followed through Link


def test_model_info_gives_sizes_and_lfs_hashes(repos):
    from huggingface_hub import HfApi

    info = HfApi(endpoint=repos.url).model_info("org/tiny-GGUF", files_metadata=True)
    files = {s.rfilename: s for s in info.siblings}
    assert files["tiny-Q4_K_M.gguf"].size == 5000
    assert files["tiny-Q4_K_M.gguf"].lfs.sha256 == hashlib.sha256(b"G" * 5000).hexdigest()
    assert files["README.md"].lfs is None and len(info.sha) == 40


def test_download_with_the_real_client_and_range(repos, tmp_path):
    from huggingface_hub import hf_hub_download

    path = hf_hub_download("org/tiny-GGUF", "tiny-Q4_K_M.gguf", cache_dir=tmp_path, endpoint=repos.url)
    assert open(path, "rb").read() == b"G" * 5000
    assert repos.served("org/tiny-GGUF", "tiny-Q4_K_M.gguf") == 5000


def test_errors_are_the_hubs(repos, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub import errors as hf

    api = HfApi(endpoint=repos.url)
    with pytest.raises(hf.RepositoryNotFoundError):
        api.model_info("org/missing")
    with pytest.raises(hf.GatedRepoError):
        hf_hub_download("org/locked", "locked.gguf", cache_dir=tmp_path, endpoint=repos.url)
    with pytest.raises(hf.EntryNotFoundError):
        hf_hub_download("org/tiny", "nope.bin", cache_dir=tmp_path, endpoint=repos.url)
    assert api.model_info("org/locked", token=repos.token).id == "org/locked"
    with pytest.raises(hf.HfHubHTTPError) as bad:
        api.model_info("org/locked", token="hf_wrong")
    assert bad.value.response.status_code == 401
