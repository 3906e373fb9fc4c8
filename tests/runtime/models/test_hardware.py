"""Memory figures and the fits / tight / too big verdict."""
from __future__ import annotations

import pytest

from runtime.models.gguf_info import read_gguf_info
from runtime.models.hardware import (FitVerdict, available_ram, check_fit, estimate_model_memory, kv_cache_bytes,
                              total_ram)

MiB, GiB = 1024**2, 1024**3


@pytest.fixture(scope="module")
def starter_info(starter_model):
    return read_gguf_info(starter_model)


def test_ram_figures_are_plausible():
    total, free = total_ram(), available_ram()
    assert 256 * MiB < total
    assert 0 < free <= total


def test_kv_cache_follows_the_documented_formula(starter_info):
    i = starter_info  # 30 layers, 576 wide, 9 heads, 3 KV heads: head_dim 64, 192 KV channels
    expected = 2 * i.block_count * 2048 * (i.embedding_length // i.head_count * i.head_count_kv) * 2
    assert kv_cache_bytes(i, 2048) == expected == 2 * 30 * 2048 * 192 * 2


def test_estimate_covers_weights_and_grows_with_context(starter_info):
    small, large = estimate_model_memory(starter_info, 512), estimate_model_memory(starter_info, 8192)
    assert small > starter_info.size_bytes
    assert large - small >= kv_cache_bytes(starter_info, 8192) - kv_cache_bytes(starter_info, 512)
    # a 94 MiB model with a 2k context: a few hundred MiB, not gigabytes
    assert 100 * MiB < estimate_model_memory(starter_info, 2048) < 512 * MiB


@pytest.mark.parametrize("free_factor, status", [(10.0, "fits"), (1.1, "tight"), (0.5, "too_big")])
def test_verdicts(starter_info, free_factor, status):
    needed = estimate_model_memory(starter_info, 2048)
    verdict = check_fit(starter_info, 2048, available_bytes=int(needed * free_factor))
    assert isinstance(verdict, FitVerdict)
    assert verdict.status == status
    assert verdict.needed_bytes == needed
    assert "needs about" in verdict.message and "MiB" in verdict.message and "of RAM is free" in verdict.message


def test_verdict_on_this_machine(starter_info):
    """With this machine's free RAM (gigabytes on any machine that runs the tests) the starter fits."""
    verdict = check_fit(starter_info, 2048)
    assert verdict.available_bytes == pytest.approx(available_ram(), rel=0.2)
    assert verdict.available_bytes > 2 * GiB, "the tests need a machine with 2 GiB of free memory"
    assert verdict.status == "fits"


def test_context_beyond_training_is_mentioned(starter_info):
    verdict = check_fit(starter_info, 16384, available_bytes=64 * GiB)
    assert "trained for 8,192" in verdict.message
