"""The transcript: markdown for finished replies, cheap appends while streaming, edit links."""
from __future__ import annotations

import time

from PySide6.QtCore import QUrl
from PySide6.QtGui import QTextFormat

from runtime.engine.types import ReplyStats
from runtime.store.conversations import Message
from widgets.chat.message_view import MessageView

REPLY = """Here is how:

1. Install it
2. Run **this**:

```python
print("hello")
```

- done
"""


def message(mid, role, content, stats=None, position=0):
    return Message(id=mid, conversation_id=1, position=position, role=role, content=content,
                   stats=stats, created_at=0.0)


def code_blocks(view):
    doc, found = view.document(), []
    block = doc.begin()
    while block.isValid():
        fmt = block.blockFormat()
        if fmt.hasProperty(QTextFormat.Property.BlockCodeFence) or fmt.hasProperty(
                QTextFormat.Property.BlockCodeLanguage):
            found.append(block.text())
        block = block.next()
    return found


def make_view(qtbot):
    view = MessageView()
    qtbot.addWidget(view)
    view.resize(600, 400)
    return view


def test_finished_reply_is_rendered_as_markdown(qtbot):
    view = make_view(qtbot)
    stats = ReplyStats(prompt_tokens=10, prompt_tokens_evaluated=10, completion_tokens=20, ttft_s=0.1,
                       gen_tokens_per_s=50.0, total_s=0.5, finish_reason="stop")
    view.set_messages([message(1, "user", "How do I say hello?"),
                       message(2, "assistant", REPLY, stats, position=1)])
    text = view.toPlainText()
    assert 'print("hello")' in code_blocks(view)
    assert "```" not in text and "**" not in text  # rendered, not shown raw
    assert stats.summary() in text
    markdown = view.document().toMarkdown()
    assert "```" in markdown and "**this**" in markdown
    assert view.document().findBlockByNumber(0).text().startswith("You")


def test_user_text_is_shown_as_typed(qtbot):
    view = make_view(qtbot)
    view.append_message(message(5, "user", "keep **stars** as typed"))
    assert "keep **stars** as typed" in view.toPlainText()


def test_stream_then_render_once(qtbot):
    view = make_view(qtbot)
    view.append_message(message(1, "user", "hi"))
    view.begin_stream()
    for piece in ["Sure", ":\n\n```python\n", "x = 1\n", "```\n"]:
        view.append_stream_text(piece)
    assert view.streamed_text == "Sure:\n\n```python\nx = 1\n```\n"
    assert "```python" in view.toPlainText()  # plain while streaming
    view.end_stream(message(2, "assistant", view.streamed_text, ReplyStats(finish_reason="stop"), 1))
    assert not view.streaming
    assert "x = 1" in code_blocks(view)
    assert "```" not in view.toPlainText()
    assert view.toPlainText().count("Assistant") == 1


def test_end_stream_without_message_removes_the_placeholder(qtbot):
    view = make_view(qtbot)
    view.append_message(message(1, "user", "hi"))
    before = view.toPlainText()
    view.begin_stream()
    view.end_stream(None)
    assert view.toPlainText() == before


def test_long_stream_stays_cheap(qtbot):
    """2000 tokens in 40 ms flushes: each append costs about the same at the end as at the start."""
    view = make_view(qtbot)
    view.show()
    view.begin_stream()
    tokens = [f"word{i} " + ("\n" if i % 25 == 24 else "") for i in range(2000)]
    costs = []
    for start in range(0, len(tokens), 10):  # ~10 tokens per flush
        chunk = "".join(tokens[start:start + 10])
        t0 = time.perf_counter()
        view.append_stream_text(chunk)
        costs.append(time.perf_counter() - t0)
    assert view.streamed_text == "".join(tokens)
    first, last = sum(costs[:20]) / 20, sum(costs[-20:]) / 20
    assert max(costs) < 0.05, f"slowest append took {max(costs) * 1000:.1f} ms"
    assert last < max(5 * first, 0.002), f"appends grew from {first * 1e3:.2f} ms to {last * 1e3:.2f} ms"
    t0 = time.perf_counter()
    view.end_stream(message(9, "assistant", view.streamed_text, ReplyStats(), 1))
    assert time.perf_counter() - t0 < 1.0


def test_edit_link_emits_message_id(qtbot):
    view = make_view(qtbot)
    view.append_message(message(42, "user", "edit me"))
    assert 42 in view.editable_ids
    with qtbot.waitSignal(view.sig_edit_requested) as blocker:
        view.anchorClicked.emit(QUrl("edit:42"))
    assert blocker.args == [42]
    # the link is in the document itself
    doc = view.document()
    block, hrefs = doc.begin(), []
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fmt = it.fragment().charFormat()
            if fmt.isAnchor():
                hrefs.append(fmt.anchorHref())
            it += 1
        block = block.next()
    assert "edit:42" in hrefs
