"""`workbench serve`: serve a local GGUF model to other apps over an OpenAI-compatible API.

The same engine process as the Chat tab's "Serve to other apps" switch: the model is loaded (after
the same fit check as `workbench chat`), then the engine opens a second listener with its own API
key on 127.0.0.1 (this computer only) unless --host names another address, which prints a
warning. The base URL, the key and a ready `curl` line are printed; Ctrl-C stops serving (exit 0).
``--parallel N`` lets N requests be decoded together (see ``runtime.engine.scheduler``).
"""
from __future__ import annotations

import argparse
import sys
import time

DEFAULT_PORT = 8080   # llama-server's: tools set up for it work unchanged
WATCH_S = 0.5         # how often the engine is checked while serving


def add_serve_parser(subparsers) -> None:
    from runtime.engine.types import LoadOptions

    load = LoadOptions()
    p = subparsers.add_parser(
        "serve", help="Serve a local model to other apps (OpenAI-compatible API on 127.0.0.1).",
        description="Load a local GGUF model and serve its OpenAI-compatible API (/v1/chat/completions, "
                    "/v1/models) to other apps on this computer, with an API key, until Ctrl-C.")
    p.add_argument("model", help="path to a .gguf file, or a name from `workbench models`")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; another address lets "
                        "other computers on the network reach the model)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="the key other apps must send (default: a new random key, printed)")
    p.add_argument("--threads", type=int, default=load.n_threads)
    p.add_argument("--ctx", type=int, default=load.n_ctx, help="context length in tokens")
    p.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="requests decoded at once, in one batch, each with its own context of --ctx tokens "
                        "(default 1: one at a time, reusing the KV cache across a chat's turns)")
    from app.cli_chat import parse_gpu_layers

    p.add_argument("--gpu-layers", type=parse_gpu_layers, default=None, metavar="N|all|auto",
                   help="layers to offload to the GPU: N, 'all' or -1 for all, 'auto' (default)")
    p.add_argument("--force", action="store_true", help="load even if the model looks too big for free RAM")
    p.set_defaults(func=cmd_serve)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use a number from 1 to 65535")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    from app.cli_chat import check_model_fits
    from runtime.engine.local import LocalEngine, is_loopback
    from runtime.engine.types import LoadOptions
    from runtime.errors import WorkbenchError
    from runtime.models.library import readable, resolve_model

    options = LoadOptions(n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers,
                          n_parallel=args.parallel)
    try:
        options.validate()
    except ValueError as exc:
        raise WorkbenchError(str(exc), hint="See `workbench serve --help` for what each option takes.") from None
    host = args.host.strip()
    if not host:
        raise WorkbenchError("--host is empty.", hint="Leave it out to serve on 127.0.0.1 (this computer only).")
    path = resolve_model(args.model)
    check_model_fits(path, args.ctx * args.parallel, args.force)
    if not is_loopback(host):
        print(f"warning: serving on {host}: other computers that can reach this address can use the model "
              "(with the API key). Leave out --host to serve this computer only.", file=sys.stderr)
    engine = LocalEngine(path, options)
    served = None
    try:
        print(f"Loading {readable(path.name)}…", file=sys.stderr, flush=True)
        engine.start()
        served = engine.serve(host, args.port, args.api_key)
        print(f"Serving {readable(path.name)} ({engine.placement}) to other apps.")
        print(f"Base URL: {served.base_url}")
        print(f"API key:  {served.api_key}")
        print("Try it:")
        print(f"  {served.curl_command()}")
        print("Press Ctrl-C to stop.", flush=True)
        while engine.alive:
            time.sleep(WATCH_S)
        engine.wait_exit(2.0)
        raise engine.crash_error("idle")
    except KeyboardInterrupt:
        if served is None:
            raise  # interrupted while loading: `workbench` says so (exit 130)
        print("Stopped serving.", file=sys.stderr)
        return 0
    finally:
        engine.stop()
