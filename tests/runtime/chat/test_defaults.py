"""New chats start from the defaults the person saved, not from the last chat."""
from __future__ import annotations

import json

from runtime.chat.defaults import ChatDefaults, defaults_path, load_defaults, reset_defaults, save_defaults
from runtime.engine.types import SamplingParams


def test_built_in_defaults_until_something_is_saved():
    assert load_defaults() == ChatDefaults()


def test_saved_defaults_come_back():
    saved = ChatDefaults("You are a pirate.", SamplingParams(temperature=1.3, max_tokens=64), "stop")
    save_defaults(saved)
    assert load_defaults() == saved
    reset_defaults()
    assert load_defaults() == ChatDefaults()


def test_a_damaged_file_or_value_falls_back_to_the_built_in_one():
    defaults_path().parent.mkdir(parents=True, exist_ok=True)
    defaults_path().write_text("{broken", encoding="utf-8")
    assert load_defaults() == ChatDefaults()
    defaults_path().write_text(json.dumps({"system_prompt": "Hi", "sampling": {"top_p": 9},
                                           "context_policy": "explode"}), encoding="utf-8")
    loaded = load_defaults()
    assert loaded.system_prompt == "Hi" and loaded.sampling == SamplingParams()
    assert loaded.context_policy == "drop_oldest"
