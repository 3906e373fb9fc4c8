"""Start-up times: from launching `python -m app` to the window on screen, and `workbench --help`.

    .venv/bin/python benchmarks/startup.py [--runs 5]

Each launch is a fresh process, timed from spawn to the moment the window reports itself shown
(the probe is the one tests/app/test_smoke.py uses). Prints medians and worst cases; not a test.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "app"))

from test_smoke import PROBE  # noqa: E402


def time_window(home: str) -> float:
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"), WORKBENCH_HOME=home)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", PROBE], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("SHOWN"):
            shown = time.perf_counter() - started
            break
    else:
        sys.exit("the window never reported itself shown")
    proc.wait()
    return shown


def time_help() -> float:
    workbench = Path(sys.executable).with_name("workbench")
    started = time.perf_counter()
    subprocess.run([str(workbench), "--help"], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        windows = [time_window(home) for _ in range(args.runs)]
    helps = [time_help() for _ in range(args.runs)]
    print(f"window shown after launch: median {statistics.median(windows):.2f} s, worst {max(windows):.2f} s "
          f"({args.runs} launches; target < 2 s)")
    print(f"workbench --help:          median {statistics.median(helps):.3f} s, worst {max(helps):.3f} s "
          f"(target < 0.5 s)")


if __name__ == "__main__":
    main()
