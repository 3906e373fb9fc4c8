"""How to measure: threads, prompt and generation tokens, repetitions, context, quality on which text,
and batching (how many sequences decoded together).

The defaults are llama-bench's (pp512, tg128, 3 repetitions) and llama.cpp's usual perplexity context
(512), so the figures compare with what people publish. "Measure batching" (off by default: it adds
a run of N sequences of the prompt and generated tokens each for every N) uses the sequence counts
typed beside it, "1, 2, 4, 8" unless changed.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRegularExpression, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLineEdit, QSpinBox,
                               QWidget)

from runtime.bench.results import SpeedOptions

BUILT_IN_TEXT = "The built-in English text"
DEFAULT_PARALLEL = "1, 2, 4, 8"


def parse_parallel(text: str) -> list[int]:
    """"1, 2, 4, 8" as [1, 2, 4, 8]: the numbers typed, in order (the runner checks their range)."""
    return [int(part) for part in text.replace(" ", ",").split(",") if part.strip().isdigit()]


def ask_text_file(parent) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, "Choose a text for the quality measurement", "",
                                          "Text files (*.txt *.md);;All files (*)")
    return path or None


def _spin(low: int, high: int, value: int, tip: str, special: str | None = None) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setToolTip(tip)
    if special:
        box.setSpecialValueText(special)
    return box


class OptionsPanel(QWidget):
    """The run's settings; ``options()``, ``quality``, ``text_path()``."""

    sig_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.choose_text = ask_text_file
        d = SpeedOptions()
        self.threads = _spin(0, 256, d.threads, "Threads for llama.cpp; Auto uses the physical cores.", "Auto")
        self.prompt_tokens = _spin(1, 16384, d.prompt_tokens, "Prompt tokens evaluated at once (llama-bench's pp512).")
        self.gen_tokens = _spin(1, 4096, d.gen_tokens, "Tokens generated one by one (llama-bench's tg128).")
        self.reps = _spin(1, 50, d.reps, "Each measurement is repeated this often after a warm-up; the median "
                                         "is shown with the spread.")
        self.ctx = _spin(64, 131072, d.n_ctx, "Context size; the quality text is scored in chunks of this many "
                                             "tokens (llama.cpp's published figures use 512).")
        self.quality = QCheckBox("Measure quality (perplexity, KL divergence)")
        self.quality.setChecked(True)
        self.quality.setToolTip("Scores each variant's next-word predictions on a text against the reference: "
                                "slower than the speed test, and what shows what compression costs.")
        self.text = QComboBox()
        self.text.addItem(BUILT_IN_TEXT, None)
        self.text.addItem("Choose a text file…", "choose")
        self.text.setToolTip("Your own text (your domain) says more about your use than ours does.")
        self.text.activated.connect(self._text_activated)
        self.quality.toggled.connect(self.text.setEnabled)
        self.batching = QCheckBox("Measure batching (sequences decoded together)")
        self.batching.setToolTip("Generation speed with N sequences decoded in one batch, as llama-batched-bench "
                                 "measures it: N prompts of the prompt tokens, then the generated tokens for each. "
                                 "Shows what serving several requests at once gains, in all and per request.")
        self.parallel = QLineEdit(DEFAULT_PARALLEL)
        self.parallel.setPlaceholderText(DEFAULT_PARALLEL)
        self.parallel.setValidator(QRegularExpressionValidator(QRegularExpression(r"[0-9, ]*")))
        self.parallel.setToolTip("Numbers of sequences to measure, 1 to 64, separated by commas.")
        self.parallel.setEnabled(False)
        self.batching.toggled.connect(self.parallel.setEnabled)
        self.kv_reuse = QCheckBox("Measure KV cache reuse (a multi-turn chat)")
        self.kv_reuse.setToolTip("Replays an 8-turn chat and times each turn's first token twice: with the KV "
                                 "cache kept from the turn before, as the chat does, and from an empty cache.")
        tokens = QHBoxLayout()
        tokens.addWidget(self.prompt_tokens)
        tokens.addWidget(self.gen_tokens)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Threads:", self.threads)
        form.addRow("Prompt / generated tokens:", tokens)
        form.addRow("Repetitions:", self.reps)
        form.addRow("Context:", self.ctx)
        form.addRow(self.quality)
        form.addRow("Text:", self.text)
        form.addRow(self.batching)
        form.addRow("Sequences:", self.parallel)
        form.addRow(self.kv_reuse)
        for box in (self.threads, self.prompt_tokens, self.gen_tokens, self.reps, self.ctx):
            box.valueChanged.connect(lambda _v: self.sig_changed.emit())
        self.quality.toggled.connect(lambda _v: self.sig_changed.emit())
        self.batching.toggled.connect(lambda _v: self.sig_changed.emit())
        self.kv_reuse.toggled.connect(lambda _v: self.sig_changed.emit())
        self.parallel.textChanged.connect(lambda _t: self.sig_changed.emit())

    def _text_activated(self, index: int) -> None:
        if self.text.itemData(index) != "choose":
            self.sig_changed.emit()
            return
        path = self.choose_text(self)
        if path:
            self.set_text_path(path)
        else:
            self.text.setCurrentIndex(0)

    def set_text_path(self, path: str | None) -> None:
        """Use ``path`` (None: the built-in text) for the quality measurement."""
        if path is None:
            self.text.setCurrentIndex(0)
        else:
            found = self.text.findData(str(path))
            if found < 0:
                self.text.insertItem(1, Path(path).name, str(path))
                found = 1
            self.text.setCurrentIndex(found)
        self.sig_changed.emit()

    def text_path(self) -> str | None:
        data = self.text.currentData()
        return None if data in (None, "choose") else data

    def options(self) -> SpeedOptions:
        return SpeedOptions(threads=self.threads.value(), n_ctx=self.ctx.value(),
                            prompt_tokens=self.prompt_tokens.value(), gen_tokens=self.gen_tokens.value(),
                            reps=self.reps.value(), parallel=self.parallel_values(),
                            kv_reuse=self.kv_reuse.isChecked())

    def parallel_values(self) -> list[int]:
        """The sequence counts of the batched test; [] when batching is not measured."""
        return parse_parallel(self.parallel.text()) if self.batching.isChecked() else []

    def set_parallel(self, values: list[int]) -> None:
        """Measure batching at ``values`` (empty: not at all)."""
        if values:
            self.parallel.setText(", ".join(map(str, values)))
        self.batching.setChecked(bool(values))

    def set_enabled(self, on: bool) -> None:
        for w in (self.threads, self.prompt_tokens, self.gen_tokens, self.reps, self.ctx, self.quality,
                  self.batching, self.kv_reuse):
            w.setEnabled(on)
        self.text.setEnabled(on and self.quality.isChecked())
        self.parallel.setEnabled(on and self.batching.isChecked())
