"""Fixtures of the conversation tests: a fresh conversation store in the test's folder."""
from __future__ import annotations

import pytest

from runtime.store.conversations import ConversationStore


@pytest.fixture
def store(tmp_path):
    with ConversationStore(tmp_path / "chats.sqlite") as s:
        yield s
