"""The curated beginner catalog: complete, well-formed, and readable without a network."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.errors import WorkbenchError
from runtime.hub.catalog import catalog_entry_for, catalog_summaries, load_catalog, parse_catalog, search_catalog

ROOT = Path(__file__).resolve().parents[3]

# The list, as (name fragment, original repo)
EXPECTED = [
    ("SmolLM2 135M", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    ("SmolLM2 360M", "HuggingFaceTB/SmolLM2-360M-Instruct"),
    ("SmolLM2 1.7B", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
    ("Qwen2.5 0.5B", "Qwen/Qwen2.5-0.5B-Instruct"),
    ("Qwen2.5 1.5B", "Qwen/Qwen2.5-1.5B-Instruct"),
    ("DeepSeek-R1 Distill Qwen 1.5B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"),
    ("Llama 3.2 1B", "meta-llama/Llama-3.2-1B-Instruct"),
    ("Gemma 3 1B", "google/gemma-3-1b-it"),
    ("Phi-3.5 mini", "microsoft/Phi-3.5-mini-instruct"),
    ("TinyLlama 1.1B", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"),
]


def test_catalog_holds_the_beginner_models():
    entries = load_catalog()
    assert [e.original_repo for e in entries] == [r for _, r in EXPECTED]
    for (fragment, _), entry in zip(EXPECTED, entries):
        assert entry.name.startswith(fragment)


def test_every_entry_is_complete():
    for e in load_catalog():
        assert e.gguf_repo.count("/") == 1 and e.gguf_repo != e.original_repo
        assert "gguf" in e.gguf_repo.lower(), e.gguf_repo
        assert e.original_repo.split("/")[1].lower() in e.gguf_repo.lower().replace("google_", ""), e
        assert 20 < len(e.description) <= 120 and "\n" not in e.description
        assert e.licence and e.parameters[-1] in "MB"


def test_licences_are_the_models_own():
    by_repo = {e.original_repo: e.licence for e in load_catalog()}
    assert by_repo["meta-llama/Llama-3.2-1B-Instruct"] == "Llama 3.2 Community License"
    assert by_repo["google/gemma-3-1b-it"] == "Gemma Terms of Use"
    assert by_repo["microsoft/Phi-3.5-mini-instruct"] == "MIT"
    assert by_repo["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"] == "MIT"
    assert by_repo["Qwen/Qwen2.5-0.5B-Instruct"] == "Apache-2.0"


def test_catalog_needs_no_network_and_no_huggingface_hub():
    """Loaded in a fresh interpreter: the catalog does not even import huggingface_hub."""
    code = ("import sys; from runtime.hub.catalog import load_catalog; n = len(load_catalog()); "
            "assert 'huggingface_hub' not in sys.modules; print(n)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10"


def test_entries_are_copies():
    load_catalog()[0].name = "changed"
    assert load_catalog()[0].name != "changed"


def test_lookup_and_search():
    assert catalog_entry_for("qwen/qwen2.5-0.5b-instruct-gguf").original_repo == "Qwen/Qwen2.5-0.5B-Instruct"
    assert catalog_entry_for(" HuggingFaceTB/SmolLM2-135M-Instruct ").parameters == "135M"
    assert catalog_entry_for("someone/else") is None
    assert [e.original_repo for e in search_catalog("qwen")] == [
        "Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"]
    assert [e.original_repo for e in search_catalog("qwen 0.5b")] == ["Qwen/Qwen2.5-0.5B-Instruct"]
    assert len(search_catalog("")) == 10
    assert search_catalog("no such model anywhere") == []


def test_catalog_as_search_results():
    gguf = catalog_summaries("smollm2")
    assert [s.repo_id for s in gguf] == ["bartowski/SmolLM2-135M-Instruct-GGUF", "bartowski/SmolLM2-360M-Instruct-GGUF",
                                         "bartowski/SmolLM2-1.7B-Instruct-GGUF"]
    assert all(s.kind == "gguf" and s.catalog is not None and s.licence == "Apache-2.0" for s in gguf)
    both = catalog_summaries("tinyllama", kind="all")
    assert [(s.repo_id, s.kind) for s in both] == [("TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", "gguf"),
                                                   ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "checkpoint")]
    assert json.loads(json.dumps(both[0].to_dict()))["catalog"]["name"] == "TinyLlama 1.1B Chat"


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not valid JSON"),
    ('{"models": {}}', "no list of models"),
    ('{"models": [3]}', "#1 is not an object"),
    ('{"models": [{"name": "x"}]}', "lacks parameters, description, licence, original_repo, gguf_repo"),
    ('{"models": [{"name": "x", "parameters": "1B", "description": "d", "licence": "MIT", '
     '"original_repo": "../../x", "gguf_repo": "a/b"}]}', "is not org/name"),
])
def test_a_damaged_catalog_says_what_is_wrong(text, problem):
    with pytest.raises(WorkbenchError) as err:
        parse_catalog(text)
    assert problem in err.value.message
    assert "reinstall" in err.value.hint
