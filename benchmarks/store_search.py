"""Conversation search: the trigram index against a scan of every message.

    .venv/bin/python benchmarks/store_search.py [--conversations 2000] [--messages 20]

Fills a temporary store with conversations of chat-like messages, then times the same searches
through ``ConversationStore.list_conversations`` (index) and through the scan it replaces
(the query used for searches shorter than three characters). Prints one table. Not a test.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.store.conversations import ConversationStore, _conversation  # noqa: E402

WORDS = ("model quantization memory context token llama python garden recipe travel music science "
         "history answer question explain example small large fast slow better worse window paper").split()
SCAN = ("SELECT c.* FROM conversations c WHERE instr(workbench_fold(c.title), :q) OR EXISTS (SELECT 1 "
        "FROM messages m WHERE m.conversation_id = c.id AND instr(workbench_fold(m.content), :q)) "
        "ORDER BY c.updated_at DESC, c.id DESC")


def fill(store: ConversationStore, conversations: int, messages: int, rng: random.Random) -> None:
    db = store._connection()
    db.execute("BEGIN")
    for c in range(conversations):
        cur = db.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)",
                         (f"Chat {c}: {' '.join(rng.choices(WORDS, k=3))}", c, c))
        for p in range(messages):
            text = " ".join(rng.choices(WORDS, k=rng.randint(20, 120)))
            db.execute("INSERT INTO messages (conversation_id, position, role, content, created_at)"
                       " VALUES (?, ?, ?, ?, ?)", (cur.lastrowid, p, ("user", "assistant")[p % 2], text, c))
    db.execute("INSERT INTO messages (conversation_id, position, role, content, created_at)"
               " VALUES (1, 999, 'user', 'the zebra crossing', 0)")
    db.execute("COMMIT")


def timed(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, ConversationStore(Path(folder) / "bench.sqlite3") as store:
        started = time.perf_counter()
        fill(store, args.conversations, args.messages, random.Random(1))
        print(f"{args.conversations} conversations x {args.messages} messages written and indexed in "
              f"{time.perf_counter() - started:.1f} s")
        db = store._connection()
        print(f"{'search':>12} {'index':>10} {'scan':>10} {'matches':>8}")
        for query in ("zebra", "quantization", "no such words"):
            index_s = timed(lambda: store.list_conversations(query))
            # both columns build Conversation objects, as list_conversations does
            scan_s = timed(lambda: [_conversation(r) for r in db.execute(SCAN, {"q": query})])
            found = len(store.list_conversations(query))
            print(f"{query:>12} {index_s * 1000:8.1f} ms {scan_s * 1000:8.1f} ms {found:8d}")
        everything_s = timed(lambda: store.list_conversations(""))
        print(f"no search (the plain list): {everything_s * 1000:.1f} ms for "
              f"{len(store.list_conversations(''))} conversations")


if __name__ == "__main__":
    main()
