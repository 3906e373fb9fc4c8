"""`workbench models` and `workbench info`, run in-process and as a real command."""
from __future__ import annotations

import json
import os
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


# --- issue 6: unreadable folders, non-UTF-8 names, impossible header figures ----------------------

def _locked_library(monkeypatch, can_list: bool):
    from model_files import deny_folder

    models = paths.ensure_dir(paths.models_dir())
    write_unknown_arch_gguf(models, name="good")
    locked = paths.ensure_dir(models / "locked")
    write_unknown_arch_gguf(locked, name="secret")
    deny_folder(monkeypatch, locked, can_list)
    return locked


@pytest.mark.parametrize("can_list", [False, True], ids=["no-read", "no-execute"])
def test_models_lists_everything_else_and_notes_an_unreadable_folder(capsys, monkeypatch, starter_model,
                                                                      can_list):
    locked = _locked_library(monkeypatch, can_list)
    assert main(["models"]) == 0
    out, err = capsys.readouterr()
    names = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    assert names == ["good", "SmolLM2-135M-Instruct.Q4_1"]
    assert err.startswith("note: skipped 1 ")
    assert f"Could not read folder {locked}: permission denied" in err and "Traceback" not in err

    assert main(["models", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [d["name"] for d in json.loads(out)] == ["good", "SmolLM2-135M-Instruct.Q4_1"]
    assert str(locked) in err


def test_info_by_name_despite_an_unreadable_folder(capsys, monkeypatch):
    _locked_library(monkeypatch, can_list=True)
    assert main(["info", "good"]) == 0
    assert "flibbertigibbet" in capsys.readouterr().out


def _non_utf8_model() -> Path:
    if sys.platform != "linux":
        pytest.skip("non-UTF-8 file names are a Linux matter here")
    folder = paths.ensure_dir(paths.models_dir())
    good = write_unknown_arch_gguf(folder, name="plain")
    target = os.path.join(os.fsencode(folder), b"caf\xe9.gguf")
    os.rename(os.fsencode(good), target)
    return Path(os.fsdecode(target))


def test_models_prints_a_non_utf8_file_name(capsys):
    _non_utf8_model()
    assert main(["models"]) == 0  # capsys writes UTF-8 strictly, like a UTF-8 terminal
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:2] == ["caf\\xe9", "app"]


def test_non_utf8_file_name_as_a_real_command():
    path = _non_utf8_model()
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # strict, as a UTF-8 locale sets it up
    run = lambda *args: subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env,  # noqa: E731
                                       capture_output=True, timeout=120)
    table = run("models")
    assert table.returncode == 0, table.stderr.decode(errors="replace")
    assert b"caf\\xe9" in table.stdout

    listing = run("models", "--json")
    assert listing.returncode == 0
    [entry] = [d for d in json.loads(listing.stdout.decode("utf-8")) if d["source"] == "app"]
    assert entry["name"] == "caf\\xe9" and entry["path"].endswith("/caf\\xe9.gguf")
    entry["path"].encode("utf-8")  # valid text for any JSON reader: no lone surrogates

    for args in ([str(path)], ["caf\\xe9"]):  # by path, and by the name as `models` prints it
        info = run("info", *args)
        assert info.returncode == 0, info.stderr.decode(errors="replace")
        assert b"caf\\xe9.gguf" in info.stdout
    info = run("info", str(path), "--json")
    assert json.loads(info.stdout.decode("utf-8"))["path"].endswith("/caf\\xe9.gguf")


def _header_model(**fields):
    """A tiny model whose header states these figures: {key: (GGUFValueType name, value)}."""
    import gguf

    header = {f"{{arch}}.{key}": (gguf.GGUFValueType[vtype], value) for key, (vtype, value) in fields.items()}
    return write_unknown_arch_gguf(paths.ensure_dir(paths.models_dir()), name="odd", header=header)


@pytest.mark.parametrize("vtype, value", [("INT32", -1), ("UINT32", 0), ("UINT64", 2**63),
                                          ("INT64", -2**40), ("STRING", "long")])
def test_info_says_context_length_unknown(capsys, vtype, value):
    _header_model(context_length=(vtype, value))
    assert main(["info", "odd"]) == 0
    out = capsys.readouterr().out
    assert "Context length:     unknown" in out
    assert "with a 4,096-token context" in out and "context length is unknown" in out
    figures = "\n".join(line for line in out.splitlines() if not line.startswith(("Name:", "Path:")))
    assert "-1" not in figures and str(2**63) not in figures

    assert main(["info", "odd", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["context_length"] is None and data["fit"]["n_ctx"] == 4096


def test_info_trusts_the_tensors_over_a_huge_vocab_size(capsys):
    _header_model(vocab_size=("UINT64", 2**40), block_count=("UINT64", 2**40),
                  embedding_length=("UINT32", 2**31))
    assert main(["info", "odd"]) == 0
    out = capsys.readouterr().out
    assert "Vocabulary:         16\n" in out and "Layers:             1\n" in out
    assert "Embedding length:   8\n" in out
    assert "Memory:             Fits: needs about 3" in out and "MiB" in out and "TiB" not in out


@pytest.mark.parametrize("ctx", ["0", "-5", "many"])
def test_info_refuses_a_context_that_is_not_positive(capsys, ctx):
    with pytest.raises(SystemExit):
        main(["info", "x", "--ctx", ctx])
    assert "positive whole number" in capsys.readouterr().err
