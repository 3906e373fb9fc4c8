"""`python -m app --self-test`: the window, the engine child process and a few tokens, in one line."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OK_LINE = re.compile(r"^self-test ok: .+ on .+, loaded in [\d.]+ s, (\d+) tokens in [\d.]+ s "
                     r"\([\d.]+ tok/s\), window shown, engine child pid \d+$")


def run_self_test(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", WORKBENCH_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "app", "--self-test", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_self_test_generates_with_the_starter_model(workbench_home, starter_model):
    proc = run_self_test(workbench_home)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("self-test")]
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-3000:]}"
    assert len(lines) == 1, proc.stdout
    match = OK_LINE.match(lines[0])
    assert match, lines[0]
    assert 1 <= int(match.group(1)) <= 8
    assert "SmolLM2-135M-Instruct" in lines[0]
    # The person's data is untouched: the window ran on a temporary home of its own.
    assert list(workbench_home.iterdir()) == []  # no settings.ini, no workbench.sqlite3


def test_self_test_with_a_model_path(workbench_home, starter_model):
    proc = run_self_test(workbench_home, "--model", str(starter_model))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-3000:]}"
    assert OK_LINE.match(proc.stdout.strip().splitlines()[-1])


def test_self_test_fails_in_words_for_a_file_that_is_no_model(workbench_home, tmp_path):
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("not a model\n")
    proc = run_self_test(workbench_home, "--model", str(bogus), timeout=60)
    assert proc.returncode == 1
    lines = [line for line in proc.stdout.splitlines() if line.startswith("self-test")]
    assert len(lines) == 1, proc.stdout
    assert lines[0].startswith(f"self-test FAILED: {bogus} is not a usable model: ")
    assert "GGUF" in lines[0]
    assert "Traceback" not in proc.stderr


def test_self_test_fails_in_words_for_an_unknown_name(workbench_home):
    proc = run_self_test(workbench_home, "--model", "no-such-model-anywhere", timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.strip().startswith("self-test FAILED: no-such-model-anywhere is not a usable model: No model named")


def test_self_test_says_when_there_is_no_model(monkeypatch, capsys):
    from app import self_test

    monkeypatch.setattr("runtime.models.library.starter_model_path", lambda: None)
    assert self_test.run_self_test(None) == 1
    out = capsys.readouterr().out.strip()
    assert out.startswith("self-test FAILED: no model found")
    assert "--model" in out
