"""A plain page for a tab that is planned but not built yet: what it will do, and nothing clickable."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

BENCHMARK_PLAN = [
    "Pick variants of one model (for example F16, Q8_0 and Q4_K_M) and measure each the same way: "
    "load time, prompt and generation tokens per second, time to first token, peak memory, file size.",
    "Measure quality too: perplexity and KL divergence against the highest-precision variant.",
    "Charts side by side (bars per metric, size against quality), the same prompt answered by each "
    "variant, export to PNG, CSV and JSON, and a history of runs.",
]


class ComingSoonPage(QWidget):
    """Says what a tab will do and that it is not built yet."""

    def __init__(self, title: str, plan: list[str], parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 32, 32, 32)
        heading = QLabel(f"<h2>{title}</h2>")
        status = QLabel("<b>Not built yet.</b> This tab arrives in a later version of Model Workbench. "
                        "Here is what it will do:")
        status.setWordWrap(True)
        items = "".join(f"<li>{line}</li>" for line in plan)
        body = QLabel(f"<ul>{items}</ul>")
        body.setWordWrap(True)
        body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.request_label = QLabel()   # the model another tab asked this one to work on
        self.request_label.setWordWrap(True)
        self.request_label.setTextFormat(Qt.TextFormat.PlainText)
        self.request_label.setStyleSheet("background: #e8f1fb; border: 1px solid #b9d3f0; color: #0d3c61; "
                                         "border-radius: 4px; padding: 6px;")
        self.request_label.hide()
        for widget in (heading, self.request_label, status, body):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.plan = list(plan)
        self.title = title
        self.requested_path = ""

    def show_request(self, path: str, what: str) -> None:
        """Say which model was asked for (``what``: "compress" ...), so it is kept for when the tab exists."""
        self.requested_path = path
        self.request_label.setText(f"You asked to {what} {path}.\nThat is noted: this tab is not built yet, "
                                   "so nothing runs for now.")
        self.request_label.show()
