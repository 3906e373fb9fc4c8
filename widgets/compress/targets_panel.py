"""The target types to make, each with its expected size, whether it fits for chat, and a quality note.

``TargetsPanel.set_facts(facts)`` builds one row per ``TargetEstimate``: a tick box, the expected
size, a fit badge and the note. A target the model's shapes cannot take is shown disabled with why.
An already-quantized source keeps every tick box disabled until "Requantize" is ticked (its
warning says quality suffers twice). The rarer types sit under "Advanced types" (their rows are
made when that list is first opened, so picking a source stays quick). Any change
emits ``sig_changed``; ``chosen()`` lists the ticked types.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QGridLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout,
                               QWidget)

from runtime.models.gguf_info import format_size
from widgets.common.fit_badge import fit_label, fit_style

REQUANTIZE_WARNING = ("Requantize: this model is already quantized ({dtype}). Quantizing it again loses "
                      "quality twice (once when it was made, once now); the result is worse than the same "
                      "type made from the original F16/BF16 model. Get that one if you can.")
NEEDS_REQUANTIZE = "The source is already quantized: tick Requantize first."
NOTE_SOURCE = "Quality: llama.cpp's published figure for Llama-3-8B, until the Benchmark tab measures this model."
GROUP_TITLES = {"convert": "Convert to GGUF", "main": "Quantize", "advanced": "Advanced types"}


class TargetRow:
    """The widgets of one target: tick box, size, fit badge, note (placed in the panel's grid)."""

    def __init__(self, target, via_note: str = ""):
        self.target = target
        self.check = QCheckBox(target.qtype)
        self.check.setObjectName(f"target_{target.qtype}")
        self.size = QLabel(f"≈ {format_size(target.expected_bytes)}" if target.expected_bytes else "size unknown")
        self.size.setToolTip("Expected file size, from the tensor shapes and the type's bits per weight.")
        fit = target.fit
        self.fit = QLabel(fit_label(fit.status) if fit is not None else "")
        if fit is not None:
            self.fit.setStyleSheet(fit_style(fit.status))
            self.fit.setToolTip(f"For chat on this computer:\n{fit.tooltip}")
        self.fit.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.RichText)   # the texts are escaped: see set_blocked
        self.note.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.via_note = via_note
        self.set_blocked("")

    def widgets(self) -> list[QWidget]:
        return [self.check, self.size, self.fit, self.note]

    @property
    def blocked(self) -> str:
        """Why this target cannot be ticked now ('' when it can)."""
        return self._blocked

    def set_blocked(self, why: str) -> None:
        """Disable the row and say why (the shapes cannot take it, Requantize is not ticked, ...)."""
        problem = self.target.problem
        self._blocked = problem or why
        self.check.setEnabled(not self._blocked)
        if self._blocked:
            self.check.setChecked(False)
        text = self.target.note or ""
        if self.via_note:
            text = f"{text} {self.via_note}".strip()
        if problem:
            self.note.setText(_span(f"Not possible: {problem}", "#b71c1c"))
        else:
            html = _span(text, "#777777" if self._blocked else "")
            if self.target.warning:
                html += "<br>" + _span(f"⚠ {self.target.warning}", "#8a5a00")
            self.note.setText(html)
        full = "\n\n".join(filter(None, [self.target.note_full or text, self.target.warning_full]))
        self.check.setToolTip(self._blocked or full)
        self.note.setToolTip(problem or full)

    def note_text(self) -> str:
        """The note as plain text (for tests)."""
        from PySide6.QtGui import QTextDocumentFragment

        return QTextDocumentFragment.fromHtml(self.note.text()).toPlainText()


def _span(text: str, colour: str) -> str:
    import html

    style = f' style="color: {colour};"' if colour else ""
    return f"<span{style}>{html.escape(text)}</span>"


class TargetsPanel(QWidget):
    """The rows of target types in groups, the Requantize tick, and the Advanced toggle."""

    sig_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.facts = None
        self.rows: dict[str, TargetRow] = {}   # the rows made so far (advanced ones once opened)
        self._advanced_pending: list = []
        self.requantize = QCheckBox()
        self.requantize.setObjectName("requantize")
        self.requantize.toggled.connect(self._on_requantize)
        self.requantize_text = QLabel()
        self.requantize_text.setWordWrap(True)
        self.requantize_text.setTextFormat(Qt.TextFormat.PlainText)
        self.requantize_text.setStyleSheet("color: #8a5a00;")
        self.advanced_button = QToolButton()
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setAutoRaise(True)
        self.advanced_button.toggled.connect(self._on_advanced)
        self.empty = QLabel("Pick a source above to see what it can be turned into.")
        self.empty.setStyleSheet("color: #555555;")
        self.source_note = QLabel(NOTE_SOURCE)
        self.source_note.setWordWrap(True)
        self.source_note.setStyleSheet("color: #555555;")
        self._body = QWidget()
        self._grid = QGridLayout(self._body)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setHorizontalSpacing(14)
        self._grid.setVerticalSpacing(3)
        self._grid.setColumnStretch(3, 1)
        self._advanced = QWidget()
        self._advanced_grid = QGridLayout(self._advanced)
        self._advanced_grid.setContentsMargins(0, 0, 0, 0)
        self._advanced_grid.setHorizontalSpacing(14)
        self._advanced_grid.setVerticalSpacing(3)
        self._advanced_grid.setColumnStretch(3, 1)
        self._advanced.hide()
        requant = QWidget()
        requant_layout = QGridLayout(requant)
        requant_layout.setContentsMargins(0, 0, 0, 4)
        requant_layout.addWidget(self.requantize, 0, 0, Qt.AlignmentFlag.AlignTop)
        requant_layout.addWidget(self.requantize_text, 0, 1)
        requant_layout.setColumnStretch(1, 1)
        self._requant_box = requant
        requant.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("<b>Make</b>"))
        layout.addWidget(self.empty)
        layout.addWidget(requant)
        layout.addWidget(self._body)
        layout.addWidget(self.advanced_button)
        layout.addWidget(self._advanced)
        layout.addWidget(self.source_note)
        self.advanced_button.hide()
        self.source_note.hide()

    # -- building ---------------------------------------------------------------------------------

    def clear(self, text: str = "Pick a source above to see what it can be turned into.") -> None:
        self.facts = None
        self._advanced_pending = []
        self._clear_grid(self._grid)
        self._clear_grid(self._advanced_grid)
        self.rows = {}
        self.empty.setText(text)
        self.empty.show()
        self._requant_box.hide()
        self.advanced_button.hide()
        self._advanced.hide()
        self.source_note.hide()
        self.sig_changed.emit()

    def set_facts(self, facts) -> None:
        """One row per target of ``facts`` (a SourceFacts), in groups; nothing ticked."""
        self.clear()
        self.facts = facts
        self.empty.hide()
        groups = {"convert": [], "main": [], "advanced": []}
        for target in facts.targets:
            groups.setdefault(target.group, []).append(target)
        line = 0
        for group in ("convert", "main"):
            targets = groups.get(group) or []
            if not targets:
                continue
            title = GROUP_TITLES[group]
            if facts.kind == "checkpoint" and group == "main":
                via = targets[0].via or "F16"
                title = f"Then quantize (from the {via} conversion, which is made first and kept)"
            line = self._add_heading(self._grid, line, title)
            for target in targets:
                line = self._add_row(self._grid, line, target)
        advanced = groups.get("advanced") or []
        self.advanced_button.setText(f"Advanced types ({len(advanced)})")
        self.advanced_button.setVisible(bool(advanced))
        self.advanced_button.setChecked(False)
        self._advanced_pending = list(advanced)   # their rows are made when the list is first opened
        self.requantize.blockSignals(True)
        self.requantize.setChecked(False)
        self.requantize.blockSignals(False)
        self.requantize_text.setText(REQUANTIZE_WARNING.format(dtype=facts.dtype))
        self._requant_box.setVisible(facts.quantized)
        self.source_note.show()
        self._apply_blocks()
        self.sig_changed.emit()

    def _add_heading(self, grid: QGridLayout, line: int, title: str) -> int:
        label = QLabel(title)
        label.setStyleSheet("color: #555555; font-weight: bold; padding-top: 4px;")
        grid.addWidget(label, line, 0, 1, 4)
        return line + 1

    def _add_row(self, grid: QGridLayout, line: int, target) -> int:
        row = TargetRow(target)
        self.rows[target.qtype] = row
        for column, widget in enumerate(row.widgets()):
            grid.addWidget(widget, line, column, Qt.AlignmentFlag.AlignTop if column == 3 else Qt.AlignmentFlag.AlignVCenter)
        row.check.toggled.connect(lambda _on: self.sig_changed.emit())
        return line + 1

    @staticmethod
    def _clear_grid(grid: QGridLayout) -> None:
        while grid.count():
            item = grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()

    # -- state ------------------------------------------------------------------------------------

    def _apply_blocks(self) -> None:
        needs = self.facts is not None and self.facts.quantized and not self.requantize.isChecked()
        for row in self.rows.values():
            row.set_blocked(NEEDS_REQUANTIZE if needs else "")

    def _on_requantize(self, _on: bool) -> None:
        self._apply_blocks()
        self.sig_changed.emit()

    def _make_advanced_rows(self) -> None:
        pending, self._advanced_pending = self._advanced_pending, []
        line = self._advanced_grid.rowCount() if self._advanced_grid.count() else 0
        for target in pending:
            line = self._add_row(self._advanced_grid, line, target)
        if pending:
            self._apply_blocks()

    def show_advanced(self, shown: bool = True) -> None:
        """Open (or fold) the advanced types."""
        self.advanced_button.setChecked(shown)

    def _on_advanced(self, shown: bool) -> None:
        if shown:
            self._make_advanced_rows()
        self._advanced.setVisible(shown)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def chosen(self) -> list[str]:
        """The ticked types, in the order shown."""
        return [qtype for qtype, row in self.rows.items() if row.check.isChecked() and not row.blocked]

    def tick(self, *qtypes: str, on: bool = True) -> None:
        """Tick (or untick) types by name (a blocked one stays unticked)."""
        for qtype in qtypes:
            if qtype not in self.rows:
                self._make_advanced_rows()
            row = self.rows.get(qtype)
            if row is None:
                raise KeyError(f"no target {qtype}")
            if row.blocked and on:
                continue
            row.check.setChecked(on)

    @property
    def requantize_ticked(self) -> bool:
        return self.facts is not None and self.facts.quantized and self.requantize.isChecked()
