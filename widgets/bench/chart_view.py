"""One benchmark chart in the window: the matplotlib Figure, exact values on hover, Export PNG / SVG.

``set_figure(figure, hover)`` shows a figure from ``runtime.bench.charts`` (hover defaults to the
data its builder attached); ``set_builder(build)`` takes ``build(theme) -> Figure`` instead, and the
chart is built again when the palette turns from light to dark or back. ``theme()`` says which the
window uses (dark when its base colour is dark). ``export_to(path)`` writes PNG or SVG by the suffix
(the buttons ask for a path first); the result is shown under the chart and emitted as
``sig_exported(path)`` or ``sig_export_failed(error)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from PySide6.QtCore import QEvent, QPoint, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QToolTip, QVBoxLayout, QWidget

from runtime.bench.charts import Hover, hover_of
from runtime.bench.export import export_chart
from runtime.errors import ExportError

FILTERS = {"png": "PNG image (*.png)", "svg": "SVG drawing (*.svg)"}


def palette_theme(widget: QWidget) -> str:
    """"dark" when the widget's base colour is dark, else "light"."""
    return "dark" if widget.palette().color(QPalette.ColorRole.Base).lightness() < 128 else "light"


class ChartView(QWidget):
    sig_exported = Signal(str)
    sig_export_failed = Signal(object)   # the ExportError

    def __init__(self, name: str = "chart", parent: QWidget | None = None):
        super().__init__(parent)
        self.name = name                       # the suggested file name when exporting
        self._canvas: FigureCanvasQTAgg | None = None
        self._hover = Hover()
        self._hover_text = ""
        self._build: Callable[[str], object] | None = None
        self._built_theme = ""
        self._last_folder = str(Path.home())

        self._chart_area = QVBoxLayout()
        self._chart_area.setContentsMargins(0, 0, 0, 0)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.export_png = QPushButton("Export PNG…")
        self.export_svg = QPushButton("Export SVG…")
        for button, fmt in ((self.export_png, "png"), (self.export_svg, "svg")):
            button.setToolTip(f"Save this chart as {fmt.upper()}")
            button.setEnabled(False)
            button.clicked.connect(lambda _=False, f=fmt: self._ask_and_export(f))
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.export_png)
        buttons.addWidget(self.export_svg)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._chart_area, 1)
        layout.addLayout(buttons)

    # -- what callers use -------------------------------------------------------------------------

    def theme(self) -> str:
        return palette_theme(self)

    def figure(self):
        return self._canvas.figure if self._canvas is not None else None

    def canvas(self) -> FigureCanvasQTAgg | None:
        return self._canvas

    def hover_text(self) -> str:
        """The exact-value text shown for the point under the mouse ('' when none)."""
        return self._hover_text

    def set_builder(self, build: Callable[[str], object]) -> None:
        """Show ``build(theme)``, and build it again whenever the window's theme changes."""
        self._build = build
        self._rebuild()

    def set_figure(self, figure, hover: Hover | None = None) -> None:
        """Show ``figure`` in place of the current chart; ``hover``: its hover data."""
        old = self._canvas
        self._canvas = FigureCanvasQTAgg(figure)
        self._canvas.setMinimumSize(360, 240)
        self._canvas.mpl_connect("motion_notify_event", self._on_motion)
        self._canvas.mpl_connect("figure_leave_event", lambda _event: self._show_hover("", None))
        self._hover = hover if hover is not None else hover_of(figure)
        self._hover_text = ""
        if old is not None:
            self._chart_area.removeWidget(old)
            old.hide()
            old.deleteLater()
        self._chart_area.addWidget(self._canvas)
        for button in (self.export_png, self.export_svg):
            button.setEnabled(True)
        self._canvas.draw_idle()

    def export_to(self, path: str | Path) -> Path:
        """Write the chart to ``path`` (.png or .svg); raises ExportError (also emitted and shown)."""
        if self._canvas is None:
            error = ExportError("There is no chart to export yet.", path=path, hint="Run a benchmark first.")
        else:
            try:
                written = export_chart(self._canvas.figure, path)
            except ExportError as exc:
                error = exc
            else:
                self.status.setText(f"Saved {written}")
                self.status.setStyleSheet("")
                self.sig_exported.emit(str(written))
                return written
        self.status.setText(error.user_text())
        self.status.setStyleSheet("color: #b71c1c;")
        self.sig_export_failed.emit(error)
        raise error

    # -- inside -----------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        if self._build is None:
            return
        self._built_theme = self.theme()
        figure = self._build(self._built_theme)
        self.set_figure(figure)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange) \
                and self._build is not None and self.theme() != self._built_theme:
            self._rebuild()

    def _on_motion(self, event) -> None:
        text = self._hover.text_at(event) if event.inaxes is not None else None
        self._show_hover(text or "", event)

    def _show_hover(self, text: str, event) -> None:
        if text == self._hover_text:
            return
        self._hover_text = text
        if not text or self._canvas is None:
            QToolTip.hideText()
            return
        # matplotlib's event is in physical pixels from the bottom; Qt wants logical ones from the top.
        ratio = self._canvas.device_pixel_ratio or 1.0
        x = int(event.x / ratio)
        y = int(self._canvas.height() - event.y / ratio)
        QToolTip.showText(self._canvas.mapToGlobal(QPoint(x + 12, y + 12)), text, self._canvas)

    def _ask_and_export(self, fmt: str) -> None:
        start = str(Path(self._last_folder) / f"{self.name}.{fmt}")
        path, _filter = QFileDialog.getSaveFileName(self, f"Export chart as {fmt.upper()}", start, FILTERS[fmt])
        if not path:
            return
        if Path(path).suffix.lower() != f".{fmt}":
            path += f".{fmt}"
        self._last_folder = str(Path(path).parent)
        try:
            self.export_to(path)
        except ExportError:
            pass   # shown under the chart and emitted already
