"""`python -m app`: the window comes up with no heavy import; arguments go to the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("llama_cpp", "gguf", "matplotlib", "huggingface_hub", "torch", "numpy")

# Runs the real entry point (app.__main__.main with no arguments). A timer queued before the event
# loop starts fires right after the window is shown: it reports, closes the window and quits.
PROBE = f"""
import sys, time
t0 = time.monotonic()
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])

def report():
    shown = [w for w in app.topLevelWidgets() if w.isVisible() and w.windowTitle() == "Model Workbench"]
    heavy = [m for m in {HEAVY!r} if m in sys.modules]
    print("SHOWN", len(shown), round(time.monotonic() - t0, 3), ",".join(heavy) or "-", flush=True)
    for w in shown:
        w.close()
    app.quit()

QTimer.singleShot(0, report)
import app.__main__ as entry
sys.exit(entry.main([]))
"""


def run_probe(home: Path) -> tuple[int, float, str, subprocess.CompletedProcess]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", WORKBENCH_HOME=str(home))
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("SHOWN")), None)
    assert line, f"no window report; rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    _, count, seconds, heavy = line.split()
    return int(count), float(seconds), heavy, proc


def test_window_opens_without_heavy_imports(workbench_home):
    """How fast it opens is measured by benchmarks/startup.py, not asserted here."""
    count, _seconds, heavy, proc = run_probe(workbench_home)
    assert count == 1
    assert heavy == "-", f"imported before the window was shown: {heavy}"
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (workbench_home / "settings.ini").is_file()  # closing saved the window state


def test_arguments_go_to_the_command_line(workbench_home):
    env = dict(os.environ, WORKBENCH_HOME=str(workbench_home))
    proc = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "usage: workbench" in proc.stdout
    assert "PySide6" not in proc.stderr
