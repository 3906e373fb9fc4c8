"""Which messages still fit the loaded context: keep the system prompt and the most recent turns.

``fit_messages`` is pure: it gets the conversation (OpenAI-style dicts), a token counter and a
budget, and returns what to send. Old turns are dropped whole (the kept part always starts at a
user message). The cut is *sticky* for the KV cache's sake: the caller passes back the previous
cut, it is kept while the conversation fits, and when it must move it moves far enough to free
``headroom`` of the budget, so the next several turns share the same prompt prefix and the engine
only evaluates their new tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from runtime.errors import ContextOverflow

HEADROOM = 0.25          # a moved cut frees at least this share of the budget for the next turns
REPLY_SHARE = 4          # room kept for the reply: max_tokens, but at most 1/REPLY_SHARE of the context


@dataclass
class ContextFit:
    messages: list[dict]  # what to send: the system message(s), then the kept recent messages
    dropped: int          # earlier messages left out (beyond the model's memory)
    prompt_tokens: int    # the counted size of ``messages``


def reply_room(n_ctx: int, max_tokens: int) -> int:
    """Tokens kept free for the reply: ``max_tokens``, but no more than a quarter of the context."""
    cap = max(1, n_ctx // REPLY_SHARE)
    return min(max_tokens, cap) if max_tokens > 0 else cap


def forgotten_notice(dropped: int) -> str:
    """'3 earlier messages are beyond the model's memory' (empty when nothing was dropped)."""
    if dropped <= 0:
        return ""
    if dropped == 1:
        return "1 earlier message is beyond the model's memory"
    return f"{dropped} earlier messages are beyond the model's memory"


def overflow_error(tokens: int, budget: int, what: str = "") -> ContextOverflow:
    """The 'stop' policy's error for the whole conversation, or (``what``) for a message too long alone."""
    hint = ("Shorten it, or reload the model with a larger context length." if what else
            "Start a new chat, choose 'Drop oldest messages' in this chat's settings, "
            "or reload the model with a larger context length.")
    return ContextOverflow(
        f"{what or 'This conversation'} is {tokens} tokens long; the loaded context has room for {budget} "
        "(the rest is kept for the reply).", hint=hint, prompt_tokens=tokens, budget=budget)


def fit_messages(messages: list[dict], count_tokens: Callable[[list[dict]], int], budget: int, *,
                 cut: int = 0, headroom: float = HEADROOM) -> ContextFit:
    """Keep the leading system message(s) and the most recent whole turns that fit ``budget`` tokens.

    ``cut`` is the number of non-system messages dropped last time (0 at first). Raises
    ContextOverflow when even the system prompt and the last user message do not fit.
    """
    n_system = 0
    while n_system < len(messages) and messages[n_system].get("role") == "system":
        n_system += 1
    system, rest = messages[:n_system], messages[n_system:]
    starts = [i for i, m in enumerate(rest) if m.get("role") == "user"] or [0]

    def fit(start: int) -> ContextFit:
        kept = system + rest[start:]
        return ContextFit(kept, start, count_tokens(kept))

    sticky = next((s for s in starts if s >= cut), 0)  # a conversation cut shorter starts over
    current = fit(sticky)
    if current.prompt_tokens <= budget:
        return current
    later = [s for s in starts if s > sticky]
    if not later:
        raise overflow_error(current.prompt_tokens, budget,
                             "Your message with the system prompt" if system else "Your message")
    target = int(budget * (1 - headroom))
    # the first start that frees the headroom (counts shrink as the cut moves on: binary search)
    lo, hi, best = 0, len(later) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = fit(later[mid])
        if candidate.prompt_tokens <= target:
            best, hi = candidate, mid - 1
        else:
            lo = mid + 1
    if best is not None:
        return best
    last = fit(later[-1])  # nothing frees the headroom: keep only the last turn, if it fits at all
    if last.prompt_tokens > budget:
        raise overflow_error(last.prompt_tokens, budget,
                             "Your message with the system prompt" if system else "Your message")
    return last
