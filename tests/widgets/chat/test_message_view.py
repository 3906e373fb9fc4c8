"""The transcript: rendered replies (code, tables, quotes, lists), streaming by blocks, links, figures."""
from __future__ import annotations

import time

from PySide6.QtCore import QEvent, Qt, QUrl
from PySide6.QtGui import QFont, QGuiApplication, QHelpEvent, QTextCursor, QTextFormat
from PySide6.QtWidgets import QApplication, QToolTip

from runtime.engine.types import ReplyStats
from runtime.store.conversations import Message
from widgets.chat.markdown_render import CODE_BLOCK_PROPERTY
from widgets.chat.message_view import MessageView

REPLY = """Here is how:

1. Install it
2. Run **this**:

```python
print("hello")
```

- done
"""

SAMPLE = """## Plan

Some *text* with `code` and a [site](https://example.org).

> A quote.

- first
- second
  - nested

```python
def greet(name: str) -> str:
    # say hello
    return f"Hello, {name}!" * 3
```

| Quant | Size | Quality |
|:------|-----:|:-------:|
| Q8_0  | 142 MB | best |
| Q4_K_M | 85 MB | good |

Done.
"""

CODE = 'def greet(name: str) -> str:\n    # say hello\n    return f"Hello, {name}!" * 3'


def message(mid, role, content, stats=None, position=0):
    return Message(id=mid, conversation_id=1, position=position, role=role, content=content,
                   stats=stats, created_at=0.0)


def make_view(qtbot):
    view = MessageView()
    qtbot.addWidget(view)
    view.resize(600, 400)
    return view


def blocks(view):
    block, found = view.document().begin(), []
    while block.isValid():
        found.append(block)
        block = block.next()
    return found


def block_with(view, text):
    return next(b for b in blocks(view) if b.text() == text)


def fragments(view):
    """(text, char format) of every fragment in the document."""
    found = []
    for block in blocks(view):
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            found.append((fragment.text(), fragment.charFormat()))
            it += 1
    return found


def code_blocks(view):
    return [b.text() for b in blocks(view) if b.blockFormat().hasProperty(QTextFormat.Property.BlockCodeLanguage)]


def tables(view):
    found = []
    for block in blocks(view):
        table = QTextCursor(block).currentTable()
        if table is not None and table not in found:
            found.append(table)
    return found


def code_tables(view):
    return [t for t in tables(view) if t.format().property(CODE_BLOCK_PROPERTY)]


def hrefs(view):
    return [fmt.anchorHref() for _text, fmt in fragments(view) if fmt.isAnchor()]


def structure(view):
    """What a reader sees, block by block: text, heading level, list level, quote level, in a table."""
    out = []
    for block in blocks(view):
        fmt = block.blockFormat()
        out.append((block.text(), fmt.headingLevel(), block.textList().format().indent() if block.textList() else 0,
                    fmt.intProperty(QTextFormat.Property.BlockQuoteLevel),
                    QTextCursor(block).currentTable() is not None))
    return out


STATS = ReplyStats(prompt_tokens=230, prompt_tokens_evaluated=30, completion_tokens=120, ttft_s=0.162,
                   gen_tokens_per_s=84.3, total_s=1.6, finish_reason="stop")


def test_finished_reply_is_rendered_as_markdown(qtbot):
    view = make_view(qtbot)
    view.set_messages([message(1, "user", "How do I say hello?"),
                       message(2, "assistant", REPLY, STATS, position=1)])
    text = view.toPlainText()
    assert 'print("hello")' in code_blocks(view)
    assert "```" not in text and "**" not in text  # rendered, not shown raw
    assert STATS.summary() in text
    bold = [t for t, fmt in fragments(view) if fmt.fontWeight() == QFont.Weight.Bold]
    assert "this" in bold
    assert view.document().findBlockByNumber(1).text().startswith("You")


def test_code_block_is_coloured_on_a_background_with_its_language_and_copy(qtbot):
    view = make_view(qtbot)
    view.set_messages([message(2, "assistant", SAMPLE)])
    (table,) = code_tables(view)
    assert table.cellAt(0, 0).firstCursorPosition().block().text() == "python"
    assert table.cellAt(0, 1).firstCursorPosition().block().text() == "Copy"
    code_cell = table.cellAt(1, 0)
    assert code_cell.format().background().style() != 0  # a background brush is set
    cursor = code_cell.firstCursorPosition()
    colours = set()
    while cursor.position() < code_cell.lastPosition():
        cursor.movePosition(QTextCursor.MoveOperation.NextCharacter)
        if cursor.block().text().strip():
            colours.add(cursor.charFormat().foreground().color().name())
    assert len(colours) >= 3, colours
    assert cursor.charFormat().fontFixedPitch()


def test_copy_puts_the_exact_code_on_the_clipboard(qtbot):
    view = make_view(qtbot)
    view.set_messages([message(2, "assistant", SAMPLE)])
    (copy,) = [h for h in hrefs(view) if h.startswith("copy:")]
    QGuiApplication.clipboard().setText("")
    view.anchorClicked.emit(QUrl(copy))
    assert QGuiApplication.clipboard().text() == CODE


def test_a_long_code_line_never_widens_the_transcript(qtbot):
    view = make_view(qtbot)
    view.show()
    line = "x = '" + "a" * 300 + "'"
    view.set_messages([message(2, "assistant", f"```python\n{line}\n```\n\nand a long word {'b' * 300}\n")])
    qtbot.wait(10)
    assert view.document().size().width() <= view.viewport().width()
    assert view.horizontalScrollBar().maximum() == 0 and not view.horizontalScrollBar().isVisible()
    assert line in view.toPlainText().replace("\u2028", "")  # all of it, wrapped, not cut off


def test_table_headers_sit_over_their_columns(qtbot):
    view = make_view(qtbot)
    view.set_messages([message(2, "assistant", SAMPLE)])
    (table,) = [t for t in tables(view) if not t.format().property(CODE_BLOCK_PROPERTY)]
    assert (table.rows(), table.columns()) == (3, 3)
    assert table.format().headerRowCount() == 1
    header = [table.cellAt(0, c).firstCursorPosition().block().text() for c in range(3)]
    assert header == ["Quant", "Size", "Quality"]
    assert table.cellAt(1, 1).firstCursorPosition().block().text() == "142 MB"
    head_format = table.cellAt(0, 0).firstCursorPosition()
    head_format.movePosition(QTextCursor.MoveOperation.NextCharacter)
    assert head_format.charFormat().fontWeight() == QFont.Weight.Bold
    assert table.cellAt(1, 1).firstCursorPosition().block().blockFormat().alignment() & Qt.AlignmentFlag.AlignRight


def test_a_quote_then_a_list_are_separate_blocks(qtbot):
    view = make_view(qtbot)
    view.set_messages([message(2, "assistant", "> A quote.\n- item one\n- item two\n")])
    quote, item = block_with(view, "A quote."), block_with(view, "item one")
    assert quote.blockFormat().intProperty(QTextFormat.Property.BlockQuoteLevel) == 1 and quote.textList() is None
    assert item.textList() is not None and not item.blockFormat().hasProperty(QTextFormat.Property.BlockQuoteLevel)


def test_nested_lists_have_two_levels(qtbot):
    view = make_view(qtbot)
    view.set_messages([message(2, "assistant", SAMPLE)])
    first, nested = block_with(view, "first"), block_with(view, "nested")
    assert first.textList().format().indent() == 1 and nested.textList().format().indent() == 2
    assert block_with(view, "second").textList() == first.textList()
    assert block_with(view, "Plan").blockFormat().headingLevel() == 2


def test_html_in_a_reply_is_text_and_only_web_links_are_links(qtbot):
    view = make_view(qtbot)
    view.set_messages([message(2, "assistant", '<b>bold?</b> <img src="/etc/x.png"> [bad](javascript:alert(1)) '
                                              "[good](https://example.org) ![pic](https://example.org/p.png) ![x](file:///etc/passwd)\n")])
    text = view.toPlainText()
    assert "<b>bold?</b>" in text and '<img src="/etc/x.png">' in text
    assert not [t for t, fmt in fragments(view) if t == "bold?" and fmt.fontWeight() == QFont.Weight.Bold]
    assert "https://example.org" in hrefs(view)
    assert not [h for h in hrefs(view) if h.startswith(("javascript", "file"))]
    assert "[image: pic]" in text  # an image is named, never loaded
    assert view.loadResource(0, QUrl("file:///etc/passwd")) is None


def test_user_text_is_shown_as_typed(qtbot):
    view = make_view(qtbot)
    view.append_message(message(5, "user", "keep **stars** and <b>tags</b> as typed"))
    assert "keep **stars** and <b>tags</b> as typed" in view.toPlainText()


def test_figures_in_plain_words_with_exact_ones_on_hover(qtbot):
    view = make_view(qtbot)
    view.set_messages([message(2, "assistant", "Hi.", STATS)])
    summary = STATS.summary()
    assert "tok/s" not in summary and "TTFT" not in summary and "0.16 s" in summary
    (fmt,) = [fmt for t, fmt in fragments(view) if t == summary]
    assert fmt.toolTip() == STATS.details()
    details = STATS.details()
    assert "200 of them reused from the cache" in details and "0.162 s" in details and "84.30" in details
    # and the view really shows it when the pointer rests on the line
    view.show()
    cursor = QTextCursor(view.document())
    cursor.setPosition(view.toPlainText().index(summary) + 3)
    point = view.cursorRect(cursor).center()
    QApplication.sendEvent(view.viewport(), QHelpEvent(QEvent.Type.ToolTip, point, view.viewport().mapToGlobal(point)))
    assert QToolTip.text() == details
    QToolTip.hideText()


def test_streamed_blocks_render_as_they_finish(qtbot):
    view = make_view(qtbot)
    view.append_message(message(1, "user", "hi"))
    view.begin_stream()
    for piece in ["## Pl", "an\n\nSome ", "*text*.\n\n```py", "thon\nx = 1\n", "```\n", "\nStill **grow"]:
        view.append_stream_text(piece)
    assert view.streamed_text == "## Plan\n\nSome *text*.\n\n```python\nx = 1\n```\n\nStill **grow"
    text = view.toPlainText()
    assert "##" not in text and "```" not in text  # finished blocks are rendered already
    assert block_with(view, "Plan").blockFormat().headingLevel() == 2
    assert "x = 1" in code_blocks(view) and len(code_tables(view)) == 1
    assert "Still **grow" in text  # the growing last block is provisional
    shown = structure(view)
    finished = shown[:[row[0] for row in shown].index("Still **grow")]
    view.append_stream_text("ing**")
    view.end_stream(message(2, "assistant", view.streamed_text, STATS, 1))
    assert not view.streaming
    assert structure(view)[:len(finished)] == finished  # the finished blocks did not change
    assert "Still growing" in view.toPlainText() and STATS.summary() in view.toPlainText()
    assert view.toPlainText().count("Assistant") == 1


def test_any_chunking_ends_as_the_whole_reply_rendered(qtbot):
    whole = make_view(qtbot)
    whole.set_messages([message(2, "assistant", SAMPLE, STATS)])
    for size in (1, 4, 17, 1000):
        view = make_view(qtbot)
        view.begin_stream()
        for start in range(0, len(SAMPLE), size):
            view.append_stream_text(SAMPLE[start:start + size])
        view.end_stream(message(2, "assistant", SAMPLE, STATS))
        assert structure(view) == structure(whole), size
        (copy,) = [h for h in hrefs(view) if h.startswith("copy:")]
        view.anchorClicked.emit(QUrl(copy))
        assert QGuiApplication.clipboard().text() == CODE  # the whole block, not the part first seen


def test_a_saved_reply_that_differs_from_the_stream_is_rendered_from_the_saved_text(qtbot):
    view = make_view(qtbot)
    view.begin_stream()
    view.append_stream_text("# Draft\n\nwrong text\n\nmore")
    view.end_stream(message(2, "assistant", "## Final\n\nright text", STATS))
    text = view.toPlainText()
    assert "Draft" not in text and "wrong" not in text and "right text" in text
    assert block_with(view, "Final").blockFormat().headingLevel() == 2


def test_end_stream_without_message_removes_the_placeholder(qtbot):
    view = make_view(qtbot)
    view.append_message(message(1, "user", "hi"))
    before = view.toPlainText()
    view.begin_stream()
    view.append_stream_text("Some text\n\n```py\nx")
    view.end_stream(None)
    assert view.toPlainText() == before


def test_long_markdown_stream_stays_cheap(qtbot):
    """~2000 tokens of markdown in ~10-token pieces: an append costs about the same at the end as at the start."""
    view = make_view(qtbot)
    view.show()
    view.begin_stream()
    section = ("## Step {i}\n\nSome words about step {i}, with **bold** and `code`.\n\n- a point\n- another point\n\n"
               "```python\nfor n in range({i}):\n    print(n)\n```\n\n| a | b |\n|---|---|\n| {i} | x |\n\n")
    text = "".join(section.format(i=i) for i in range(40))
    pieces = [text[i:i + 40] for i in range(0, len(text), 40)]
    costs = []
    for piece in pieces:
        t0 = time.perf_counter()
        view.append_stream_text(piece)
        costs.append(time.perf_counter() - t0)
    assert view.streamed_text == text
    first, last = sum(costs[:20]) / 20, sum(costs[-20:]) / 20
    assert max(costs) < 0.1, f"slowest append took {max(costs) * 1000:.1f} ms"
    assert last < max(3 * first, 0.004), f"appends grew from {first * 1e3:.2f} ms to {last * 1e3:.2f} ms"
    t0 = time.perf_counter()
    view.end_stream(message(9, "assistant", text, ReplyStats(), 1))
    assert time.perf_counter() - t0 < 0.1  # only the tail is left to render


def test_welcome_names_the_model_and_offers_prompts(qtbot):
    view = make_view(qtbot)
    prompts = ["Explain what a GGUF file is.", "Write a haiku about the sea.", "Give me three dinner ideas."]
    view.show_welcome("SmolLM2-135M-Instruct", prompts)
    assert view.showing_welcome and "SmolLM2-135M-Instruct" in view.toPlainText()
    links = [h for h in hrefs(view) if h.startswith("prompt:")]
    assert len(links) == 3
    with qtbot.waitSignal(view.sig_prompt_chosen) as blocker:
        view.anchorClicked.emit(QUrl(links[1]))
    assert blocker.args == [prompts[1]]
    view.append_message(message(1, "user", "hello"))  # the first message replaces the welcome
    assert not view.showing_welcome and "Welcome" not in view.toPlainText()
    view.show_welcome(None, prompts)
    assert "pick one on the right" in view.toPlainText()
    view.set_messages([])
    assert not view.showing_welcome and view.document().isEmpty()


def test_edit_link_emits_message_id(qtbot):
    view = make_view(qtbot)
    view.append_message(message(42, "user", "edit me"))
    assert 42 in view.editable_ids
    with qtbot.waitSignal(view.sig_edit_requested) as blocker:
        view.anchorClicked.emit(QUrl("edit:42"))
    assert blocker.args == [42]
    assert "edit:42" in hrefs(view)  # the link is in the document itself


def test_pending_user_message_gets_its_edit_link(qtbot):
    view = make_view(qtbot)
    view.append_message(message(None, "user", "not saved yet"))
    view.begin_stream()
    view.append_stream_text("Reply **text**")
    view.end_stream(message(3, "assistant", "Reply **text**", STATS))
    view.set_pending_user_id(7)
    assert "edit:7" in hrefs(view) and 7 in view.editable_ids
    assert view.document().findBlockByNumber(1).text() == "You   edit"
