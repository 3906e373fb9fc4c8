"""The memory estimate behind the fit badges, checked against sums worked out by hand.

The formula (runtime/models/hardware.py): weights + KV cache + working memory, where

    KV cache       = 2 bytes * n_ctx * layers * (K width + V width), K width = head size * KV heads
    working memory = 4 bytes * 512 * max(vocabulary, heads * n_ctx) + 32 MiB
"""
from __future__ import annotations

import pytest

from runtime.models.gguf_info import GGUFInfo, read_gguf_header_prefix, read_gguf_info
from runtime.models.hardware import (GpuDevice, check_fit, compute_buffer_bytes, estimate_model_memory,
                                     info_from_config, kv_cache_bytes)

KiB, MiB, GiB = 1024, 1024**2, 1024**3


def shape(**figures) -> GGUFInfo:
    base = dict(path="m.gguf", size_bytes=0, architecture="llama", name="m", parameter_count=0,
                file_type="Q4_K_M", tensor_count=0)
    return GGUFInfo(**{**base, **figures})


# Llama-3.2-1B-Instruct's config.json (the figures that matter)
LLAMA_32_1B = {"model_type": "llama", "num_hidden_layers": 16, "hidden_size": 2048, "num_attention_heads": 32,
               "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "max_position_embeddings": 131072,
               "torch_dtype": "bfloat16"}
# Qwen2.5-0.5B-Instruct
QWEN25_05B = {"model_type": "qwen2", "num_hidden_layers": 24, "hidden_size": 896, "num_attention_heads": 14,
              "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
              "torch_dtype": "bfloat16"}
# Gemma-3-1b-it: a head size (256) that is not hidden_size / heads (1152 / 4 = 288)
GEMMA3_1B = {"model_type": "gemma3_text", "num_hidden_layers": 26, "hidden_size": 1152, "num_attention_heads": 4,
             "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144, "max_position_embeddings": 32768}


def test_llama_32_1b_by_hand():
    info = info_from_config(LLAMA_32_1B, 807_694_464)  # bartowski's Q4_K_M file is 807,694,464 bytes
    # KV: 2 bytes * 4096 tokens * 16 layers * (64*8 + 64*8) = 2 * 4096 * 16 * 1024 = 134,217,728 (128 MiB)
    assert kv_cache_bytes(info, 4096) == 2 * 4096 * 16 * 1024 == 134_217_728
    # Working memory: 4 * 512 * max(128256, 32 * 4096 = 131072) + 32 MiB = 268,435,456 + 33,554,432
    assert compute_buffer_bytes(info, 4096) == 4 * 512 * 131_072 + 32 * MiB == 301_989_888
    assert estimate_model_memory(info, 4096) == 807_694_464 + 134_217_728 + 301_989_888 == 1_243_902_080
    # At 1024 tokens the vocabulary is the larger term: 4 * 512 * 128256 = 262,668,288
    assert compute_buffer_bytes(info, 1024) == 262_668_288 + 32 * MiB
    assert kv_cache_bytes(info, 1024) == 2 * 1024 * 16 * 1024 == 33_554_432


def test_qwen25_05b_by_hand():
    info = info_from_config(QWEN25_05B, 0)
    # head size 896 / 14 = 64, 2 KV heads: K and V 128 wide each
    # KV at 4096: 2 * 4096 * 24 * (128 + 128) = 50,331,648 (48 MiB)
    assert kv_cache_bytes(info, 4096) == 50_331_648
    # at its full 32768: 8 times that, 384 MiB
    assert kv_cache_bytes(info, 32768) == 384 * MiB
    # Working memory at 4096: 4 * 512 * max(151936, 14 * 4096 = 57344) = 311,164,928, + 32 MiB
    assert compute_buffer_bytes(info, 4096) == 311_164_928 + 32 * MiB
    assert info.context_length == 32768


def test_gemma3_uses_the_stated_head_size():
    info = info_from_config(GEMMA3_1B, 0)
    assert (info.key_length, info.value_length) == (256, 256)
    # 2 * 4096 * 26 layers * (256 * 1 + 256 * 1) = 109,051,904 (104 MiB); with 288 it would be 117 MiB
    assert kv_cache_bytes(info, 4096) == 109_051_904


def test_multimodal_config_reads_its_text_part():
    config = {"model_type": "gemma3", "text_config": GEMMA3_1B, "vision_config": {"hidden_size": 1152}}
    assert kv_cache_bytes(info_from_config(config, 0), 4096) == 109_051_904


def test_gpt2_style_and_falcon_names():
    gpt2 = info_from_config({"model_type": "gpt2", "n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024,
                             "vocab_size": 50257}, 0)
    assert (gpt2.block_count, gpt2.head_count, gpt2.head_count_kv, gpt2.context_length) == (12, 12, None, 1024)
    # no KV-head figure: every head has its own K and V: 2 * 1024 * 12 * (768 + 768) = 37,748,736
    assert kv_cache_bytes(gpt2, 1024) == 37_748_736
    falcon = info_from_config({"num_hidden_layers": 32, "hidden_size": 4544, "num_attention_heads": 71,
                               "multi_query": True}, 0)
    assert falcon.head_count_kv == 1
    assert kv_cache_bytes(falcon, 2048) == 2 * 2048 * 32 * (64 + 64)  # head size 4544 / 71 = 64


@pytest.mark.parametrize("bad", [-1, 0, True, "32", 3.5, None, 10**12])
def test_impossible_config_figures_read_as_unknown(bad):
    info = info_from_config({**LLAMA_32_1B, "num_hidden_layers": bad, "num_key_value_heads": bad}, 1000)
    assert info.block_count is None
    assert info.head_count_kv is None
    assert kv_cache_bytes(info, 4096) == 0  # unknown shape: nothing counted rather than nonsense


def test_config_that_is_not_a_dict():
    info = info_from_config(["not", "a", "config"], 123)
    assert info.size_bytes == 123 and info.block_count is None


# --- the real starter model -------------------------------------------------------------------

@pytest.fixture(scope="module")
def starter_info(starter_model):
    return read_gguf_info(starter_model)


def test_starter_kv_cache_matches_llama_cpp(starter_info):
    """llama.cpp reported 45.0 MiB / 180.0 MiB of KV cache for the starter at 2048 / 8192 tokens."""
    assert kv_cache_bytes(starter_info, 2048) == 45 * MiB
    assert kv_cache_bytes(starter_info, 8192) == 180 * MiB
    # by hand: 30 layers, 576 wide, 9 heads (64 each), 3 KV heads: 2 * 2048 * 30 * (192 + 192) = 47,185,920
    assert 2 * 2048 * 30 * (192 + 192) == 45 * MiB


def test_starter_from_its_header_prefix_estimates_the_same(starter_model, starter_info):
    """What the Models tab reads over the network (the header's bytes only) gives the same estimate."""
    data = starter_model.read_bytes()[:4 * MiB]
    remote = read_gguf_header_prefix(data, starter_info.size_bytes, starter_model.name)
    for n_ctx in (512, 2048, 4096, 8192):
        assert estimate_model_memory(remote, n_ctx) == estimate_model_memory(starter_info, n_ctx)


def test_starter_verdict_carries_the_breakdown(starter_info):
    fit = check_fit(starter_info, 2048, available_bytes=8 * GiB)
    assert fit.status == "fits" and fit.n_ctx == 2048 and fit.memory == "RAM"
    assert fit.weights_bytes == starter_info.size_bytes
    assert fit.kv_bytes == 45 * MiB
    assert fit.weights_bytes + fit.kv_bytes + fit.compute_bytes == fit.needed_bytes
    tip = fit.tooltip
    assert "Weights 93.8 MiB" in tip and "KV cache 45.0 MiB (2,048 tokens)" in tip
    assert "8.0 GiB of RAM is free" in tip and "80%" in tip


# --- GPU memory -------------------------------------------------------------------------------

def test_gpu_verdicts(starter_info):
    needed = estimate_model_memory(starter_info, 2048)
    roomy = [GpuDevice("CUDA0", "a test GPU", free_bytes=4 * GiB, total_bytes=8 * GiB)]
    fit = check_fit(starter_info, 2048, available_bytes=16 * GiB, gpus=roomy)
    assert fit.status == "fits" and fit.memory == "GPU memory (CUDA0)" and fit.available_bytes == 4 * GiB
    assert "4.0 GiB of GPU memory is free (CUDA0)" in fit.detail

    snug = [GpuDevice("CUDA0", "a test GPU", free_bytes=int(needed / 0.9), total_bytes=8 * GiB)]
    assert check_fit(starter_info, 2048, available_bytes=16 * GiB, gpus=snug).status == "tight"

    # Too big for the GPU: llama.cpp's auto placement keeps it on the CPU, so RAM decides
    small = [GpuDevice("CUDA0", "a test GPU", free_bytes=needed // 2, total_bytes=needed)]
    fit = check_fit(starter_info, 2048, available_bytes=16 * GiB, gpus=small)
    assert fit.status == "fits" and fit.memory == "RAM" and "would run on the CPU" in fit.detail
    fit = check_fit(starter_info, 2048, available_bytes=needed // 2, gpus=small)
    assert fit.status == "too_big"

    # Two GPUs share the layers: their free memory adds up
    pair = [GpuDevice("CUDA0", "a", needed // 2 + MiB, needed), GpuDevice("CUDA1", "b", needed // 2 + MiB, needed)]
    fit = check_fit(starter_info, 2048, available_bytes=MiB, gpus=pair)
    assert fit.memory == "GPU memory (CUDA0+CUDA1)" and fit.status == "tight"


def test_no_gpu_is_ram_only(starter_info):
    assert check_fit(starter_info, 2048, available_bytes=8 * GiB, gpus=[]).memory == "RAM"
    assert check_fit(starter_info, 2048, available_bytes=8 * GiB, gpus=None).memory == "RAM"
