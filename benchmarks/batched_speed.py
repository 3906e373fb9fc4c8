"""The app's batched-throughput test against llama.cpp's own llama-batched-bench, per N.

    .venv/bin/python benchmarks/batched_speed.py [--model PATH.gguf] [--threads N] [--prompt-tokens 512]
                                                 [--gen-tokens 128] [--parallel 1,2,4,8] [--rounds 2]
                                                 [--batch 2048] [--ubatch 512] [--json]

Both measure the same model (default: the starter model, SmolLM2-135M Q4_1) with the same threads,
context (the largest N x (prompt + generated tokens)), batch and micro-batch sizes and GPU layers:

- app: ``runtime.bench.speed.measure_speed_and_batching`` with ``SpeedOptions.parallel`` (the speed
  child, llama.cpp's C API through llama-cpp-python's bindings): what the Benchmark tab's Batching
  chart and ``workbench bench --parallel`` report; one repetition per N a round;
- llama-batched-bench: built from the same vendored llama.cpp (``benchmarks/_build/llama-batched-bench``),
  ``-npp P -ntg G -npl 1,2,4,8`` with its defaults otherwise (prompts not shared, generation not
  separated, KV cache not unified), JSON lines out; it measures each N once a round.

Each round runs both, in turn (the order alternates between rounds). Per N: the median over rounds of
the aggregate generation tokens/s (batched-bench's S_TG = N x G / generation time) and of the prompt
tokens/s (S_PP), and the ratio app / llama-batched-bench. Goal: aggregate generation within 10% at
every N. Not a test: run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.bench.results import SpeedOptions  # noqa: E402
from runtime.bench.speed import describe_options, measure_speed_and_batching, resolved_threads  # noqa: E402
from runtime.models.gguf_info import format_size  # noqa: E402
from runtime.models.library import starter_model_path  # noqa: E402

BATCHED_BENCH = ROOT / "benchmarks" / "_build" / "llama-batched-bench"


def batched_context(options: SpeedOptions) -> int:
    """The context both get: the largest N x (prompt + generated tokens), as the speed child asks for."""
    return max(options.parallel) * (options.prompt_tokens + options.gen_tokens)


def llama_batched_bench(model: Path, options: SpeedOptions) -> dict[int, dict[str, float]]:
    """{N: {"tg": S_TG, "pp": S_PP}} from one llama-batched-bench run."""
    cmd = [str(BATCHED_BENCH), "-m", str(model), "-t", str(resolved_threads(options)),
           "-c", str(batched_context(options)), "-b", str(options.n_batch), "-ub", str(options.n_ubatch),
           "-ngl", str(options.n_gpu_layers), "-npp", str(options.prompt_tokens), "-ntg", str(options.gen_tokens),
           "-npl", ",".join(map(str, options.parallel)), "--output-format", "jsonl"]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    figures = {}
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        if line.startswith('{"n_kv_max"'):
            row = json.loads(line)
            figures[int(row["pl"])] = {"tg": float(row["speed_tg"]), "pp": float(row["speed_pp"]),
                                       "n_kv_max": row["n_kv_max"], "threads": row["n_threads"]}
    missing = [n for n in options.parallel if n not in figures]
    if missing:
        sys.exit(f"llama-batched-bench gave no figures for N = {missing}; its output:\n{done.stdout}{done.stderr}")
    return figures


def app(model: Path, options: SpeedOptions) -> dict[int, dict[str, float]]:
    """{N: {"tg": aggregate tokens/s, "pp": aggregate prompt tokens/s}} from the app's speed runner."""
    _figures, points = measure_speed_and_batching(model, options)
    return {p.n: {"tg": p.tg_tokens_per_s_aggregate, "pp": p.pp_tokens_per_s_aggregate} for p in points}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a GGUF file (default: the starter model)")
    parser.add_argument("--threads", type=int, default=0, help="default: the physical cores")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--parallel", default="1,2,4,8", help="the numbers of sequences (default 1,2,4,8)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--ubatch", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model = args.model or starter_model_path()
    if model is None:
        sys.exit("no model: pass --model PATH.gguf (the starter model package is not installed)")
    if not BATCHED_BENCH.exists():
        sys.exit(f"{BATCHED_BENCH} is missing: run `bash benchmarks/build_llama_bench.sh llama-batched-bench` first")
    parallel = [int(n) for n in args.parallel.split(",") if n.strip()]
    options = SpeedOptions(threads=args.threads, n_ctx=max(512, args.prompt_tokens, args.gen_tokens),
                           n_batch=args.batch, n_ubatch=args.ubatch, prompt_tokens=args.prompt_tokens,
                           gen_tokens=args.gen_tokens, reps=1, parallel=parallel)
    ways = {"app": app, "llama-batched-bench": llama_batched_bench}
    samples: dict[str, dict[int, dict[str, list[float]]]] = {w: {n: {"tg": [], "pp": []} for n in parallel}
                                                             for w in ways}
    for round_ in range(args.rounds):
        order = list(ways) if round_ % 2 == 0 else list(ways)[::-1]
        for name in order:
            for n, got in ways[name](model, options).items():
                for key in ("tg", "pp"):
                    samples[name][n][key].append(got[key])
    result = {"model": str(model), "model_bytes": Path(model).stat().st_size, "options": describe_options(options),
              "threads": resolved_threads(options), "n_ctx": batched_context(options), "rounds": args.rounds,
              "points": []}
    for n in parallel:
        ours, theirs = samples["app"][n], samples["llama-batched-bench"][n]
        tg_app, tg_ref = statistics.median(ours["tg"]), statistics.median(theirs["tg"])
        pp_app, pp_ref = statistics.median(ours["pp"]), statistics.median(theirs["pp"])
        result["points"].append({
            "n": n, "app_tg_tokens_per_s_aggregate": round(tg_app, 2),
            "batched_bench_tg_tokens_per_s_aggregate": round(tg_ref, 2), "tg_ratio": round(tg_app / tg_ref, 4),
            "best_tg_ratio": round(max(ours["tg"]) / max(theirs["tg"]), 4),
            "app_pp_tokens_per_s_aggregate": round(pp_app, 2),
            "batched_bench_pp_tokens_per_s_aggregate": round(pp_ref, 2),
            "pp_ratio": round(pp_app / pp_ref, 4),
            "app_tg_samples": [round(v, 2) for v in ours["tg"]],
            "batched_bench_tg_samples": [round(v, 2) for v in theirs["tg"]]})
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"model: {Path(model).name} ({format_size(result['model_bytes'])}); {result['options']}; "
          f"context {result['n_ctx']:,}; {args.rounds} rounds (median; best: fastest of each)")
    print(f"{'N':>3} {'app tg t/s':>11} {'bb tg t/s':>10} {'ratio':>7} {'best':>7}   "
          f"{'app pp t/s':>11} {'bb pp t/s':>10} {'ratio':>7}")
    for p in result["points"]:
        print(f"{p['n']:>3} {p['app_tg_tokens_per_s_aggregate']:>11.2f} "
              f"{p['batched_bench_tg_tokens_per_s_aggregate']:>10.2f} "
              f"{p['tg_ratio']:>7.3f} {p['best_tg_ratio']:>7.3f}   {p['app_pp_tokens_per_s_aggregate']:>11.2f} "
              f"{p['batched_bench_pp_tokens_per_s_aggregate']:>10.2f} {p['pp_ratio']:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
