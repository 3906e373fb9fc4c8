"""`workbench quantize`, in-process and as a real command (progress on stderr, Ctrl-C)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.cli import main
from model_files import write_not_gguf
from quantize_models import cached_tiny_llama
from runtime.compress import sizes
from runtime.models.gguf_info import read_gguf_info

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "quantize-models"
    folder.mkdir(exist_ok=True)
    return cached_tiny_llama(folder)


def test_several_types_json(tiny, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert main(["quantize", str(tiny), "--type", "Q8_0,q4_k_m", "--type", "Q4_0", "--out-dir", str(out_dir),
                 "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert [d["type"] for d in data] == ["Q8_0", "Q4_K_M", "Q4_0"]
    expected = sizes.expected_sizes(tiny, ["Q8_0", "Q4_K_M", "Q4_0"])
    for d in data:
        path = Path(d["path"])
        assert path == out_dir / f"tiny-llama-default-{d['type']}.gguf"
        assert d["real_bytes"] == path.stat().st_size and d["expected_bytes"] == expected[d["type"]]
        assert read_gguf_info(path).file_type == d["type"] and d["error"] is None
    # before running: each target's expected size and fit; then progress and each result
    assert "Q4_K_M  about    2.8 MiB  Fits for chat" in captured.err
    assert "[2/3] Q4_K_M:" in captured.err and "[3/3] Q4_0: done" in captured.err
    assert "Q8_0: 4.9 MiB (expected 4.9 MiB) in " in captured.err


def test_plain_output_is_the_paths(tiny, tmp_path, capsys):
    src = tmp_path / "model-F16.gguf"
    src.symlink_to(tiny)
    assert main(["quantize", str(src), "--type", "Q6_K"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "model-Q6_K.gguf")


def test_requantize_needs_the_flag(starter_model, tmp_path, capsys):
    args = ["quantize", str(starter_model), "--type", "Q8_0", "--out-dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error: SmolLM2-135M-Instruct.Q4_1.gguf is already quantized (Q4_1)" in err
    assert "hint:" in err and "--requantize" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    assert main([*args, "--requantize"]) == 0
    captured = capsys.readouterr()
    assert "warning: the source is already quantized (Q4_1, Q8_0): quality suffers twice." in captured.err
    assert Path(captured.out.strip()) == tmp_path / "SmolLM2-135M-Instruct-Q8_0.gguf"


@pytest.mark.parametrize("args, words", [
    (["--type", "Q9_K"], "Unknown quantization type 'Q9_K'"),
    (["--type", "IQ2_XXS"], "needs an importance matrix"),
    (["--type", "Q8_0", "--type", "q8_0"], "asked for twice"),
])
def test_bad_types(tiny, tmp_path, capsys, args, words):
    assert main(["quantize", str(tiny), *args, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert words in err and "hint:" in err
    assert list(tmp_path.iterdir()) == []


def test_bad_sources_and_shapes(tmp_path, capsys):
    bad = write_not_gguf(tmp_path)
    assert main(["quantize", str(bad), "--type", "Q4_0"]) == 2
    assert "error: notes.gguf is named like a model, but it is not a GGUF file" in capsys.readouterr().err
    narrow = cached_tiny_llama(tmp_path, n_embd=64, n_ff=128)
    assert main(["quantize", str(narrow), "--type", "Q4_0", "--type", "Q4_K_M"]) == 2
    err = capsys.readouterr().err
    assert "error: Q4_K_M cannot be made from" in err and "Choose" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.gguf", narrow.name]  # Q4_0 did not run either


def test_list_types(capsys):
    assert main(["quantize", "x.gguf", "--type", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Main types (best quality first):\n  Q8_0")
    assert "Q4_K_M   Q4_K_M: a small loss" in out and "Llama-3-8B" in out
    assert "With an importance matrix only (--imatrix FILE): IQ3_XXS" in out


def test_ctrl_c_removes_the_partial(starter_model, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "app", "quantize", str(starter_model), "--type", "Q4_K_M",
                             "--requantize", "--out-dir", str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: the unfinished output was removed." in err
    assert list(tmp_path.iterdir()) == []
