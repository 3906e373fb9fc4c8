"""`workbench chat`: one prompt, one streamed reply from a local GGUF model (same runtime as the GUI)."""
from __future__ import annotations

import argparse
import json
import sys


def add_chat_parser(subparsers) -> None:
    from runtime.chat_types import LoadOptions, SamplingParams

    load, sampling = LoadOptions(), SamplingParams()
    p = subparsers.add_parser("chat", help="Chat with a local model: one prompt, one streamed reply.",
                              description="Send one prompt to a local GGUF model and stream the reply.")
    p.add_argument("model", help="path to a .gguf file, or a name from `workbench models`")
    p.add_argument("--prompt", required=True, help="the user message")
    p.add_argument("--system", default="", help="system prompt")
    p.add_argument("--max-tokens", type=int, default=sampling.max_tokens)
    p.add_argument("--threads", type=int, default=load.n_threads)
    p.add_argument("--ctx", type=int, default=load.n_ctx, help="context length in tokens")
    p.add_argument("--gpu-layers", type=int, default=0, help="layers to offload to the GPU (-1: all)")
    p.add_argument("--temperature", type=float, default=sampling.temperature)
    p.add_argument("--top-p", type=float, default=sampling.top_p)
    p.add_argument("--top-k", type=int, default=sampling.top_k)
    p.add_argument("--min-p", type=float, default=sampling.min_p)
    p.add_argument("--repeat-penalty", type=float, default=sampling.repeat_penalty)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--force", action="store_true", help="load even if the model looks too big for free RAM")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    p.set_defaults(func=cmd_chat)


def _check_arguments(args) -> None:
    from runtime.errors import WorkbenchError

    if args.ctx < 16:
        raise WorkbenchError(f"--ctx {args.ctx} is too small.", hint="Use a context length of at least 16 tokens.")
    if args.threads < 1:
        raise WorkbenchError(f"--threads {args.threads} must be at least 1.")
    if not args.prompt.strip():
        raise WorkbenchError("--prompt is empty.", hint="Give the model something to answer.")


def cmd_chat(args: argparse.Namespace) -> int:
    from runtime.chat_types import LoadOptions, SamplingParams
    from runtime.engine_process import LocalEngine
    from runtime.errors import InsufficientMemoryError
    from runtime.gguf_info import read_gguf_info
    from runtime.hardware import check_fit
    from runtime.library import resolve_model

    _check_arguments(args)
    path = resolve_model(args.model)
    verdict = check_fit(read_gguf_info(path), args.ctx)
    if verdict.status == "too_big":
        if not args.force:
            raise InsufficientMemoryError(
                f"{path.name} is too big for this machine: it {verdict.detail}.",
                hint="Use a smaller quantization or context length (--ctx), or pass --force to try anyway.",
                path=str(path),
            )
        print(f"warning: {verdict.message}", file=sys.stderr)
    elif verdict.status == "tight":
        print(f"warning: memory is tight: it {verdict.detail}", file=sys.stderr)

    options = LoadOptions(n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers)
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p,
                            repeat_penalty=args.repeat_penalty, max_tokens=args.max_tokens, seed=args.seed)
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.prompt}]
    engine = LocalEngine(path, options)
    try:
        engine.start()
        on_text = None if args.json else (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
        reply = engine.client().stream_chat(messages, params, on_text=on_text)
    finally:
        engine.stop()
    if args.json:
        print(json.dumps({"model": str(path), "reply": reply.text, **reply.stats.to_dict(),
                          "load_s": engine.ready_info.get("load_s")}, indent=2))
    else:
        print()
        print(reply.stats.summary(), file=sys.stderr)
    return 0
