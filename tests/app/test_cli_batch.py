"""`workbench batch` as a person runs it: bad prompts files, and a job killed with SIGKILL that
resumes without redoing (or requesting again) the prompts it had finished."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_a_bad_prompts_file_is_an_error_naming_the_lines_before_any_model_loads(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"prompt": \n{"id": [1], "prompt": "x"}\n', encoding="utf-8")
    started = time.monotonic()
    result = run_cli("batch", str(tmp_path / "does-not-exist.gguf"), "--prompts", str(prompts),
                     "--out", str(tmp_path / "out.jsonl"), timeout=60)
    assert result.returncode == 2
    assert "error: p.jsonl has 2 bad lines" in result.stderr
    assert "line 2: not valid JSON" in result.stderr and "line 3: 'id' must be text" in result.stderr
    assert "hint:" in result.stderr
    assert not (tmp_path / "out.jsonl").exists()
    assert time.monotonic() - started < 30  # nothing was loaded


def test_a_killed_job_resumes_without_redoing_finished_prompts(starter_model, tmp_path):
    total = 14
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Write one sentence about the number {i}."})
                               + "\n" for i in range(total)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ("batch", str(starter_model), "--prompts", str(prompts), "--out", str(out), "--parallel", "2",
            "--max-tokens", "24", "--temperature", "0", "--ctx", "512", "--threads", "2")
    proc = start_cli(*args)
    engines: list[psutil.Process] = []
    deadline = time.monotonic() + 300
    while not (out.exists() and len(out.read_bytes().splitlines()) >= 3):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no results in time"
        engines = engines or psutil.Process(proc.pid).children(recursive=True)
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    for engine in engines:  # the engine child notices its parent is gone and exits
        engine.wait(30)
    finished = out.read_bytes()
    kept = finished[: finished.rfind(b"\n") + 1]
    done_before = [json.loads(line)["id"] for line in kept.splitlines()]
    assert 3 <= len(done_before) < total
    out.write_bytes(kept + b'{"id": "q99", "reply": "torn')  # as if killed mid-write

    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped"] == len(done_before)
    assert summary["requested"] == summary["done"] == total - len(done_before)  # finished ones not asked again
    assert summary["failed"] == 0 and summary["total"] == total and summary["tokens_per_s"] > 0
    data = out.read_bytes()
    assert data.startswith(kept)  # the lines written before the kill are untouched
    ids = [json.loads(line)["id"] for line in data.splitlines()]
    assert sorted(ids) == sorted(f"q{i}" for i in range(total))  # every prompt exactly once, no torn line
    assert "prompts" in result.stderr or "tokens/s" in result.stderr  # the progress line


def test_ctrl_c_stops_with_exit_130_and_keeps_the_finished_lines(starter_model, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell a story number {i}."}) + "\n" for i in range(30)),
                       encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = start_cli("batch", str(starter_model), "--prompts", str(prompts), "--out", str(out), "--parallel", "2",
                     "--max-tokens", "12", "--temperature", "0", "--ctx", "512", "--threads", "2")
    deadline = time.monotonic() + 300
    while not (out.exists() and len(out.read_bytes().splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "run the same command to continue" in stderr
    lines = out.read_bytes().splitlines()
    assert 2 <= len(lines) < 30 and all(json.loads(line)["reply"] for line in lines)
