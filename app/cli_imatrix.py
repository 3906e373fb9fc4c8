"""`workbench imatrix`: compute an importance matrix for `workbench quantize --imatrix`.

SOURCE is a GGUF (llama.cpp evaluates it through its eval callback) or a Hugging Face checkpoint
folder (PyTorch forward hooks; names mapped as the converter maps them). The text is --text FILE, or
the calibration text shipped in resources/calibration when omitted. Chunks of --ctx tokens (512, as
llama-imatrix), at most --chunks of them. Progress per chunk on stderr; stdout gets the output path
(with --json: an object with path, engine, entries, chunks, n_tokens, seconds, peak_rss_bytes).
Ctrl-C stops it and leaves no partial file (exit 130).
"""
from __future__ import annotations

import json
import sys

from app.cli import ProgressLine, run_cancellable

EXIT_INTERRUPTED = 130


def add_imatrix_parser(subparsers) -> None:
    """Declare `workbench imatrix`."""
    from app.cli import positive_int

    p = subparsers.add_parser(
        "imatrix", help="compute an importance matrix (for better quantization at 4 bits and below)",
        description="Compute an importance matrix in llama.cpp's GGUF imatrix format: per weight matrix, the "
                    "mean of the squared input activations per column over a calibration text. Use it with "
                    "`workbench quantize --imatrix FILE` (or llama-quantize --imatrix).")
    p.add_argument("source", metavar="SOURCE",
                   help="a .gguf model (or a name from `workbench models`), or a Hugging Face checkpoint folder")
    p.add_argument("--text", metavar="FILE", default=None,
                   help="calibration text (plain UTF-8; default: the English mix shipped with the app)")
    p.add_argument("--out", metavar="FILE.gguf", default=None,
                   help="output file (default: <source>.imatrix.gguf beside the source)")
    p.add_argument("--ctx", type=positive_int, default=512, metavar="N", help="tokens per chunk (default 512)")
    p.add_argument("--chunks", type=positive_int, default=None, metavar="N",
                   help="use at most N chunks (default: the whole text)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="threads (default: the physical cores)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    p.add_argument("--json", action="store_true", help="print a JSON object describing the result")
    p.set_defaults(func=cmd_imatrix)


def _source(text: str):
    """A folder or an existing path as it is; otherwise a model name from the library."""
    from pathlib import Path

    from runtime.models.library import resolve_model

    path = Path(text).expanduser()
    return path if path.exists() else resolve_model(text)


def cmd_imatrix(args) -> int:
    from pathlib import Path

    from runtime.compress.imatrix import default_calibration_path
    from runtime.compress.imatrix_run import compute_imatrix, default_imatrix_path, source_kind
    from runtime.errors import Cancelled
    from runtime.jobs import CancelToken
    from runtime.models.gguf_info import format_size
    from runtime.models.library import readable

    source = Path(_source(args.source))
    kind = source_kind(source)
    out = Path(args.out).expanduser() if args.out else default_imatrix_path(source)
    text = Path(args.text).expanduser() if args.text else default_calibration_path()
    print(f"{readable(source.name)}: importance matrix with {'llama.cpp' if kind == 'gguf' else 'PyTorch'} "
          f"from {readable(text.name)}, chunks of {args.ctx} tokens -> {readable(str(out))}", file=sys.stderr)
    line = ProgressLine()
    cancel = CancelToken()
    result, error = run_cancellable(
        lambda: compute_imatrix(source, text, out, ctx=args.ctx, chunks=args.chunks, threads=args.threads or 0,
                                overwrite=args.overwrite, progress=line.show, cancel=cancel),
        cancel, "imatrix")
    line.end()
    if isinstance(error, Cancelled) or cancel.cancelled:
        print("interrupted: no partial file was left.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if error is not None:
        raise error
    peak = format_size(result.peak_rss_bytes) if result.peak_rss_bytes else "?"
    print(f"{result.entries} matrices from {result.chunks} chunks ({result.n_tokens:,} tokens in the text) in "
          f"{result.seconds:.1f} s, peak memory {peak}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(readable(str(result.path)))
    return 0
