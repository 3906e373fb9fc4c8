"""`workbench download` against the fake hub, in-process and as a real command that is killed half-way."""
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
from runtime import paths

ROOT = Path(__file__).resolve().parents[2]
REPO = "org/tiny-GGUF"
FILE = "tiny-Q4_K_M.gguf"


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def partial_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.incomplete")) if root.exists() else 0


@pytest.fixture
def repo(hub):
    hub.data = {FILE: os.urandom(1_500_000), "tiny-Q8_0.gguf": os.urandom(2_000_000),
                **{f"big-Q8_0-0000{i}-of-00003.gguf": os.urandom(300_000 + i) for i in (1, 2, 3)},
                "README.md": "# tiny"}
    hub.commit = hub.add_repo(REPO, hub.data)
    hub.add_repo("org/gated", {FILE: b"g" * 1000}, gated="manual")
    return hub


def test_json_is_one_object_with_the_local_paths_and_the_store_has_the_record(repo, capsys):
    from runtime.store.downloads import DownloadStore

    assert main(["download", REPO, FILE, "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)  # one object, nothing else on stdout
    local = paths.hf_cache_dir() / "models--org--tiny-GGUF" / "snapshots" / repo.commit / FILE
    assert data["files"] == [str(local)] and Path(data["files"][0]).read_bytes() == repo.data[FILE]
    assert data["repo_id"] == REPO and data["revision"] == "main" and data["commit"] == repo.commit
    assert data["bytes"] == 1_500_000 and data["repo_files"] == [FILE]
    assert "100.0%" in err and "Downloaded 1 file" in err
    with DownloadStore() as store:
        (record,) = store.records()
    assert (record.status, record.done_bytes, record.paths) == ("done", 1_500_000, [str(local)])
    assert record.commit_sha == repo.commit and record.files[0].sha256 is not None


def test_plain_output_is_one_path_per_line_and_dest_is_a_folder(repo, capsys, tmp_path):
    assert main(["download", REPO, FILE, "README.md", "--dest", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [str(tmp_path / "m" / FILE), str(tmp_path / "m" / "README.md")]
    assert (tmp_path / "m" / "README.md").read_text() == "# tiny"


def test_the_first_part_of_a_split_gguf_brings_every_part(repo, capsys):
    assert main(["download", REPO, "big-Q8_0-00001-of-00003.gguf", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["repo_files"] == [f"big-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert [Path(p).read_bytes() for p in data["files"]] == [repo.data[f] for f in data["repo_files"]]
    assert data["bytes"] == 900_006


def test_a_later_part_alone_is_refused(repo, capsys):
    assert main(["download", REPO, "big-Q8_0-00002-of-00003.gguf"]) == 2
    err = capsys.readouterr().err
    assert "error: big-Q8_0-00002-of-00003.gguf is one part of a split GGUF" in err and "hint:" in err


def test_without_file_the_recommended_choice_is_downloaded(hub, starter_model, capsys):
    from runtime.hub.choices import model_choices
    from runtime.hub.repo import fetch_listing

    hub.add_repo("org/starter-GGUF", {"SmolLM2-135M-Instruct-Q4_1.gguf": starter_model,
                                      "SmolLM2-135M-Instruct-Q8_0.gguf": b"\0" * 3_000_000})
    best = next(c for c in model_choices(fetch_listing("org/starter-GGUF")) if c.recommended)
    assert main(["download", "org/starter-GGUF", "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["repo_files"] == [f.path for f in best.files] and data["label"] == best.label
    assert "recommended:" in err


@pytest.mark.parametrize("args, words", [
    (["download", REPO, "nope.gguf"], ["error: org/tiny-GGUF has no file 'nope.gguf'", "hint: Run `workbench files"]),
    (["download", "org/missing", FILE], ["error: There is no model 'org/missing'", "hint:"]),
    (["download", "org/gated", FILE], ["error: org/gated is gated", "hint: Open the model's page"]),
    (["download", "not a repo", FILE], ["error:", "hint:"]),
])
def test_bad_input_is_error_and_hint_with_exit_2_and_no_traceback(repo, capsys, args, words):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert "Traceback" not in err


def test_a_wrong_token_from_hf_token_is_named_but_never_printed(repo, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_SECRET_value")
    assert main(["download", "org/gated", FILE]) == 2
    out, err = capsys.readouterr()
    assert "access token" in err and "hf_wrong_SECRET_value" not in out + err


def test_offline_gives_cached_files_and_refuses_others(repo, capsys, monkeypatch):
    assert main(["download", REPO, "big-Q8_0-00001-of-00003.gguf", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo.requests.clear()
    assert main(["download", REPO, "big-Q8_0-00001-of-00003.gguf", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == first["files"]
    assert main(["download", REPO, FILE]) == 2
    assert "error: Offline mode is on" in capsys.readouterr().err
    assert main(["download", REPO]) == 2
    assert "hint: Name the file" in capsys.readouterr().err
    assert repo.requests == []


# -- killed and interrupted, as a real command ----------------------------------------------------

@pytest.fixture
def slow_file(hub):
    data = os.urandom(12_000_000)  # several 4 MiB blocks
    hub.commit = hub.add_repo("org/slow-GGUF", {"slow-Q4_K_M.gguf": data})
    hub.throttle = 4_000_000
    return hub, data


def _wait_for_half(hub, proc, size) -> None:
    deadline = time.monotonic() + 60
    while hub.served("org/slow-GGUF", "slow-Q4_K_M.gguf") < size // 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the download never got half-way"
        time.sleep(0.02)


def test_killed_half_way_the_same_command_continues_from_the_bytes_on_disk(slow_file):
    hub, data = slow_file
    proc = start_cli("download", "org/slow-GGUF", "slow-Q4_K_M.gguf", "--json")
    _wait_for_half(hub, proc, len(data))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    storage = paths.hf_cache_dir() / "models--org--slow-GGUF"
    kept = partial_bytes(storage)
    assert kept >= len(data) // 3  # what reached the disk before the kill (at most ~0.25 s lost)
    assert not (storage / "snapshots" / hub.commit / "slow-Q4_K_M.gguf").exists()
    hub.throttle = None
    again = start_cli("download", "org/slow-GGUF", "slow-Q4_K_M.gguf", "--json")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    (path,) = json.loads(out)["files"]
    assert Path(path).read_bytes() == data
    served = hub.served("org/slow-GGUF", "slow-Q4_K_M.gguf")
    assert served <= 1.1 * len(data), f"{served / len(data):.2f}x the file was sent: the restart started over"
    ranges = [r[2] for r in hub.requests if r[0] == "GET" and r[1].endswith("slow-Q4_K_M.gguf")]
    assert ranges[-1] == f"bytes={kept}-"


def test_ctrl_c_pauses_with_exit_130_and_the_record_says_paused(slow_file):
    from runtime.store.downloads import DownloadStore

    hub, data = slow_file
    proc = start_cli("download", "org/slow-GGUF", "slow-Q4_K_M.gguf")
    _wait_for_half(hub, proc, len(data))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "paused:" in err and "run the same command again" in err and "Traceback" not in err
    kept = partial_bytes(paths.hf_cache_dir() / "models--org--slow-GGUF")
    assert kept >= len(data) // 2 - 1_000_000  # flushed on the way out
    with DownloadStore() as store:
        (record,) = store.records()
    assert record.status == "paused" and record.done_bytes == kept
    hub.throttle = None
    assert main(["download", "org/slow-GGUF", "slow-Q4_K_M.gguf"]) == 0
    with DownloadStore() as store:
        assert [(r.id, r.status) for r in store.records()] == [(record.id, "done")]  # the same record, finished
