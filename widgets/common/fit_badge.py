"""How a fit verdict ("fits" / "tight" / "too_big") looks: label and colours, shared by the views."""
from __future__ import annotations

from PySide6.QtGui import QColor

from runtime.models.hardware import FIT_LABELS
_COLOURS = {"fits": ("#1b5e20", "#e8f5e9"), "tight": ("#8a5a00", "#fff4d6"), "too_big": ("#b71c1c", "#fdecea")}


def fit_label(status: str | None) -> str:
    """'Fits', 'Tight', 'Too big', or '?' when no verdict could be made."""
    return FIT_LABELS.get(status or "", "?")


def fit_colours(status: str | None) -> tuple[QColor, QColor] | None:
    """(text, background) colours for a status, or None for an unknown one."""
    pair = _COLOURS.get(status or "")
    return (QColor(pair[0]), QColor(pair[1])) if pair else None


def fit_style(status: str | None) -> str:
    """A small style sheet for a QLabel badge."""
    pair = _COLOURS.get(status or "")
    if not pair:
        return ""
    return f"color: {pair[0]}; background: {pair[1]}; border-radius: 3px; padding: 1px 6px;"
