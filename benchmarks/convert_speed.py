"""Checkpoint -> GGUF: this app's converter against llama.cpp's convert_hf_to_gguf.py, time and peak memory.

    .venv/bin/python benchmarks/convert_speed.py [--types f16,q8_0] [--runs 3] [--checkpoint DIR]
                                                [--script PATH/convert_hf_to_gguf.py] [--json]

Without --checkpoint it builds a ~135M-parameter bf16 llama-style checkpoint with random weights
(SmolLM-135M's shape: hidden 576, 30 layers, 9 heads over 3 KV heads, a 49,152-token vocabulary, tied
embeddings) in a temporary folder with transformers (tests/tiny_checkpoints.py), and deletes it
afterwards. Each converter runs as its own child process, one at a time, alternating, ``--runs``
times per output type: the app as ``python -m app convert`` (the whole command, imports included),
llama.cpp's script as ``python convert_hf_to_gguf.py DIR --outfile F --outtype T`` from
llama-cpp-python's source distribution (fetch it: ``pip download --no-deps --no-binary :all:
llama-cpp-python==0.3.36 -d /tmp/lcpp && tar xzf /tmp/lcpp/llama_cpp_python-0.3.36.tar.gz -C /tmp/lcpp``).
Peak memory is each child's own peak resident set (wait4's ru_maxrss); time is wall time. The outputs
are compared too (tensor names, types, shapes and bytes; tokenizer arrays; every metadata key).
Goal: no slower, and at most 0.8x llama.cpp's peak memory. Not a test: run it on an idle machine.
"""
from __future__ import annotations

import argparse
import glob
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
sys.path.insert(0, str(ROOT / "tests"))

SHAPE = dict(hidden=576, layers=30, ffn=1536, heads=9, kv_heads=3, vocab_size=49152, tie=True)


def find_script(named: str | None) -> Path:
    if named:
        return Path(named)
    found = (sorted(glob.glob(str(ROOT / ".venv/llama-cpp-sdist/*/vendor/llama.cpp/convert_hf_to_gguf.py")))
             or sorted(glob.glob("/tmp/lcpp/*/vendor/llama.cpp/convert_hf_to_gguf.py")))  # kept by scripts/setup.sh
    if not found:
        sys.exit("llama.cpp's convert_hf_to_gguf.py was not found: pass --script, or unpack llama-cpp-python's "
                 "sdist into /tmp/lcpp (see this file's docstring)")
    return Path(found[-1])


def run_measured(target: str, argv: list[str], cwd: Path, work: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one child running ``target`` (a script path, or "-m MODULE").

    The child is this file in --measure mode: it runs the target in-process and, at exit, writes its
    own VmHWM (peak resident set since exec). wait4's ru_maxrss would not do: Linux carries the
    parent's high-water mark into a forked child across exec, and this parent holds the model it built.
    """
    peak_file = work / "peak.txt"
    peak_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", str(peak_file), target, *argv]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{target} failed ({done.returncode}):\n{done.stderr.decode(errors='replace')[-3000:]}")
    return seconds, int(peak_file.read_text())


def measure_self(peak_file: str, target: str, argv: list[str]) -> None:
    """--measure mode: run ``target`` as __main__ and record this process's peak resident set at exit."""
    import atexit
    import runpy

    def record() -> None:
        with open("/proc/self/status", encoding="ascii") as fh:
            kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
        Path(peak_file).write_text(str(kib * 1024))

    atexit.register(record)
    if target.startswith("-m "):
        sys.argv = [target[3:], *argv]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(target[3:], run_name="__main__", alter_sys=True)
    else:
        sys.argv = [target, *argv]
        sys.path.insert(0, str(Path(target).parent))
        runpy.run_path(target, run_name="__main__")


def compare(ours: Path, theirs: Path) -> list[str]:
    """Differences between two GGUF files (empty: the same tensors, tokenizer and metadata)."""
    import gguf
    import numpy as np

    a, b = gguf.GGUFReader(ours), gguf.GGUFReader(theirs)
    problems = []
    if [t.name for t in a.tensors] != [t.name for t in b.tensors]:
        problems.append("tensor names or order differ")
    for x, y in zip(a.tensors, b.tensors):
        if (x.tensor_type, list(x.shape)) != (y.tensor_type, list(y.shape)):
            problems.append(f"{x.name}: {x.tensor_type.name}{list(x.shape)} vs {y.tensor_type.name}{list(y.shape)}")
        elif not np.array_equal(np.asarray(x.data).view(np.uint8), np.asarray(y.data).view(np.uint8)):
            problems.append(f"{x.name}: different bytes")
    fa = {k: (f.types, f.contents()) for k, f in a.fields.items() if not k.startswith("GGUF.")}
    fb = {k: (f.types, f.contents()) for k, f in b.fields.items() if not k.startswith("GGUF.")}
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            problems.append(f"metadata {key} differs")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default="f16", help="output types, comma-separated (default: f16)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checkpoint", default=None, help="convert this checkpoint instead of building one")
    parser.add_argument("--script", default=None, help="llama.cpp's convert_hf_to_gguf.py")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    script = find_script(args.script)
    work = Path(tempfile.mkdtemp(prefix="convert_speed_"))
    try:
        if args.checkpoint:
            folder = Path(args.checkpoint)
        else:
            from tiny_checkpoints import build_checkpoint

            print("building a ~135M-parameter bf16 checkpoint ...", file=sys.stderr)
            folder = build_checkpoint("llama", work / "SmolLM-shaped-135M", dtype="bfloat16", **SHAPE)
        from runtime.compress.checkpoint import inspect_checkpoint
        from runtime.models.gguf_info import format_size, param_label

        info = inspect_checkpoint(folder)
        print(f"checkpoint: {info.hf_architecture}, {param_label(info.parameter_count)} parameters "
              f"({info.parameter_count:,}), {info.dtype}, {format_size(info.size_bytes)}", file=sys.stderr)
        results = {}
        for out_type in [t.strip().lower() for t in args.types.split(",") if t.strip()]:
            ours_out, theirs_out = work / f"ours-{out_type}.gguf", work / f"theirs-{out_type}.gguf"
            commands = {
                "app": ("-m app", ["convert", str(folder), "--out", str(ours_out), "--type", out_type,
                                   "--overwrite"], ROOT),
                "llama.cpp": (str(script), [str(folder), "--outfile", str(theirs_out), "--outtype", out_type],
                              script.parent),
            }
            figures = {name: [] for name in commands}
            for run in range(args.runs):
                for name in (commands if run % 2 == 0 else reversed(list(commands))):
                    target, argv, cwd = commands[name]
                    figures[name].append(run_measured(target, argv, cwd, work))
            summary = {}
            for name, runs in figures.items():
                summary[name] = {"seconds_median": statistics.median(s for s, _ in runs),
                                 "seconds": [round(s, 3) for s, _ in runs],
                                 "peak_rss_bytes": max(r for _, r in runs)}
            app, ref = summary["app"], summary["llama.cpp"]
            summary["time_ratio"] = app["seconds_median"] / ref["seconds_median"]
            summary["rss_ratio"] = app["peak_rss_bytes"] / ref["peak_rss_bytes"]
            summary["output_bytes"] = ours_out.stat().st_size
            summary["differences"] = compare(ours_out, theirs_out)
            results[out_type] = summary
            for path in (ours_out, theirs_out):
                path.unlink(missing_ok=True)
        if args.json:
            print(json.dumps({"checkpoint": info.to_dict(), "results": results}, indent=2))
            return
        MiB = 1024 * 1024
        print(f"{'type':<6} {'converter':<10} {'median s':>9} {'runs (s)':<24} {'peak RSS':>10}")
        for out_type, summary in results.items():
            for name in ("app", "llama.cpp"):
                s = summary[name]
                print(f"{out_type:<6} {name:<10} {s['seconds_median']:9.2f} {str(s['seconds']):<24} "
                      f"{s['peak_rss_bytes'] / MiB:8.0f} MiB")
            diffs = summary["differences"]
            print(f"{out_type:<6} app/llama.cpp: time {summary['time_ratio']:.2f}x, peak RSS {summary['rss_ratio']:.2f}x "
                  f"(goal <= 1.00x and <= 0.80x); output {format_size(summary['output_bytes'])}, "
                  + ("identical to llama.cpp's" if not diffs else f"{len(diffs)} difference(s): {diffs[:5]}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--measure":
        measure_self(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main()
