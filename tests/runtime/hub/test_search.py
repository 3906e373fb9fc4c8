"""Model search through huggingface_hub's session against the fake hub: filters, sorting, paging, failures."""
from __future__ import annotations

import socket
import time

import pytest

from runtime.errors import BadToken, HubError, HubOffline, WorkbenchError
from runtime.hub.search import ModelSearch, repo_kind


@pytest.fixture
def repos(hub):
    hub.add_repo("org/tiny-GGUF", {"a.gguf": b"x"}, downloads=10, likes=30, last_modified="2026-03-01T00:00:00.000Z",
                 tags=["gguf", "license:mit"])
    hub.add_repo("org/tiny", {"model.safetensors": b"x"}, downloads=50, likes=1,
                 last_modified="2026-05-01T00:00:00.000Z")
    hub.add_repo("org/tiny-both", {"model.safetensors": b"x", "m.gguf": b"x"}, downloads=20, likes=2,
                 tags=["gguf", "safetensors"], last_modified="2026-01-01T00:00:00.000Z")
    hub.add_repo("org/tiny-vision", {"model.safetensors": b"x"}, downloads=999, pipeline_tag="image-classification")
    hub.add_repo("org/tiny-locked", {"a.gguf": b"x"}, downloads=5, gated="manual")
    hub.add_repo("HuggingFaceTB/SmolLM2-135M-Instruct", {"model.safetensors": b"x"}, downloads=1)
    return hub


def ids(results):
    return [r.repo_id for r in results]


def test_search_text_generation_by_downloads(repos):
    search = ModelSearch("tiny")
    results = search.next_page()
    assert ids(results) == ["org/tiny", "org/tiny-both", "org/tiny-GGUF", "org/tiny-locked"]  # no image model
    assert not search.has_more and search.next_page() == []
    first = results[0]
    assert (first.kind, first.downloads, first.likes, first.last_modified) == ("checkpoint", 50, 1,
                                                                                 "2026-05-01T00:00:00.000Z")
    gguf = results[2]
    assert gguf.kind == "gguf" and gguf.licence == "mit" and gguf.pipeline_tag == "text-generation"
    assert results[3].gated


@pytest.mark.parametrize("sort, expected", [
    ("likes", ["org/tiny-GGUF", "org/tiny-both", "org/tiny", "org/tiny-locked"]),
    ("updated", ["org/tiny", "org/tiny-GGUF", "org/tiny-both", "org/tiny-locked"]),
])
def test_sort_orders(repos, sort, expected):
    results = ModelSearch("tiny", sort=sort).next_page()
    assert ids(results)[:3] == expected[:3]


def test_kind_filters(repos):
    assert ids(ModelSearch("tiny", kind="gguf").next_page()) == ["org/tiny-both", "org/tiny-GGUF", "org/tiny-locked"]
    # checkpoints: safetensors repos without GGUF files
    assert ids(ModelSearch("tiny", kind="checkpoint").next_page()) == ["org/tiny"]


def test_catalog_models_are_marked(repos):
    [result] = ModelSearch("smollm2").next_page()
    assert result.catalog is not None and result.catalog.parameters == "135M"


def test_paging_keeps_its_place(repos):
    for i in range(7):
        repos.add_repo(f"many/m{i}", {"a.gguf": b"x"}, downloads=100 + i)
    search = ModelSearch("many/", page_size=3)
    before = len(repos.requests)
    pages = []
    while search.has_more:
        pages.append(ids(search.next_page()))
    assert pages == [["many/m6", "many/m5", "many/m4"], ["many/m3", "many/m2", "many/m1"], ["many/m0"]]
    assert len(repos.requests) - before == 3 and search.pages_read == 3


def test_checkpoint_pages_skip_gguf_only_pages(repos):
    """A page of GGUF repos filtered out entirely: the search reads on instead of returning nothing."""
    for i in range(4):
        repos.add_repo(f"mix/g{i}", {"a.safetensors": b"x", "a.gguf": b"x"}, downloads=100 + i,
                       tags=["gguf", "safetensors"])
    repos.add_repo("mix/plain", {"a.safetensors": b"x"}, downloads=1)
    search = ModelSearch("mix/", kind="checkpoint", page_size=2)
    assert ids(search.next_page()) == ["mix/plain"]
    assert search.pages_read == 3 and not search.has_more


def test_empty_query_lists_the_top_models(repos):
    assert ids(ModelSearch("").next_page())[0] == "org/tiny"


def test_wrong_token(repos):
    with pytest.raises(BadToken):
        ModelSearch("tiny", token="hf_wrong").next_page()
    assert ids(ModelSearch("tiny", token=repos.token).next_page())[0] == "org/tiny"


def test_server_error_is_reported_at_once(repos):
    repos.fail_status = 502
    started = time.monotonic()
    with pytest.raises(HubError) as err:
        ModelSearch("tiny").next_page()
    assert "server error (502)" in err.value.message and "try again in a few minutes" in err.value.hint
    assert time.monotonic() - started < 5  # no 23 s of back-off


def test_no_network(hub, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(HubError) as err:
        ModelSearch("tiny").next_page()
    assert "Could not reach Hugging Face (no connection" in err.value.message
    assert time.monotonic() - started < 5


def test_offline_mode(repos, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(repos.requests)
    with pytest.raises(HubOffline) as err:
        ModelSearch("tiny").next_page()
    assert "catalog" in err.value.hint and "HF_HUB_OFFLINE" in err.value.hint
    assert len(repos.requests) == before


def test_offline_flag_follows_the_environment_not_the_import(repos, monkeypatch):
    """huggingface_hub copied HF_HUB_OFFLINE=1 when imported; unset since, searching works."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert ids(ModelSearch("tiny").next_page())[0] == "org/tiny"


@pytest.mark.parametrize("kwargs, problem", [({"kind": "onnx"}, "kind"), ({"sort": "size"}, "sort"),
                                             ({"page_size": 0}, "page"), ({"page_size": 5000}, "page")])
def test_bad_arguments(kwargs, problem):
    with pytest.raises(WorkbenchError, match=problem):
        ModelSearch("x", **kwargs)


def test_query_is_tidied():
    assert ModelSearch("  qwen   0.5b \n").query == "qwen 0.5b"
    assert len(ModelSearch("x" * 10_000).query) == 250


def test_repo_kind():
    assert repo_kind(["gguf", "safetensors"]) == "gguf"
    assert repo_kind(["transformers", "safetensors"]) == "checkpoint"
    assert repo_kind([], "transformers") == "checkpoint"
    assert repo_kind(["onnx"]) == "other"
