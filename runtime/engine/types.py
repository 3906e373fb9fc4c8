"""Plain data shared by the chat engine, its clients, the store, the CLI and the GUI."""
from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import TypeVar

from runtime.models.hardware import DEFAULT_N_CTX

R = TypeVar("R", bound="Record")


class Record:
    """Dict round-trip for the dataclasses below (stored as JSON; unknown keys are ignored)."""

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[R], data: dict | None) -> R:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


@dataclass
class SamplingParams(Record):
    """How the next tokens are chosen. Names follow llama.cpp / the OpenAI API."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 512           # -1: as many as the context leaves room for
    seed: int | None = None

    def validate(self) -> "SamplingParams":
        """Raise ValueError naming the first value that makes no sense (NaN, out of range, 0 tokens)."""
        checks = (
            ("temperature", self.temperature, 0.0, 100.0, "0 (greedy) or more"),
            ("top_p", self.top_p, 0.0, 1.0, "between 0 and 1"),
            ("min_p", self.min_p, 0.0, 1.0, "between 0 and 1"),
            ("repeat_penalty", self.repeat_penalty, 0.0, 100.0, "above 0 (1 means no penalty)"),
        )
        for name, value, low, high, wanted in checks:
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
                raise ValueError(f"{name} = {value} is not valid: use a number {wanted}.")
        if self.repeat_penalty == 0:
            raise ValueError("repeat_penalty = 0 is not valid: use a number above 0 (1 means no penalty).")
        if not 0 <= self.top_k <= MAX_TOP_K:
            raise ValueError(f"top_k = {self.top_k} is not valid: use 0 (off) up to {MAX_TOP_K}.")
        if self.max_tokens == 0 or self.max_tokens < -1 or self.max_tokens > MAX_CTX:
            raise ValueError(f"max_tokens = {self.max_tokens} is not valid: use 1 or more, or -1 for "
                             "as many as the context has room for.")
        if self.seed is not None and not -1 <= self.seed < 2**32:
            raise ValueError(f"seed = {self.seed} is not valid: use 0 to {2**32 - 1}, or -1 for a random one.")
        return self


MAX_TOP_K = 1 << 20
MIN_CTX, MAX_CTX = 16, 1 << 24  # llama.cpp keeps n_ctx in 32 bits; no model is trained beyond 2**24


@functools.lru_cache(maxsize=1)
def max_threads() -> int:
    """More threads than 4 per logical CPU only slow llama.cpp down (and 100,000 kill it)."""
    return 4 * (os.cpu_count() or 1)


@functools.lru_cache(maxsize=1)
def default_threads() -> int:
    """Physical cores are what llama.cpp scales with; leave none idle, oversubscribe none. On Apple
    Silicon the performance cores only (see ``runtime.models.this_machine.recommended_threads``)."""
    from runtime.models.this_machine import machine_threads

    return machine_threads()


@dataclass
class LoadOptions(Record):
    """How a local model is loaded into the engine.

    ``n_gpu_layers``: None = automatic (all layers when this llama.cpp build has a GPU backend and the
    model fits in its free memory, as many as fit when only part does, else 0; the engine decides,
    see ``runtime.engine.server``),
    -1 (``ALL_GPU_LAYERS``) = all layers, N = the first N layers, 0 = CPU only.
    ``n_parallel``: how many requests the engine decodes at once, in one batch (llama.cpp's n_seq_max;
    each gets a KV cache of ``n_ctx`` tokens, so memory for the KV cache grows N times). 1 (the
    default) is the single-sequence chat path, with KV prefix reuse across turns.
    """

    n_ctx: int = DEFAULT_N_CTX
    n_threads: int = field(default_factory=default_threads)
    n_gpu_layers: int | None = None
    n_parallel: int = 1

    def validate(self) -> "LoadOptions":
        """Raise ValueError naming the first value llama.cpp cannot take."""
        if not MIN_CTX <= self.n_ctx <= MAX_CTX:
            raise ValueError(f"A context of {self.n_ctx} tokens is not possible: use {MIN_CTX} to {MAX_CTX:,}.")
        if not 1 <= self.n_threads <= max_threads():
            raise ValueError(f"{self.n_threads} threads is not sensible here: use 1 to {max_threads()} "
                             f"(this computer has {os.cpu_count()} logical CPUs).")
        if self.n_gpu_layers is not None and self.n_gpu_layers < -1:
            raise ValueError(f"{self.n_gpu_layers} GPU layers: use 0 or more, or -1 for all layers.")
        if isinstance(self.n_parallel, bool) or not isinstance(self.n_parallel, int) \
                or not 1 <= self.n_parallel <= MAX_PARALLEL:
            raise ValueError(f"{self.n_parallel} parallel sequences is not possible: use 1 to {MAX_PARALLEL}.")
        return self


MAX_PARALLEL = 64  # sequences decoded at once (llama.cpp allows 256; each needs its own KV cache)


ALL_GPU_LAYERS = -1


@dataclass
class ReplyStats(Record):
    """Figures shown under every reply."""

    prompt_tokens: int = 0          # tokens in the whole prompt
    prompt_tokens_evaluated: int = 0  # of those, how many the engine actually processed (rest: KV cache)
    completion_tokens: int = 0
    ttft_s: float = 0.0             # request sent -> first token received
    gen_tokens_per_s: float = 0.0   # (completion_tokens - 1) / (time after the first token)
    total_s: float = 0.0
    finish_reason: str = ""         # stop | length | cancelled | error (cut off by a crash or a server error)
    # Where the token counts come from: "engine" = the server's own count (ours counts the text sent,
    # also after Stop or a crash); "" = the server reported none (prompt/completion tokens and tok/s
    # are then 0, unknown), or a reply saved before this field existed (counts > 0: from the server,
    # except a stopped reply, whose completion count was the number of streamed chunks).
    counted_by: str = ""

    def summary(self) -> str:
        """One short line in plain words: 'Started answering after 0.16 s · 84 tokens (word pieces) a second'.

        Figures that were not measured (0) are left out; ``details()`` has the exact ones.
        """
        parts = []
        if self.ttft_s > 0:
            parts.append(f"Started answering after {_seconds(self.ttft_s)}")
        if self.gen_tokens_per_s > 0:
            rate = self.gen_tokens_per_s
            parts.append(f"{rate:.0f} tokens (word pieces) a second" if rate >= 10
                         else f"{rate:.1f} tokens (word pieces) a second")
        if self.completion_tokens:
            parts.append(f"{self.completion_tokens} tokens" + (f" in {_seconds(self.total_s)}" if self.total_s > 0
                                                                else ""))
        if self.finish_reason == "cancelled":
            parts.append("stopped by you")
        elif self.finish_reason == "length":
            parts.append("cut off at the reply length limit")
        elif self.finish_reason == "error":
            parts.append("cut short by an error")
        return " · ".join(parts) or "No timing figures for this reply"

    def details(self) -> str:
        """The exact figures, one per line (shown when the pointer rests on the summary)."""
        reused = max(0, self.prompt_tokens - self.prompt_tokens_evaluated) if self.prompt_tokens else 0
        prompt = f"Prompt: {self.prompt_tokens} tokens"
        if reused:
            prompt += (f", {reused} of them reused from the cache (already processed for an earlier turn), "
                       f"{self.prompt_tokens_evaluated} processed now")
        reasons = {"stop": "the model finished its answer", "length": "it reached the reply length limit",
                   "cancelled": "you stopped it", "error": "the engine or server failed mid-reply"}
        reason = reasons.get(self.finish_reason, self.finish_reason or "not known")
        uncounted = not self.counted_by and not self.prompt_tokens and not self.completion_tokens
        if uncounted:
            prompt = "Prompt: not counted (the server sent no token counts)"
        return "\n".join([
            prompt,
            "Reply: not counted" if uncounted else f"Reply: {self.completion_tokens} tokens",
            f"Speed: {self.gen_tokens_per_s:.2f} tokens/s (after the first token)",
            f"Time to first token: {self.ttft_s:.3f} s",
            f"Total time: {self.total_s:.3f} s",
            f"Ended because {reason}" + (f" ({self.finish_reason})" if self.finish_reason in reasons else ""),
        ])


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


@dataclass
class ChatReply:
    text: str
    stats: ReplyStats
