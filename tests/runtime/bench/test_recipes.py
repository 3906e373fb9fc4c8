"""The recipes page's lines from runs made by hand: numbers formatted right, verdicts, the chart each
comes from, and recipes without figures saying what to tick instead of inventing a number."""
from __future__ import annotations

import dataclasses
import re

import pytest

from runtime.bench import recipes as rc
from runtime.bench.recipes import (FAILS, HOLDS, NOT_MEASURED, PARTLY, combine, factor, judge_factor, recipes,
                                   recipes_markdown, recipes_text)
from tests.runtime.bench.recipe_samples import batched, kv_turns, recipe_results, recipe_run, torch_row
from tests.runtime.bench.sample_results import sample_results, sample_run, variant

KEYS = ["half", "int8", "int4", "q8", "batching", "kv_reuse"]


def by_key(run) -> dict[str, rc.Recipe]:
    found = recipes(run)
    assert [r.key for r in found] == KEYS
    return {r.key: r for r in found}


def numbers(text: str) -> bool:
    """Whether ``text`` states a measured figure (a factor, a size, a time, a KLD)."""
    return bool(re.search(r"\d+(\.\d+)?x|MiB|GiB| ms|KLD \d", text))


def test_every_recipe_from_a_full_run():
    got = by_key(recipe_run())
    assert got["half"].measured == ("BF16 (PyTorch): 2.0x smaller in memory (258.0 MiB vs 516.0 MiB), "
                                    "peak memory 1.6x lower (700.0 MiB vs 1.1 GiB)")
    assert got["half"].verdict == PARTLY and got["half"].chart == "Memory"   # size halves, peak memory does not
    assert got["int8"].measured == ("INT8 (PyTorch dynamic): 3.6x smaller (peak memory 2.1x lower), 1.4x faster, "
                                    "KLD 0.0042 against FP32, perplexity +0.6%")
    assert got["int8"].verdict == PARTLY and got["int8"].chart == "Size vs quality"
    assert got["int4"].measured == ("Against FP32 (PyTorch original): Q4_K_M 6.1x smaller (KLD 0.031), "
                                    "Q4_0 6.6x smaller (KLD 0.052)")
    assert got["int4"].verdict == PARTLY     # 6.6x of 8x: more than a quarter, less than 90%
    assert got["q8"].measured.startswith("Q8_0 (llama.cpp): 1.9x smaller than F16, 1.8x faster, KLD 0.0011 "
                                         "against FP32, perplexity +0.2%, same next word 98.7%")
    assert got["q8"].verdict == HOLDS
    assert got["batching"].measured == ("Q4_K_M: 4 sequences at once give 1.7x the tokens/s of one (162 vs 94), "
                                        "each sequence 0.43x as fast")
    assert got["batching"].verdict == PARTLY and got["batching"].chart == "Batching"
    kv = got["kv_reuse"]
    assert kv.measured.startswith("Q4_K_M: first token 5.7x sooner from turn 2 on (mean of 5 turns; "
                                  "turn 6: 30 ms vs 250 ms)")
    assert kv.verdict == HOLDS and kv.chart == "KV cache reuse"


def test_a_run_of_gguf_files_only_says_what_to_tick_and_invents_nothing():
    got = by_key(sample_run())
    for key in ("half", "int8"):
        assert got[key].verdict == NOT_MEASURED and got[key].measured.startswith("Tick 'Add original checkpoint'")
        assert not numbers(got[key].measured)
    assert got["batching"].verdict == NOT_MEASURED and "Measure batching" in got["batching"].measured
    assert got["kv_reuse"].verdict == NOT_MEASURED and "Measure KV cache reuse" in got["kv_reuse"].measured
    assert "--kv-reuse" in got["kv_reuse"].measured and not numbers(got["kv_reuse"].measured)
    # INT4 against F16 when there is no 32-bit model: the claimed 8x becomes 4x, and says so
    assert got["int4"].measured.startswith("Against F16 (GGUF; no 32-bit model here, so the claimed 8x is 4x "
                                           "against 16 bits): Q4_K_M 3.1x smaller (KLD 0.031), Q4_0 3.3x smaller")
    assert got["int4"].verdict == PARTLY      # 3.3x of 4x
    assert got["q8"].measured.startswith("Q8_0 (llama.cpp): 1.9x smaller than F16")
    assert "against F16" in got["q8"].measured


def test_nothing_complete_means_nothing_measured():
    for run in (sample_run(results=[]), sample_run(results=sample_results()[5:])):
        assert {r.verdict for r in recipes(run)} == {NOT_MEASURED}


def test_int8_without_quality_says_to_tick_quality_and_judges_the_rest():
    rows = recipe_results()
    for r in rows:
        r.quality = None
    int8 = by_key(recipe_run(rows))["int8"]
    assert int8.measured == ("INT8 (PyTorch dynamic): 3.6x smaller (peak memory 2.1x lower), 1.4x faster, "
                             "accuracy not measured: tick 'Measure quality' (`--quality`) for the accuracy part")
    assert int8.verdict == PARTLY
    assert "quality not measured" in by_key(recipe_run(rows))["q8"].measured


def test_a_claim_that_holds_and_one_that_does_not():
    fast_int8 = torch_row("INT8 (dynamic)", 129.0, [50.0], 300.0, kld=0.002, top1=0.99, ppl=17.85, ppl_ratio=1.004)
    rows = [r for r in recipe_results() if r.quant != "INT8 (dynamic)"] + [fast_int8]
    got = by_key(recipe_run(rows))
    assert got["int8"].measured.startswith("INT8 (PyTorch dynamic): 4.0x smaller (peak memory 3.7x lower), 2.4x faster")
    assert got["int8"].verdict == HOLDS
    slow = recipe_results()
    slow[5].batched = batched(94.0, 99.0)
    slow[5].kv_reuse = [dataclasses.replace(t, ttft_reuse_s=t.ttft_fresh_s * 0.95) for t in kv_turns()]
    got = by_key(recipe_run(slow))
    assert got["batching"].verdict == FAILS and "1.1x the tokens/s" in got["batching"].measured
    assert got["kv_reuse"].verdict == FAILS and "1.1x sooner" in got["kv_reuse"].measured


def test_batching_uses_n4_or_the_best_n_and_needs_n1():
    rows = recipe_results()
    rows[5].batched = [p for p in batched(94.0, 162.0, 210.0) if p.n != 4]
    assert "8 sequences at once give 2.2x" in by_key(recipe_run(rows))["batching"].measured
    rows[5].batched = [p for p in batched(94.0, 162.0) if p.n != 1]
    assert by_key(recipe_run(rows))["batching"].verdict == NOT_MEASURED


def test_several_models_with_kv_figures_name_the_others():
    rows = recipe_results()
    rows[4].kv_reuse = kv_turns(reuse_s=0.02)
    kv = by_key(recipe_run(rows))["kv_reuse"]
    assert kv.measured.startswith("Q8_0: first token") and "(also Q4_K_M 5.7x)" in kv.measured


def test_half_precision_from_fp16_too_and_a_bf16_gguf_is_no_pytorch_row():
    rows = [recipe_results()[0], torch_row("FP16", 258.0, [30.0], 560.0), variant("BF16", 258.0, [40.0])]
    half = by_key(recipe_run(rows))["half"]
    assert half.measured.startswith("FP16 (PyTorch): 2.0x smaller in memory") and half.verdict == HOLDS


@pytest.mark.parametrize("measured, claimed, verdict", [(3.6, 4.0, HOLDS), (2.0, 4.0, PARTLY), (1.7, 3.0, PARTLY),
                                                         (1.4, 3.0, FAILS), (0.8, 2.0, FAILS), (2.0, 2.0, HOLDS)])
def test_judging_a_factor(measured, claimed, verdict):
    assert judge_factor(measured, claimed) == verdict


def test_combining_verdicts_and_formatting_factors():
    assert combine([HOLDS, HOLDS]) == HOLDS and combine([HOLDS, FAILS]) == PARTLY
    assert combine([FAILS, NOT_MEASURED]) == FAILS and combine([NOT_MEASURED]) == NOT_MEASURED
    assert (factor(3.62), factor(12.4), factor(0.95)) == ("3.6x", "12x", "0.9x")


def test_text_and_markdown_name_the_chart_only_when_measured():
    found = recipes(sample_run())
    lines = recipes_text(found).splitlines()
    assert len(lines) == 6 and lines[0].startswith("model.half() halves memory → Tick")
    assert lines[0].endswith("[not measured]")
    assert lines[3].endswith("[holds; chart: Size vs quality]")
    md = recipes_markdown(found).splitlines()
    assert md[0] == "## Recipes checked on this machine" and md[2].startswith("| The guides say |")
    assert len(md) == 4 + 6 and md[-1].startswith("| Reusing the KV cache") and md[-1].endswith("| not measured |  |")


def test_a_missing_pytorch_precision_is_named():
    rows = [r for r in recipe_results() if r.quant != "BF16"]
    got = by_key(recipe_run(rows))
    assert got["half"].verdict == NOT_MEASURED
    assert got["half"].measured == ("This run has no PyTorch half precision (BF16 or FP16) row: add the original "
                                    "checkpoint with half precision (BF16 or FP16) too and run again.")
    assert got["int8"].verdict == PARTLY
    rows = [r for r in recipe_results() if r.quant != "FP32"]
    got = by_key(recipe_run(rows))
    assert "no PyTorch FP32 row" in got["int8"].measured and "no PyTorch FP32 row" in got["half"].measured


def test_int4_names_the_klds_reference_when_it_is_not_the_size_base():
    rows = recipe_results()
    rows[0].quality.is_reference = False          # quality measured against F16, sizes counted from FP32
    rows[3].quality = dataclasses.replace(rows[3].quality, kld_mean=0.0, is_reference=True)
    int4 = by_key(recipe_run(rows))["int4"]
    assert int4.measured == ("Against FP32 (PyTorch original): Q4_K_M 6.1x smaller (KLD 0.031 against F16), "
                             "Q4_0 6.6x smaller (KLD 0.052 against F16)")
