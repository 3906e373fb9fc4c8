"""Library grouping: variants of one model (same base name or same repo) become one group."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from runtime.models.grouping import base_name, entry_quant, group_entries, group_key
from runtime.models.quants import quant_from_name, quant_rank
from runtime.models.library import ModelEntry


def entry(name: str, repo: str | None = None, size: int = 1, file_type: str | None = None) -> ModelEntry:
    info = SimpleNamespace(file_type=file_type) if file_type else None
    return ModelEntry(path=Path(f"/m/{name}.gguf"), name=name, source="hf-cache" if repo else "app",
                      size_bytes=size, repo_id=repo, info=info)


@pytest.mark.parametrize("name, base, quant", [
    ("SmolLM2-135M-Instruct.Q4_1", "SmolLM2-135M-Instruct", "Q4_1"),
    ("qwen2.5-0.5b-instruct-q4_k_m", "qwen2.5-0.5b-instruct", "Q4_K_M"),
    ("Llama-3.2-1B-Instruct-Q8_0.gguf", "Llama-3.2-1B-Instruct", "Q8_0"),
    ("tinyllama-1.1b-chat-v1.0.Q5_K_S", "tinyllama-1.1b-chat-v1.0", "Q5_K_S"),
    ("Phi-3.5-mini-instruct-IQ4_XS", "Phi-3.5-mini-instruct", "IQ4_XS"),
    ("gemma-3-1b-it-BF16", "gemma-3-1b-it", "BF16"),
    ("model-f16", "model", "F16"),
    ("DeepSeek-R1-Distill-Qwen-1.5B-UD-Q4_K_XL", "DeepSeek-R1-Distill-Qwen-1.5B", "Q4_K_XL"),
    ("Qwen2.5-1.5B-Instruct.i1-Q4_K_S", "Qwen2.5-1.5B-Instruct", "Q4_K_S"),
    ("big-model-Q4_K_M-00001-of-00003", "big-model", "Q4_K_M"),
    ("Qwen2.5-0.5B-Instruct", "Qwen2.5-0.5B-Instruct", None),   # no quant in the name
    ("Llama-3.2-1B", "Llama-3.2-1B", None),                      # "1B" is not a quant
    ("notes", "notes", None),
])
def test_base_name_and_quant_from_name(name, base, quant):
    assert base_name(name) == base
    assert quant_from_name(name) == quant


def test_precision_order_is_the_usual_one():
    order = ["F32", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K", "IQ1_S"]
    assert sorted(order, key=lambda q: -quant_rank(q)) == order
    assert quant_rank("q4_k_m") == quant_rank("Q4_K_M") > quant_rank("Q4_0")
    assert quant_rank(None) == 0 and quant_rank("weird") == 0


def test_header_quant_wins_over_the_name():
    assert entry_quant(entry("mislabelled-Q8_0", file_type="Q4_K_M")) == "Q4_K_M"
    assert entry_quant(entry("plain-Q8_0", file_type="unknown")) == "Q8_0"
    assert entry_quant(entry("plain")) is None


def test_variants_with_the_same_base_name_group_across_folders_and_case():
    files = [entry("Qwen2.5-0.5B-Instruct-Q4_K_M", size=400), entry("other-model-Q4_0", size=10),
             entry("qwen2.5-0.5b-instruct-q8_0", repo="Qwen/Qwen2.5-0.5B-Instruct-GGUF", size=600),
             entry("Qwen2.5-0.5B-Instruct-F16", size=1000)]
    groups = group_entries(files)
    assert [g.name for g in groups] == ["Qwen2.5-0.5B-Instruct", "other-model"]
    qwen = groups[0]
    assert qwen.quants == ["F16", "Q8_0", "Q4_K_M"]          # highest precision first
    assert [e.size_bytes for e in qwen.entries] == [1000, 600, 400]
    assert qwen.size_bytes == 2000 and qwen.repo_ids == ["Qwen/Qwen2.5-0.5B-Instruct-GGUF"]
    assert all(any(e is f for f in files) for e in qwen.entries)   # the same objects, not copies


def test_files_of_one_repo_group_even_when_their_names_differ():
    files = [entry("model-q4_k_m", repo="org/Tiny-GGUF"), entry("model-q8_0", repo="org/Tiny-GGUF"),
             entry("model-q4_k_m", repo="else/Other-GGUF")]
    groups = group_entries(files)
    # "model" is generic: the two repos stay apart; each is named after its repo, without "-GGUF"
    assert [(g.name, len(g.entries)) for g in groups] == [("Tiny", 2), ("Other", 1)]
    assert groups[0].quants == ["Q8_0", "Q4_K_M"]


def test_grouping_is_transitive_through_a_shared_name():
    # a (repo X) ~ b (same name as a, repo Y) ~ c (repo Y): one model
    files = [entry("Foo-7B-Q4_0", repo="x/foo"), entry("unrelated-Q4_0"), entry("foo-7b-q8_0", repo="y/foo"),
             entry("model-f16", repo="y/foo")]
    groups = group_entries(files)
    assert [(g.name, len(g.entries)) for g in groups] == [("Foo-7B", 3), ("unrelated", 1)]
    assert groups[0].repo_ids == ["x/foo", "y/foo"] and groups[0].quants == ["F16", "Q8_0", "Q4_0"]


def test_different_models_never_merge():
    names = ["SmolLM2-135M-Instruct.Q4_1", "SmolLM2-360M-Instruct.Q4_1", "Llama-3.2-1B-Instruct-Q4_K_M",
             "Llama-3.2-3B-Instruct-Q4_K_M", "model", "ggml-model-f16"]
    groups = group_entries([entry(n) for n in names])
    assert len(groups) == len(names)
    assert group_key("Llama-3.2-1B-Instruct-Q4_K_M") == group_key("llama_3.2_1b_instruct.q8_0")


def test_empty_library():
    assert group_entries([]) == []
