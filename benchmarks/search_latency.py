"""Search latency, runtime side: from the server's answer to the results being available.

    .venv/bin/python benchmarks/search_latency.py [--repos 3000] [--runs 30]

Serves a fake hub (tests/hub_server.py) on loopback with ``--repos`` repos whose results look like
the real hub's (tags, licence tags, dates), then runs ``ModelSearch.next_page`` for first pages and
follow-up pages of 20 and 100 results. For each call it records when huggingface_hub's session had
read the whole response (the server has answered) and when ``next_page`` returned the
RepoSummaries (JSON decoded, kinds, licences and catalog entries set): the difference is the
runtime's share. The time on screen after that is measured by the Models tab's benchmark
(helper C's side). Prints one table. Not a test.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TAGS = ["gguf", "text-generation", "conversational", "en", "base_model:quantized:org/base", "region:us",
        "imatrix", "license:apache-2.0", "endpoints_compatible"]


def serve(n_repos: int):
    from tests.hub_server import FakeHub

    hub = FakeHub().start()
    for i in range(n_repos):
        kind_tags = TAGS if i % 3 else ["safetensors", "transformers", "text-generation", "license:mit", "en"]
        hub.add_repo(f"org{i % 50}/model-{i}-Instruct-GGUF", {"README.md": "x"}, downloads=10 * n_repos - i,
                     likes=i % 97, tags=list(kind_tags), last_modified=f"2026-{1 + i % 12:02d}-01T00:00:00.000Z")
    os.environ["HF_ENDPOINT"] = hub.url
    os.environ.pop("HF_HUB_OFFLINE", None)
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = False
    constants.HF_HUB_DISABLE_IMPLICIT_TOKEN = True
    return hub


def measure(page_size: int, pages: int, runs: int) -> dict[str, list[float]]:
    """Per page index: ms from the full response to next_page's return, and next_page's total."""
    from runtime.hub.search import ModelSearch

    answered: list[float] = []
    original = ModelSearch._get

    def timed_get(self):
        response = original(self)
        answered.append(time.perf_counter())  # the body has been read: the server has answered
        return response

    ModelSearch._get = timed_get
    runtime_ms: dict[str, list[float]] = {"first": [], "next": []}
    total_ms: dict[str, list[float]] = {"first": [], "next": []}
    try:
        for _ in range(runs):
            search = ModelSearch("model", kind="all", sort="downloads", page_size=page_size)
            for page in range(pages):
                started = time.perf_counter()
                results = search.next_page()
                done = time.perf_counter()
                if len(results) != page_size:
                    raise SystemExit(f"expected {page_size} results, got {len(results)}")
                key = "first" if page == 0 else "next"
                runtime_ms[key].append((done - answered[-1]) * 1000)
                total_ms[key].append((done - started) * 1000)
    finally:
        ModelSearch._get = original
    return {"runtime": runtime_ms, "total": total_ms}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    args.repos = max(args.repos, 300)  # three full pages of 100
    os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="search-latency-")
    hub = serve(args.repos)
    try:
        from runtime.hub.search import ModelSearch

        ModelSearch("warm-up").next_page()  # imports, the session's connection pool
        print(f"search_latency: fake hub with {args.repos:,} repos, {args.runs} runs per row; "
              "milliseconds, median / p95 / max")
        print(f"{'page':<22} {'runtime side':>24} {'whole next_page':>24}")
        for page_size in (20, 100):
            figures = measure(page_size, pages=3, runs=args.runs)
            for key in ("first", "next"):
                rt, tot = figures["runtime"][key], figures["total"][key]
                label = f"{key} page of {page_size}"
                print(f"{label:<22} {statistics.median(rt):>9.2f} / {p95(rt):>5.2f} / {max(rt):>5.2f}"
                      f" {statistics.median(tot):>9.2f} / {p95(tot):>5.2f} / {max(tot):>5.2f}")
        print("target: results on screen < 300 ms after the server answers (runtime side above + the UI's part)")
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
