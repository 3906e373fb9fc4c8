"""`workbench bench`: measure GGUF variants the same way (speed, memory, and with --quality their
perplexity and KL divergence against a reference) and keep the run in the history.

Progress goes to stderr; stdout gets a table, or with --json a list with one object per model
(``VariantResult.flat()``: size_bytes, load_s, pp_tokens_per_s, tg_tokens_per_s, ttft_s,
peak_rss_bytes, and with --quality perplexity, kld_mean, kld_p99, top1_agreement, ...; with
--parallel 1,2,4,8 ``batched``: one {n, tg_tokens_per_s_aggregate, tg_tokens_per_s_per_sequence,
pp_tokens_per_s_aggregate} per N; with --kv-reuse ``kv_reuse``: one {turn, prompt_tokens,
ttft_reuse_s, ttft_fresh_s, evaluated_reuse, evaluated_fresh} per turn; with --original DIR
also the checkpoint in PyTorch, one row per --original-precisions with ``engine`` "pytorch", its FP32
the default --quality reference),
then the plain-words summary and the guides' recipes this run measured (``Recipe:`` lines) on stderr.
A model that fails or does not fit gets a row with its reason; the
exit status is then 2. Ctrl-C stops the run (finished rows stay in the history; exit 130).
"""
from __future__ import annotations

import json
import sys

from app.cli import ProgressLine, run_cancellable

EXIT_INTERRUPTED = 130
AUTO_ORIGINAL = "<from the GGUF headers>"


def precision_list(text: str) -> list[str]:
    """argparse type of --original-precisions: "fp32,int8" as ["fp32", "int8"] (checked by the runner)."""
    return [part.strip().lower() for part in text.split(",") if part.strip()]


def _original_folder(option: str | None, models: list[str]) -> str | None:
    """--original's folder: as given, or for a bare --original the checkpoint the GGUFs name."""
    from runtime.errors import BenchError

    if option is None or option != AUTO_ORIGINAL:
        return option
    from runtime.bench.torch_rows import SOURCE_KEY, find_original

    found = find_original(models)
    if found is None:
        raise BenchError("None of the GGUF files names the checkpoint it was converted from, or that folder is "
                         f"gone (their header key {SOURCE_KEY}).", hint="Give the folder: --original DIR.")
    return str(found)


def add_bench_parser(subparsers) -> None:
    """Declare `workbench bench`."""
    from app.cli import positive_int

    p = subparsers.add_parser(
        "bench", help="measure speed, memory and quality of GGUF variants",
        description="Measure each model in a fresh process with the same settings: load time, prompt and "
                    "generation tokens/s (llama-bench's pp512 and tg128), time to first token, peak memory; "
                    "with --quality also perplexity and KL divergence against the highest-precision model.")
    p.add_argument("models", nargs="*", metavar="MODEL.gguf", help="GGUF files (paths, or names from `workbench models`)")
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
    p.add_argument("--parallel", type=parallel_list, default=[], metavar="N,N,...",
                   help="also measure batching as llama-batched-bench does: N sequences of --prompt-tokens "
                        "each, then --gen-tokens each, decoded together, for each N (e.g. 1,2,4,8; 1 to 64)")
    p.add_argument("--kv-reuse", action="store_true",
                   help="also replay a multi-turn chat and time each turn's first token with the KV cache "
                        "reused and from an empty cache (``kv_reuse`` in --json: one object per turn)")
    p.add_argument("--original", nargs="?", const=AUTO_ORIGINAL, default=None, metavar="DIR",
                   help="also measure the original Hugging Face checkpoint folder DIR in PyTorch (rows with "
                        "engine \"pytorch\"); with --quality its FP32 logits are the default reference. Without "
                        "DIR: the checkpoint the GGUFs were converted from")
    p.add_argument("--original-precisions", type=precision_list, default=["fp32", "bf16", "int8"],
                   metavar="P,P,...", help="the original's precisions: fp32, bf16, fp16, int8 (PyTorch dynamic "
                                           "INT8) (default fp32,bf16,int8)")
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
    original = _original_folder(args.original, models)
    options = SpeedOptions(threads=args.threads, n_ctx=args.ctx, prompt_tokens=args.prompt_tokens,
                           gen_tokens=args.gen_tokens, reps=args.reps, parallel=args.parallel,
                           kv_reuse=args.kv_reuse)
    line = ProgressLine()
    cancel = CancelToken()

    def on_result(row) -> None:
        line.end()
        print(f"{row.name}: {_row_words(row)}", file=sys.stderr)

    with BenchStore() as store:
        run, error = run_cancellable(
            lambda: run_benchmark(models, options, quality=args.quality, text_path=args.text,
                                  reference_path=reference, store=store, on_result=on_result,
                                  original=original, original_precisions=args.original_precisions,
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
    from runtime.bench.recipes import NOT_MEASURED, recipes

    for recipe in recipes(run):   # the guides' claims this run has figures for (the Recipes page)
        if recipe.verdict != NOT_MEASURED:
            print(f"Recipe: {recipe.line()}", file=sys.stderr)
    return 2 if any(r.status != "ok" for r in run.results) else 0


def parallel_list(text: str) -> list[int]:
    """argparse type of --parallel: "1,2,4,8" as [1, 2, 4, 8] (the range is checked with the other options)."""
    import argparse

    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected numbers of sequences separated by commas (e.g. 1,2,4,8), "
                                         f"got {text!r}")
    return values


def batched_words(row) -> str:
    """The batched figures in one line: "batched tg t/s (aggregate/per sequence) at N = 1: 94.0/94.0, ..."."""
    points = ", ".join(f"{b.n}: {b.tg_tokens_per_s_aggregate:.1f}/{b.tg_tokens_per_s_per_sequence:.1f}"
                       for b in row.batched or [])
    return f"batched tg t/s (aggregate/per sequence) at N = {points}"


def _row_words(row) -> str:
    if row.status != "ok":
        return f"{row.status}: {row.error}"
    s, q = row.speed, row.quality
    words = [f"pp {s.pp_tokens_per_s.median:.1f} t/s", f"tg {s.tg_tokens_per_s.median:.1f} t/s",
             f"TTFT {s.ttft_s.median * 1000:.0f} ms"]
    if q is not None:
        words.append(f"PPL {q.perplexity:.3f}" + ("" if q.is_reference else f", KLD {q.kld_mean:.4f}"))
    if row.batched:
        words.append(batched_words(row))
    if row.kv_reuse:
        from runtime.bench.kv_reuse import reuse_speedup

        ratio = reuse_speedup(row.kv_reuse)
        words.append(f"KV cache reused: first token {ratio:.1f}x sooner from turn 2" if ratio is not None
                     else "KV cache: one turn only")
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
        if r.batched:
            print(f"{'':<4}{batched_words(r)}")
