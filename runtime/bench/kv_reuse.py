"""KV cache reuse, measured: ``measure_kv_reuse(path, options)`` replays a multi-turn conversation in
a fresh child (``runtime.bench.kv_child``) and times each turn's first token twice: with the cache
kept from the turn before (what the chat does) and from an empty cache (the whole conversation
evaluated again). Returns one ``KvTurn`` per turn, medians of ``options.reps`` repetitions.

The conversation is ``resources/eval/kv_conversation.json`` (a system prompt and 8 user turns) unless
another is given; the replies are generated once, greedily, at most ``reply_tokens`` each, then replayed,
so both ways see the same prompts. Turn 1 starts from an empty cache either way; from turn 2 on the
reused cache holds everything but the new question.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
from importlib import resources
from pathlib import Path
from typing import Sequence

from runtime.bench.results import KvTurn, SpeedOptions
from runtime.errors import BenchError, ProcessCrashed
from runtime.jobs import CancelToken, ProgressCallback, no_progress
from runtime.procs import ChildProcess

CHILD_MODULE = "runtime.bench.kv_child"
CONVERSATION_FILE = "kv_conversation.json"
REPLY_TOKENS = 32      # each assistant reply: at most this many tokens (it ends at end-of-turn, as in the chat)
KV_MIN_CTX = 2048      # the whole conversation must fit: at least this context, or the run's if larger
START_TIMEOUT_S = 120.0
LOAD_TIMEOUT_S = 1800.0
RUN_TIMEOUT_S = 7 * 24 * 3600.0  # Cancel is the way out
_CRASH_HINT = ("The file may be damaged, or the computer ran out of memory: close other programs, "
               "or leave this model out of the KV cache test.")


def conversation_path() -> Path:
    """The conversation shipped with the app (resources/eval)."""
    return Path(str(resources.files("resources").joinpath("eval", CONVERSATION_FILE)))


def kv_context(options: SpeedOptions) -> int:
    """The context the test loads: room for the whole conversation."""
    return max(options.n_ctx, KV_MIN_CTX)


def child_args(path: str | os.PathLike, options: SpeedOptions, *, conversation: str | os.PathLike,
               turns: int | None, reply_tokens: int) -> list[str]:
    from runtime.bench.speed import resolved_threads

    args = [os.fspath(path), "--conversation", os.fspath(conversation), "--threads", str(resolved_threads(options)),
            "--ctx", str(kv_context(options)), "--gpu-layers", str(options.n_gpu_layers),
            "--reply-tokens", str(reply_tokens), "--reps", str(options.reps)]
    return args + (["--turns", str(turns)] if turns else [])


def measure_kv_reuse(path: str | os.PathLike, options: SpeedOptions, *, conversation: str | os.PathLike | None = None,
                     turns: int | None = None, reply_tokens: int = REPLY_TOKENS,
                     progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> list[KvTurn]:
    """Replay the conversation on ``path`` in a fresh child; one KvTurn per turn (see the module doc).

    ``turns``: only the first so many user turns. Raises BenchError (options, a conversation that does
    not fit), ModelFileError / UnsupportedArchitectureError, InsufficientMemoryError, Cancelled (the
    child is killed), ProcessCrashed, ProcessTimeout.
    """
    from runtime.bench.speed import check_memory

    cancel = cancel or CancelToken()
    if reply_tokens < 1 or options.reps < 1 or (turns is not None and turns < 1):
        raise BenchError("The KV cache test needs at least one turn, one reply token and one repetition.")
    conversation = Path(conversation) if conversation is not None else conversation_path()
    name = Path(path).name
    check_memory(path, dataclasses.replace(options, n_ctx=kv_context(options)))
    cancel.check()
    child = ChildProcess(CHILD_MODULE, child_args(path, options, conversation=conversation, turns=turns,
                                                  reply_tokens=reply_tokens),
                         name="KV cache test", error_class=ProcessCrashed)
    total = [1.0]

    def on_event(event: dict) -> None:
        if event.get("event") == "progress":
            total[0] = float(event.get("total") or 1)
            progress(1 + float(event.get("done", 0)), 1 + total[0], f"{name}: KV cache, {event.get('message', '')}")

    try:
        progress(0, 1, f"{name}: KV cache test, loading")
        child.start()
        child.wait_for("started", START_TIMEOUT_S, cancel, doing="starting", hint=_CRASH_HINT)
        child.wait_for("loaded", LOAD_TIMEOUT_S, cancel, doing=f"loading {name}", hint=_CRASH_HINT)
        done = child.wait_for("done", RUN_TIMEOUT_S, cancel, on_event=on_event,
                              doing=f"replaying the conversation on {name}", hint=_CRASH_HINT)
        child.wait(5)
    finally:
        child.kill()
    progress(1, 1, f"{name}: KV cache test done")
    return turns_from_event(done)


def turns_from_event(event: dict) -> list[KvTurn]:
    """KvTurns (medians of the repetitions) from the child's ``done`` event."""
    out = []
    for t in event["turns"]:
        out.append(KvTurn(turn=int(t["turn"]), prompt_tokens=int(t["prompt_tokens"]),
                          ttft_reuse_s=statistics.median(t["ttft_reuse_s"]),
                          ttft_fresh_s=statistics.median(t["ttft_fresh_s"]),
                          evaluated_reuse=int(statistics.median(t["evaluated_reuse"])),
                          evaluated_fresh=int(statistics.median(t["evaluated_fresh"]))))
    return out


def reuse_speedup(turns: Sequence[KvTurn] | None) -> float | None:
    """How many times faster the first token comes with the cache reused: the mean of
    fresh / reuse over turns 2 and later (turn 1 has nothing to reuse); None without such turns."""
    ratios = [t.ttft_fresh_s / t.ttft_reuse_s for t in (turns or []) if t.turn > 1 and t.ttft_reuse_s > 0]
    return statistics.fmean(ratios) if ratios else None


def total_speedup(turns: Sequence[KvTurn] | None) -> float | None:
    """The whole dialogue's waiting for first tokens, fresh / reused, turns 2 and later."""
    later = [t for t in (turns or []) if t.turn > 1]
    reuse = sum(t.ttft_reuse_s for t in later)
    return sum(t.ttft_fresh_s for t in later) / reuse if later and reuse > 0 else None
