"""`workbench batch`: run a file of prompts through a local model, N at a time, with resume.

    workbench batch MODEL --prompts prompts.jsonl --parallel 4 --out replies.jsonl [--json]

Each input line is {"id": ..., "prompt": "..."} or {"id": ..., "messages": [...]}; each finished
prompt becomes one output line as soon as it is done (see ``runtime.engine.batch_job``). Run the
same command again after a kill or Ctrl-C and it continues where it stopped. Progress goes to
stderr; --json prints a summary object on stdout at the end. Exit 0, 2 on an error or when some
prompts failed (they are not written, so the next run tries them again), 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import sys

DEFAULT_BATCH_CTX = 2048  # per sequence; N sequences take N times the KV cache


def add_batch_parser(subparsers) -> None:
    from app.cli import positive_int
    from app.cli_chat import parse_gpu_layers
    from runtime.engine.types import LoadOptions, SamplingParams

    defaults = SamplingParams()
    p = subparsers.add_parser(
        "batch", help="Run a file of prompts through a local model, several at once, with resume.",
        description="Run every prompt of a JSON-lines file through a local GGUF model, up to --parallel "
                    "at once (decoded together in one batch), appending each reply to --out as it "
                    "finishes. Run it again to continue a job that was stopped or killed.")
    p.add_argument("model", help="path to a .gguf file, or a name from `workbench models`")
    p.add_argument("--prompts", required=True, metavar="FILE.jsonl",
                   help='one JSON object a line: {"id": 1, "prompt": "..."} or {"id": 1, "messages": [...]}')
    p.add_argument("--out", required=True, metavar="FILE.jsonl", help="results, one JSON line per prompt (appended)")
    p.add_argument("--parallel", type=positive_int, default=4, metavar="N",
                   help="prompts decoded at once (default 4)")
    p.add_argument("--max-tokens", type=positive_int, default=defaults.max_tokens, metavar="N",
                   help=f"reply length limit in tokens (default {defaults.max_tokens})")
    p.add_argument("--temperature", type=float, default=defaults.temperature, metavar="T",
                   help=f"sampling temperature (default {defaults.temperature}; 0: greedy, the same reply every run)")
    p.add_argument("--ctx", type=positive_int, default=DEFAULT_BATCH_CTX, metavar="N",
                   help=f"context length of each sequence in tokens (default {DEFAULT_BATCH_CTX})")
    p.add_argument("--threads", type=positive_int, default=LoadOptions().n_threads)
    p.add_argument("--gpu-layers", type=parse_gpu_layers, default=None, metavar="N|all|auto",
                   help="layers to offload to the GPU: N, 'all' or -1 for all, 'auto' (default)")
    p.add_argument("--force", action="store_true", help="load even if the model looks too big for free RAM")
    p.add_argument("--json", action="store_true", help="print a summary object on stdout at the end")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    from app.cli import EXIT_ERROR, EXIT_OK, ProgressLine, run_cancellable
    from app.cli_chat import check_model_fits
    from runtime.engine.batch_job import read_prompts, run_batch
    from runtime.errors import Cancelled
    from runtime.jobs import CancelToken
    from runtime.models.library import readable, resolve_model

    read_prompts(args.prompts)  # a bad file is reported before anything else happens
    path = resolve_model(args.model)
    check_model_fits(path, args.ctx * args.parallel, args.force)
    line = ProgressLine(lambda done, total, message: message)
    cancel = CancelToken()
    summary, error = run_cancellable(lambda: run_batch(
        path, args.prompts, args.out, args.parallel, max_tokens=args.max_tokens, temperature=args.temperature,
        n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers, progress=line.show,
        cancel=cancel), cancel, name="batch")
    line.end()
    if isinstance(error, Cancelled):
        print(f"Stopped: the finished replies are in {readable(str(args.out))}; run the same command to "
              "continue.", file=sys.stderr)
        raise error
    if error is not None:
        raise error
    for failure in summary.failures:
        print(f"failed: id {json.dumps(failure['id'])} (line {failure['line']}): {readable(failure['error'])}",
              file=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        skipped = f", {summary.skipped} already done" if summary.skipped else ""
        print(f"{summary.done} prompts done{skipped}, {summary.failed} failed, in {summary.seconds:.1f} s "
              f"({summary.tokens_per_s:.1f} tokens/s, {summary.parallel} at once) -> {readable(summary.out)}")
    if summary.failed:
        print(f"error: {summary.failed} prompt(s) failed and were not written; run the same command to try "
              "them again.", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK
