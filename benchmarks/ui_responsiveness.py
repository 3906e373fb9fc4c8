"""How the window behaves while a long reply streams in, and what the app costs in memory.

    .venv/bin/python benchmarks/ui_responsiveness.py [--tokens 2000] [--threads 2]

Opens the real main window (offscreen unless QT_QPA_PLATFORM says otherwise), loads the starter
model in the Chat tab and streams one reply of --tokens tokens (the engine is asked to ignore the
end-of-text token so the length is exact). A 5 ms QTimer probes the event loop: every gap beyond its
interval is a stall. Stalls are reported for the first and the last quarter of the reply, which is
where an O(n^2) re-render would show. Memory: RSS of the app + the engine, minus the model file.
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
        self._last = time.perf_counter()
        self._timer = QTimer()
        self._timer.setInterval(PROBE_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.samples.append((now, (now - self._last) * 1000 - PROBE_MS))
        self._last = now

    def stop(self) -> None:
        self._timer.stop()

    def worst(self, start: float, end: float) -> tuple[float, float]:
        """(max stall, 99th percentile stall) in ms between two perf_counter times."""
        stalls = sorted(s for t, s in self.samples if start <= t <= end) or [0.0]
        return stalls[-1], stalls[int(0.99 * (len(stalls) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import psutil
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from runtime.engine.types import LoadOptions, SamplingParams
    from runtime.models.library import starter_model_path

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow()
    window.show()
    chat = window.chat_tab
    window.tabs.setCurrentWidget(chat)
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
