"""The chart view: a real figure drawn off the UI thread, exact values on hover, export, light and dark."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from matplotlib.colors import to_hex
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPalette
from PySide6.QtWidgets import QApplication, QToolTip

from runtime.bench.charts import THEMES, hover_of, metric_bars, size_quality_scatter
from runtime.errors import ExportError
from tests.runtime.bench.sample_results import sample_results
from widgets.bench.chart_view import ChartView


@pytest.fixture
def view(qtbot):
    v = ChartView("generation")
    qtbot.addWidget(v)
    v.resize(820, 520)
    v.show()
    qtbot.waitExposed(v)
    yield v
    v.shutdown()


def show(qtbot, view: ChartView, figure=None, hover=None, build=None) -> None:
    """Give the view a figure (or builder) and wait until it is drawn."""
    with qtbot.waitSignal(view.sig_rendered, timeout=30_000):
        view.set_builder(build) if build is not None else view.set_figure(figure, hover)


def move_mouse_to(view: ChartView, display_x: float, display_y: float) -> None:
    """Send a real Qt mouse move to the picture at matplotlib display coordinates."""
    ratio = view.picture.pixmap().devicePixelRatio()
    pos = QPointF(display_x / ratio, (view.figure().bbox.height - display_y) / ratio)
    event = QMouseEvent(QEvent.Type.MouseMove, pos, view.picture.mapToGlobal(pos), Qt.MouseButton.NoButton,
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view.picture, event)


def test_hover_over_a_bar_shows_its_exact_value(view, qtbot):
    fig = metric_bars(sample_results(), "tg", view.theme())
    assert not view.export_png.isEnabled()
    show(qtbot, view, fig)
    assert view.figure() is fig and view.export_png.isEnabled() and view.export_svg.isEnabled()
    pixmap = view.picture.pixmap()
    assert pixmap.deviceIndependentSize().toSize() == view.picture.size()   # drawn at the view's size
    box = fig.axes[0].patches[3].get_window_extent()
    move_mouse_to(view, (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
    expected = "Q4_K_M: 118.90 tokens/s (median of 3; 115.20 tokens/s to 121.30 tokens/s)"
    assert view.hover_text() == expected
    qtbot.waitUntil(lambda: QToolTip.text() == expected, timeout=2000)
    # Off the bars (top right of the axes): the tooltip goes.
    move_mouse_to(view, fig.axes[0].bbox.x1 - 3, fig.axes[0].bbox.y1 - 3)
    assert view.hover_text() == ""


def test_hover_over_a_scatter_point_and_a_new_figure_replaces_the_old(view, qtbot):
    show(qtbot, view, metric_bars(sample_results(), "size", "light"))
    first = view.figure()
    fig = size_quality_scatter(sample_results(), fits=150 * 1024**2, theme=view.theme())
    show(qtbot, view, fig, hover_of(fig))
    assert view.figure() is not first and view.figure() is fig
    target = next(t for t in hover_of(fig).targets if t.texts[0].startswith("Q4_K_M"))
    x, y = target.artist.get_offset_transform().transform(target.artist.get_offsets()[0])
    move_mouse_to(view, x, y)
    assert view.hover_text().startswith("Q4_K_M\nsize 84.0 MiB (88,080,384 bytes)")
    assert "best trade-off" in view.hover_text()


def test_export_to_writes_png_and_svg(view, tmp_path, qtbot):
    show(qtbot, view, metric_bars(sample_results(), "tg", "light"))
    with qtbot.waitSignal(view.sig_exported) as blocker:
        png = view.export_to(tmp_path / "generation.png")
    assert blocker.args == [str(png)] and png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "Saved" in view.status.text()
    svg = view.export_to(tmp_path / "generation.svg")
    assert ET.parse(svg).getroot().tag.endswith("svg")


def test_a_failed_export_is_shown_and_emitted(view, tmp_path, qtbot):
    with pytest.raises(ExportError, match="no chart"):
        view.export_to(tmp_path / "nothing.png")
    show(qtbot, view, metric_bars(sample_results(), "tg", "light"))
    with qtbot.waitSignal(view.sig_export_failed) as blocker, pytest.raises(ExportError):
        view.export_to(tmp_path / "missing" / "chart.png")
    assert isinstance(blocker.args[0], ExportError)
    assert "does not exist" in view.status.text()


def test_the_theme_follows_the_palette_and_a_builder_rebuilds(view, qtbot):
    built = []

    def build(theme):
        built.append(theme)
        return metric_bars(sample_results(), "tg", theme)

    light = QPalette(view.palette())
    light.setColor(QPalette.ColorRole.Base, QColor("#ffffff"))
    view.setPalette(light)
    show(qtbot, view, build=build)
    assert built == ["light"]
    assert to_hex(view.figure().get_facecolor()) == THEMES["light"].background
    dark = QPalette(view.palette())
    dark.setColor(QPalette.ColorRole.Base, QColor("#202124"))
    dark.setColor(QPalette.ColorRole.Window, QColor("#2b2b2b"))
    with qtbot.waitSignal(view.sig_rendered, timeout=30_000):
        view.setPalette(dark)
    assert view.theme() == "dark"
    assert built == ["light", "dark"]
    assert to_hex(view.figure().get_facecolor()) == THEMES["dark"].background


def test_a_hidden_view_draws_when_shown_and_a_resize_draws_again(qtbot):
    view = ChartView("hidden")
    qtbot.addWidget(view)
    built = []
    view.set_builder(lambda theme: built.append(theme) or metric_bars(sample_results(), "tg", theme))
    assert view.has_chart and view.figure() is None and built == []     # nothing drawn while hidden
    with qtbot.waitSignal(view.sig_rendered, timeout=30_000):
        view.resize(700, 400)
        view.show()
    assert len(built) == 1
    with qtbot.waitSignal(view.sig_rendered, timeout=30_000):
        view.resize(900, 600)
    assert view.picture.pixmap().deviceIndependentSize().toSize() == view.picture.size()
    view.shutdown()
