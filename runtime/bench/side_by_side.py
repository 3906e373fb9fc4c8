"""The same prompt answered by several variants, one after another, so a person can read the difference.

Each variant is loaded in its own engine process (``runtime.engine.local.LocalEngine``), asks the
prompt with the same sampling settings (greedy by default, so differences come from the weights, not
from chance), streams its answer and is stopped before the next one loads: only one model is in
memory at a time. ``answer_with`` does one variant; the GUI chains them (one worker per column) and
the CLI loops.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runtime.engine.types import LoadOptions, ReplyStats, SamplingParams, default_threads
from runtime.jobs import CancelToken, ProgressCallback, no_progress

# Greedy and bounded: the same prompt gives each variant's most likely answer.
SIDE_BY_SIDE_SAMPLING = SamplingParams(temperature=0.0, top_p=1.0, top_k=1, min_p=0.0, repeat_penalty=1.0,
                                       max_tokens=256, seed=0)
SIDE_BY_SIDE_CTX = 2048


@dataclass
class SideAnswer:
    """One variant's answer and what it took."""

    path: str
    text: str
    load_s: float
    stats: ReplyStats

    @property
    def tokens_per_s(self) -> float:
        return self.stats.gen_tokens_per_s

    @property
    def ttft_s(self) -> float:
        return self.stats.ttft_s


def check_fits(path: str | Path, n_ctx: int = SIDE_BY_SIDE_CTX) -> None:
    """Raise InsufficientMemoryError (with the numbers) when ``path`` would not fit in memory now."""
    from runtime.models.hardware import require_fit

    require_fit(path, n_ctx, hint="Close other programs, or leave this variant out.")


def answer_with(path: str | Path, prompt: str, *, params: SamplingParams = SIDE_BY_SIDE_SAMPLING,
                n_ctx: int = SIDE_BY_SIDE_CTX, threads: int | None = None,
                on_text: Callable[[str], None] | None = None, progress: ProgressCallback = no_progress,
                cancel: CancelToken | None = None) -> SideAnswer:
    """Load ``path``, answer ``prompt`` (one user message) streaming to ``on_text``, unload; return it all.

    Raises Cancelled when cancelled while loading; a cancel during the answer returns the partial
    answer (finish_reason "cancelled"), as chat does. The engine process is always stopped.
    """
    from runtime.engine.local import LocalEngine

    cancel = cancel or CancelToken()
    name = Path(path).name
    check_fits(path, n_ctx)
    progress(0, 2, f"Loading {name}…")
    options = LoadOptions(n_ctx=n_ctx, n_threads=threads or default_threads()).validate()
    started = time.perf_counter()
    engine = LocalEngine(path, options)
    try:
        engine.start(cancel)
        load_s = time.perf_counter() - started
        progress(1, 2, f"{name} is answering…")
        reply = engine.client().stream_chat([{"role": "user", "content": prompt}], params,
                                            on_text=on_text, cancel=cancel)
    finally:
        engine.stop()
    progress(2, 2, f"{name} answered")
    return SideAnswer(str(path), reply.text, load_s, reply.stats)
