"""Code in a reply, coloured by Pygments: runs of (text, colour, bold, italic) for any front end.

The language named after the opening fence picks the lexer; an unknown or missing name leaves the
code uncoloured (no guessing: guessing is slow and often wrong on short snippets). Two styles, one
for light and one for dark backgrounds; each also gives the code block's background colour.
Qt-free: the widget turns runs into its own text formats.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

LIGHT_STYLE, DARK_STYLE = "default", "monokai"
MAX_HIGHLIGHT_CHARS = 100_000  # beyond this a block is shown uncoloured: colouring it would stall the UI


@dataclass(frozen=True)
class Run:
    text: str
    colour: str | None = None   # "#rrggbb", None: the block's normal text colour
    bold: bool = False
    italic: bool = False


@dataclass(frozen=True)
class CodeStyle:
    background: str
    foreground: str
    label: str   # the colour of the language name and the Copy link in the block's header


@functools.lru_cache(maxsize=2)
def code_style(dark: bool) -> CodeStyle:
    from pygments.styles import get_style_by_name

    style = get_style_by_name(DARK_STYLE if dark else LIGHT_STYLE)
    text = style.style_for_token(_text_token())
    foreground = f"#{text['color']}" if text.get("color") else ("#f8f8f2" if dark else "#1f1f1f")
    # the styles' own backgrounds are too close to the cards' (light #f8f8f8, dark #272822)
    return CodeStyle(background="#17181a" if dark else "#eceff3", foreground=foreground,
                     label="#a6a6a6" if dark else "#616161")


def _text_token():
    from pygments.token import Text

    return Text


@functools.lru_cache(maxsize=64)
def _lexer(language: str):
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


class _Looks(dict):
    """Token type -> (colour, bold, italic) for one style, filled as token types are met."""

    def __init__(self, style):
        super().__init__()
        self.style = style


@functools.lru_cache(maxsize=2)
def _looks(dark: bool) -> _Looks:
    from pygments.styles import get_style_by_name

    return _Looks(get_style_by_name(DARK_STYLE if dark else LIGHT_STYLE))


def language_of(info: str) -> str:
    """The language word of a fence's info string ("python title=x" -> "python")."""
    return info.strip().split(maxsplit=1)[0] if info.strip() else ""


def highlight(code: str, language: str, dark: bool = False) -> list[Run]:
    """``code`` cut into coloured runs; their texts joined give back ``code`` exactly."""
    lexer = _lexer(language.lower()) if language and len(code) <= MAX_HIGHLIGHT_CHARS else None
    if lexer is None:
        return [Run(code)] if code else []
    looks = _looks(dark)
    runs: list[Run] = []
    for token_type, value in lexer.get_tokens(code):
        if not value:
            continue
        if runs and value.isspace():  # spaces and newlines take no colour: keep the run going
            runs[-1] = Run(runs[-1].text + value, runs[-1].colour, runs[-1].bold, runs[-1].italic)
            continue
        look = looks.get(token_type)
        if look is None:
            spec = looks.style.style_for_token(token_type)
            look = looks[token_type] = (f"#{spec['color']}" if spec.get("color") else None,
                                        bool(spec.get("bold")), bool(spec.get("italic")))
        run = Run(value, *look)
        if runs and (runs[-1].colour, runs[-1].bold, runs[-1].italic) == (run.colour, run.bold, run.italic):
            runs[-1] = Run(runs[-1].text + value, run.colour, run.bold, run.italic)
        else:
            runs.append(run)
    if "".join(r.text for r in runs) != code:  # a lexer that rewrote the text: show it as it was
        return [Run(code)]
    return runs
