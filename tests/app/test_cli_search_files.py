"""`workbench search` and `workbench files` against the fake hub, in-process and as a real command."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main

REPO = Path(__file__).resolve().parents[2]
MiB = 1024**2


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture
def repos(hub, starter_model):
    files = {"SmolLM2-135M-Instruct-Q4_1.gguf": starter_model, "README.md": "# starter",
             "SmolLM2-135M-Instruct-Q8_0.gguf": b"\0" * (3 * MiB),
             "SmolLM2-135M-Instruct-F16.gguf": b"\0" * (5 * MiB)}
    hub.add_repo("org/starter-GGUF", files, downloads=500, likes=7, licence="apache-2.0")
    hub.add_repo("org/starter", {"model.safetensors": b"x" * 100, "config.json": "{}"}, downloads=100)
    hub.add_repo("other/thing-GGUF", {"a.gguf": b"x"}, downloads=3)
    return hub


def test_search_table(repos, capsys):
    assert main(["search", "starter"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split() == ["REPO", "KIND", "DOWNLOADS", "LIKES", "UPDATED", "LICENCE"]
    assert [r.split()[:4] for r in rows] == [["org/starter-GGUF", "gguf", "500", "7"],
                                              ["org/starter", "checkpoint", "100", "0"]]


def test_search_json_limit_and_kind(repos, capsys):
    assert main(["search", "", "--json", "--limit", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["repo_id"] for r in data["results"]] == ["org/starter-GGUF", "org/starter"]
    assert data["has_more"] is True and data["source"] == "huggingface"
    assert set(data["results"][0]) >= {"repo_id", "kind", "downloads", "likes", "last_modified", "licence", "gated",
                                       "catalog"}
    assert main(["search", "starter", "--kind", "gguf", "--json"]) == 0
    assert [r["repo_id"] for r in json.loads(capsys.readouterr().out)["results"]] == ["org/starter-GGUF"]


def test_search_pages_until_the_limit(repos, capsys):
    repos.page_size = 1  # the server hands out one result per page
    assert main(["search", "", "--json", "--limit", "3"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 3
    assert sum(1 for r in repos.requests if r[1] == "/api/models") == 3


def test_search_catalog_offline(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["search", "--catalog", "smollm2", "--kind", "gguf", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["repo_id"] for r in data["results"]] == ["bartowski/SmolLM2-135M-Instruct-GGUF",
                                                       "bartowski/SmolLM2-360M-Instruct-GGUF",
                                                       "bartowski/SmolLM2-1.7B-Instruct-GGUF"]
    assert data["source"] == "catalog"


def test_search_offline_says_what_to_do(monkeypatch):
    result = run_cli("search", "qwen", env_extra={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: Offline mode is on")
    assert "hint: Search the beginner catalog instead: `workbench search --catalog 'qwen'`" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_files_table_marks_the_recommended_file(repos, capsys):
    assert main(["files", "org/starter-GGUF", "--ctx", "2048", "--cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("org/starter-GGUF at ") and "licence: apache-2.0" in out
    assert "Memory judged for a 2,048-token context against" in out and "of free RAM." in out
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line
            for line in out.splitlines() if ".gguf" in line and "  gguf  " in line}
    assert set(rows) == {"Q4_1", "Q8_0", "F16"}
    assert rows["Q8_0"].startswith("*") and not rows["Q4_1"].startswith("*")
    assert "Recommended" in out and "Other files: README.md" in out


def test_files_json(repos, capsys, starter_model):
    from runtime.models.gguf_info import read_gguf_info
    from runtime.models.hardware import estimate_model_memory

    assert main(["files", "org/starter-GGUF", "--ctx", "2048", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["repo_id"] == "org/starter-GGUF" and len(data["revision"]) == 40 and data["n_ctx"] == 2048
    choices = {c["quant"]: c for c in data["choices"]}
    assert set(choices) == {"Q4_1", "Q8_0", "F16"}
    q41 = choices["Q4_1"]
    assert q41["size_bytes"] == starter_model.stat().st_size
    assert q41["files"][0]["sha256"] and q41["fit"]["status"] in ("fits", "tight", "too_big")
    # every file of the repo shares the starter's shape (read from the one real header)
    assert q41["estimate_bytes"] == estimate_model_memory(read_gguf_info(starter_model), 2048)
    assert q41["fit"]["kv_cache_bytes"] == 45 * MiB
    assert data["recommended"] == "SmolLM2-135M-Instruct-Q8_0.gguf"
    assert [c["recommended"] for c in data["choices"]].count(True) == 1
    assert data["other_files"] == [{"path": "README.md", "size": 9, "sha256": None,
                                    "blob_id": data["other_files"][0]["blob_id"]}]


def test_files_of_a_checkpoint(repos, capsys):
    assert main(["files", "org/starter"]) == 0
    out = capsys.readouterr().out
    assert "Checkpoint (1 shard)" in out and "checkpoint" in out and "after converting it" in out


@pytest.mark.parametrize("args, message, hint", [
    (["files", "org/nothing"], "error: There is no model 'org/nothing'", "hint: Check the spelling"),
    (["files", "not a repo"], "is not a Hugging Face model name", "organisation/name"),
])
def test_files_bad_repo(repos, capsys, args, message, hint):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and hint in err


def test_files_wrong_token_and_no_token(repos, monkeypatch, capsys):
    repos.add_repo("org/locked-GGUF", {"a-Q4_K_M.gguf": b"x"}, gated="manual")
    assert main(["files", "org/locked-GGUF", "--json"]) == 0  # the listing is public; downloads need the token
    assert json.loads(capsys.readouterr().out)["gated"] is True
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    assert main(["files", "org/locked-GGUF"]) == 2
    assert "rejected the access token" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", repos.token)
    assert main(["files", "org/locked-GGUF", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gated"] is True


def test_files_refuses_an_escaping_listing(repos, capsys):
    repos.add_repo("evil/repo", {"../../outside.gguf": b"x", "fine-Q4_K_M.gguf": b"y"})
    assert main(["files", "evil/repo"]) == 2
    err = capsys.readouterr().err
    assert "'../../outside.gguf'" in err and "refused" in err and "nothing was downloaded" in err


def test_files_server_error_and_offline(repos, monkeypatch, capsys):
    repos.fail_status = 500
    assert main(["files", "org/starter-GGUF"]) == 2
    assert "server error (500)" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["files", "org/starter-GGUF"]) == 2
    assert "workbench models" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["files", "a/b", "--ctx", "0"], ["search", "x", "--limit", "0"],
                                  ["search", "x", "--limit", "100000"], ["search", "x", "--sort", "size"]])
def test_bad_values_are_refused_by_the_parser(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err
