"""KV cache reuse, measured on real models (llama.cpp through the chat's LlamaRunner in a child):
with the cache kept, each later turn evaluates only its new tokens; from an empty cache, all of them.

Assertions are on the token counts the child reports, never on timings (the machine is shared);
timings are only checked to be positive. Models: a tiny random llama (tests/quantize_models.py) and
the starter model (SmolLM2-135M, Q4_1)."""
from __future__ import annotations

import json

import psutil
import pytest

from app.cli import main
from quantize_models import cached_tiny_llama
from runtime.bench.kv_child import read_conversation
from runtime.bench.kv_reuse import (KV_MIN_CTX, conversation_path, kv_context, measure_kv_reuse, reuse_speedup,
                                    total_speedup, turns_from_event)
from runtime.bench.results import KvTurn, SpeedOptions, VariantResult
from runtime.bench.run import run_benchmark
from runtime.errors import BenchError, Cancelled
from runtime.jobs import CancelToken


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "bench-models"
    folder.mkdir(exist_ok=True)
    return cached_tiny_llama(folder)


def check_turns(turns: list[KvTurn], n: int) -> None:
    assert [t.turn for t in turns] == list(range(1, n + 1))
    sizes = [t.prompt_tokens for t in turns]
    assert sizes == sorted(sizes) and len(set(sizes)) == n      # the conversation grows every turn
    for t in turns:
        assert t.ttft_reuse_s > 0 and t.ttft_fresh_s > 0
        assert t.evaluated_fresh == t.prompt_tokens               # an empty cache: everything again
    first = turns[0]
    assert first.evaluated_reuse == first.prompt_tokens          # a new conversation: nothing to reuse
    for before, t in zip(turns, turns[1:]):
        # only the new question (and the end of the previous reply) is evaluated
        assert 0 < t.evaluated_reuse < t.prompt_tokens - before.prompt_tokens + 8
        assert t.evaluated_reuse < t.evaluated_fresh


def test_the_shipped_conversation_has_a_system_prompt_and_several_turns():
    system, turns = read_conversation(str(conversation_path()))
    assert system and 6 <= len(turns) <= 8 and all(len(t) > 40 for t in turns)
    assert read_conversation(str(conversation_path()), 3)[1] == turns[:3]


def test_reuse_evaluates_only_the_new_turn_on_a_tiny_model(tiny):
    progress = []
    turns = measure_kv_reuse(tiny, SpeedOptions(threads=2, reps=1), turns=3, reply_tokens=8,
                             progress=lambda d, t, m: progress.append((d, t, m)))
    check_turns(turns, 3)
    assert progress[-1][0] == progress[-1][1] and any("reuse pass 1/1, turn 2/3" in m for *_, m in progress)
    assert all(d <= t for d, t, _ in progress)


def test_starter_model_reuses_all_but_the_new_question(starter_model):
    turns = measure_kv_reuse(starter_model, SpeedOptions(threads=2, reps=1), turns=3, reply_tokens=8)
    check_turns(turns, 3)
    for t in turns[1:]:   # the starter's question turns are 30-45 tokens: far less than the conversation
        assert t.evaluated_reuse * 2 < t.evaluated_fresh
    assert reuse_speedup(turns) > 0 and total_speedup(turns) > 0


def test_a_conversation_too_long_for_the_context_is_refused_with_the_numbers(tiny, tmp_path):
    long = tmp_path / "long.json"
    long.write_text(json.dumps({"turns": ["Short question?", "word " * 3000]}), encoding="utf-8")
    with pytest.raises(BenchError, match="Turn 2 of the conversation needs") as info:
        measure_kv_reuse(tiny, SpeedOptions(threads=2, reps=1), conversation=long, reply_tokens=4)
    assert info.value.facts["needed_tokens"] > KV_MIN_CTX and "larger context" in info.value.hint


def test_a_conversation_file_without_turns_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"system": "hello", "turns": []}', encoding="utf-8")
    with pytest.raises(BenchError, match="no list of user turns"):
        read_conversation(str(bad))
    bad.write_text("not json", encoding="utf-8")
    with pytest.raises(BenchError, match="cannot be read"):
        read_conversation(str(bad))


def test_cancel_before_the_child_starts(tiny):
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        measure_kv_reuse(tiny, SpeedOptions(threads=2, reps=1), cancel=cancel)


def test_cancel_while_replaying_kills_the_child(tiny):
    cancel = CancelToken()
    seen = []

    def progress(done, total, message):
        seen.append(message)
        if "reuse pass" in message:
            cancel.cancel()

    with pytest.raises(Cancelled):
        measure_kv_reuse(tiny, SpeedOptions(threads=2, reps=1), turns=2, reply_tokens=4, progress=progress,
                         cancel=cancel)
    assert any("replies, turn 1/2" in m for m in seen)
    assert not [p for p in psutil.Process().children(recursive=True) if _is_kv_child(p)]


def _is_kv_child(proc) -> bool:
    try:
        return "runtime.bench.kv_child" in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def test_the_context_holds_the_conversation():
    assert kv_context(SpeedOptions(n_ctx=512)) == KV_MIN_CTX
    assert kv_context(SpeedOptions(n_ctx=8192)) == 8192


def test_medians_and_speedups_from_the_childs_event():
    event = {"turns": [{"turn": 1, "prompt_tokens": 50, "ttft_reuse_s": [0.05, 0.07, 0.06],
                        "ttft_fresh_s": [0.05, 0.06, 0.08], "evaluated_reuse": [50] * 3, "evaluated_fresh": [50] * 3},
                       {"turn": 2, "prompt_tokens": 120, "ttft_reuse_s": [0.03, 0.02, 0.04],
                        "ttft_fresh_s": [0.12, 0.10, 0.11], "evaluated_reuse": [40] * 3,
                        "evaluated_fresh": [120] * 3},
                       {"turn": 3, "prompt_tokens": 190, "ttft_reuse_s": [0.04], "ttft_fresh_s": [0.16],
                        "evaluated_reuse": [41], "evaluated_fresh": [190]}]}
    turns = turns_from_event(event)
    assert turns[0] == KvTurn(1, 50, 0.06, 0.06, 50, 50)
    assert turns[1].ttft_reuse_s == 0.03 and turns[1].ttft_fresh_s == 0.11
    assert reuse_speedup(turns) == pytest.approx((0.11 / 0.03 + 0.16 / 0.04) / 2)   # turn 1 left out
    assert total_speedup(turns) == pytest.approx(0.27 / 0.07)
    assert reuse_speedup(turns[:1]) is None and reuse_speedup(None) is None and total_speedup([]) is None


def test_a_run_with_kv_reuse_puts_the_turns_on_the_row_and_round_trips(tiny):
    options = SpeedOptions(threads=2, n_ctx=64, prompt_tokens=32, gen_tokens=8, reps=1, kv_reuse=True)
    run = run_benchmark([tiny], options)
    row = run.results[0]
    assert row.status == "ok" and row.speed is not None and row.note is None
    check_turns(row.kv_reuse, len(read_conversation(str(conversation_path()))[1]))
    flat = row.flat()["kv_reuse"]
    assert flat[1]["evaluated_reuse"] == row.kv_reuse[1].evaluated_reuse
    assert VariantResult.from_dict(row.to_dict()) == row


def test_a_kv_failure_keeps_the_rows_other_figures_and_says_why(tiny, tmp_path, monkeypatch):
    from runtime.bench import kv_reuse

    long = tmp_path / "long.json"
    long.write_text(json.dumps({"turns": ["Short question?", "word " * 3000]}), encoding="utf-8")
    monkeypatch.setattr(kv_reuse, "conversation_path", lambda: long)   # a real file that cannot fit
    options = SpeedOptions(threads=2, n_ctx=64, prompt_tokens=16, gen_tokens=4, reps=1, kv_reuse=True)
    row = run_benchmark([tiny], options).results[0]
    assert row.status == "ok" and row.speed is not None and row.kv_reuse is None
    assert row.note.startswith("no KV cache figures: Turn 2 of the conversation needs")


def test_cli_kv_reuse_adds_the_turns_to_the_json(tiny, capsys):
    assert main(["bench", str(tiny), "--threads", "2", "--ctx", "64", "--prompt-tokens", "16", "--gen-tokens", "4",
                 "--reps", "1", "--kv-reuse", "--json"]) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)
    turns = rows[0]["kv_reuse"]
    assert len(turns) >= 6 and turns[0]["turn"] == 1
    assert all(t["evaluated_reuse"] < t["evaluated_fresh"] for t in turns[1:])
    assert "KV cache reused: first token" in out.err
    assert "Recipe: Reusing the KV cache makes a continued dialogue 2x faster → " in out.err
