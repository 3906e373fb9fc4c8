"""PyTorch rows' speed beside llama.cpp's, on the same model and threads.

    python benchmarks/torch_speed.py [--threads 2] [--prompt-tokens 512] [--gen-tokens 128] [--reps 3]
        [--layers 30] [--precisions fp32,bf16,int8] [--gguf F16,Q8_0] [--json]

There is no real SmolLM2 checkpoint on this machine (the starter model ships only as a GGUF), so the
model is a random llama checkpoint in SmolLM2-135M's shape, written with transformers
(tests/tiny_checkpoints.py ``build_checkpoint``: hidden 576, 30 layers, 9 heads over 3 KV heads, FFN
1536, vocabulary padded to 49,152, tied embeddings; about 135M parameters). Random weights change no
timing: every matrix is multiplied whatever it holds. The app converts it to GGUF F16 and
llama.cpp quantizes that to Q8_0; each row is then measured by the Benchmark's own runners in a fresh
child (``runtime.bench.torch_rows.measure_torch_speed`` and ``runtime.bench.speed.measure_speed``):
pp = prompt tokens in one forward / decode from an empty cache, tg = single-token steps with the KV
cache on, TTFT of the short chat prompt, load time, peak RSS, weights in memory (PyTorch rows).

Printed: one line per row, and each PyTorch row's generation and prompt speed as a ratio of the
llama.cpp F16 row's (the same weights, the same threads). Files go to benchmarks/out/torch_speed
(ignored by git) and are reused; ``--layers 4`` makes a small setting for a quick check.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

OUT = ROOT / "benchmarks" / "out" / "torch_speed"
SHAPE = dict(hidden=576, ffn=1536, heads=9, kv_heads=3, vocab_size=49152, tie=True)   # SmolLM2-135M


def make_model(layers: int) -> tuple[Path, Path]:
    """(checkpoint folder, its GGUF F16), made once per layer count."""
    from tiny_checkpoints import build_checkpoint

    from runtime.compress.convert import convert_checkpoint

    folder = OUT / f"smollm2-135m-shape-{layers}L"
    gguf = OUT / f"{folder.name}-F16.gguf"
    done = OUT / f"{folder.name}.complete"
    if not done.exists():
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        OUT.mkdir(parents=True, exist_ok=True)
        build_checkpoint("llama", folder, layers=layers, **SHAPE)
        convert_checkpoint(folder, gguf, out_type="f16")
        done.write_text("")
    return folder, gguf


def quantized(f16: Path, qtype: str) -> Path:
    from quantize_models import reference_quantize

    out = f16.with_name(f16.name.replace("-F16", f"-{qtype}"))
    return out if out.exists() else reference_quantize(f16, out, qtype)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--gguf", default="F16,Q8_0", help="llama.cpp rows: F16 and llama.cpp quantizations")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from runtime.bench.results import SpeedOptions
    from runtime.bench.speed import measure_speed
    from runtime.bench.torch_rows import LABELS, check_checkpoint, measure_torch_speed
    from runtime.models.gguf_info import format_size

    folder, f16 = make_model(args.layers)
    params = check_checkpoint(folder).parameter_count
    options = SpeedOptions(threads=args.threads, n_ctx=max(512, args.prompt_tokens, args.gen_tokens),
                           prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens, reps=args.reps)
    rows = []
    for qtype in [q.strip().upper() for q in args.gguf.split(",") if q.strip()]:
        path = f16 if qtype == "F16" else quantized(f16, qtype)
        t0 = time.perf_counter()
        s = measure_speed(path, options)
        rows.append({"row": f"llama.cpp {qtype}", "engine": "llama.cpp", "size_bytes": path.stat().st_size,
                     "wall_s": time.perf_counter() - t0, "speed": s})
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        t0 = time.perf_counter()
        measured = measure_torch_speed(folder, precision, options)
        rows.append({"row": f"PyTorch {LABELS[precision]}", "engine": "pytorch", "size_bytes": measured.memory_bytes,
                     "wall_s": time.perf_counter() - t0, "speed": measured.figures})

    base = next((r["speed"] for r in rows if r["row"] == "llama.cpp F16"), None)
    out = []
    print(f"random llama in SmolLM2-135M's shape, {args.layers} layers, {params / 1e6:.1f}M parameters; "
          f"{args.threads} threads, pp{args.prompt_tokens} tg{args.gen_tokens}, {args.reps} reps after a warm-up")
    print(f"{'row':<24} {'weights':>10} {'load s':>7} {'pp t/s':>9} {'tg t/s':>8} {'TTFT ms':>8} {'peak RSS':>10}"
          f" {'tg vs F16':>9} {'pp vs F16':>9}")
    for r in rows:
        s = r["speed"]
        tg, pp = s.tg_tokens_per_s.median, s.pp_tokens_per_s.median
        tg_ratio = tg / base.tg_tokens_per_s.median if base else None
        pp_ratio = pp / base.pp_tokens_per_s.median if base else None
        print(f"{r['row']:<24} {format_size(r['size_bytes']):>10} {s.load_s:>7.2f} {pp:>9.1f} {tg:>8.1f} "
              f"{s.ttft_s.median * 1000:>8.1f} {format_size(s.peak_rss_bytes or 0):>10} "
              f"{(f'{tg_ratio:.2f}x' if tg_ratio else '-'):>9} {(f'{pp_ratio:.2f}x' if pp_ratio else '-'):>9}")
        out.append({"row": r["row"], "engine": r["engine"], "size_bytes": r["size_bytes"], "load_s": s.load_s,
                    "pp_tokens_per_s": pp, "tg_tokens_per_s": tg, "ttft_s": s.ttft_s.median,
                    "peak_rss_bytes": s.peak_rss_bytes, "tg_vs_llama_cpp_f16": tg_ratio,
                    "pp_vs_llama_cpp_f16": pp_ratio, "tg_values": s.tg_tokens_per_s.values})
    if args.json:
        print(json.dumps({"layers": args.layers, "parameters": params, "threads": args.threads, "rows": out},
                         indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
