"""One benchmark chart in the window: a matplotlib Figure rendered off the UI thread, exact values on
hover, Export PNG / SVG.

Drawing a chart with matplotlib's Agg renderer takes 50-150 ms, too long for the UI thread (the
window must never stall 50 ms), and importing matplotlib takes a third of a second: it is imported
on the worker that first draws, not when the window opens. So the figure is built and drawn on a worker at the view's pixel
size, and the view shows the finished picture; a resize or a theme change draws it again (one
drawing at a time, the latest wins). A view that is hidden (another tab) draws when it is shown.

``set_figure(figure, hover)`` shows a figure from ``runtime.bench.charts`` (hover defaults to the
data its builder attached); ``set_builder(build)`` takes ``build(theme) -> Figure`` instead, and the
chart is built again when the palette turns from light to dark or back. ``theme()`` says which the
window uses. ``sig_rendered`` follows each finished drawing; ``figure()`` is the figure shown.
``export_to(path)`` writes PNG or SVG by the suffix (the buttons ask for a path first); the result is
shown under the chart and emitted as ``sig_exported(path)`` or ``sig_export_failed(error)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QEvent, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPalette, QPixmap
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QToolTip, QVBoxLayout,
                               QWidget)

from runtime.errors import ExportError
from widgets.workers import Worker

FILTERS = {"png": "PNG image (*.png)", "svg": "SVG drawing (*.svg)"}
RESIZE_SETTLE_MS = 120   # draw again once a resize has rested this long
MIN_SIZE = (360, 240)


def palette_theme(widget: QWidget) -> str:
    """"dark" when the widget's base colour is dark, else "light"."""
    return "dark" if widget.palette().color(QPalette.ColorRole.Base).lightness() < 128 else "light"


def render_figure(make: Callable[[], object], width_px: int, height_px: int, dpi: float):
    """Build the figure (``make()``) and draw it with Agg at this pixel size; (figure, RGBA bytes).
    Runs on a worker thread: matplotlib's Figure and Agg canvas use no Qt."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = make()
    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(dpi)
    figure.set_size_inches(width_px / dpi, height_px / dpi)
    canvas.draw()
    width, height = canvas.get_width_height(physical=True)
    return figure, width, height, bytes(canvas.buffer_rgba())


class _MouseAt:
    """What matplotlib's ``Artist.contains`` reads of a mouse event: display position and canvas."""

    def __init__(self, x: float, y: float, canvas):
        self.x, self.y, self.canvas = x, y, canvas
        self.inaxes = None


class _Picture(QLabel):
    """The drawn chart; reports mouse positions to its view."""

    def __init__(self, view: "ChartView"):
        super().__init__()
        self._view = view
        self.setMouseTracking(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setMinimumSize(*MIN_SIZE)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._view._on_mouse(event.position().toPoint())
        super().mouseMoveEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._view._show_hover("", None)
        super().leaveEvent(event)


class ChartView(QWidget):
    sig_exported = Signal(str)
    sig_export_failed = Signal(object)   # the ExportError
    sig_rendered = Signal()

    def __init__(self, name: str = "chart", parent: QWidget | None = None):
        super().__init__(parent)
        self.name = name                       # the suggested file name when exporting
        self.picture = _Picture(self)
        self.picture.setWordWrap(True)
        self._figure = None                    # the figure shown (drawn)
        self._make: Callable[[], object] | None = None   # what the next drawing builds
        self._hover = None                     # runtime.bench.charts.Hover of the figure shown
        self._given_hover = None
        self._hover_text = ""
        self._build: Callable[[str], object] | None = None
        self._built_theme = ""
        self._worker: Worker | None = None
        self._wanted = 0                       # the drawing asked for last
        self._drawn = 0                        # the drawing shown
        self._last_folder = str(Path.home())
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(RESIZE_SETTLE_MS)
        self._settle.timeout.connect(self._draw)

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
        layout.addWidget(self.picture, 1)
        layout.addLayout(buttons)

    # -- what callers use -------------------------------------------------------------------------

    def theme(self) -> str:
        return palette_theme(self)

    def figure(self):
        """The figure shown (None until the first drawing is done)."""
        return self._figure

    @property
    def drawing(self) -> bool:
        return self._worker is not None and self._worker.running

    @property
    def has_chart(self) -> bool:
        """True once a figure or builder was given (it may still be waiting to be drawn)."""
        return self._make is not None

    def hover_text(self) -> str:
        """The exact-value text shown for the point under the mouse ('' when none)."""
        return self._hover_text

    def set_builder(self, build: Callable[[str], object]) -> None:
        """Show ``build(theme)``, and build it again whenever the window's theme changes."""
        self._build = build
        self._built_theme = self.theme()
        theme = self._built_theme
        self._given_hover = None
        self._request(lambda: build(theme))

    def clear(self, message: str) -> None:
        """Show ``message`` instead of a chart (nothing is drawn: there is nothing to draw)."""
        self._build = None
        self._make = None
        self._wanted = self._drawn = self._wanted + 1
        self._figure = None
        self.picture.clear()
        self.picture.setText(message)
        for button in (self.export_png, self.export_svg):
            button.setEnabled(False)

    def set_figure(self, figure, hover=None) -> None:
        """Show ``figure`` in place of the current chart; ``hover``: its hover data."""
        self._build = None
        self._given_hover = hover
        self._request(lambda: figure)

    def export_to(self, path: str | Path) -> Path:
        """Write the chart to ``path`` (.png or .svg); raises ExportError (also emitted and shown)."""
        self.wait_drawn()   # a drawing in progress (a resize) must not share the figure with the export
        if self._figure is None:
            error = ExportError("There is no chart to export yet.", path=path, hint="Run a benchmark first.")
        else:
            from runtime.bench.export import export_chart

            try:
                written = export_chart(self._figure, path)
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

    def wait_drawn(self, timeout_ms: int = 30_000) -> bool:
        """Block until the drawing in progress is shown (tests, shut-down)."""
        while self._worker is not None and self._worker.running:
            if not self._worker.wait(timeout_ms):
                return False
        return True

    # -- drawing ----------------------------------------------------------------------------------

    def _request(self, make: Callable[[], object]) -> None:
        self._make = make
        self._wanted += 1
        self._draw()

    def _draw(self) -> None:
        """Start a drawing of the latest request at the current size, unless one is running (it
        starts the next when done) or the view is hidden (it draws when shown)."""
        if self._make is None or self.drawing or not self.isVisible() or self._drawn == self._wanted:
            return
        ratio = self.devicePixelRatioF() or 1.0
        size = self.picture.size()
        width = max(size.width(), MIN_SIZE[0])
        height = max(size.height(), MIN_SIZE[1])
        dpi = 100.0 * ratio
        make, number = self._make, self._wanted
        worker = Worker(lambda job: render_figure(make, int(width * ratio), int(height * ratio), dpi),
                        name="chart-draw")
        worker.sig_done.connect(lambda drawn: self._on_drawn(number, ratio, drawn))
        worker.sig_failed.connect(lambda error: self._on_draw_failed(number, error))
        worker.sig_finished.connect(self._draw)   # a newer request or size waits for this one
        self._worker = worker
        worker.start()

    def _on_drawn(self, number: int, ratio: float, drawn) -> None:
        from runtime.bench.charts import hover_of

        figure, width, height, rgba = drawn
        self._drawn = number
        self._figure = figure
        self._hover = self._given_hover if self._given_hover is not None else hover_of(figure)
        image = QImage(rgba, width, height, width * 4, QImage.Format.Format_RGBA8888).copy()
        pixmap = QPixmap.fromImage(image)
        pixmap.setDevicePixelRatio(ratio)
        self.picture.setPixmap(pixmap)
        self._hover_text = ""
        for button in (self.export_png, self.export_svg):
            button.setEnabled(True)
        self.sig_rendered.emit()

    def _on_draw_failed(self, number: int, error) -> None:
        from widgets.workers import error_text

        self._drawn = number
        self.status.setText(f"This chart could not be drawn: {error_text(error)}")
        self.status.setStyleSheet("color: #b71c1c;")

    def _redraw(self) -> None:
        """Draw the current chart again (new size or theme)."""
        if self._make is not None:
            self._wanted += 1
            self._settle.start()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        pixmap = self.picture.pixmap()
        if pixmap is not None and not pixmap.isNull() and \
                pixmap.deviceIndependentSize().toSize() != self.picture.size():
            self._redraw()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        QTimer.singleShot(0, self._draw)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange) \
                and self._build is not None and self.theme() != self._built_theme:
            self.set_builder(self._build)

    # -- hover ------------------------------------------------------------------------------------

    def _on_mouse(self, pos: QPoint) -> None:
        if self._figure is None or self._hover is None or self.drawing:
            return   # the figure is being drawn on a worker: do not read it meanwhile
        ratio = self.picture.pixmap().devicePixelRatio() if self.picture.pixmap() else 1.0
        height = self._figure.bbox.height
        event = _MouseAt(pos.x() * ratio, height - pos.y() * ratio, self._figure.canvas)
        self._show_hover(self._hover.text_at(event) or "", pos)

    def _show_hover(self, text: str, pos: QPoint | None) -> None:
        if text == self._hover_text:
            return
        self._hover_text = text
        if not text or pos is None:
            QToolTip.hideText()
            return
        QToolTip.showText(self.picture.mapToGlobal(pos + QPoint(12, 12)), text, self.picture)

    # -- export -----------------------------------------------------------------------------------

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

    def shutdown(self) -> None:
        self._settle.stop()
        self._make = None
        self.wait_drawn()
