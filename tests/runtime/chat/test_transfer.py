"""Export a conversation to Markdown and JSON, import the JSON back; bad files are refused, nothing half-written."""
from __future__ import annotations

import json

import pytest

from runtime.chat.transfer import conversation_markdown, export_json, export_markdown, import_json
from runtime.engine.types import ReplyStats, SamplingParams
from runtime.errors import ExportError, TransferError



@pytest.fixture
def conversation(store):
    conv = store.create_conversation(
        "Rust lifetimes", backend="local", model_ref="/home/someone/models/Smol-Q8_0.gguf",
        system_prompt="Be brief.\nUse examples.", sampling=SamplingParams(temperature=0.2, top_k=12),
        context_policy="stop")
    store.add_message(conv.id, "user", "What is a lifetime?")
    store.add_message(conv.id, "assistant", "A scope.\n\n```rust\nfn f<'a>(x: &'a str) {}\n```",
                      ReplyStats(prompt_tokens=30, completion_tokens=12, ttft_s=0.2, gen_tokens_per_s=40.0,
                                 finish_reason="stop"))
    return conv


def test_json_round_trip_keeps_everything_but_the_full_path(store, conversation, tmp_path):
    path = export_json(store, conversation.id, tmp_path / "chat.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["model"] == "Smol-Q8_0.gguf" and "/home/someone" not in path.read_text()
    new_id = import_json(store, path)
    assert new_id != conversation.id
    old, new = store.get_conversation(conversation.id), store.get_conversation(new_id)
    assert (new.title, new.system_prompt, new.sampling, new.context_policy) == \
        (old.title, old.system_prompt, old.sampling, old.context_policy)
    old_messages, new_messages = store.messages(conversation.id), store.messages(new_id)
    assert [(m.role, m.content, m.stats) for m in new_messages] == [(m.role, m.content, m.stats) for m in old_messages]


def test_markdown_has_a_heading_per_message_and_the_code_intact(store, conversation, tmp_path):
    text = export_markdown(store, conversation.id, tmp_path / "chat.md").read_text(encoding="utf-8")
    assert text.startswith("# Rust lifetimes\n")
    assert text.index("## You") < text.index("What is a lifetime?") < text.index("## Assistant")
    assert "```rust\nfn f<'a>(x: &'a str) {}\n```" in text
    assert "> Be brief.\n> Use examples." in text
    assert conversation_markdown(store, conversation.id) == text


@pytest.mark.parametrize("content, expected", [
    ("# Rust lifetimes\n\n## You\n", "Markdown export"),
    ("{not json", "not valid JSON"),
    ('{"title": "x"}', "no list of messages"),
    ('{"format": "other-app", "messages": []}', "not a Model Workbench conversation"),
    ('{"version": 99, "messages": []}', "newer Model Workbench"),
    ('{"messages": [{"role": "wizard", "content": "hi"}]}', "Message 1"),
    ('{"messages": [{"role": "user", "content": "hi"}], "sampling": {"top_p": 7}}', "top_p"),
])
def test_a_bad_file_is_refused_with_the_reason_and_nothing_is_written(store, tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    before = store.list_conversations()
    with pytest.raises(TransferError) as caught:
        import_json(store, path)
    assert expected in caught.value.user_text() and caught.value.hint
    assert store.list_conversations() == before


def test_a_failure_part_way_leaves_no_half_conversation(store, conversation, tmp_path, monkeypatch):
    path = export_json(store, conversation.id, tmp_path / "chat.json")
    real_add = store.add_message
    calls = []

    def failing_add(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_add(*args, **kwargs)

    monkeypatch.setattr(store, "add_message", failing_add)
    with pytest.raises(OSError):
        import_json(store, path)
    assert [c.id for c in store.list_conversations()] == [conversation.id]


def test_export_to_a_missing_folder_says_so_and_leaves_nothing(store, conversation, tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export_json(store, conversation.id, tmp_path / "nowhere" / "chat.json")
    assert not (tmp_path / "nowhere").exists()
