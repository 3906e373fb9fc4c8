"""`workbench chat` saves its turns as a conversation the Chat tab shares, and fits long ones to --ctx."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def chat_json(*args: str) -> dict:
    result = run_cli("chat", "SmolLM2-135M-Instruct.Q4_1", "--max-tokens", "16", "--temperature", "0",
                     "--threads", "2", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_chat_continues_a_saved_conversation(starter_model):
    from runtime.store.conversations import ConversationStore

    first = chat_json("--prompt", "Name a fruit.", "--system", "Answer in one word.", "--ctx", "1024")
    second = chat_json("--prompt", "Name another one.", "--conversation", str(first["conversation_id"]),
                       "--ctx", "1024")
    assert second["conversation_id"] == first["conversation_id"] and second["dropped"] == 0
    assert second["prompt_tokens"] > first["prompt_tokens"] + first["completion_tokens"]
    with ConversationStore() as store:
        conv = store.get_conversation(first["conversation_id"])
        saved = store.messages(conv.id)
    assert conv.title == "Name a fruit." and conv.system_prompt == "Answer in one word."
    assert [(m.role, m.content) for m in saved] == [
        ("user", "Name a fruit."), ("assistant", first["reply"]),
        ("user", "Name another one."), ("assistant", second["reply"])]


def test_chat_drops_the_oldest_messages_of_a_long_conversation(starter_model):
    from runtime.store.conversations import ConversationStore

    with ConversationStore() as store:
        conv = store.create_conversation("Long", system_prompt="Be brief.")
        for i in range(12):
            store.add_message(conv.id, "user", f"Tell me about the number {i}, in detail please.")
            store.add_message(conv.id, "assistant", f"The number {i} is a number. " * 4)
    data = chat_json("--prompt", "Name a colour.", "--conversation", str(conv.id), "--ctx", "256")
    assert data["reply"].strip() and data["dropped"] > 0 and data["dropped"] % 2 == 0
    assert data["prompt_tokens"] <= 256 - 16


def test_chat_stop_policy_reports_a_full_context(starter_model):
    from runtime.store.conversations import ConversationStore

    result = run_cli("chat", str(starter_model), "--prompt", "word " * 300, "--ctx", "128",
                     "--context-policy", "stop")
    assert result.returncode == 2
    assert "tokens long" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    with ConversationStore() as store:
        assert store.list_conversations() == []  # nothing half-made is left behind


def test_chat_unknown_conversation_exits_2(starter_model):
    result = run_cli("chat", str(starter_model), "--prompt", "hi", "--conversation", "999")
    assert result.returncode == 2 and "No conversation with id 999" in result.stderr
