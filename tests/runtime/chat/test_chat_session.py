"""The conversation session on the real starter model in a real engine with a small context."""
from __future__ import annotations

import os
import signal

import pytest

from engine_helpers import started_engine
from runtime.chat.context import reply_room
from runtime.chat.session import DEFAULT_TITLE, ConversationSession
from runtime.engine.client import estimate_tokens
from runtime.engine.local import LocalEngine
from runtime.engine.types import LoadOptions, SamplingParams
from runtime.errors import ContextOverflow, EngineCrashed
from runtime.jobs import CancelToken

N_CTX = 512
GREEDY = SamplingParams(temperature=0, max_tokens=32)
SYSTEM = "You are a helpful assistant. Answer in one short sentence."
QUESTIONS = [f"Tell me one fact about the number {n}." for n in range(1, 30)]


@pytest.fixture(scope="module")
def engine(starter_model):
    yield from started_engine(starter_model, LoadOptions(n_ctx=N_CTX, n_threads=2))



def new_chat(store, engine, **fields) -> ConversationSession:
    return ConversationSession.create(store, engine.client(), system_prompt=SYSTEM, **fields)


def sent_messages(chat, turn) -> list[dict]:
    """What the turn sent: the system prompt and the messages after the cut, without the reply."""
    history = chat.messages()[:-1] if turn.reply else chat.messages()
    return [{"role": "system", "content": SYSTEM}] + [
        {"role": m.role, "content": m.content} for m in history[turn.dropped:]]


def test_counts_tokens_exactly_as_the_engine_evaluates_them(store, engine):
    client = engine.client()
    assert client.context_length() == N_CTX
    chat = new_chat(store, engine)
    turn = chat.send("Name a fruit.", GREEDY)
    assert client.count_tokens(sent_messages(chat, turn)) == turn.stats.prompt_tokens
    # the estimate used for remote servers errs on the large side
    assert estimate_tokens(sent_messages(chat, turn)) >= turn.stats.prompt_tokens


def test_send_titles_saves_and_records_the_backend(store, engine):
    chat = new_chat(store, engine)
    assert chat.conversation.title == DEFAULT_TITLE
    texts = []
    turn = chat.send("What is the capital of France?\nThanks.", GREEDY, on_text=texts.append)
    conv = chat.conversation
    assert conv.title == "What is the capital of France?"
    assert conv.backend == "local" and conv.model_ref == str(engine.model_path)
    assert turn.reply.content == "".join(texts) and turn.reply.content.strip()
    assert turn.reply.stats.completion_tokens > 0 and turn.dropped == 0
    assert [(m.role, m.content) for m in chat.messages()] == [
        ("user", "What is the capital of France?\nThanks."), ("assistant", turn.reply.content)]


def test_regenerate_and_edit_and_resend(store, engine):
    chat = new_chat(store, engine)
    chat.send("Name a colour.", GREEDY)
    chat.send("Name a fruit.", GREEDY)
    again = chat.regenerate(SamplingParams(temperature=1.0, max_tokens=16, seed=3))
    assert [m.role for m in chat.messages()] == ["user", "assistant"] * 2
    assert chat.messages()[-1].id == again.reply.id
    first = chat.messages()[0]
    edited = chat.edit_and_resend(first.id, "Name an animal.", GREEDY)
    assert [(m.role, m.content) for m in chat.messages()][:1] == [("user", "Name an animal.")]
    assert len(chat.messages()) == 2 and edited.user.content == "Name an animal."
    assert chat.conversation.title == "Name an animal."  # the title followed the edited first message
    with pytest.raises(ValueError):
        chat.edit_and_resend(chat.messages()[1].id, "not mine")


def test_stop_saves_the_partial_reply(store, engine):
    chat = new_chat(store, engine)
    cancel = CancelToken()
    pieces = []

    def on_text(text):
        pieces.append(text)
        if len("".join(pieces)) > 20:
            cancel.cancel()

    turn = chat.send("Write a long story about a lighthouse.", SamplingParams(temperature=0, max_tokens=400),
                     on_text=on_text, cancel=cancel)
    assert turn.stats.finish_reason == "cancelled"
    assert turn.reply.content.strip() and turn.reply.stats.finish_reason == "cancelled"
    assert chat.messages()[-1].content == turn.reply.content


def test_stop_before_the_reply_starts_writes_nothing(store, engine):
    from runtime.errors import Cancelled

    chat = new_chat(store, engine)
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        chat.send("Hello?", GREEDY, cancel=cancel)
    assert chat.messages() == [] and chat.conversation.title == DEFAULT_TITLE


def test_drop_oldest_keeps_the_system_prompt_and_reuses_the_cache(store, engine):
    chat = new_chat(store, engine)
    budget = N_CTX - reply_room(N_CTX, GREEDY.max_tokens)
    turns = []
    for question in QUESTIONS:
        turn = chat.send(question, GREEDY)
        turns.append(turn)
        assert turn.reply is not None and turn.reply.content.strip()
        assert turn.stats.prompt_tokens <= budget
        # exactly the system prompt plus the messages after the cut were sent
        assert engine.client().count_tokens(sent_messages(chat, turn)) == turn.stats.prompt_tokens
        if len(turns) >= 2 and turns[-2].dropped > 0 and turn.dropped == turns[-2].dropped:
            break
    else:
        pytest.fail("the conversation never outgrew the context, or the cut never held for a turn")
    cut_turn, next_turn = turns[-2], turns[-1]
    assert cut_turn.dropped > 0 and cut_turn.dropped % 2 == 0  # whole turns (question + answer)
    assert cut_turn.stats.prompt_tokens <= budget * 0.75       # the cut freed room for the next turns
    assert chat.dropped == next_turn.dropped
    # the turn after the cut evaluates only its new tokens: the kept prefix is in the KV cache
    assert next_turn.stats.prompt_tokens > 200
    assert next_turn.stats.prompt_tokens_evaluated < next_turn.stats.prompt_tokens / 5


def test_stop_policy_raises_and_writes_nothing(store, engine):
    chat = new_chat(store, engine)
    store.update_conversation(chat.conversation_id, context_policy="stop")
    for question in QUESTIONS:
        before = [(m.role, m.content) for m in chat.messages()]
        try:
            chat.send(question, GREEDY)
        except ContextOverflow as exc:
            assert "tokens long" in str(exc) and "Drop oldest messages" in exc.hint
            assert [(m.role, m.content) for m in chat.messages()] == before
            break
    else:
        pytest.fail("the conversation never outgrew the context")


def test_an_engine_crash_mid_reply_keeps_the_partial_reply(store, starter_model):
    engine = LocalEngine(starter_model, LoadOptions(n_ctx=N_CTX, n_threads=2))
    engine.start()
    try:
        chat = new_chat(store, engine)
        pieces = []

        def on_text(text):
            pieces.append(text)
            if len(pieces) == 3:
                os.kill(engine.pid, signal.SIGKILL)

        with pytest.raises(EngineCrashed) as info:
            chat.send("Write a long story about a dragon.", SamplingParams(temperature=0, max_tokens=400),
                      on_text=on_text)
        saved = chat.messages()
        assert [m.role for m in saved] == ["user", "assistant"]
        assert info.value.partial_reply.id == saved[1].id
        assert saved[1].content == "".join(pieces) and saved[1].content
    finally:
        engine.stop()


def test_the_count_endpoint_needs_the_key(engine):
    from runtime.engine.client import ChatClient
    from runtime.errors import RemoteServerError

    stranger = ChatClient(engine.client().base_url, api_key="wrong", engine=engine)
    with pytest.raises(RemoteServerError, match="rejected the API key"):
        stranger.count_tokens([{"role": "user", "content": "hi"}])
