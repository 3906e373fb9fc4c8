"""Fitting a conversation into the context: pure tests of the selection (a word counter stands in)."""
from __future__ import annotations

import pytest

from runtime.chat.context import HEADROOM, fit_messages, forgotten_notice, reply_room
from runtime.chat.session import DEFAULT_TITLE, title_from
from runtime.errors import ContextOverflow


def words(messages: list[dict]) -> int:
    """A token counter for these tests: 2 per message (role markers) plus one per word."""
    return sum(2 + len(m["content"].split()) for m in messages)


def conversation(turns: int, system: str = "be brief") -> list[dict]:
    head = [{"role": "system", "content": system}] if system else []
    body = []
    for i in range(turns):
        body += [{"role": "user", "content": f"question {i} " + "word " * 8},
                 {"role": "assistant", "content": f"answer {i} " + "word " * 8}]
    return head + body + [{"role": "user", "content": "last question"}]


def test_a_conversation_that_fits_is_sent_whole():
    messages = conversation(3)
    fit = fit_messages(messages, words, budget=1000)
    assert fit.messages == messages and fit.dropped == 0 and fit.prompt_tokens == words(messages)


def test_overflow_drops_whole_old_turns_and_keeps_the_system_prompt():
    messages = conversation(10)  # 4 + 10 * 22 + 4 = 228 words-tokens
    fit = fit_messages(messages, words, budget=120)
    assert fit.messages[0] == {"role": "system", "content": "be brief"}
    assert fit.messages[1]["role"] == "user"                      # the kept part starts at a turn
    assert fit.dropped % 2 == 0 and fit.dropped > 0                 # whole turns (user + reply) dropped
    assert fit.messages[1:] == messages[1 + fit.dropped:]           # the most recent ones are kept
    assert fit.prompt_tokens == words(fit.messages) <= 120 * (1 - HEADROOM)  # room for the next turns


def test_the_cut_is_sticky_and_moves_only_when_needed():
    first = fit_messages(conversation(10), words, budget=120)
    # one more turn: it still fits with the same cut, so the cut stays (same prompt prefix)
    grown = conversation(11)
    again = fit_messages(grown, words, budget=120, cut=first.dropped)
    assert again.dropped == first.dropped
    assert again.messages[:len(first.messages) - 1] == first.messages[:-1]
    # a smaller cut would fit too, but the sticky one is kept
    assert fit_messages(grown, words, budget=1000, cut=first.dropped).dropped == first.dropped
    # when it no longer fits the cut moves forward, freeing the headroom again
    later = fit_messages(conversation(14), words, budget=120, cut=first.dropped)
    assert later.dropped > first.dropped and later.prompt_tokens <= 90


def test_a_cut_past_a_shortened_conversation_starts_over():
    fit = fit_messages(conversation(1), words, budget=1000, cut=12)
    assert fit.dropped == 0


def test_without_a_system_prompt():
    messages = conversation(10, system="")
    fit = fit_messages(messages, words, budget=100)
    assert fit.messages[0]["role"] == "user" and fit.messages == messages[fit.dropped:]


def test_keeps_only_the_last_turn_when_nothing_else_frees_the_headroom():
    messages = [{"role": "user", "content": "a " * 10}, {"role": "assistant", "content": "b " * 10},
                {"role": "user", "content": "c " * 30}]
    fit = fit_messages(messages, words, budget=34)  # 32 tokens: fits, but not within the headroom
    assert fit.dropped == 2 and fit.messages == messages[2:]


def test_a_last_message_too_long_for_the_context_raises():
    messages = conversation(2)
    messages[-1]["content"] = "word " * 200
    with pytest.raises(ContextOverflow) as info:
        fit_messages(messages, words, budget=100)
    assert "100" in str(info.value) and "larger context" in info.value.hint


def test_reply_room_and_notice():
    assert reply_room(2048, 24) == 24
    assert reply_room(512, 512) == 128       # never more than a quarter of the context
    assert reply_room(512, 0) == 128
    assert forgotten_notice(0) == ""
    assert forgotten_notice(1) == "1 earlier message is beyond the model's memory"
    assert forgotten_notice(3) == "3 earlier messages are beyond the model's memory"


def test_title_from_first_message():
    assert title_from("Short question?") == "Short question?"
    assert title_from("first line\nsecond") == "first line"
    assert title_from("   ") == DEFAULT_TITLE
    long = title_from("x" * 100)
    assert len(long) == 48 and long.endswith("…")
