"""Markdown tokens (``runtime.chat.markdown_blocks``) written into a QTextDocument through a cursor.

Written with QTextCursor calls rather than generated HTML, so every block gets exactly the format
meant for it (Qt's HTML import merges the first block of a fragment into the block it lands in).

- Headings: heading level set on the block, bold and larger text.
- Paragraphs, block quotes (indented, muted, ``BlockQuoteLevel`` set), nested lists (one
  QTextList per list, indented one level per nesting), rules.
- Tables: a QTextTable with one column per markdown column, the header row bold on a tinted
  background, each column aligned as the markdown says.
- Code: a 2 x 2 table on the code background: the language and a "Copy" link (``copy:<n>``,
  ``n`` from the ``register_code`` callback) above the code, coloured by Pygments, in cell (1, 0). Lines wrap inside
  the block, so a long line never widens the transcript.
- Links: only http(s)/mailto become anchors; anything else, and images, are shown as text.
- Every block starts a new QTextBlock; a table leaves the cursor in the empty block after it, which
  the next block reuses (``fresh``), so there are no stray empty lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import (QBrush, QColor, QFont, QFontDatabase, QPalette, QTextBlockFormat, QTextCharFormat,
                           QTextCursor, QTextFormat, QTextFrameFormat, QTextLength, QTextListFormat,
                           QTextTableCellFormat, QTextTableFormat)

from runtime.chat.markdown_blocks import parse_markdown, safe_link
from runtime.chat.markdown_highlight import code_style, highlight, language_of

COPY_SCHEME = "copy"
HEADING_SCALE = {1: 1.5, 2: 1.3, 3: 1.15, 4: 1.05, 5: 1.0, 6: 1.0}
BULLETS = (QTextListFormat.Style.ListDisc, QTextListFormat.Style.ListCircle, QTextListFormat.Style.ListSquare)


@dataclass(frozen=True)
class Theme:
    """Colours and fonts of the transcript, taken from the widget's palette (light or dark)."""

    dark: bool
    text: str
    muted: str
    link: str
    user_card: str
    assistant_card: str
    card_border: str
    table_border: str
    table_header: str
    inline_code: str
    mono_family: str
    point_size: float

    @classmethod
    def from_palette(cls, palette: QPalette, font: QFont) -> "Theme":
        base = palette.color(QPalette.ColorRole.Base)
        dark = base.lightness() < 128
        text = palette.color(QPalette.ColorRole.Text)

        def mix(a: QColor, b: QColor, t: float) -> str:
            return QColor(round(a.red() + (b.red() - a.red()) * t), round(a.green() + (b.green() - a.green()) * t),
                          round(a.blue() + (b.blue() - a.blue()) * t)).name()

        blue = QColor("#1e88e5")
        return cls(dark=dark, text=text.name(), muted=mix(text, base, 0.45),
                   link="#64b5f6" if dark else "#1565c0",
                   user_card=mix(base, blue, 0.16 if dark else 0.08),
                   assistant_card=mix(base, text, 0.06 if dark else 0.03),
                   card_border=mix(base, text, 0.18), table_border=mix(base, text, 0.3),
                   table_header=mix(base, text, 0.1), inline_code=mix(base, text, 0.12),
                   mono_family=QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family(),
                   point_size=font.pointSizeF() if font.pointSizeF() > 0 else 10.0)

    def card_format(self, role: str) -> QTextFrameFormat:
        fmt = QTextFrameFormat()
        fmt.setBackground(QColor(self.user_card if role == "user" else self.assistant_card))
        fmt.setBorder(1)
        fmt.setBorderBrush(QColor(self.card_border))
        fmt.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
        fmt.setPadding(10)
        fmt.setTopMargin(4)
        fmt.setBottomMargin(4)
        if role == "user":
            fmt.setLeftMargin(48)   # user bubbles sit to the right, replies use the whole width
        else:
            fmt.setRightMargin(16)
        return fmt


class MarkdownWriter:
    """Writes markdown at ``cursor`` (which ends up after it), each block in a new QTextBlock.

    ``fresh``: the cursor is in an empty block that the next block should take over (true after a
    table, and to be passed back in when writing resumes there). ``colour_code=False`` leaves code
    uncoloured (cheap, for the provisional tail of a streamed reply).
    """

    def __init__(self, cursor: QTextCursor, theme: Theme, register_code: Callable[[str], int],
                 fresh: bool = False, colour_code: bool = True):
        self.cursor = cursor
        self.theme = theme
        self.fresh = fresh
        self._register_code = register_code
        self._colour_code = colour_code
        self._lists: list = []        # one entry per open list: [QTextListFormat, QTextList | None]
        self._item_started: list[bool] = []
        self._quote = 0
        self._heading = 0
        self._in_table = False

    # -- blocks -----------------------------------------------------------------------------------

    def write(self, markdown: str) -> None:
        tokens = parse_markdown(markdown)
        i = 0
        while i < len(tokens):
            i = self._block(tokens, i)

    def _block(self, tokens, i: int) -> int:
        tok = tokens[i]
        kind = tok.type
        if kind == "heading_open":
            self._heading = int(tok.tag[1])
        elif kind == "heading_close":
            self._heading = 0
        elif kind == "inline":
            self._new_text_block()
            self._inline(tok.children or [], self._base_format())
        elif kind in ("bullet_list_open", "ordered_list_open"):
            fmt = QTextListFormat()
            level = len(self._lists) + 1
            if kind == "ordered_list_open":
                fmt.setStyle(QTextListFormat.Style.ListDecimal)
                start = tok.attrGet("start")
                fmt.setStart(int(start) if start else 1)
            else:
                fmt.setStyle(BULLETS[(level - 1) % len(BULLETS)])
            fmt.setIndent(level + self._quote)
            self._lists.append([fmt, None])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            self._lists.pop()
        elif kind == "list_item_open":
            self._item_started.append(False)
        elif kind == "list_item_close":
            if self._item_started and not self._item_started[-1]:
                self._new_text_block()  # an empty item still shows its bullet
            self._item_started.pop()
        elif kind == "blockquote_open":
            self._quote += 1
        elif kind == "blockquote_close":
            self._quote -= 1
        elif kind in ("fence", "code_block"):
            language = language_of(tok.info) if kind == "fence" else ""
            self._code(tok.content, language)
        elif kind == "hr":
            fmt = self._block_format()
            fmt.setProperty(QTextFormat.Property.BlockTrailingHorizontalRulerWidth,
                            QTextLength(QTextLength.Type.PercentageLength, 100))
            self._start_block(fmt, QTextCharFormat())
        elif kind == "table_open":
            return self._table(tokens, i)
        return i + 1

    def _block_format(self) -> QTextBlockFormat:
        fmt = QTextBlockFormat()
        first_item = len(self._lists) == 1 and self._lists[0][1] is None
        fmt.setTopMargin(6 if not self._lists or first_item else 2)
        fmt.setBottomMargin(0)
        if self._quote:
            fmt.setProperty(QTextFormat.Property.BlockQuoteLevel, self._quote)
            fmt.setLeftMargin(14 * self._quote)
        if self._heading:
            fmt.setHeadingLevel(self._heading)
            fmt.setTopMargin(10)
        return fmt

    def _base_format(self) -> QTextCharFormat:
        fmt = QTextCharFormat()
        fmt.setForeground(QColor(self.theme.muted if self._quote else self.theme.text))
        if self._heading:
            fmt.setFontWeight(QFont.Weight.Bold)
            fmt.setFontPointSize(self.theme.point_size * HEADING_SCALE[self._heading])
        return fmt

    def _start_block(self, block: QTextBlockFormat, char: QTextCharFormat) -> None:
        cursor = self.cursor
        if self.fresh:
            current = cursor.block()
            if current.textList() is not None:
                current.textList().remove(current)
            cursor.setBlockFormat(block)
            cursor.setBlockCharFormat(char)
            cursor.setCharFormat(char)
            self.fresh = False
        else:
            cursor.insertBlock(block, char)

    def _new_text_block(self) -> None:
        """A block for a paragraph or heading: in the current list item when inside one."""
        fmt = self._block_format()
        if self._lists and self._item_started and self._item_started[-1]:
            fmt.setIndent(len(self._lists) + self._quote)  # a later paragraph of the same item
        self._start_block(fmt, QTextCharFormat())
        if self._lists and self._item_started and not self._item_started[-1]:
            entry = self._lists[-1]
            if entry[1] is None:
                entry[1] = self.cursor.createList(entry[0])
            else:
                entry[1].add(self.cursor.block())
            self._item_started[-1] = True

    # -- inline -----------------------------------------------------------------------------------

    def _inline(self, children, base: QTextCharFormat) -> None:
        stack = [base]
        cursor = self.cursor
        for child in children:
            kind = child.type
            top = stack[-1]
            if kind == "text":
                cursor.insertText(child.content.replace("\n", " "), top)
            elif kind == "softbreak":
                cursor.insertText(" ", top)
            elif kind == "hardbreak":
                cursor.insertText("\u2028", top)
            elif kind == "code_inline":
                fmt = QTextCharFormat(top)
                fmt.setFontFamilies([self.theme.mono_family])
                fmt.setFontFixedPitch(True)
                fmt.setBackground(QColor(self.theme.inline_code))
                cursor.insertText(child.content.replace("\n", " "), fmt)
            elif kind in ("strong_open", "em_open", "s_open", "link_open"):
                fmt = QTextCharFormat(top)
                if kind == "strong_open":
                    fmt.setFontWeight(QFont.Weight.Bold)
                elif kind == "em_open":
                    fmt.setFontItalic(True)
                elif kind == "s_open":
                    fmt.setFontStrikeOut(True)
                else:
                    href = safe_link(str(child.attrGet("href") or ""))
                    if href:
                        self._make_link(fmt, href)
                        fmt.setFontUnderline(True)
                stack.append(fmt)
            elif kind in ("strong_close", "em_close", "s_close", "link_close"):
                if len(stack) > 1:
                    stack.pop()
            elif kind == "image":
                alt = "".join(c.content for c in (child.children or [])) or "image"
                fmt = QTextCharFormat(top)
                fmt.setFontItalic(True)
                src = safe_link(str(child.attrGet("src") or ""))
                if src:
                    self._make_link(fmt, src)
                cursor.insertText(f"[image: {alt}]", fmt)
            elif child.content:
                cursor.insertText(child.content.replace("\n", " "), top)

    def _make_link(self, fmt: QTextCharFormat, href: str) -> None:
        """Make ``fmt`` a link to ``href`` (a safe_link address): link colour, the address on hover."""
        fmt.setAnchor(True)
        fmt.setAnchorHref(href)
        fmt.setForeground(QColor(self.theme.link))
        fmt.setToolTip(href)

    # -- code -------------------------------------------------------------------------------------

    def _code(self, code: str, language: str) -> None:
        code = code[:-1] if code.endswith("\n") else code
        style = code_style(self.theme.dark)
        code_id = self._register_code(code)
        table = self._insert_table(2, 2, self._code_table_format(style.background))
        cell_format = QTextTableCellFormat()
        cell_format.setBackground(QColor(style.background))  # Qt paints cell backgrounds, not the table's
        for r, c in ((0, 0), (0, 1), (1, 0), (1, 1)):
            table.cellAt(r, c).setFormat(cell_format)
        # Not merged (Qt paints no background on a merged cell): the Copy column stays narrow.
        cursor = self.cursor

        label = QTextCharFormat()
        label.setForeground(QColor(style.label))
        label.setFontPointSize(max(7.0, self.theme.point_size - 1))
        cursor.setPosition(table.cellAt(0, 0).firstPosition())
        cursor.insertText(language or "code", label)
        cursor.setPosition(table.cellAt(0, 1).firstPosition())
        right = QTextBlockFormat()
        right.setAlignment(Qt.AlignmentFlag.AlignRight)
        cursor.setBlockFormat(right)
        link = QTextCharFormat(label)
        link.setAnchor(True)
        link.setAnchorHref(f"{COPY_SCHEME}:{code_id}")
        link.setFontUnderline(True)
        link.setToolTip("Copy this code to the clipboard")
        cursor.insertText("Copy", link)

        cursor.setPosition(table.cellAt(1, 0).firstPosition())
        code_block = QTextBlockFormat()
        code_block.setProperty(QTextFormat.Property.BlockCodeFence, "`")
        code_block.setProperty(QTextFormat.Property.BlockCodeLanguage, language)
        cursor.setBlockFormat(code_block)  # the lines of the code (new blocks take it over)
        mono = QTextCharFormat()
        mono.setFontFamilies([self.theme.mono_family])
        mono.setFontFixedPitch(True)
        mono.setForeground(QColor(style.foreground))  # (not as the block's char format: a cell keeps its own there)
        runs = highlight(code, language, self.theme.dark) if self._colour_code else None
        if not runs:
            cursor.insertText(code, mono)
        else:
            for run in runs:
                fmt = QTextCharFormat(mono)
                if run.colour:
                    fmt.setForeground(QColor(run.colour))
                if run.bold:
                    fmt.setFontWeight(QFont.Weight.Bold)
                if run.italic:
                    fmt.setFontItalic(True)
                cursor.insertText(run.text, fmt)
        self._after_table(table)

    def _code_table_format(self, background: str) -> QTextTableFormat:
        fmt = QTextTableFormat()
        fmt.setBackground(QColor(background))
        fmt.setBorder(0)
        fmt.setCellSpacing(0)
        fmt.setCellPadding(6)
        fmt.setTopMargin(6)
        fmt.setBottomMargin(4)
        fmt.setLeftMargin(self._indent_px())
        fmt.setWidth(QTextLength(QTextLength.Type.PercentageLength, 100))
        fmt.setProperty(CODE_BLOCK_PROPERTY, True)
        return fmt

    def _indent_px(self) -> float:
        return 40.0 * len(self._lists) + 14.0 * self._quote

    # -- tables -----------------------------------------------------------------------------------

    def _table(self, tokens, i: int) -> int:
        """Write the table starting at tokens[i] (table_open); return the index after table_close."""
        rows: list[list[tuple[list, str]]] = []   # rows of (inline children, alignment)
        header_rows = 0
        in_head = False
        j = i + 1
        while j < len(tokens) and tokens[j].type != "table_close":
            tok = tokens[j]
            if tok.type == "thead_open":
                in_head = True
            elif tok.type == "thead_close":
                in_head = False
            elif tok.type == "tr_open":
                rows.append([])
                header_rows += in_head
            elif tok.type in ("th_open", "td_open"):
                style = str(tok.attrGet("style") or "")
                align = style.split(":", 1)[1].strip() if style.startswith("text-align:") else ""
                children = tokens[j + 1].children if j + 1 < len(tokens) and tokens[j + 1].type == "inline" else []
                rows[-1].append((children or [], align))
            j += 1
        columns = max((len(r) for r in rows), default=0)
        if not rows or not columns:
            return j + 1
        fmt = QTextTableFormat()
        fmt.setBorder(1)
        fmt.setBorderBrush(QBrush(QColor(self.theme.table_border)))
        fmt.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
        fmt.setBorderCollapse(True)
        fmt.setCellSpacing(0)
        fmt.setCellPadding(4)
        fmt.setTopMargin(6)
        fmt.setBottomMargin(4)
        fmt.setLeftMargin(self._indent_px())
        fmt.setHeaderRowCount(header_rows)
        table = self._insert_table(len(rows), columns, fmt)
        cursor = self.cursor
        aligns = {"left": Qt.AlignmentFlag.AlignLeft, "right": Qt.AlignmentFlag.AlignRight,
                  "center": Qt.AlignmentFlag.AlignHCenter}
        for r, row in enumerate(rows):
            for c, (children, align) in enumerate(row):
                cell = table.cellAt(r, c)
                if r < header_rows:
                    cell_format = QTextTableCellFormat()
                    cell_format.setBackground(QColor(self.theme.table_header))
                    cell.setFormat(cell_format)
                cursor.setPosition(cell.firstPosition())
                block = QTextBlockFormat()
                block.setAlignment(aligns.get(align, Qt.AlignmentFlag.AlignLeft))
                cursor.setBlockFormat(block)
                base = QTextCharFormat()
                base.setForeground(QColor(self.theme.text))
                if r < header_rows:
                    base.setFontWeight(QFont.Weight.Bold)
                self._inline(children, base)
        self._after_table(table)
        return j + 1

    def _insert_table(self, rows: int, columns: int, fmt: QTextTableFormat):
        """Insert a table after the current block (Qt keeps a block between two tables)."""
        if self.fresh:
            current = self.cursor.block()
            if current.textList() is not None:
                current.textList().remove(current)
            self.cursor.setBlockFormat(QTextBlockFormat())
            tiny = QTextCharFormat()
            tiny.setFontPointSize(2)  # the block Qt needs between two tables: keep it thin
            self.cursor.setBlockCharFormat(tiny)
        self.fresh = False
        return self.cursor.insertTable(rows, columns, fmt)

    def _after_table(self, table) -> None:
        """Put the cursor in the empty block after ``table``; the next block takes it over."""
        self.cursor.setPosition(table.lastPosition() + 1)
        self.fresh = True


CODE_BLOCK_PROPERTY = QTextFormat.Property.UserProperty + 1  # set on the table format of a code block
