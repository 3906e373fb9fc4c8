"""The batch job's files: the prompts file is checked line by line before any model loads, and the
output file is read back for resume (a torn last line is cut off); one real run on the starter."""
from __future__ import annotations

import json

import pytest

from runtime.engine.batch_job import PromptsFileError, read_done, read_prompts, run_batch
from runtime.errors import Cancelled
from runtime.jobs import CancelToken


def write_lines(path, *lines: str):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_prompts_and_messages_with_line_numbers_as_default_ids(tmp_path):
    path = write_lines(tmp_path / "p.jsonl",
                       '{"id": "a", "prompt": "Hello"}',
                       "",
                       '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}',
                       '{"id": 7, "prompt": "Bye"}')
    prompts = read_prompts(path)
    assert [p.id for p in prompts] == ["a", 3, 7]
    assert prompts[0].chat_messages() == [{"role": "user", "content": "Hello"}]
    assert prompts[1].chat_messages()[0]["role"] == "system" and "messages" in prompts[1].source()


def test_bad_lines_are_named_with_their_numbers_and_what_is_wrong(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl",
                       '{"id": 1, "prompt": "fine"}',
                       '{"id": 2, "prompt": "unterminated}',
                       '["not", "an", "object"]',
                       '{"id": 4}',
                       '{"id": 5, "prompt": "x", "messages": []}',
                       '{"id": true, "prompt": "x"}',
                       '{"id": 1, "prompt": "again"}',
                       '{"id": 8, "messages": [{"content": "no role"}]}',
                       '{"id": 9, "prompt": "   "}')
    with pytest.raises(PromptsFileError) as caught:
        read_prompts(path)
    message = caught.value.message
    assert "8 bad lines" in message
    for expected in ("line 2: not valid JSON", "line 3: a JSON object", "line 4: give either 'prompt' or 'messages'",
                     "line 5: give either 'prompt' or 'messages', not both", "line 6: 'id' must be text",
                     "line 7: the id 1 is already used on line 1", "line 8: message 0 needs a 'role'",
                     "line 9: 'prompt' must be non-empty text"):
        assert expected in message
    assert caught.value.path == str(path)


def test_an_empty_or_missing_prompts_file_is_refused(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(PromptsFileError, match="no prompts"):
        read_prompts(tmp_path / "empty.jsonl")
    with pytest.raises(PromptsFileError, match="cannot be read"):
        read_prompts(tmp_path / "missing.jsonl")


def test_resume_reads_the_ids_done_and_cuts_a_torn_last_line(tmp_path):
    out = tmp_path / "out.jsonl"
    good = '{"id": 1, "reply": "a"}\n{"id": "x", "reply": "b"}\n'
    out.write_bytes(good.encode() + b'{"id": 3, "rep')
    assert read_done(out) == {"1", '"x"'}
    assert out.read_bytes() == good.encode()  # the torn line is gone; the finished ones are untouched
    assert read_done(tmp_path / "none.jsonl") == set()


def test_an_output_file_that_is_not_a_jobs_is_refused(tmp_path):
    out = tmp_path / "notes.jsonl"
    out.write_text('{"id": 1, "reply": "a"}\nsome notes\n{"id": 2, "reply": "b"}\n', encoding="utf-8")
    with pytest.raises(PromptsFileError, match="Line 2 of the output file"):
        read_done(out)


def test_bad_prompts_fail_before_any_model_loads(tmp_path):
    prompts = write_lines(tmp_path / "p.jsonl", '{"prompt": 5}')
    with pytest.raises(PromptsFileError, match="line 1"):
        run_batch(tmp_path / "no-such-model.gguf", prompts, tmp_path / "out.jsonl", 2)


def test_a_job_runs_every_prompt_once_and_a_rerun_has_nothing_to_do(starter_model, tmp_path):
    prompts = write_lines(tmp_path / "p.jsonl", *[json.dumps({"id": i, "prompt": f"Say the number {i}."})
                                                   for i in range(5)],
                          json.dumps({"id": "long", "prompt": "word " * 900}))  # too long for the context
    out = tmp_path / "out.jsonl"
    seen = []
    summary = run_batch(starter_model, prompts, out, 3, max_tokens=8, temperature=0, n_ctx=512, n_threads=2,
                        progress=lambda done, total, message: seen.append((done, total)))
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["id"] for r in records) == [0, 1, 2, 3, 4]
    for r in records:
        assert r["prompt"].startswith("Say the number") and r["reply"] and r["finish_reason"] in ("stop", "length")
        assert 0 < r["usage"]["completion_tokens"] <= 8 and r["usage"]["prompt_tokens"] > 5
        assert r["timings"]["ttft_s"] > 0
    assert (summary.total, summary.done, summary.skipped, summary.failed, summary.requested) == (6, 5, 0, 1, 6)
    assert summary.failures[0]["id"] == "long" and "context" in summary.failures[0]["error"]
    assert summary.tokens_per_s > 0 and summary.completion_tokens == sum(r["usage"]["completion_tokens"] for r in records)
    assert seen[-1] == (5, 6)
    again = run_batch(starter_model, prompts, out, 3, max_tokens=8, temperature=0, n_ctx=512, n_threads=2)
    assert (again.done, again.skipped, again.requested) == (0, 5, 1)  # only the failed one is tried again
    assert len(out.read_text(encoding="utf-8").splitlines()) == 5


def test_cancel_keeps_the_finished_lines(starter_model, tmp_path):
    prompts = write_lines(tmp_path / "p.jsonl", *[json.dumps({"prompt": f"Tell a story number {i}."})
                                                   for i in range(20)])
    out = tmp_path / "out.jsonl"
    cancel = CancelToken()

    def progress(done, total, message):
        if done >= 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        run_batch(starter_model, prompts, out, 2, max_tokens=6, temperature=0, n_ctx=512, n_threads=2,
                  progress=progress, cancel=cancel)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert 2 <= len(lines) < 20 and all(json.loads(line)["reply"] for line in lines)
