"""`workbench search` and `workbench files`: find models on Hugging Face and see which file runs here.

Both use the same runtime as the Models tab (runtime.hub.search, runtime.hub.repo, runtime.hub.choices)
and honour HF_ENDPOINT, HF_TOKEN (or the token saved in the OS keyring) and HF_HUB_OFFLINE.
"""
from __future__ import annotations

import argparse
import json
import sys

from app.cli import positive_int

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


def add_search_parsers(subparsers) -> None:
    """Declare `workbench search` and `workbench files`."""
    p = subparsers.add_parser(
        "search", help="search Hugging Face for text-generation models",
        description="Search Hugging Face for text-generation models (or, with --catalog, the curated "
                    "beginner catalog, which works offline).")
    p.add_argument("query", metavar="QUERY", nargs="?", default="",
                   help="words in the repo name, e.g. 'qwen 0.5b' (empty: the most popular models)")
    p.add_argument("--limit", type=_limit, default=DEFAULT_LIMIT, metavar="N",
                   help=f"how many results to show (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})")
    p.add_argument("--kind", choices=("all", "gguf", "checkpoint"), default="all",
                   help="gguf: repos of GGUF files (ready to chat); checkpoint: original safetensors weights "
                        "(convert them first); all (default): both")
    p.add_argument("--sort", choices=("downloads", "likes", "updated"), default="downloads",
                   help="order of the results, highest or newest first (default: downloads)")
    p.add_argument("--catalog", action="store_true",
                   help="search only the curated beginner catalog (works offline)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_search)

    f = subparsers.add_parser(
        "files", help="list a repo's files: sizes, quant types, whether each fits here, the one to take",
        description="List the model files of a Hugging Face repo with their size, quantization and a "
                    "fits / tight / too big verdict for this machine, and recommend one.")
    f.add_argument("repo", metavar="REPO", help="organisation/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF")
    f.add_argument("--ctx", type=positive_int, default=None, metavar="N",
                   help="context length the memory estimate assumes (default: 4096, or the model's own if smaller)")
    f.add_argument("--revision", default=None, metavar="REV", help="branch, tag or commit (default: main)")
    f.add_argument("--cpu", action="store_true", help="judge against RAM only, even where a GPU could be used")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.set_defaults(func=cmd_files)


def _limit(text: str) -> int:
    value = positive_int(text)
    if value > MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"at most {MAX_LIMIT} results, got {value}")
    return value


def _token() -> str | None:
    from runtime.hub.token import get_token

    return get_token()


def _number(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


# --- search -------------------------------------------------------------------------------------

def cmd_search(args) -> int:
    """`workbench search`: a table (or JSON) of repos from Hugging Face or the catalog."""
    from runtime.errors import HubOffline
    from runtime.hub.catalog import catalog_summaries
    from runtime.hub.search import ModelSearch

    if args.catalog:
        results = catalog_summaries(args.query, kind=args.kind)
        return _print_results(args, results[:args.limit], has_more=len(results) > args.limit, source="catalog")
    search = ModelSearch(args.query, kind=args.kind, sort=args.sort, page_size=min(args.limit, 100),
                         token=_token())
    results = []
    try:
        while search.has_more and len(results) < args.limit:
            results += search.next_page()
    except HubOffline as exc:
        command = " ".join(["workbench search --catalog", *([repr(args.query)] if args.query else [])])
        exc.hint = f"Search the beginner catalog instead: `{command}`. {HubOffline.default_hint}"
        raise
    more = search.has_more or len(results) > args.limit
    return _print_results(args, results[:args.limit], has_more=more, source="huggingface")


def _print_results(args, results, *, has_more: bool, source: str) -> int:
    from runtime.models.library import readable

    if args.json:
        print(json.dumps({"query": args.query, "kind": args.kind, "sort": args.sort, "source": source,
                          "results": [r.to_dict() for r in results], "has_more": has_more}, indent=2))
        return 0
    if not results:
        where = "in the catalog" if source == "catalog" else "on Hugging Face"
        print(f"No text-generation models match {args.query!r} {where}.", file=sys.stderr)
        return 0
    from app.cli import _table

    if source == "catalog":
        rows = [("REPO", "KIND", "PARAMS", "LICENCE", "ABOUT")]
        rows += [(r.repo_id, r.kind, r.catalog.parameters, r.catalog.licence, r.catalog.description)
                 for r in results]
        print(_table(rows))
    else:
        rows = [("REPO", "KIND", "DOWNLOADS", "LIKES", "UPDATED", "LICENCE", "")]
        for r in results:
            marks = [m for m, on in (("catalog", r.catalog is not None), ("gated", r.gated)) if on]
            rows.append((readable(r.repo_id), r.kind, _number(r.downloads), _number(r.likes),
                         (r.last_modified or "-")[:10], readable(r.licence or "-"), ", ".join(marks)))
        print(_table(rows, right_aligned={2, 3}))
    if has_more:
        print(f"note: more results exist; show more with --limit (now {args.limit})", file=sys.stderr)
    return 0


# --- files --------------------------------------------------------------------------------------

def _gpus(cpu_only: bool):
    """The GPUs this llama.cpp build can offload to ([] on a CPU-only build or with --cpu)."""
    if cpu_only:
        return []
    from runtime.engine.local import list_gpus

    return list_gpus()


def cmd_files(args) -> int:
    """`workbench files`: a repo's choices with size, quant, memory estimate, fit and the recommended one."""
    from runtime.hub.choices import model_choices, summarize
    from runtime.hub.repo import fetch_listing

    from runtime.errors import HubOffline

    token = _token()
    try:
        listing = fetch_listing(args.repo, revision=args.revision, token=token)
    except HubOffline as exc:
        exc.hint = f"The models already on this computer: `workbench models`. {HubOffline.default_hint}"
        raise
    gpus = _gpus(args.cpu)
    choices = model_choices(listing, args.ctx, token=token, gpus=gpus)
    in_choices = {f.path for c in choices for f in c.files}
    others = [f for f in listing.files if f.path not in in_choices]
    summary = summarize(choices)
    if args.json:
        print(json.dumps({
            "repo_id": listing.repo_id, "revision": listing.revision, "gated": listing.gated,
            "private": listing.private, "licence": listing.licence,
            "n_ctx": next((c.fit.n_ctx for c in choices if c.fit), args.ctx),
            "gpus": [g.__dict__ for g in gpus],
            "choices": [c.to_dict() for c in choices],
            "recommended": next((c.name for c in choices if c.recommended), None),
            "summary": summary,
            "other_files": [f.to_dict() for f in others],
        }, indent=2))
        return 0
    _print_files(listing, choices, others, summary)
    return 0


def _print_files(listing, choices, others, summary: str) -> None:
    from app.cli import _table
    from runtime.models.gguf_info import format_size
    from runtime.models.library import readable

    facts = [f"licence: {readable(listing.licence)}" if listing.licence else "licence: not stated"]
    if listing.gated:
        facts.append("gated: downloads need a token from an account that accepted its licence")
    if listing.private:
        facts.append("private")
    print(f"{readable(listing.repo_id)} at {listing.revision[:12]} ({'; '.join(facts)})")
    if not choices:
        print("No GGUF model file and no checkpoint here.")
    else:
        judged = next((c.fit for c in choices if c.fit), None)
        if judged is not None:
            after = (" (the checkpoint: as GGUF at F16, after converting it)"
                     if any(c.kind == "checkpoint" for c in choices) else "")
            against = {c.fit.memory: c.fit.available_bytes for c in choices if c.fit}
            free = " and ".join(f"{format_size(n)} of free {memory}" for memory, n in against.items())
            print(f"Memory judged for a {judged.n_ctx:,}-token context against {free}{after}.")
        print()
        rows = [("", "CHOICE", "KIND", "QUANT", "SIZE", "NEEDS", "FIT", "FILE")]
        for c in choices:
            status = {"fits": "fits", "tight": "tight", "too_big": "too big"}[c.fit.status] if c.fit else "?"
            if c.missing:
                status = "incomplete"
            elif c.unusable:
                status = "unusable"
            rows.append(("*" if c.recommended else "", readable(c.label), c.kind, c.quant or c.dtype or "-",
                         format_size(c.size_bytes), format_size(c.estimate_bytes) if c.estimate_bytes else "?",
                         status, readable(c.name)))
        print(_table(rows, right_aligned={4, 5}))
        notes = sorted({c.note for c in choices if c.note})
        for note in notes:
            print(f"note: {readable(note)}")
        print()
    print(readable(summary))
    if others:
        listed = ", ".join(f"{readable(f.path)} ({format_size(f.size)})" for f in others[:8])
        more = f" and {len(others) - 8} more" if len(others) > 8 else ""
        print(f"Other files: {listed}{more}")
