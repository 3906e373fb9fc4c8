"""Streamed markdown cut into finished blocks + a tail; safe parsing; code colours (all Qt-free)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from runtime.chat.markdown_blocks import BlockStream, finished_length, markdown_parser, safe_link
from runtime.chat.markdown_highlight import code_style, highlight, language_of


@pytest.mark.parametrize("text, finished", [
    ("", ""),
    ("Hello wor", ""),
    ("Hello world\n", ""),                       # the last block may still grow
    ("One.\n\nTwo", "One.\n\n"),
    ("# Title\nText", "# Title\n"),              # a "#" heading is finished with its line
    ("# Tit", ""),
    ("para\n#", ""),                             # "#" may become "#tag", part of the paragraph
    ("para\n#tag\n", ""),
    ("```python\nx = 1\n", ""),                  # an open fence is never finished
    ("```python\nx = 1\n```", ""),               # ... nor before its closing line is complete
    ("```python\nx = 1\n```\n", "```python\nx = 1\n```\n"),
    ("```\na\n````\n", "```\na\n````\n"),        # a longer closing fence closes it too
    ("```\na\n``\n", ""),
    ("- a\n- b\n", ""),                          # a list may get more items
    ("- a\n- b\n\nAfter", ""),                  # only complete lines count
    ("- a\n- b\n\nAfter\n", "- a\n- b\n\n"),
    ("Title\n---\n", ""),                        # a setext heading ends only when something follows
    ("---\nx", "---\n"),
    ("| a | b |\n|---|---|\n| 1 | 2 |\n", ""),  # rows may follow
    ("> q\n\n- item\n", "> q\n\n"),
])
def test_finished_part(text, finished):
    assert text[:finished_length(text)] == finished


def test_block_stream_feeds():
    stream = BlockStream()
    assert stream.feed("## Plan\n\nFirst ") == "## Plan\n"
    assert stream.feed("step.\n\n```sh\nls\n") == "\nFirst step.\n\n"
    assert stream.tail == "```sh\nls\n"
    assert stream.feed("```\nDone") == "```sh\nls\n```\n"
    assert stream.tail == "Done" and stream.text == "## Plan\n\nFirst step.\n\n```sh\nls\n```\nDone"


def test_html_is_text_and_only_web_links_count():
    html = markdown_parser().render('<b>x</b> <script>alert(1)</script> [a](javascript:alert(1))\n')
    assert "<b>" not in html and "&lt;b&gt;" in html and "<script>" not in html
    assert safe_link("https://example.org/x") and safe_link("mailto:a@b.c")
    assert safe_link("javascript:alert(1)") is None and safe_link("file:///etc/passwd") is None
    assert safe_link("/etc/passwd") is None


def test_reference_links_are_off():
    """A definition at the end must not change earlier text (a finished block would differ)."""
    html = markdown_parser().render("see [docs]\n\n[docs]: https://example.org\n")
    assert "<a" not in html


def test_highlight_keeps_the_text_and_colours_it():
    code = 'def f(x):\n    return "hi"  # done\n'
    runs = highlight(code, "python")
    assert "".join(r.text for r in runs) == code
    assert len({r.colour for r in runs if r.colour}) >= 3
    assert highlight(code, "no-such-language") == [highlight(code, "")[0]]
    assert highlight("", "python") == []
    assert language_of(" python title=x ") == "python" and language_of("") == ""
    assert code_style(True).background != code_style(False).background


LINES = ["# Head", "## Sub", "para text", "more *em* and **strong**", "", "", "- item", "  - nested", "1. one",
         "2. two", "> quote", "> - quoted item", "```python", "```", "x = 1", "    indented code", "---", "===",
         "| a | b |", "|---|---:|", "| 1 | 2 |", "#tag", "*", "***", "~~~", "Title", "[ref]", "[ref]: https://x.org",
         "  continued", "   - deep", "> ```", "1) paren", "    ", "\\", "<div>", "Setext\n---", "text |"]


@st.composite
def chunked_markdown(draw):
    lines = draw(st.lists(st.sampled_from(LINES), max_size=25))
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", " tail"]))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    return text, pieces


@settings(max_examples=300, deadline=None)
@given(chunked_markdown())
def test_any_chunking_gives_back_the_text(case):
    text, pieces = case
    stream, finished = BlockStream(), []
    for piece in pieces:
        finished.append(stream.feed(piece))
    assert "".join(finished) + stream.tail == text
    assert stream.text == text


@settings(max_examples=300, deadline=None)
@given(chunked_markdown())
def test_finished_blocks_render_as_in_the_whole(case):
    """Rendering each finished part once, then the tail, gives the render of the whole reply."""
    text, pieces = case
    md = markdown_parser()
    stream, rendered = BlockStream(), []
    for piece in pieces:
        done = stream.feed(piece)
        if done:
            rendered.append(md.render(done))
    rendered.append(md.render(stream.tail))
    assert "".join(rendered) == md.render(text)
