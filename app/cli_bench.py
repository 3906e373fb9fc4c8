"""`workbench bench`: measure GGUF variants the same way (speed, memory, and with --quality their
perplexity and KL divergence against a reference) and keep the run in the history.

Progress goes to stderr; stdout gets a table, or with --json a list with one object per model
(``VariantResult.flat()``: size_bytes, load_s, pp_tokens_per_s, tg_tokens_per_s, ttft_s,
peak_rss_bytes, and with --quality perplexity, kld_mean, kld_p99, top1_agreement, ...), then the
plain-words summary on stderr. A model that fails or does not fit gets a row with its reason; the
exit status is then 2. Ctrl-C stops the run (finished rows stay in the history; exit 130).
"""
from __future__ import annotations

import json
import sys

from app.cli import ProgressLine, run_cancellable

EXIT_INTERRUPTED = 130


def add_bench_parser(subparsers) -> None:
    """Declare `workbench bench`."""
    from app.cli import positive_int

    p = subparsers.add_parser(
        "bench", help="measure speed, memory and quality of GGUF variants",
        description="Measure each model in a fresh process with the same settings: load time, prompt and "
                    "generation tokens/s (llama-bench's pp512 and tg128), time to first token, peak memory; "
                    "with --quality also perplexity and KL divergence against the highest-precision model.")
    p.add_argument("models", nargs="+", metavar="MODEL.gguf", help="GGUF files (paths, or names from `workbench models`)")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="threads (default: the physical cores)")
    p.add_argument("--prompt-tokens", type=positive_int, default=512, metavar="N", help="prompt test size (512)")
    p.add_argument("--gen-tokens", type=positive_int, default=128, metavar="N", help="generation test size (128)")
    p.add_argument("--reps", type=positive_int, default=3, metavar="N", help="repetitions after a warm-up (3)")
    p.add_argument("--ctx", type=positive_int, default=512, metavar="N",
                   help="context size; the quality text is scored in chunks of this many tokens (512)")
    p.add_argument("--quality", action="store_true", help="also measure perplexity and KL divergence")
    p.add_argument("--text", metavar="FILE", default=None, help="text for --quality (default: the built-in one)")
    p.add_argument("--reference", metavar="FILE", default=None,
                   help="the quality reference (default: the highest-precision model given)")
    p.add_argument("--json", action="store_true", help="print a JSON list with one object per model")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from runtime.bench.results import SpeedOptions
    from runtime.bench.run import run_benchmark
    from runtime.errors import BenchError, Cancelled
    from runtime.jobs import CancelToken
    from runtime.models.library import resolve_model
    from runtime.store.bench_runs import BenchStore

    if (args.text or args.reference) and not args.quality:
        raise BenchError("--text and --reference only apply with --quality.", hint="Add --quality.")
    models = [str(resolve_model(m)) for m in args.models]
    reference = str(resolve_model(args.reference)) if args.reference else None
    options = SpeedOptions(threads=args.threads, n_ctx=args.ctx, prompt_tokens=args.prompt_tokens,
                           gen_tokens=args.gen_tokens, reps=args.reps)
    line = ProgressLine()
    cancel = CancelToken()

    def on_result(row) -> None:
        line.end()
        print(f"{row.name}: {_row_words(row)}", file=sys.stderr)

    with BenchStore() as store:
        run, error = run_cancellable(
            lambda: run_benchmark(models, options, quality=args.quality, text_path=args.text,
                                  reference_path=reference, store=store, on_result=on_result,
                                  progress=line.show, cancel=cancel),
            cancel, "bench")
    line.end()
    if isinstance(error, Cancelled) or cancel.cancelled:
        print("interrupted: the finished models are kept in the history.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if error is not None:
        raise error
    if args.json:
        print(json.dumps([r.flat() for r in run.results], indent=2))
    else:
        _print_table(run)
    from runtime.bench.summary import summarize

    print(summarize(run.results, run.reference_path), file=sys.stderr)
    return 2 if any(r.status != "ok" for r in run.results) else 0


def _row_words(row) -> str:
    if row.status != "ok":
        return f"{row.status}: {row.error}"
    s, q = row.speed, row.quality
    words = [f"pp {s.pp_tokens_per_s.median:.1f} t/s", f"tg {s.tg_tokens_per_s.median:.1f} t/s",
             f"TTFT {s.ttft_s.median * 1000:.0f} ms"]
    if q is not None:
        words.append(f"PPL {q.perplexity:.3f}" + ("" if q.is_reference else f", KLD {q.kld_mean:.4f}"))
    if row.note:
        words.append(row.note)
    return ", ".join(words)


def _print_table(run) -> None:
    from runtime.models.gguf_info import format_size

    quality = any(r.quality for r in run.results)
    head = f"{'model':<34} {'size':>10} {'load':>7} {'pp t/s':>9} {'tg t/s':>8} {'TTFT':>8} {'memory':>10}"
    if quality:
        head += f" {'PPL':>9} {'KLD':>8} {'KLD99':>8} {'top-1':>7}"
    print(head)
    for r in run.results:
        name = (r.name[:31] + "...") if len(r.name) > 34 else r.name
        if r.status != "ok":
            print(f"{name:<34} {format_size(r.size_bytes):>10} {r.status}: {r.error}")
            continue
        s, q = r.speed, r.quality
        line = (f"{name:<34} {format_size(r.size_bytes):>10} {s.load_s:>6.2f}s {s.pp_tokens_per_s.median:>9.1f} "
                f"{s.tg_tokens_per_s.median:>8.1f} {s.ttft_s.median * 1000:>6.0f}ms "
                f"{format_size(s.peak_rss_bytes) if s.peak_rss_bytes else '?':>10}")
        if quality and q is not None:
            line += f" {q.perplexity:>9.3f} {q.kld_mean:>8.4f} {q.kld_p99:>8.4f} {q.top1_agreement * 100:>6.1f}%"
            line += "  (reference)" if q.is_reference else ""
        elif r.note:
            line += f"  {r.note}"
        print(line)
