"""`workbench chat`: one prompt, one streamed reply from a local GGUF model (same runtime as the GUI).

The prompt and the reply are saved as a conversation in the app's store (a new one, or the one named
by --conversation), through the same ``runtime.chat.session.ConversationSession`` as the Chat tab.
When another program keeps the store locked, the reply is retried, then written to a file (exit 1).
A new conversation starts from the defaults saved with "Save as default" in the Chat tab
(``runtime.chat.defaults``); each option given on the command line overrides its default.
"""
from __future__ import annotations

import argparse
import json
import sys


STORE_BUSY_TIMEOUT_S = 5.0          # how long a write waits for another program's lock on the store
SAVE_RETRY_PAUSES_S = (1.0, 2.0, 4.0)  # then a refused reply is retried after these pauses


def add_chat_parser(subparsers) -> None:
    from runtime.chat.defaults import load_defaults
    from runtime.engine.types import LoadOptions

    defaults = load_defaults()
    load, sampling = LoadOptions(), defaults.sampling
    p = subparsers.add_parser("chat", help="Chat with a local model: one prompt, one streamed reply.",
                              description="Send one prompt to a local GGUF model and stream the reply.")
    p.add_argument("model", help="path to a .gguf file, or a name from `workbench models`")
    p.add_argument("--prompt", required=True, help="the user message")
    p.add_argument("--system", default=None, help="system prompt (default: the saved default, if any)")
    p.add_argument("--max-tokens", type=int, default=sampling.max_tokens,
                   help="most tokens in the reply; -1: as many as the context has room for")
    p.add_argument("--threads", type=int, default=load.n_threads)
    p.add_argument("--ctx", type=int, default=load.n_ctx, help="context length in tokens")
    p.add_argument("--gpu-layers", type=parse_gpu_layers, default=None, metavar="N|all|auto",
                   help="layers to offload to the GPU: N, 'all' or -1 for all, 'auto' (default: all when "
                        "this llama.cpp build has a GPU backend and the model fits in its memory, else 0)")
    p.add_argument("--temperature", type=float, default=sampling.temperature)
    p.add_argument("--top-p", type=float, default=sampling.top_p)
    p.add_argument("--top-k", type=int, default=sampling.top_k)
    p.add_argument("--min-p", type=float, default=sampling.min_p)
    p.add_argument("--repeat-penalty", type=float, default=sampling.repeat_penalty)
    p.add_argument("--seed", type=int, default=sampling.seed)
    p.add_argument("--conversation", type=int, default=None, metavar="ID",
                   help="continue this saved conversation (the Chat tab's too); default: start a new one")
    p.add_argument("--context-policy", choices=("drop_oldest", "stop"), default=None,
                   help="when the conversation outgrows --ctx: drop the oldest messages (the default) or stop "
                        "with an error; saved with the conversation")
    p.add_argument("--force", action="store_true", help="load even if the model looks too big for free RAM")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    p.set_defaults(func=cmd_chat)


def parse_gpu_layers(text: str) -> int | None:
    """``--gpu-layers``: "auto" -> None (the engine decides), "all" or -1 -> -1, N -> N."""
    from runtime.engine.server import parse_gpu_layers as parse

    return parse(text)


def _check_arguments(args):
    """The load options and sampling parameters the arguments ask for, checked."""
    from runtime.engine.types import LoadOptions, SamplingParams
    from runtime.errors import WorkbenchError

    if not args.prompt.strip():
        raise WorkbenchError("--prompt is empty.", hint="Give the model something to answer.")
    options = LoadOptions(n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers)
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p,
                            repeat_penalty=args.repeat_penalty, max_tokens=args.max_tokens, seed=args.seed)
    for what in (options, params):
        try:
            what.validate()
        except ValueError as exc:
            raise WorkbenchError(str(exc), hint="See `workbench chat --help` for what each option takes.") from None
    return options, params


def check_model_fits(path, n_ctx: int, force: bool) -> None:
    """Refuse a model too big for this machine (unless ``force``: then warn), warn when memory is tight."""
    from runtime.errors import InsufficientMemoryError
    from runtime.models.gguf_info import read_gguf_info
    from runtime.models.hardware import check_fit

    verdict = check_fit(read_gguf_info(path), n_ctx)
    if verdict.status == "too_big":
        if not force:
            raise InsufficientMemoryError(
                f"{path.name} is too big for this machine: it {verdict.detail}.",
                hint="Use a smaller quantization or context length (--ctx), or pass --force to try anyway.",
                path=str(path))
        print(f"warning: {verdict.message}", file=sys.stderr)
    elif verdict.status == "tight":
        print(f"warning: memory is tight: it {verdict.detail}", file=sys.stderr)


def cmd_chat(args: argparse.Namespace) -> int:
    from runtime.engine.local import LocalEngine
    from runtime.models.library import resolve_model
    from runtime.store.conversations import ConversationStore

    options, params = _check_arguments(args)
    path = resolve_model(args.model)
    check_model_fits(path, args.ctx, args.force)

    store = ConversationStore(busy_timeout_s=STORE_BUSY_TIMEOUT_S)
    engine = LocalEngine(path, options)
    try:
        if args.conversation is not None:
            store.get_conversation(args.conversation)  # no such conversation: say so before loading
        engine.start()
        chat = _conversation(store, args, path, params, options)
        chat.client = engine.client()
        on_text = None if args.json else (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
        try:
            reply = chat.send(args.prompt, params, on_text=on_text)  # a runtime.chat.session.Turn
        except BaseException:
            if args.conversation is None and not chat.messages():
                store.delete_conversation(chat.conversation_id)  # leave no empty chat behind
            raise
        kept_in = _save_or_keep(chat, reply) if reply.save_error is not None else None
    finally:
        engine.stop()
        store.close()
    if args.json:
        print(json.dumps({"model": str(path), "reply": reply.text, **reply.stats.to_dict(),
                          "load_s": engine.ready_info.get("load_s"),
                          "conversation_id": chat.conversation_id, "dropped": reply.dropped,
                          "placement": engine.placement,
                          "n_gpu_layers": engine.ready_info.get("n_gpu_layers"),  # what was asked for
                          "offload": engine.ready_info.get("offload"),  # what llama.cpp did
                          "saved": kept_in is None, "kept_in_file": str(kept_in) if kept_in else None}, indent=2))
    else:
        print()
        if reply.dropped:
            from runtime.chat.context import forgotten_notice

            print(f"note: {forgotten_notice(reply.dropped)}", file=sys.stderr)
        print(f"conversation {chat.conversation_id} (continue it with --conversation {chat.conversation_id})",
              file=sys.stderr)
        print(f"{reply.stats.summary()} · {engine.placement}", file=sys.stderr)
        if engine.offload is not None:
            print(f"llama.cpp placed it: {engine.offload.summary()}", file=sys.stderr)
    if kept_in is not None:
        print(f"warning: the reply could not be saved in the conversation ({reply.save_error.message}); "
              f"it was written to {kept_in}", file=sys.stderr)
        return 1
    return 0


def _save_or_keep(chat, turn):
    """Retry saving a reply the store refused; None once saved, else the file it was written to."""
    import time

    from runtime.errors import StoreError

    for pause in SAVE_RETRY_PAUSES_S:
        time.sleep(pause)
        try:
            chat.save_reply(turn)
            return None
        except StoreError:
            pass
    return chat.keep_in_file(turn)


def _conversation(store, args, path, params, options):
    """The conversation this prompt goes to: the one named by --conversation, or a new one."""
    from runtime.chat.session import ConversationSession

    if args.conversation is None:
        from runtime.chat.defaults import load_defaults

        defaults = load_defaults()
        system = defaults.system_prompt if args.system is None else args.system
        return ConversationSession.create(store, backend="local", model_ref=str(path), system_prompt=system,
                                          sampling=params, load=options,
                                          context_policy=args.context_policy or defaults.context_policy)
    chat = ConversationSession(store, args.conversation)
    changes = {}
    if args.system:
        changes["system_prompt"] = args.system
    if args.context_policy:
        changes["context_policy"] = args.context_policy
    if changes:
        store.update_conversation(chat.conversation_id, **changes)
    return chat
