"""The plain-words summary: the right variant, the right numbers, honest about what is missing."""
from __future__ import annotations

import copy

from runtime.bench.summary import summarize
from tests.runtime.bench.sample_results import sample_results, variant


def test_the_headline_numbers_come_from_sizes_speeds_and_agreement():
    results = sample_results()
    f16, q4 = results[0], results[3]
    assert round(f16.size_bytes / q4.size_bytes, 1) == 3.1
    assert round(q4.speed.tg_tokens_per_s.median / f16.speed.tg_tokens_per_s.median, 1) == 2.4
    text = summarize(results)
    assert text.startswith("Q4_K_M is 3.1x smaller and 2.4x faster than F16 here; "
                           "it agrees with F16 on the next word 92% of the time.")
    assert "Q4_K_M is the best trade-off: it stays close to F16 (mean KL divergence 0.031, under 0.1)" in text
    assert text.endswith("Q2_K failed and Q3_K_M was skipped (the table says why).")


def test_without_quality_it_says_so_and_speaks_of_the_smallest():
    results = copy.deepcopy(sample_results())
    for r in results:
        r.quality = None
    text = summarize(results)
    assert text.startswith("Q4_0 is 3.3x smaller and 2.5x faster than F16 here; its quality was not measured")
    assert "best trade-off" not in text


def test_a_variant_that_is_not_faster_is_named():
    ref = variant("F16", 258.0, [50.0, 50.0, 50.0], kld=0.0, top1=1.0, ppl=17.9, ppl_ratio=1.0, reference=True)
    q8 = variant("Q8_0", 138.0, [49.0, 50.0, 51.0], kld=0.001, top1=0.99, ppl=17.92, ppl_ratio=1.001)
    q4 = variant("Q4_K_M", 84.0, [30.0, 31.0, 32.0], kld=0.03, top1=0.92, ppl=18.6, ppl_ratio=1.04)
    text = summarize([ref, q8, q4])
    # GPU-like figures: the smaller file is slower here, and the sentence says so in numbers.
    assert text.startswith("Q4_K_M is 3.1x smaller and 1.6x slower than F16 here;")
    assert "Q8_0 is not faster than F16 on this machine." in text

    same = variant("Q8_0", 250.0, [51.0], kld=0.001, top1=0.995, ppl=17.92, ppl_ratio=1.001)
    text = summarize([ref, same])
    assert text.startswith("Compared with F16, Q8_0 is about the same size and about as fast here; "
                           "it agrees with F16 on the next word 99.5% of the time.")


def test_the_smallest_is_called_out_when_it_loses_clearly():
    results = sample_results() + [variant("IQ2_XS", 52.0, [140.0], kld=0.62, top1=0.66, ppl=31.0, ppl_ratio=1.73)]
    text = summarize(results)
    assert text.startswith("Q4_K_M is 3.1x smaller")
    assert "The smallest, IQ2_XS (5.0x smaller), agrees with F16 on the next word only 66% of the time." in text


def test_kld_or_perplexity_when_agreement_is_missing():
    ref = variant("F16", 200.0, [40.0], ppl=10.0, ppl_ratio=1.0, kld=0.0, reference=True)
    q = variant("Q5_K_M", 80.0, [80.0], ppl=10.3, kld=0.02, ppl_ratio=1.03)
    assert "it has a mean KL divergence of 0.02 from F16 (0 is identical)." in summarize([ref, q])
    q.quality.kld_mean = None
    text = summarize([ref, q])
    assert "2.5x smaller and 2.0x faster than F16 here; it has a perplexity 3.0% higher than F16's." in text
    assert "perplexity ratio 1.03, under 1.05" in text


def test_speed_not_measured_is_said():
    ref = variant("F16", 200.0, None, ppl=10.0, kld=0.0, top1=1.0, ppl_ratio=1.0, reference=True)
    q = variant("Q4_K_M", 64.0, None, ppl=10.4, kld=0.03, top1=0.9, ppl_ratio=1.04)
    text = summarize([ref, q])
    assert text.startswith("Q4_K_M is 3.1x smaller than F16 here; it agrees with F16")
    assert text.endswith("Speed was not measured.")


def test_nothing_or_one_or_a_failed_reference():
    results = sample_results()
    assert summarize([]) == "No variant finished, so there is nothing to compare."
    assert summarize(results[5:]).startswith("No variant finished")
    assert summarize(results[:1]) == ("Only F16 finished (258.0 MiB, 49.0 tokens/s generation), "
                                      "so there is nothing to compare it with.")
    text = summarize(results, reference=results[5].path)
    assert text.startswith("The reference Q2_K did not finish")
    # Another reference, chosen by path: size and speed are against it, quality against the one measured with.
    text = summarize(results, reference=results[1].path)
    assert text.startswith("Q4_K_M is 1.6x smaller and 1.3x faster than Q8_0 here; "
                           "it agrees with F16 on the next word 92% of the time.")
