"""The app's speed runner against llama.cpp's own llama-bench, side by side in one run.

    .venv/bin/python benchmarks/bench_speed.py [--model PATH.gguf] [--threads N] [--prompt-tokens 512]
                                               [--gen-tokens 128] [--reps 5] [--rounds 2] [--batch 2048]
                                               [--ubatch 512] [--ctx N] [--json]

Both measure the same model (default: the starter model, SmolLM2-135M Q4_1) with the same threads,
batch and micro-batch sizes and GPU layers (all):

- app: ``runtime.bench.speed.measure_speed`` (a fresh child process per round, llama.cpp's C API
  through llama-cpp-python's bindings): what the Benchmark tab and ``workbench bench`` report;
- llama-bench: built from the same vendored llama.cpp with the app's flags
  (``bash benchmarks/build_llama_bench.sh llama-bench``), its pp and tg tests, ``-r reps``.

Each round runs both, in turn (the order alternates between rounds, so neither always gets the
quieter moment). Figures are the median of every repetition of every round; "best" compares the
fastest repetition of each, the least disturbed by other programs on a busy machine. Goal: prompt and
generation tokens/s of the app within 5% of llama-bench. Not a test: run it on an otherwise idle machine.
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
from runtime.bench.speed import describe_options, measure_speed, resolved_threads  # noqa: E402
from runtime.models.gguf_info import format_size  # noqa: E402
from runtime.models.library import starter_model_path  # noqa: E402

LLAMA_BENCH = ROOT / "benchmarks" / "_build" / "llama-bench"


def llama_bench(model: Path, options: SpeedOptions) -> dict[str, list[float]]:
    """llama-bench's per-repetition tokens/s of its pp and tg tests."""
    cmd = [str(LLAMA_BENCH), "-m", str(model), "-t", str(resolved_threads(options)), "-p", str(options.prompt_tokens),
           "-n", str(options.gen_tokens), "-b", str(options.n_batch), "-ub", str(options.n_ubatch),
           "-ngl", str(options.n_gpu_layers), "-r", str(options.reps), "-o", "json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    figures: dict[str, list[float]] = {}
    for test in json.loads(out):
        key = "pp" if test["n_prompt"] and not test["n_gen"] else "tg"
        figures[key] = [float(v) for v in test["samples_ts"]]
        figures["build_commit"] = test.get("build_commit")  # type: ignore[assignment]
    return figures


def app(model: Path, options: SpeedOptions) -> dict[str, list[float]]:
    figures = measure_speed(model, options)
    return {"pp": figures.pp_tokens_per_s.values, "tg": figures.tg_tokens_per_s.values,
            "threads": figures.threads}  # type: ignore[dict-item]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a GGUF file (default: the starter model)")
    parser.add_argument("--threads", type=int, default=0, help="default: the physical cores")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5, help="repetitions per round (llama-bench's default)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--ubatch", type=int, default=512)
    parser.add_argument("--ctx", type=int, default=0, help="the app's context (default: the prompt tokens, "
                                                           "at least 512)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model = args.model or starter_model_path()
    if model is None:
        sys.exit("no model: pass --model PATH.gguf (the starter model package is not installed)")
    if not LLAMA_BENCH.exists():
        sys.exit(f"{LLAMA_BENCH} is missing: run `bash benchmarks/build_llama_bench.sh llama-bench` first")
    options = SpeedOptions(threads=args.threads, n_ctx=args.ctx or max(512, args.prompt_tokens), n_batch=args.batch,
                           n_ubatch=args.ubatch, prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens,
                           reps=args.reps)
    ways = {"app": app, "llama-bench": llama_bench}
    samples: dict[str, dict[str, list[float]]] = {w: {"pp": [], "tg": []} for w in ways}
    extra: dict[str, object] = {}
    for round_ in range(args.rounds):
        order = list(ways) if round_ % 2 == 0 else list(ways)[::-1]
        for name in order:
            got = ways[name](model, options)
            for key in ("pp", "tg"):
                samples[name][key] += got[key]
            extra.update({k: v for k, v in got.items() if k not in ("pp", "tg")})
    pp, tg = f"pp{args.prompt_tokens}", f"tg{args.gen_tokens}"
    result = {"model": str(model), "model_bytes": Path(model).stat().st_size, "options": describe_options(options),
              "threads": resolved_threads(options), "threads_used_by_app": extra.get("threads"),
              "llama_bench_commit": extra.get("build_commit"), "rounds": args.rounds, "reps": args.reps, "tests": {}}
    for key, label in (("pp", pp), ("tg", tg)):
        ours, theirs = samples["app"][key], samples["llama-bench"][key]
        result["tests"][label] = {
            "app_tokens_per_s": round(statistics.median(ours), 2),
            "llama_bench_tokens_per_s": round(statistics.median(theirs), 2),
            "app_over_llama_bench": round(statistics.median(ours) / statistics.median(theirs), 4),
            "best_app_over_llama_bench": round(max(ours) / max(theirs), 4),
            "app_samples": [round(v, 2) for v in ours], "llama_bench_samples": [round(v, 2) for v in theirs],
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"model: {Path(model).name} ({format_size(result['model_bytes'])}); {result['options']}; "
          f"{args.rounds} rounds (median of all repetitions; best: fastest repetition of each)")
    print(f"{'test':<8} {'app t/s':>10} {'llama-bench t/s':>16} {'app / llama-bench':>18} {'best ratio':>11}")
    for label, f in result["tests"].items():
        print(f"{label:<8} {f['app_tokens_per_s']:>10.2f} {f['llama_bench_tokens_per_s']:>16.2f} "
              f"{f['app_over_llama_bench']:>18.3f} {f['best_app_over_llama_bench']:>11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
