"""Quantize time through the app (child process, checks, read-back) against llama.cpp's own quantizer.

    .venv/bin/python benchmarks/quantize_speed.py [--source starter|large|PATH.gguf] [--type Q4_K_M ...]
                                                  [--repeat 3] [--threads N] [--json]

Three ways on the same input, type and thread count, run in turn each repetition:

- app: ``runtime.compress.quantize.quantize_gguf`` (plan, checks, llama.cpp in a child, progress,
  header read back, rename): what the Compress tab and ``workbench quantize`` do;
- llama-quantize: llama.cpp's tool built from the same vendored source with the app's flags
  (benchmarks/build_llama_bench.sh), when it is there;
- in-process: ``llama_model_quantize`` through the bindings in this process, no child.

Sources: ``starter`` is the starter model (SmolLM2-135M, Q4_1) turned into F16 by llama.cpp (the
quantization then starts from 16-bit weights, as it would from a converted checkpoint); ``large`` a
random llama with TinyLlama-1.1B's shapes at F16 (2.1 GiB, written once under benchmarks/out/).
Goal: the app within 5% of llama-quantize. Not a test: run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))  # after ROOT: tests/runtime must not shadow the real runtime

from runtime.compress import sizes  # noqa: E402
from runtime.compress.quantize import quantize_gguf  # noqa: E402
from runtime.models.gguf_info import format_size  # noqa: E402
from runtime.models.library import starter_model_path  # noqa: E402

LLAMA_QUANTIZE = ROOT / "benchmarks" / "_build" / "llama-quantize"
OUT = ROOT / "benchmarks" / "out"


def in_process(src: Path, out: Path, qtype: str, threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = sizes.ftype_number(qtype)
    params.nthread = threads
    params.allow_requantize = True
    if llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params)) != 0:
        sys.exit(f"llama_model_quantize failed on {src}")


def tool(src: Path, out: Path, qtype: str, threads: int) -> None:
    subprocess.run([str(LLAMA_QUANTIZE), "--allow-requantize", str(src), str(out), qtype, str(threads)],
                   check=True, capture_output=True)


def app(src: Path, out: Path, qtype: str, threads: int) -> None:
    quantize_gguf(src, out, qtype, threads=threads, requantize=True)


_QUIET = None


def silence_llama() -> None:
    global _QUIET
    import llama_cpp

    _QUIET = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p(0))


def starter_f16() -> Path:
    path = OUT / "starter-F16.gguf"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        in_process(starter_model_path(), partial, "F16", 0)
        partial.replace(path)
    return path


def large_f16() -> Path:
    from quantize_models import cached_tiny_llama

    OUT.mkdir(parents=True, exist_ok=True)
    shape = dict(n_embd=2048, n_ff=5632, n_layer=22, n_head=32, n_head_kv=4)
    if not any(OUT.glob("tiny-llama-n_embd2048-*.gguf")):
        print("writing a random 1.1B-shaped F16 model once (about a minute) ...", file=sys.stderr)
    return cached_tiny_llama(OUT, **shape)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="starter", help="starter, large or a GGUF path (default: starter)")
    parser.add_argument("--type", dest="types", action="append", help="target type (default: Q8_0 and Q4_K_M)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    types = [sizes.normalize_type(t) for t in (args.types or ["Q8_0", "Q4_K_M"])]
    silence_llama()
    src = {"starter": starter_f16, "large": large_f16}.get(args.source, lambda: Path(args.source))()
    info = sizes.read_source(src).info
    ways = {"app": app, "in-process": in_process}
    if LLAMA_QUANTIZE.exists():
        ways["llama-quantize"] = tool
    else:
        print(f"note: {LLAMA_QUANTIZE} is missing (benchmarks/build_llama_bench.sh builds it); comparing with "
              "the in-process call only", file=sys.stderr)
    figures = {"source": str(src), "source_bytes": info.size_bytes, "file_type": info.file_type,
               "threads": args.threads, "repeat": args.repeat, "types": {}}
    with tempfile.TemporaryDirectory(dir=OUT if OUT.exists() else None) as tmp:
        out = Path(tmp) / "out.gguf"
        for qtype in types:
            times: dict[str, list[float]] = {w: [] for w in ways}
            for rep in range(args.repeat + 1):  # the first round warms the page cache, not timed
                names = list(ways)
                names = names[rep % len(names):] + names[:rep % len(names)]  # each goes first in turn
                for name in names:
                    way = ways[name]
                    t0 = time.perf_counter()
                    way(src, out, qtype, args.threads)
                    elapsed = time.perf_counter() - t0
                    size = out.stat().st_size
                    out.unlink()
                    if rep:
                        times[name].append(elapsed)
            ref = "llama-quantize" if "llama-quantize" in ways else "in-process"
            ratios = [a / r for a, r in zip(times["app"], times[ref])]
            figures["types"][qtype] = {
                "output_bytes": size, **{f"{w}_s": [round(t, 3) for t in ts] for w, ts in times.items()},
                "reference": ref, "app_over_reference": round(statistics.median(ratios), 4),
                "app_minus_reference_s": round(statistics.median(times["app"]) - statistics.median(times[ref]), 3),
                # the fastest run of each: the least disturbed by other programs on a busy machine
                "best_app_over_reference": round(min(times["app"]) / min(times[ref]), 4),
            }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"source: {Path(figures['source']).name} ({format_size(info.size_bytes)}, {info.file_type}), "
          f"{args.threads} threads, median of {args.repeat} (ratio: median of each round's; best: fastest runs)")
    print(f"{'type':<8} {'output':>10} " + " ".join(f"{w:>15}" for w in ways)
          + f" {'app / ref':>10} {'app - ref':>10} {'best ratio':>10}")
    for qtype, f in figures["types"].items():
        cells = " ".join(f"{statistics.median(f[w + '_s']):>13.2f} s" for w in ways)
        print(f"{qtype:<8} {format_size(f['output_bytes']):>10} {cells} {f['app_over_reference']:>10.3f} "
              f"{f['app_minus_reference_s']:>8.2f} s {f['best_app_over_reference']:>10.3f}")
    print(f"reference: {figures['types'][types[0]]['reference']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
