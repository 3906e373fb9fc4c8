"""The figures under a reply: a short line in plain words, and the exact figures for the tooltip."""
from __future__ import annotations

from runtime.engine.types import ReplyStats


def test_summary_is_plain_words():
    stats = ReplyStats(prompt_tokens=230, prompt_tokens_evaluated=30, completion_tokens=120, ttft_s=0.162,
                       gen_tokens_per_s=84.3, total_s=1.6, finish_reason="stop")
    summary = stats.summary()
    assert summary == "Started answering after 0.16 s · 84 tokens (word pieces) a second · 120 tokens in 1.60 s"
    for jargon in ("tok/s", "TTFT", "cached"):
        assert jargon not in summary


def test_summary_says_why_a_reply_ended_early_and_skips_unmeasured_figures():
    assert ReplyStats(completion_tokens=5, gen_tokens_per_s=3.25, finish_reason="cancelled").summary() == \
        "3.2 tokens (word pieces) a second · 5 tokens · stopped by you"
    assert "cut off at the reply length limit" in ReplyStats(completion_tokens=9, finish_reason="length").summary()
    assert ReplyStats().summary() == "No timing figures for this reply"


def test_details_give_the_exact_figures():
    stats = ReplyStats(prompt_tokens=230, prompt_tokens_evaluated=30, completion_tokens=120, ttft_s=0.1625,
                       gen_tokens_per_s=84.314, total_s=1.6, finish_reason="length")
    lines = stats.details().splitlines()
    assert lines[0].startswith("Prompt: 230 tokens, 200 of them reused from the cache")
    assert "30 processed now" in lines[0]
    assert lines[1:5] == ["Reply: 120 tokens", "Speed: 84.31 tokens/s (after the first token)",
                          "Time to first token: 0.163 s", "Total time: 1.600 s"]
    assert lines[5] == "Ended because it reached the reply length limit (length)"
    assert ReplyStats(prompt_tokens=10, prompt_tokens_evaluated=10).details().startswith("Prompt: 10 tokens\n")
