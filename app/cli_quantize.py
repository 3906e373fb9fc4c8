"""`workbench quantize`: make smaller GGUF files from one GGUF, with llama.cpp's own quantizer.

Every target is checked before the first one runs (the source's header, a target its shapes cannot
take, the disk space for all outputs); each output is ``<stem>-<TYPE>.gguf`` beside the source or in
--out-dir. Before running, stderr shows each target's expected size, whether it will fit this machine
for chat, and what the model's shapes do to it; then progress per tensor. stdout gets the output
paths (with --json: a list of objects with path, type, expected and real size). Ctrl-C stops the
running target (its partial file is removed; exit 130). ``--imatrix FILE`` quantizes with an importance
matrix (from `workbench imatrix` or llama-imatrix): the outputs are then ``<stem>-imat-<TYPE>.gguf`` and
the types that need one (IQ2_XXS, IQ1_S, ...) are allowed.
"""
from __future__ import annotations

import json
import sys

from app.cli import ProgressLine, run_cancellable

EXIT_INTERRUPTED = 130


def add_quantize_parser(subparsers) -> None:
    """Declare `workbench quantize`."""
    from app.cli import positive_int

    p = subparsers.add_parser(
        "quantize", help="quantize a GGUF model to smaller types (Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, ...)",
        description="Quantize a GGUF file with llama.cpp's quantizer, one output per --type, named "
                    "<stem>-<TYPE>.gguf. Main types: Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0; `--type list` shows "
                    "all of them with their quality notes.")
    p.add_argument("model", metavar="IN.gguf", help="the source GGUF (a path, or a name from `workbench models`)")
    p.add_argument("--type", dest="types", metavar="TYPE", action="append", required=True,
                   help="target type; repeat it (or separate with commas) for several, run in order")
    p.add_argument("--out-dir", metavar="DIR", default=None, help="folder for the outputs (default: the source's)")
    p.add_argument("--requantize", action="store_true",
                   help="allow an already-quantized source (quality suffers twice)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--imatrix", metavar="FILE", default=None,
                   help="an importance matrix (GGUF, from `workbench imatrix` or llama-imatrix): better quality "
                        "at 4 bits and below; needed for IQ1/IQ2/IQ3_XXS; outputs named <stem>-imat-<TYPE>.gguf")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="threads for llama.cpp (default: all cores)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list: path, type, expected_bytes, real_bytes, seconds per output")
    p.set_defaults(func=cmd_quantize)


def _wanted_types(args) -> list[str]:
    return [t.strip() for text in args.types for t in text.split(",") if t.strip()]


def cmd_quantize(args) -> int:
    from pathlib import Path

    from runtime.compress import quantize
    from runtime.errors import QuantizeError
    from runtime.models.library import resolve_model

    wanted = _wanted_types(args)
    if [t.lower() for t in wanted] == ["list"]:
        return _print_types()
    if not wanted:
        raise QuantizeError("No target type was given.", hint="Pass --type Q4_K_M (or `--type list`).")
    src = resolve_model(args.model)
    out_dir = None
    if args.out_dir:
        out_dir = Path(args.out_dir).expanduser()
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QuantizeError(f"The folder {out_dir} cannot be created: {exc.strerror or exc}",
                                hint="Choose another folder.", path=str(out_dir)) from None
    imatrix = Path(args.imatrix).expanduser() if args.imatrix else None
    checked = quantize.check_queue(src, wanted, out_dir=out_dir, requantize=args.requantize,
                                   overwrite=args.overwrite, imatrix=imatrix)
    _print_plan(checked)
    if imatrix is not None:
        from runtime.compress.imatrix import load

        print(f"importance matrix: {imatrix.name} ({load(imatrix).describe()})", file=sys.stderr)
    args.imatrix = imatrix
    return _run(args, src, checked)


def _print_plan(checked) -> None:
    from runtime.compress.sizes import target_fits
    from runtime.models.gguf_info import format_size
    from runtime.models.hardware import FIT_LABELS

    source = checked[0][0].source
    fits = target_fits(source.path, [plan.qtype for plan, _ in checked])
    print(f"{source.info.name}: {format_size(source.info.size_bytes)} ({source.info.file_type})", file=sys.stderr)
    for plan, out in checked:
        fit = fits[plan.qtype]
        print(f"  {plan.qtype:<7} about {format_size(plan.expected_bytes):>10}  {FIT_LABELS[fit.status]} for chat "
              f"({fit.detail})  -> {out}", file=sys.stderr)
        if plan.problem:
            print(f"    note: {plan.problem}", file=sys.stderr)
    if source.quantized_types:
        print(f"warning: the source is already quantized ({', '.join(source.quantized_types)}): "
              "quality suffers twice.", file=sys.stderr)


def _run(args, src, checked) -> int:
    from runtime.compress import quantize
    from runtime.errors import Cancelled
    from runtime.jobs import CancelToken
    from runtime.models.gguf_info import format_size
    from runtime.models.library import readable

    line = ProgressLine()
    cancel = CancelToken()
    items = [quantize.QueueItem(plan.qtype, out) for plan, out in checked]

    def on_result(result) -> None:
        line.end()
        if result.ok:
            print(f"{result.qtype}: {format_size(result.real_bytes)} (expected {format_size(result.expected_bytes)}) "
                  f"in {result.seconds:.1f} s -> {readable(str(result.out_path))}", file=sys.stderr)

    # Ctrl-C becomes a cancel: the child is killed and its partial file removed before we exit.
    results, error = run_cancellable(
        lambda: quantize.quantize_queue(src, items, requantize=args.requantize, overwrite=args.overwrite,
                                        threads=args.threads or 0, imatrix=args.imatrix,
                                        progress=line.show, cancel=cancel,
                                        on_result=on_result),
        cancel, "quantize")
    line.end()
    if isinstance(error, Cancelled) or cancel.cancelled:
        print("interrupted: the unfinished output was removed.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if error is not None:
        raise error
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            if r.ok:
                print(readable(str(r.out_path)))
    failed = [r for r in results if r.error is not None]
    for r in failed:
        print(f"error: {r.qtype}: {readable(r.error.message)}", file=sys.stderr)
        if r.error.hint:
            print(f"hint: {readable(r.error.hint)}", file=sys.stderr)
    return 2 if failed else 0


def _print_types() -> int:
    from runtime.compress import quantize, sizes

    print("Main types (best quality first):")
    for t in quantize.quantize_types():
        print(f"  {t:<8} {sizes.QUALITY_NOTES.get(t, '')}")
    print("Advanced types:")
    for t in quantize.advanced_types():
        print(f"  {t:<8} {sizes.QUALITY_NOTES.get(t, '')}")
    needs = quantize.imatrix_types()
    if needs:
        print(f"With an importance matrix only (--imatrix FILE): {', '.join(needs)}")
    print(f"Figures: {sizes.QUALITY_SOURCE}.")
    return 0


