"""`workbench chat`: real replies from the starter model, and clean failures on bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from model_files import write_not_gguf, write_truncated_copy, write_unknown_arch_gguf

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_chat_json_by_name(starter_model):
    result = run_cli("chat", "SmolLM2-135M-Instruct.Q4_1", "--prompt", "Name a fruit.", "--system",
                     "Answer in one word.", "--max-tokens", "16", "--temperature", "0", "--threads", "2",
                     "--ctx", "1024", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["reply"].strip()
    assert data["prompt_tokens"] > 10 and 0 < data["completion_tokens"] <= 16
    assert 0 < data["ttft_s"] < 60
    assert data["gen_tokens_per_s"] > 0 or data["completion_tokens"] == 1
    assert data["finish_reason"] in ("stop", "length")
    assert data["placement"] == "CPU" and data["n_gpu_layers"] == 0  # auto, on this CPU-only build
    offload = data["offload"]  # what llama.cpp did: no layer offloaded, its buffers on the CPU
    assert offload["layers_offloaded"] == 0 and offload["layers_total"] > 1
    assert offload["summary"].startswith(f"CPU: all {offload['layers_total']} layers · model ")


def test_chat_reports_gpu_layers_a_cpu_only_build_cannot_use(starter_model):
    result = run_cli("chat", str(starter_model), "--prompt", "Hi", "--max-tokens", "4", "--ctx", "512",
                     "--threads", "2", "--gpu-layers", "all", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    # what llama.cpp did next to what was asked for (was: "CPU (this llama.cpp build has no GPU backend;
    # all GPU layers requested)", computed from the request alone)
    assert data["placement"] == "CPU (asked for all GPU layers; llama.cpp offloaded 0: this build has no GPU backend)"
    assert data["n_gpu_layers"] == -1 and data["offload"]["layers_offloaded"] == 0


@pytest.mark.parametrize("text, expected", [("all", -1), ("ALL", -1), ("-1", -1), ("0", 0), ("33", 33),
                                            ("auto", None)])
def test_gpu_layers_parse(text, expected):
    from app.cli import build_parser

    args = build_parser().parse_args(["chat", "m.gguf", "--prompt", "hi", "--gpu-layers", text])
    assert args.gpu_layers == expected


def test_gpu_layers_default_is_automatic_and_nonsense_is_refused():
    from app.cli import build_parser

    assert build_parser().parse_args(["chat", "m.gguf", "--prompt", "hi"]).gpu_layers is None
    for bad in ("-2", "many"):
        result = run_cli("chat", "m.gguf", "--prompt", "hi", "--gpu-layers", bad)
        assert result.returncode == 2 and "--gpu-layers" in result.stderr


def test_chat_streams_text_by_path(starter_model):
    result = run_cli("chat", str(starter_model), "--prompt", "Say hello.", "--max-tokens", "12", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "Started answering after" in result.stderr and "a second" in result.stderr and "CPU" in result.stderr
    assert "llama.cpp placed it: CPU: all " in result.stderr


@pytest.mark.parametrize("case, expected", [
    ("not_gguf", "not a GGUF file"),
    ("truncated", "truncated"),
    ("folder", "folder"),
    ("unknown_arch", "does not know the architecture 'flibbertigibbet'"),
    ("missing", "No model named"),
    ("too_big", "too big for this machine"),
])
def test_chat_bad_input_exits_2_with_a_clear_message(tmp_path, starter_model, case, expected):
    model = {
        "not_gguf": lambda: str(write_not_gguf(tmp_path)),
        "truncated": lambda: str(write_truncated_copy(starter_model, tmp_path)),
        "folder": lambda: str(tmp_path),
        "unknown_arch": lambda: str(write_unknown_arch_gguf(tmp_path)),
        "missing": lambda: "no-such-model",
        "too_big": lambda: str(starter_model),
    }[case]()
    extra = ["--ctx", "4000000"] if case == "too_big" else []
    result = run_cli("chat", model, "--prompt", "hi", *extra)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, expected", [
    (["--temperature", "nan"], "temperature = nan is not valid"),
    (["--repeat-penalty", "nan"], "repeat_penalty = nan is not valid"),
    (["--top-p", "1.5"], "top_p = 1.5 is not valid"),
    (["--max-tokens", "0"], "max_tokens = 0 is not valid"),
    (["--ctx", str(2**32 + 512)], "A context of 4294967808 tokens is not possible"),
    (["--threads", "100000"], "100000 threads is not sensible here"),
])
def test_chat_refuses_values_that_make_no_sense(starter_model, args, expected):
    result = run_cli("chat", str(starter_model), "--prompt", "hi", *args)
    assert result.returncode == 2
    assert expected in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_chat_max_tokens_minus_one_means_up_to_the_context(starter_model):
    result = run_cli("chat", str(starter_model), "--prompt", "Count from 1 to 200, one number per line.",
                     "--max-tokens", "-1", "--ctx", "128", "--temperature", "0", "--threads", "2", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    # no 512-token default: the reply ran until the model stopped or the context was full
    assert data["finish_reason"] == "stop" or data["prompt_tokens"] + data["completion_tokens"] >= 127


class _LockOnFirstText:
    """stdout for an in-process `workbench chat`: the first piece of the reply locks the database, as
    another program holding a write lock would, so saving the finished reply fails."""

    def __init__(self) -> None:
        self.text, self.lock = "", None

    def write(self, text: str) -> int:
        if self.lock is None:
            from db_lock import DatabaseLock
            from runtime import paths

            self.lock = DatabaseLock(paths.database_path())
            self.lock.take()
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_chat_keeps_a_reply_the_locked_database_refused(starter_model, monkeypatch, capsys):
    from app import cli_chat
    from app.cli import main

    monkeypatch.setattr(cli_chat, "STORE_BUSY_TIMEOUT_S", 0.3)
    monkeypatch.setattr(cli_chat, "SAVE_RETRY_PAUSES_S", (0.05, 0.05))
    out = _LockOnFirstText()
    monkeypatch.setattr(sys, "stdout", out)
    status = main(["chat", str(starter_model), "--prompt", "Say hello.", "--max-tokens", "12", "--temperature",
                   "0", "--threads", "2", "--ctx", "512"])
    out.lock.close()
    err = capsys.readouterr().err
    assert status == 1 and "could not be saved" in err
    kept = Path(err.split("it was written to ")[1].strip())
    reply = out.text.strip()
    assert reply and reply in kept.read_text(encoding="utf-8")


def test_a_new_cli_chat_starts_from_the_saved_defaults(starter_model):
    from runtime.chat.defaults import ChatDefaults, save_defaults
    from runtime.engine.types import SamplingParams
    from runtime.store.conversations import ConversationStore

    save_defaults(ChatDefaults("Answer in French.", SamplingParams(temperature=0.0, top_k=5, max_tokens=6), "stop"))
    result = run_cli("chat", str(starter_model), "--prompt", "Hi", "--ctx", "512", "--threads", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["completion_tokens"] <= 6  # the saved max tokens
    with ConversationStore() as store:
        conv = store.list_conversations()[0]
    assert conv.system_prompt == "Answer in French." and conv.context_policy == "stop"
    assert conv.sampling.temperature == 0.0 and conv.sampling.top_k == 5
