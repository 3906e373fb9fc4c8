"""Plain data shared by the chat engine, its clients, the store, the CLI and the GUI."""
from __future__ import annotations

import functools
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
    max_tokens: int = 512
    seed: int | None = None


@functools.lru_cache(maxsize=1)
def default_threads() -> int:
    """Physical cores are what llama.cpp scales with; leave none idle, oversubscribe none."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except Exception:  # psutil missing or unable to tell
        n = None
    return max(1, n or os.cpu_count() or 1)


@dataclass
class LoadOptions(Record):
    """How a local model is loaded into the engine.

    ``n_gpu_layers``: None = automatic (all layers when this llama.cpp build has a GPU backend and the
    model fits in its free memory, else 0; the engine decides, see ``runtime.engine.server``),
    -1 (``ALL_GPU_LAYERS``) = all layers, N = the first N layers, 0 = CPU only.
    """

    n_ctx: int = DEFAULT_N_CTX
    n_threads: int = field(default_factory=default_threads)
    n_gpu_layers: int | None = None


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
    finish_reason: str = ""         # stop | length | cancelled

    def summary(self) -> str:
        """One line for the UI: '42.1 tok/s · TTFT 0.12 s · 30 + 120 tokens'."""
        parts = [f"{self.gen_tokens_per_s:.1f} tok/s", f"TTFT {self.ttft_s:.2f} s",
                 f"{self.prompt_tokens} prompt + {self.completion_tokens} reply tokens"]
        if self.prompt_tokens and self.prompt_tokens_evaluated < self.prompt_tokens:
            parts.append(f"{self.prompt_tokens - self.prompt_tokens_evaluated} cached")
        if self.finish_reason == "cancelled":
            parts.append("stopped")
        elif self.finish_reason == "length":
            parts.append("hit max tokens")
        return " · ".join(parts)


@dataclass
class ChatReply:
    text: str
    stats: ReplyStats
