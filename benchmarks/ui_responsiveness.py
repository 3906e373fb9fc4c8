"""How the window behaves while a long reply streams in, and what the app costs in memory.

    .venv/bin/python benchmarks/ui_responsiveness.py [--source markdown|model] [--tokens 2000] [--threads 2]

Opens the real main window (offscreen unless QT_QPA_PLATFORM says otherwise). A 5 ms QTimer probes
the event loop: every gap beyond its interval is a stall. Stalls are reported for the whole reply and
for its first and last quarter, which is where an O(n^2) re-render would show.

--source markdown (default): a ~2000-token markdown reply (headings, paragraphs, nested lists, code
  blocks, tables, quotes) is streamed into the Chat tab's transcript after 20 earlier messages, in the
  pieces and at the pace the chat session delivers them (every 40 ms, --rate tokens/s; a token is
  taken as ~4 characters). This is the rendering path a real reply takes; no model needed.
--source model: loads the starter model and streams one reply of --tokens tokens from the engine
  (asked to ignore the end-of-text token so the length is exact); also reports memory: RSS of the
  app + the engine, minus the model file.
Prints figures; not a test.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("WORKBENCH_HOME", tempfile.mkdtemp(prefix="workbench-bench-"))

PROBE_MS = 5
FLUSH_MS = 40  # how often the chat session hands text to the view


def wait_for(signal, timeout_s: float):
    """Run the event loop until ``signal`` fires; return its arguments."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop, result = QEventLoop(), []
    signal.connect(lambda *args: (result.append(args), loop.quit()))
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    if not result:
        sys.exit(f"timed out after {timeout_s} s")
    return result[0]


class StallProbe:
    """Records, for each firing of a fast timer, how late it came (ms) and when (s since start)."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.samples: list[tuple[float, float]] = []
        self.cpu_samples: list[tuple[float, float]] = []  # UI-thread CPU ms used between two ticks
        self._last = time.perf_counter()
        self._last_cpu = time.thread_time()
        self._timer = QTimer()
        self._timer.setInterval(PROBE_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        self.samples.append((now, (now - self._last) * 1000 - PROBE_MS))
        self.cpu_samples.append((now, (cpu - self._last_cpu) * 1000))
        self._last, self._last_cpu = now, cpu

    def stop(self) -> None:
        self._timer.stop()

    def worst(self, start: float, end: float, cpu: bool = False) -> tuple[float, float]:
        """(max stall, 99th percentile stall) in ms between two perf_counter times.

        ``cpu``: the same for the CPU time the UI thread used between ticks (the stall without the
        time other processes took the core: what the app itself costs).
        """
        stalls = sorted(s for t, s in (self.cpu_samples if cpu else self.samples) if start <= t <= end) or [0.0]
        return stalls[-1], stalls[int(0.99 * (len(stalls) - 1))]


def markdown_reply(tokens: int) -> str:
    """A long markdown reply of about ``tokens`` tokens (~4 characters each), varied like a real one."""
    section = """## Step {i}: set up part {i}

This part explains *why* step {i} matters, with **bold words**, `inline code` and a [link](https://example.org/{i}).
It runs over two lines of plain text so that the paragraph wraps in the window.

1. Open the settings and find item {i}
2. Change it:
   - keep the default when unsure
   - otherwise use `value_{i}`
3. Save

```python
def step_{i}(values: list[int]) -> int:
    \"\"\"Add up the values of step {i}.\"\"\"
    total = 0
    for value in values:  # each one
        total += value * {i}
    return total
```

> Note: step {i} can be skipped if nothing changed.

| Setting | Value | Effect |
|:--------|------:|:------:|
| size    | {i}0 MB | smaller |
| speed   | {i} x | faster |

"""
    parts, i = [], 1
    while sum(len(p) for p in parts) < tokens * 4:
        parts.append(section.format(i=i))
        i += 1
    return "".join(parts)[:tokens * 4].rsplit("\n", 1)[0] + "\n\nThat is all."


def open_chat_window():
    """(app, window, its Chat tab): the real main window, shown, on the Chat tab."""
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow()
    window.show()
    chat = window.chat_tab
    window.tabs.setCurrentWidget(chat)
    return app, window, chat


def stream_markdown(args) -> None:
    from PySide6.QtCore import QTimer

    from runtime.engine.types import ReplyStats

    from types import SimpleNamespace

    app, window, chat = open_chat_window()
    view = chat.view
    history = []
    for n in range(10):
        history.append(SimpleNamespace(id=2 * n + 1, role="user", content=f"Question {n}?", stats=None))
        history.append(SimpleNamespace(id=2 * n + 2, role="assistant", content=markdown_reply(150),
                                       stats=ReplyStats(completion_tokens=150, finish_reason="stop")))
    view.set_messages(history)
    app.processEvents()

    text = markdown_reply(args.tokens)
    per_flush = max(1, round(args.rate * 4 * FLUSH_MS / 1000))  # characters per update
    pieces = [text[i:i + per_flush] for i in range(0, len(text), per_flush)]
    arrivals: list[float] = []
    costs: list[float] = []
    done = []

    def push() -> None:
        if len(arrivals) == len(pieces):
            timer.stop()
            t0 = time.perf_counter()
            view.end_stream(SimpleNamespace(id=99, role="assistant", content=text, stats=ReplyStats(
                completion_tokens=args.tokens, finish_reason="stop")))
            costs.append(time.perf_counter() - t0)
            done.append(time.perf_counter())
            return
        arrivals.append(time.perf_counter())
        t0 = time.perf_counter()
        view.append_stream_text(pieces[len(arrivals) - 1])
        costs.append(time.perf_counter() - t0)

    view.begin_stream()
    probe = StallProbe()
    cpu_before, started = time.process_time(), time.perf_counter()
    timer = QTimer()
    timer.setInterval(FLUSH_MS)
    timer.timeout.connect(push)
    timer.start()
    while not done:
        app.processEvents()
        time.sleep(0.0005)
    for _ in range(20):  # let the last paint happen under the probe
        app.processEvents()
        time.sleep(0.005)
    ended, cpu_used = time.perf_counter(), time.process_time() - cpu_before
    probe.stop()
    first, last = arrivals[0], arrivals[-1]
    quarter = (last - first) / 4
    whole = probe.worst(started, ended)
    early = probe.worst(first, first + quarter)
    late = probe.worst(last - quarter, last)
    own = probe.worst(started, ended, cpu=True)
    doc_chars = view.document().characterCount()
    window.close()
    app.processEvents()
    costs_ms = sorted(c * 1000 for c in costs[:-1])
    print(f"markdown reply: ~{args.tokens} tokens ({len(text):,} characters, {doc_chars:,} in the view after "
          f"{len(history)} earlier messages), {len(pieces)} updates every {FLUSH_MS} ms")
    print(f"event-loop stalls over the reply (5 ms probe): max {whole[0]:.1f} ms, p99 {whole[1]:.1f} ms")
    print(f"  first quarter: max {early[0]:.1f} ms, p99 {early[1]:.1f} ms;  "
          f"last quarter: max {late[0]:.1f} ms, p99 {late[1]:.1f} ms")
    print(f"UI-thread CPU between probe ticks (the stall minus time other processes took): "
          f"max {own[0]:.1f} ms, p99 {own[1]:.1f} ms")
    print(f"render per update: median {costs_ms[len(costs_ms) // 2]:.2f} ms, max {costs_ms[-1]:.2f} ms; "
          f"end of reply {costs[-1] * 1000:.2f} ms")
    print(f"UI process CPU while streaming: {cpu_used:.2f} s over {ended - started:.1f} s "
          f"({cpu_used / (ended - started):.1%} of one core)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("markdown", "model"), default="markdown")
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100.0, help="tokens/s of the markdown replay")
    args = parser.parse_args()
    if args.source == "markdown":
        stream_markdown(args)
    else:
        stream_from_model(args)


def stream_from_model(args) -> None:
    import psutil

    from runtime.engine.types import LoadOptions, SamplingParams
    from runtime.models.library import starter_model_path

    app, window, chat = open_chat_window()
    model = starter_model_path()
    chat.load_local(str(model), LoadOptions(n_ctx=args.tokens + 512, n_threads=args.threads))
    wait_for(chat.sig_model_ready, 120)

    chat.session.request_extra = {"ignore_eos": True}
    chat.settings_panel.set_values("", SamplingParams(max_tokens=args.tokens, seed=1))
    arrivals: list[float] = []
    chat.session.sig_text.connect(lambda _text: arrivals.append(time.perf_counter()))
    probe = StallProbe()
    cpu_before, started = time.process_time(), time.perf_counter()
    chat.send("Write a very long story about a lighthouse keeper and a storm.")
    (message,) = wait_for(chat.sig_reply_finished, 600)
    ended, cpu_used = time.perf_counter(), time.process_time() - cpu_before
    probe.stop()

    engine = psutil.Process(chat.engine.pid)
    app_rss, engine_rss = psutil.Process().memory_info().rss, engine.memory_info().rss
    stats = message.stats
    first, last = arrivals[0], arrivals[-1]
    quarter = (last - first) / 4
    whole = probe.worst(started, ended)
    early = probe.worst(first, first + quarter)
    late = probe.worst(last - quarter, last)
    doc_chars = chat.view.document().characterCount()
    window.close()
    app.processEvents()

    mib = 1024 * 1024
    print(f"reply: {stats.completion_tokens} tokens ({doc_chars:,} characters in the view) at "
          f"{stats.gen_tokens_per_s:.1f} tok/s, TTFT {stats.ttft_s * 1000:.0f} ms; "
          f"{len(arrivals)} text updates reached the view")
    print(f"event-loop stalls over the reply (5 ms probe): max {whole[0]:.1f} ms, p99 {whole[1]:.1f} ms")
    print(f"  first quarter: max {early[0]:.1f} ms, p99 {early[1]:.1f} ms;  "
          f"last quarter: max {late[0]:.1f} ms, p99 {late[1]:.1f} ms")
    print(f"UI process CPU while streaming: {cpu_used:.2f} s over {ended - started:.1f} s "
          f"({cpu_used / (ended - started):.1%} of one core)")
    print(f"memory: app {app_rss / mib:.0f} MiB + engine {engine_rss / mib:.0f} MiB - model file "
          f"{model.stat().st_size / mib:.0f} MiB = overhead {(app_rss + engine_rss - model.stat().st_size) / mib:.0f} MiB")


if __name__ == "__main__":
    main()
