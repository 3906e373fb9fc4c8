"""Markdown from a model, parsed safely and split into finished blocks while it streams in.

A reply arrives a few words at a time. Rendering it whole on every piece costs the whole reply each
time; showing it raw until the end makes it jump when it is finally rendered. Instead, the text is
cut into *finished* top-level blocks (a paragraph, a list, a table, a code block, ...) that no later
text can change, which are rendered once, and a *tail*, the growing last block, which is the only
part shown provisionally.

Where the cut goes: only complete lines (up to the last newline) are looked at, since a partial line
may still turn into something else ("#" alone is a heading, "#tag" is not). Among the top-level
blocks of those lines, every block before the last one is finished: a block ends for good once a
later one has started. A fenced code block is finished as soon as its closing fence line is complete,
a "# heading" or a rule (---) as soon as its line is, a paragraph, table or quote at a blank line.
Link reference definitions are switched off (one at the end could turn earlier text into links), so a
finished block renders the same whether it is rendered alone or as part of the whole reply.

The parser is markdown-it-py with CommonMark plus tables and strikethrough. Raw HTML is off (shown as
text), and ``safe_link`` keeps only http(s) and mailto links: a link in a reply never runs anything.
Qt-free: the widget turns the tokens into its own document.
"""
from __future__ import annotations

import functools
import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

_FENCE_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*$")
SAFE_SCHEMES = ("http://", "https://", "mailto:")
# Blocks that a blank line ends for good (not lists, indented or fenced code: those go on after one)
ENDED_BY_BLANK_LINE = ("paragraph_open", "heading_open", "table_open", "blockquote_open")


@functools.lru_cache(maxsize=1)
def markdown_parser() -> MarkdownIt:
    """The one configured parser: CommonMark, tables, strikethrough; no raw HTML, no references."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.disable(["reference", "html_block", "html_inline"])
    return md


def parse_markdown(text: str) -> list[Token]:
    """The block tokens of ``text`` (inline content in each ``inline`` token's children)."""
    return markdown_parser().parse(text)


def safe_link(href: str) -> str | None:
    """``href`` if it is a web or mail link, else None (javascript:, file:, relative paths, ...)."""
    href = (href or "").strip()
    return href if href.lower().startswith(SAFE_SCHEMES) else None


def finished_length(text: str) -> int:
    """How many leading characters of ``text`` form finished blocks (0 if none is finished yet)."""
    end = text.rfind("\n") + 1
    if end == 0:
        return 0
    complete = text[:end]
    starts: list[tuple[int, Token]] = [(tok.map[0], tok) for tok in parse_markdown(complete)
                                       if tok.level == 0 and tok.nesting >= 0 and tok.map]
    if not starts:
        return 0
    lines = complete.split("\n")  # the last element is "" (complete ends with a newline)
    last_line, last = starts[-1]
    cut_line = last_line
    if (last.type == "fence" and _fence_closed(last, lines)) or last.type == "hr" or (
            last.type == "heading_open" and last.markup.startswith("#")):
        cut_line = last.map[1]  # nothing after it can change these: finished once their line is
    elif last.type in ENDED_BY_BLANK_LINE and len(lines) >= 2 and not lines[-2].strip():
        cut_line = len(lines) - 1  # a blank line ended it; what follows starts a new block
    return sum(len(line) + 1 for line in lines[:cut_line])


def _fence_closed(token: Token, lines: list[str]) -> bool:
    start, end = token.map
    if end - start < 2:
        return False
    match = _FENCE_CLOSE.match(lines[end - 1])
    return bool(match) and match.group(1)[0] == token.markup[0] and len(match.group(1)) >= len(token.markup)


class BlockStream:
    """Cuts streamed text into finished blocks and a tail; each ``feed`` costs the new text + the tail.

    >>> s = BlockStream()
    >>> s.feed("# Title\\nSome "), s.feed("text"), s.tail
    ('# Title\\n', '', 'Some text')
    """

    def __init__(self) -> None:
        self._finished: list[str] = []
        self.tail = ""

    def feed(self, text: str) -> str:
        """Add streamed text; return the text of blocks that became finished ("" if none did)."""
        if not text:
            return ""
        self.tail += text
        cut = finished_length(self.tail)
        if cut == 0:
            return ""
        done, self.tail = self.tail[:cut], self.tail[cut:]
        self._finished.append(done)
        return done

    @property
    def finished(self) -> str:
        return "".join(self._finished)

    @property
    def text(self) -> str:
        return self.finished + self.tail
