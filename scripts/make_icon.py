"""Draw the app's icon with QPainter: resources/icons/app.png (512 px), app.ico (Windows), app.icns (macOS).

A rounded square (blue to teal) holding a white speech bubble with three bars in it: chat and
benchmark. Run once when the icon changes (the files are committed):

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_icon.py
"""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QGuiApplication, QImage, QLinearGradient, QPainter, QPainterPath

OUT = Path(__file__).resolve().parents[1] / "resources" / "icons"


def draw(size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    s = size / 512.0
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    gradient = QLinearGradient(QPointF(0, 0), QPointF(size, size))
    gradient.setColorAt(0.0, QColor("#2f5fd0"))
    gradient.setColorAt(1.0, QColor("#17a398"))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QBrush(gradient))
    p.drawRoundedRect(QRectF(16 * s, 16 * s, 480 * s, 480 * s), 96 * s, 96 * s)
    bubble = QPainterPath()
    bubble.addRoundedRect(QRectF(96 * s, 112 * s, 320 * s, 240 * s), 48 * s, 48 * s)
    tail = QPainterPath()
    tail.moveTo(150 * s, 330 * s)
    tail.lineTo(130 * s, 410 * s)
    tail.lineTo(230 * s, 340 * s)
    tail.closeSubpath()
    p.setBrush(QColor("#ffffff"))
    p.drawPath(bubble.united(tail))
    p.setBrush(QColor("#2f5fd0"))
    for i, height in enumerate((70, 120, 170)):
        x = (156 + i * 76) * s
        p.drawRoundedRect(QRectF(x, (300 - height) * s, 48 * s, height * s), 10 * s, 10 * s)
    p.end()
    return image


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - image plugins need it
    OUT.mkdir(parents=True, exist_ok=True)
    ok = draw(512).save(str(OUT / "app.png"))
    try:  # Pillow (a matplotlib dependency) writes several sizes, PNG-compressed: small and sharp
        from PIL import Image

        Image.open(OUT / "app.png").save(OUT / "app.ico", sizes=[(16, 16), (32, 32), (48, 48), (256, 256)])
    except ImportError:
        ok &= draw(256).save(str(OUT / "app.ico"))  # Qt's ico plugin; 256 px is the largest ICO size
    ok &= draw(512).save(str(OUT / "app.icns"))   # Qt's icns plugin (qicns)
    for name in ("app.png", "app.ico", "app.icns"):
        path = OUT / name
        print(f"{path}: {path.stat().st_size if path.exists() else 'not written'} bytes")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
