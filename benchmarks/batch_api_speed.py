"""Aggregate generation speed through the engine's API with N concurrent requests (--parallel).

    .venv/bin/python benchmarks/batch_api_speed.py [--model PATH] [--threads N] [--n 1,2,4,8]
                                                   [--gen-tokens 64] [--json]

For each N: one engine started with --parallel N, N streaming requests sent at once through the
app's own ChatClient (each --gen-tokens long, ignore_eos, greedy), timed on the client:
aggregate tokens/s = all completion tokens / wall time from the first request to the last answer
(prompt evaluation included, as a user of the API sees it), and the mean per-request rate the
engine reports. The baseline: the same N requests one after another on today's single-sequence
engine (--parallel 1). The engine's own counters show the requests really shared decode steps
(decode calls vs tokens sampled). Not a test: run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.engine.local import LocalEngine  # noqa: E402
from runtime.engine.types import LoadOptions, SamplingParams  # noqa: E402
from runtime.models.library import starter_model_path  # noqa: E402


def health(engine: LocalEngine) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=30)
    try:
        conn.request("GET", "/health", headers={"Authorization": f"Bearer {engine.api_key}"})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def one_request(engine: LocalEngine, params: SamplingParams, tag: int):
    return engine.client().stream_chat([{"role": "user", "content": f"Tell me story number {tag}."}], params,
                                       extra={"ignore_eos": True})


def concurrent(engine: LocalEngine, params: SamplingParams, n: int) -> tuple[float, list]:
    """Wall seconds for n requests sent at once, and their replies."""
    replies: list = [None] * n
    barrier = threading.Barrier(n + 1)

    def run(i: int) -> None:
        barrier.wait()
        replies[i] = one_request(engine, params, i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started, replies


def measure(model: Path, threads: int, n: int, params: SamplingParams, n_ctx: int) -> dict:
    engine = LocalEngine(model, LoadOptions(n_ctx=n_ctx, n_threads=threads, n_parallel=n))
    engine.start()
    try:
        one_request(engine, SamplingParams(**{**params.to_dict(), "max_tokens": 4}), 999)  # warm-up
        before = health(engine)
        seconds, replies = concurrent(engine, params, n)
        after = health(engine)
    finally:
        engine.stop()
    tokens = sum(r.stats.completion_tokens for r in replies)
    row = {"n": n, "seconds": round(seconds, 3), "tokens": tokens,
           "aggregate_tokens_per_s": round(tokens / seconds, 2),
           "per_request_tokens_per_s": round(statistics.mean(r.stats.gen_tokens_per_s for r in replies), 2)}
    if n > 1:
        row["decode_calls"] = after["decode_calls"] - before["decode_calls"]
        row["sampled_tokens"] = after["sampled_tokens"] - before["sampled_tokens"]
    return row


def sequential(model: Path, threads: int, n: int, params: SamplingParams, n_ctx: int) -> dict:
    """The same n requests one after another on the single-sequence engine (today's chat path)."""
    engine = LocalEngine(model, LoadOptions(n_ctx=n_ctx, n_threads=threads))
    engine.start()
    try:
        one_request(engine, SamplingParams(**{**params.to_dict(), "max_tokens": 4}), 999)
        started = time.perf_counter()
        replies = [one_request(engine, params, i) for i in range(n)]
        seconds = time.perf_counter() - started
    finally:
        engine.stop()
    tokens = sum(r.stats.completion_tokens for r in replies)
    return {"n": n, "seconds": round(seconds, 3), "tokens": tokens,
            "aggregate_tokens_per_s": round(tokens / seconds, 2),
            "per_request_tokens_per_s": round(statistics.mean(r.stats.gen_tokens_per_s for r in replies), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a GGUF (default: the starter model)")
    parser.add_argument("--threads", type=int, default=LoadOptions().n_threads)
    parser.add_argument("--n", default="1,2,4,8", help="concurrent requests to measure (comma-separated)")
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--ctx", type=int, default=512, help="context per sequence")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model = args.model or starter_model_path()
    if model is None:
        sys.exit("no model: pass --model (the starter package is not installed)")
    params = SamplingParams(temperature=0, repeat_penalty=1.0, max_tokens=args.gen_tokens)
    ns = [int(x) for x in args.n.split(",") if x.strip()]
    base = sequential(model, args.threads, max(ns), params, args.ctx)
    rows = [measure(model, args.threads, n, params, args.ctx) for n in ns]
    for row in rows:
        row["speedup_vs_sequential"] = round(row["aggregate_tokens_per_s"] / base["aggregate_tokens_per_s"], 2)
    if args.json:
        print(json.dumps({"model": str(model), "threads": args.threads, "sequential": base, "batched": rows},
                         indent=2))
        return 0
    print(f"model {model.name}, {args.threads} threads, {args.gen_tokens} tokens per request, context {args.ctx}")
    print(f"sequential (--parallel 1, {base['n']} requests one after another): "
          f"{base['aggregate_tokens_per_s']:.1f} tokens/s ({base['per_request_tokens_per_s']:.1f} per request)")
    print(f"{'N':>3}  {'aggregate tok/s':>15}  {'per request':>11}  {'vs sequential':>13}  {'decode calls':>12}")
    for row in rows:
        calls = f"{row.get('decode_calls', '-')}/{row.get('sampled_tokens', row['tokens'])}"
        print(f"{row['n']:>3}  {row['aggregate_tokens_per_s']:>15.1f}  {row['per_request_tokens_per_s']:>11.1f}  "
              f"{row['speedup_vs_sequential']:>12.2f}x  {calls:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
