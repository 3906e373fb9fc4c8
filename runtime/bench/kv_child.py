"""The KV cache reuse runner process: one model, one conversation replayed turn by turn.

Started by ``runtime.bench.kv_reuse.measure_kv_reuse`` through ``runtime.procs.ChildProcess`` as
``python -m runtime.bench.kv_child MODEL --conversation FILE --threads N --ctx N --gpu-layers N
--reply-tokens N --reps N [--turns N]``. It loads the model with the chat's own generation loop
(``runtime.engine.runner.LlamaRunner``), which keeps the tokens of the previous request in the KV
cache and evaluates only what follows their common prefix.

1. The replies: the conversation is played once, as a chat would (cache kept), each reply generated
   greedily, at most ``reply_tokens`` tokens (a reply ends at the model's end-of-turn token, as in the
   chat: a history with text after that token is one the chat never has, and its cache would match
   less), and appended to the history. This is also the warm-up. From then on every turn's prompt is
   fixed, the same in both passes, and greedy decoding repeats the same replies.
2. ``reps`` times: the *reuse* pass (a new conversation: cache cleared once, then each turn's first
   token timed, then its reply generated into the cache as the chat does), and the *fresh* pass (the
   cache cleared before each turn, so the whole conversation so far is evaluated again).

A turn's time to first token runs from the ``generate`` call to its first piece of text: template,
tokenizing, evaluating the uncached prompt, picking and detokenizing the first token. The reuse
pass makes exactly the calls of step 1 (so the cache holds what it held there); the fresh pass asks
for one token only, as the tokens after the first do not change the time to it.

Events on stdout, one JSON object a line:

- ``{"event": "started", "llama_cpp": "0.3.36", "pid": 123}``;
- ``{"event": "loaded", "load_s": 0.3, "n_ctx": 2048, "threads": 2}``;
- ``{"event": "progress", "done": 3, "total": 24, "message": "reuse pass 1/3, turn 2/8"}``;
- ``{"event": "done", "turns": [{"turn": 1, "prompt_tokens": 61, "ttft_reuse_s": [...],
  "ttft_fresh_s": [...], "evaluated_reuse": [...], "evaluated_fresh": [...]}, ...]}``: one value per
  repetition;
- ``{"event": "error", ...}`` (then exit 3): what LlamaRunner raises for a file it cannot load,
  BenchError for a conversation that does not fit the context.

The process exits when stdin closes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from runtime.errors import BenchError, TemplateError
from runtime.procs import emit, run_main, watch_parent


def read_conversation(path: str, turns: int | None = None) -> tuple[str | None, list[str]]:
    """(system prompt or None, user turns) from the conversation file; the first ``turns`` only."""
    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as exc:
        raise BenchError(f"The conversation file {os.path.basename(path)} cannot be read: {exc}", path=path) from exc
    user = data.get("turns") if isinstance(data, dict) else None
    if not isinstance(user, list) or not user or not all(isinstance(t, str) and t.strip() for t in user):
        raise BenchError(f"The conversation file {os.path.basename(path)} has no list of user turns.",
                         hint='Write {"system": "...", "turns": ["first question", "second", ...]}.', path=path)
    system = data.get("system")
    return (system if isinstance(system, str) and system.strip() else None), user[:turns] if turns else user


class Replay:
    """The loaded model and the conversation's fixed prompts."""

    def __init__(self, args: argparse.Namespace) -> None:
        from runtime.engine.runner import LlamaRunner
        from runtime.engine.types import LoadOptions, SamplingParams

        self.args = args
        self.system, self.user = read_conversation(args.conversation, args.turns)
        started = time.perf_counter()
        self.runner = LlamaRunner(args.model, LoadOptions(n_ctx=args.ctx, n_threads=args.threads,
                                                          n_gpu_layers=args.gpu_layers))
        self.load_s = time.perf_counter() - started
        # Greedy, no repeat penalty: the same reply every time (runner's plain argmax path).
        self.reply = SamplingParams(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                    max_tokens=args.reply_tokens, seed=0)
        self.first = SamplingParams(**{**self.reply.to_dict(), "max_tokens": 1})
        self.prompts: list[list[dict]] = []

    def _start(self) -> list[dict]:
        """The messages before the first user turn: the system prompt, where the template takes one."""
        if self.system is None:
            return []
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": self.user[0]}]
        try:
            self.runner.render(messages)
        except TemplateError:  # some templates refuse a system message: replay the user turns alone
            return []
        return messages[:1]

    def _check_fits(self, messages: list[dict], turn: int) -> None:
        needed = self.runner.count_prompt_tokens(messages) + self.args.reply_tokens
        if needed >= self.runner.n_ctx:
            raise BenchError(
                f"Turn {turn} of the conversation needs {needed:,} tokens, more than the context of "
                f"{self.runner.n_ctx:,} tokens the KV cache test loads.",
                hint="Use a larger context, fewer turns or fewer reply tokens.", needed_tokens=needed)

    def play_replies(self, step) -> None:
        """Generate every reply once (cache kept, as a chat does) and fix each turn's prompt."""
        history = self._start()
        self.runner.reset_cache()
        for i, text in enumerate(self.user, 1):
            step(f"replies, turn {i}/{len(self.user)}")
            messages = history + [{"role": "user", "content": text}]
            self._check_fits(messages, i)
            reply = "".join(self.runner.generate(messages, self.reply))
            self.prompts.append(messages)
            history = messages + [{"role": "assistant", "content": reply}]

    def timed(self, messages: list[dict], params) -> tuple[float, int, int]:
        """Run one request to its end; (seconds to its first piece of text, prompt tokens evaluated,
        prompt tokens)."""
        started = time.perf_counter()
        first = None
        for _piece in self.runner.generate(messages, params):
            if first is None:
                first = time.perf_counter() - started
        if first is None:  # no text at all (a control token): the request's whole time
            first = time.perf_counter() - started
        stats = self.runner.last_stats
        return first, stats.prompt_tokens_evaluated, stats.prompt_tokens

    def reuse_pass(self, step) -> list[tuple[float, int, int]]:
        """A new conversation: each turn's reply generated into the cache, as the chat does."""
        self.runner.reset_cache()
        out = []
        for i, messages in enumerate(self.prompts, 1):
            step(f"turn {i}/{len(self.prompts)}")
            out.append(self.timed(messages, self.reply))
        return out

    def fresh_pass(self, step) -> list[tuple[float, int, int]]:
        """Each turn from an empty cache; only its first token (the rest does not change the time to it)."""
        out = []
        for i, messages in enumerate(self.prompts, 1):
            step(f"turn {i}/{len(self.prompts)}")
            self.runner.reset_cache()
            out.append(self.timed(messages, self.first))
        return out


def run(args: argparse.Namespace) -> None:
    import llama_cpp

    emit("started", llama_cpp=llama_cpp.__version__, pid=os.getpid())
    replay = Replay(args)
    emit("loaded", load_s=round(replay.load_s, 6), n_ctx=replay.runner.n_ctx, threads=args.threads)
    n = len(replay.user)
    total, done = n * (1 + 2 * args.reps), 0

    def stepper(prefix: str):
        def step(message: str) -> None:
            nonlocal done
            emit("progress", done=done, total=total, message=f"{prefix}{message}")
            done += 1
        return step

    replay.play_replies(stepper(""))
    reuse, fresh = [], []
    for rep in range(1, args.reps + 1):
        reuse.append(replay.reuse_pass(stepper(f"reuse pass {rep}/{args.reps}, ")))
        fresh.append(replay.fresh_pass(stepper(f"fresh pass {rep}/{args.reps}, ")))
    turns = []
    for i in range(n):
        turns.append({"turn": i + 1, "prompt_tokens": fresh[0][i][2],
                      "ttft_reuse_s": [round(p[i][0], 6) for p in reuse],
                      "ttft_fresh_s": [round(p[i][0], 6) for p in fresh],
                      "evaluated_reuse": [p[i][1] for p in reuse], "evaluated_fresh": [p[i][1] for p in fresh]})
    emit("done", turns=turns, load_s=round(replay.load_s, 6))
    replay.runner.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kv_child")
    parser.add_argument("model")
    parser.add_argument("--conversation", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--gpu-layers", type=int, default=-1)
    parser.add_argument("--reply-tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--turns", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    watch_parent()
    run(parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    run_main(main, BenchError, "The KV cache reuse runner")
