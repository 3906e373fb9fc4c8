"""`workbench models` and `workbench info`, run in-process and as a real command."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import build_parser, main
from model_files import write_not_gguf, write_truncated_copy, write_unknown_arch_gguf
from runtime import paths
from runtime.models.gguf_info import format_size

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_models_table_lists_starter_and_broken_files(capsys, starter_model):
    write_not_gguf(paths.ensure_dir(paths.models_dir()), name="broken.gguf")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "SOURCE", "ARCH", "PARAMS", "QUANT", "CTX", "SIZE"]
    starter = next(r for r in rows if r.startswith("SmolLM2-135M-Instruct.Q4_1"))
    assert starter.split() == ["SmolLM2-135M-Instruct.Q4_1", "starter", "llama", "135M", "Q4_1", "8,192",
                               *format_size(starter_model.stat().st_size).split()]
    assert "could not be read" in out and "not a GGUF file" in out


def test_models_json(starter_model):
    write_unknown_arch_gguf(paths.ensure_dir(paths.models_dir()), name="tiny")
    write_not_gguf(paths.models_dir(), name="broken.gguf")
    result = run_cli("models", "--json")
    assert result.returncode == 0, result.stderr
    data = {d["name"]: d for d in json.loads(result.stdout)}
    required = {"name", "path", "source", "size_bytes", "architecture", "parameter_count", "file_type",
                "context_length", "has_chat_template", "error"}
    assert all(required <= set(d) for d in data.values())
    starter = data["SmolLM2-135M-Instruct.Q4_1"]
    assert starter["path"] == str(starter_model) and starter["source"] == "starter"
    assert starter["file_type"] == "Q4_1" and starter["has_chat_template"] is True
    assert starter["error"] is None
    assert data["tiny"]["architecture"] == "flibbertigibbet" and data["tiny"]["source"] == "app"
    assert data["broken"]["architecture"] is None and "not a GGUF file" in data["broken"]["error"]


def test_info_by_name_and_json(capsys, starter_model):
    assert main(["info", "smollm2"]) == 0
    out = capsys.readouterr().out
    assert "Architecture:" in out and "llama" in out
    assert "Q4_1" in out and "8,192" in out and "135M" in out
    assert "<|im_start|>" not in out  # the template is summarised, not printed

    assert main(["info", str(starter_model), "--json", "--ctx", "1024"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["architecture"] == "llama" and data["block_count"] == 30
    assert data["has_chat_template"] is True and "chat_template" not in data
    assert data["fit"]["n_ctx"] == 1024 and data["fit"]["status"] == "fits"


@pytest.mark.parametrize("make_bad, expected", [
    (lambda d, s: write_not_gguf(d), "not a GGUF file"),
    (lambda d, s: write_truncated_copy(s, d), "truncated"),
    (lambda d, s: d, "is a folder"),
    (lambda d, s: "no-such-model", "No model named"),
])
def test_info_errors_are_clean(capsys, tmp_path, starter_model, make_bad, expected):
    target = make_bad(tmp_path, starter_model)
    assert main(["info", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err
    assert "\nhint: " in err and "Traceback" not in err


def test_errors_as_a_real_command(tmp_path):
    result = run_cli("info", str(write_not_gguf(tmp_path)))
    assert result.returncode == 2
    assert "error:" in result.stderr and "hint:" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_help_and_usage():
    result = run_cli("--help")
    assert result.returncode == 0 and "models" in result.stdout and "info" in result.stdout
    assert run_cli().returncode == 2
    args = build_parser().parse_args(["info", "x", "--json"])
    assert (args.command, args.model, args.json) == ("info", "x", True)


def test_help_imports_nothing_heavy():
    code = ("import sys; from app.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'gguf', 'llama_cpp', 'huggingface_hub', 'PySide6', 'matplotlib', 'torch')"
            " if m in sys.modules]\n"
            "print(heavy, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stderr.strip() == "[]"
