"""The recipes page of the Benchmark tab: what the beginner guides promise, next to what this run
measured on this model, one card per recipe (``runtime.bench.recipes``).

Each card: the guide's claim, the measured line (or what to tick to measure it), a verdict badge
(holds / partly / does not hold / not measured) and a button that shows the chart the figures come
from (``sig_show_chart(chart title)``; the tab switches to that chart page).

Test hooks: ``set_run(run)``, ``cards`` (one ``RecipeCard`` per recipe: ``claim``, ``measured``,
``badge``, ``chart_button``), ``items`` (the Recipes shown), ``message`` (the empty state).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from runtime.bench.recipes import FAILS, HOLDS, NOT_MEASURED, PARTLY, Recipe

INTRO = ("What the beginner guides promise, checked on this machine with this run's figures. "
         "A claim \"holds\" when at least 90% of the promised gain is there.")
NO_RUN = "No figures yet: run a benchmark (or open a past run) to check the guides' recipes."
# (text colour, background) of each verdict's badge; readable on light and dark palettes alike.
BADGE_COLOURS = {HOLDS: ("#ffffff", "#1b7f3b"), PARTLY: ("#1a1a1a", "#f0b429"), FAILS: ("#ffffff", "#c0392b"),
                 NOT_MEASURED: ("#ffffff", "#6b6f76")}


def badge_style(verdict: str) -> str:
    fg, bg = BADGE_COLOURS.get(verdict, BADGE_COLOURS[NOT_MEASURED])
    return f"color: {fg}; background: {bg}; border-radius: 4px; padding: 2px 8px; font-weight: 600;"


class RecipeCard(QFrame):
    """One recipe: claim, measured, verdict badge, the chart's button."""

    sig_show_chart = Signal(str)

    def __init__(self, recipe: Recipe, parent: QWidget | None = None):
        super().__init__(parent)
        self.recipe = recipe
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("recipeCard")
        self.claim = QLabel(f"<b>{_html(recipe.claim)}</b>")
        self.claim.setWordWrap(True)
        self.measured = QLabel(_with_code(recipe.measured))
        self.measured.setTextFormat(Qt.TextFormat.RichText)
        self.measured.setWordWrap(True)
        self.measured.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        if recipe.verdict == NOT_MEASURED:
            self.measured.setStyleSheet("font-style: italic;")
        self.badge = QLabel(recipe.verdict)
        self.badge.setStyleSheet(badge_style(recipe.verdict))
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.badge.setToolTip(_verdict_tip(recipe.verdict))
        self.chart_button = QPushButton(f"Show chart: {recipe.chart}" if recipe.chart else "No chart")
        self.chart_button.setEnabled(bool(recipe.chart) and recipe.verdict != NOT_MEASURED)
        self.chart_button.setToolTip("Open the chart these figures come from.")
        self.chart_button.clicked.connect(lambda: self.sig_show_chart.emit(recipe.chart))
        grid = QGridLayout(self)
        grid.addWidget(QLabel("The guides say:"), 0, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.claim, 0, 1)
        grid.addWidget(self.badge, 0, 2, Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignRight)
        grid.addWidget(QLabel("Measured here:"), 1, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.measured, 1, 1, 1, 2)
        grid.addWidget(self.chart_button, 2, 1, 1, 2, Qt.AlignmentFlag.AlignRight)
        grid.setColumnStretch(1, 1)


class RecipesPage(QWidget):
    sig_show_chart = Signal(str)   # the chart page's title

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.items: list[Recipe] = []
        self.cards: list[RecipeCard] = []
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self.message = QLabel(NO_RUN)
        self.message.setWordWrap(True)
        self._list = QWidget()
        self._list_layout = QVBoxLayout(self._list)
        self._list_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self._list)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.message)
        layout.addWidget(scroll, 1)

    def set_run(self, run) -> None:
        """Show the recipes of ``run`` (a BenchRun; None: the empty state)."""
        from runtime.bench.recipes import recipes

        for card in self.cards:
            self._list_layout.removeWidget(card)
            card.hide()          # gone at once, not only when the deferred delete runs
            card.deleteLater()
        self.cards = []
        try:
            self.items = recipes(run) if run is not None and run.results else []
            self.message.setText(NO_RUN)
        except Exception as exc:  # noqa: BLE001 - odd figures in an old stored run hide the recipes, not the tab
            self.items = []
            self.message.setText(f"The recipes could not be worked out from this run's figures: {exc}")
        self.message.setVisible(not self.items)
        for i, recipe in enumerate(self.items):
            card = RecipeCard(recipe)
            card.sig_show_chart.connect(self.sig_show_chart)
            self._list_layout.insertWidget(i, card)
            self.cards.append(card)

    def text(self) -> str:
        """The recipes as plain lines (what the export writes)."""
        from runtime.bench.recipes import recipes_text

        return recipes_text(self.items)


def _verdict_tip(verdict: str) -> str:
    return {HOLDS: "At least 90% of the promised gain was measured.",
            PARTLY: "Some of the promised gain is there, or only some parts of the claim hold.",
            FAILS: "Less than a quarter of the promised gain was measured.",
            NOT_MEASURED: "This run has no figures for it: the card says what to tick."}.get(verdict, "")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _with_code(text: str) -> str:
    """``text`` as rich text, its `command lines` in a fixed-width font."""
    parts = _html(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
