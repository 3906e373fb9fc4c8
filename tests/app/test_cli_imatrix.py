"""`workbench imatrix` and `workbench quantize --imatrix`, in-process and as a real command (Ctrl-C)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.cli import main
from quantize_models import cached_tiny_llama
from runtime.compress.imatrix import load

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "quantize-models"
    folder.mkdir(exist_ok=True)
    return cached_tiny_llama(folder)


def test_imatrix_json_then_quantize_with_it(tiny, tmp_path, capsys):
    out = tmp_path / "tiny.imatrix.gguf"
    assert main(["imatrix", str(tiny), "--out", str(out), "--ctx", "128", "--chunks", "2", "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["path"] == str(out) and data["engine"] == "llama.cpp" and data["chunks"] == 2
    assert data["entries"] == 8 * 7 and data["seconds"] > 0 and data["peak_rss_bytes"] > 0
    assert "importance matrix with llama.cpp from calibration_mix.txt, chunks of 128 tokens" in captured.err
    assert "56 matrices from 2 chunks" in captured.err
    assert load(out).chunk_count == 2
    made = tmp_path / "made"
    assert main(["quantize", str(tiny), "--type", "IQ2_XXS,Q4_K_M", "--imatrix", str(out),
                 "--out-dir", str(made)]) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == [str(made / "tiny-llama-default-imat-IQ2_XXS.gguf"),
                                    str(made / "tiny-llama-default-imat-Q4_K_M.gguf")]
    assert "importance matrix: tiny.imatrix.gguf (56 matrices, 2 chunks of 128 tokens" in captured.err


def test_default_output_beside_the_source_and_own_text(tiny, tmp_path, capsys):
    src = tmp_path / "model-F16.gguf"
    src.symlink_to(tiny)
    text = tmp_path / "mine.txt"
    text.write_text(" ".join(["words of my own text, repeated."] * 12), encoding="utf-8")   # 6 chunks of 64
    assert main(["imatrix", str(src), "--text", str(text), "--ctx", "64"]) == 0
    out = tmp_path / "model-F16.imatrix.gguf"
    assert capsys.readouterr().out.strip() == str(out)
    assert load(out).datasets == ["mine.txt"]
    assert main(["imatrix", str(src), "--text", str(text), "--ctx", "64"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["imatrix", str(src), "--text", str(text), "--ctx", "64", "--overwrite"]) == 0


@pytest.mark.parametrize("args, words", [
    (["--text", "SHORT"], "needs at least 1,024"),
    (["--text", "MISSING"], "does not exist"),
])
def test_imatrix_errors(tiny, tmp_path, capsys, args, words):
    short = tmp_path / "short.txt"
    short.write_text("Too short.", encoding="utf-8")
    args = [{"SHORT": str(short), "MISSING": str(tmp_path / "none.txt")}.get(a, a) for a in args]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["imatrix", str(tiny), *args, "--out", str(out_dir / "x.gguf")]) == 2
    err = capsys.readouterr().err
    assert words in err and "error:" in err and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_quantize_refuses_a_file_that_is_not_an_imatrix(tiny, tmp_path, capsys):
    assert main(["quantize", str(tiny), "--type", "Q4_0", "--imatrix", str(tiny), "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not an importance matrix" in err and "hint:" in err
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_leaves_no_partial_file(starter_model, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "app", "imatrix", str(starter_model), "--out",
                             str(tmp_path / "s.imatrix.gguf"), "--ctx", "256"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: no partial file was left." in err
    assert list(tmp_path.iterdir()) == []
