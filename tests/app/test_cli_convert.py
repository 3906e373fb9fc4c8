"""`workbench convert` on tiny checkpoints: in-process, and as a real command interrupted with Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.cli import main
from runtime.models.gguf_info import read_gguf_info
from tiny_checkpoints import build_checkpoint, cached_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_checkpoints")
    return lambda kind, weights="safetensors": cached_checkpoint(kind, root, weights=weights)


def test_convert_prints_the_plan_progress_and_the_path(checkpoints, tmp_path, capsys):
    out = tmp_path / "model.gguf"
    assert main(["convert", str(checkpoints("llama", "sharded")), "--out", str(out), "--type", "q8_0"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "LlamaForCausalLM -> GGUF llama" in captured.err and "Q8_0: about" in captured.err
    assert "tensor 21/21" in captured.err
    assert read_gguf_info(out).file_type == "Q8_0"


def test_json_output(checkpoints, tmp_path, capsys):
    assert main(["convert", str(checkpoints("qwen2")), "--out", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    path = Path(data["path"])
    assert path == tmp_path / "qwen2-safetensors-float32-F16.gguf" and path.is_file()
    assert data["type"] == "F16" and data["bytes"] == path.stat().st_size
    assert (data["hf_architecture"], data["architecture"], data["tokenizer"]) == ("Qwen2ForCausalLM", "qwen2", "gpt2")
    assert data["tensor_count"] == 26 and data["has_chat_template"] is True


def test_default_output_goes_beside_the_checkpoint(checkpoints, capsys):
    folder = checkpoints("qwen3")
    expected = folder.parent / "qwen3-safetensors-float32-BF16.gguf"
    assert main(["convert", str(folder), "--type", "BF16"]) == 0
    assert capsys.readouterr().out.strip() == str(expected) and expected.is_file()
    expected.unlink()


def test_an_existing_output_needs_overwrite(checkpoints, tmp_path, capsys):
    out = tmp_path / "model.gguf"
    out.write_bytes(b"keep me")
    assert main(["convert", str(checkpoints("qwen2")), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "already exists" in err and "hint: Add --overwrite" in err
    assert out.read_bytes() == b"keep me"
    assert main(["convert", str(checkpoints("qwen2")), "--out", str(out), "--overwrite"]) == 0
    assert read_gguf_info(out).architecture == "qwen2"


@pytest.mark.parametrize("make_bad, words", [
    (lambda folder: (folder / "config.json").write_text('{"architectures": ["BertModel"]}'),
     "BertModel is not an architecture this converter handles"),
    (lambda folder: (folder / "config.json").unlink(), "is not a Hugging Face checkpoint"),
    (lambda folder: (folder / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "quantization_config": {"quant_method": "gptq", "bits": 4}})),
     "already quantized with GPTQ"),
])
def test_bad_input_is_an_error_and_a_hint_with_exit_2(checkpoints, tmp_path, capsys, make_bad, words):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoints("llama"), folder)
    make_bad(folder)
    out = tmp_path / "out.gguf"
    assert main(["convert", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and words in err and "hint: " in err and "Traceback" not in err
    assert not out.exists() and not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_unknown_type_is_refused_by_the_parser(checkpoints, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["convert", str(checkpoints("qwen2")), "--type", "q4_k_m"])
    assert caught.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_ctrl_c_stops_and_removes_the_partial_file(tmp_path):
    """A real `workbench convert`, frozen the moment its partial file appears, then sent SIGINT."""
    if os.name != "posix":
        pytest.skip("SIGSTOP/SIGINT are POSIX")
    # Big enough that writing takes ~0.3 s: after SIGCONT the Ctrl-C must land before the writer ends,
    # also on a machine busy with other work (8 layers took 0.1 s and lost that race under load).
    folder = build_checkpoint("llama", tmp_path / "medium", hidden=512, layers=24, ffn=1408)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "app", "convert", str(folder), "--out", str(out_dir / "m.gguf"),
                             "--type", "q8_0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.endswith(".partial") for p in out_dir.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.001)
        proc.send_signal(signal.SIGSTOP)  # it is writing: hold it there, deliver Ctrl-C, let it go on
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGCONT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted: the unfinished output was removed" in stderr and stdout == ""
    assert list(out_dir.iterdir()) == []
