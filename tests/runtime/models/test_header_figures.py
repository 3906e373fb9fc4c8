"""Impossible header figures (issue 6): cases from the issue, and what the reader makes of them."""
from __future__ import annotations

import pytest
from gguf import GGUFValueType as T

from model_files import write_unknown_arch_gguf
from runtime.models.gguf_info import read_gguf_info
from runtime.models.hardware import check_fit, default_fit_context

MiB = 1024**2


@pytest.mark.parametrize("header", [
    {"{arch}.context_length": (T.INT32, -1), "{arch}.vocab_size": (T.UINT64, 2**40)},
    {"{arch}.context_length": (T.UINT64, 2**63), "{arch}.block_count": (T.UINT64, 2**40),
     "{arch}.attention.head_count": (T.INT32, -9), "split.count": (T.INT16, -3)},
    {"{arch}.context_length": (T.UINT32, 0), "{arch}.attention.head_count": (T.UINT32, 2**31),
     "{arch}.attention.key_length": (T.UINT64, 2**62), "tokenizer.ggml.bos_token_id": (T.INT32, -1)},
    {"{arch}.context_length": (T.STRING, "long"), "{arch}.embedding_length": (T.FLOAT32, 1e30),
     "general.file_type": (T.INT32, -7)},
])
def test_impossible_figures_are_unknown_or_taken_from_the_tensors(tmp_path, check_stated_figures, header):
    check_stated_figures(write_unknown_arch_gguf(tmp_path, name="bad", header=header))


def _info(tmp_path, **header):
    header = {k.replace("__", "."): v for k, v in header.items()}
    return read_gguf_info(write_unknown_arch_gguf(tmp_path, name="odd", header=header))


def test_negative_context_is_unknown_and_the_fit_uses_the_default(tmp_path):
    info = _info(tmp_path, **{"{arch}__context_length": (T.INT32, -1)})
    assert info.context_length is None
    assert default_fit_context(info) == 4096
    fit = check_fit(info, default_fit_context(info), available_bytes=2**34)
    assert "4,096-token context" in fit.message and "context length is unknown" in fit.message


def test_huge_vocab_size_yields_to_the_token_list(tmp_path):
    info = _info(tmp_path, **{"{arch}__vocab_size": (T.UINT64, 2**40)})
    assert info.vocab_size == 16
    assert check_fit(info, 4096, available_bytes=2**34).needed_bytes < 128 * MiB


def test_layers_and_width_come_from_the_tensors(tmp_path):
    info = _info(tmp_path, **{"{arch}__block_count": (T.UINT32, 40), "{arch}__embedding_length": (T.UINT32, 4096)})
    assert (info.block_count, info.embedding_length) == (1, 8)


def test_a_shard_keeps_its_stated_layer_count(tmp_path):
    info = _info(tmp_path, **{"{arch}__block_count": (T.UINT32, 7), "split__count": (T.UINT16, 2)})
    assert (info.block_count, info.split_count) == (7, 2)


def test_head_counts_must_agree(tmp_path):
    info = _info(tmp_path, **{"{arch}__attention.head_count": (T.UINT32, 64)})  # more heads than channels
    assert info.head_count is None
    info = _info(tmp_path, **{"{arch}__attention.head_count_kv": (T.UINT32, 3)})  # more KV heads than heads
    assert (info.head_count, info.head_count_kv) == (2, None)
    info = _info(tmp_path, **{"{arch}__attention.head_count_kv": (T.ARRAY, (T.INT32, [0, 1, -4]))})
    assert info.head_count_kv == 1  # per layer: the largest


def test_out_of_range_token_ids_are_unknown(tmp_path):
    info = _info(tmp_path, **{"tokenizer__ggml.bos_token_id": (T.INT32, -1),
                              "tokenizer__ggml.eos_token_id": (T.UINT32, 99)})
    assert (info.bos_token_id, info.eos_token_id) == (None, None)
