"""Spin boxes for SamplingParams: temperature, top-p, top-k, min-p, repeat penalty, max tokens, seed."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QSpinBox, QWidget

from runtime.engine.types import SamplingParams

_TIPS = {
    "temperature": "Randomness. 0 always picks the likeliest token; higher values vary more.",
    "top_p": "Keep the smallest set of tokens whose probabilities add up to this.",
    "top_k": "Keep only this many likeliest tokens (0: no limit).",
    "min_p": "Drop tokens less likely than this fraction of the likeliest one.",
    "repeat_penalty": "Above 1 discourages repeating recent tokens.",
    "max_tokens": "Stop the reply after this many tokens.",
    "seed": "Same seed + same settings = same reply. Tick 'random' for a new one each time.",
}


def _double(low: float, high: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    return box


def _int(low: int, high: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    return box


class SamplingPanel(QWidget):
    """Edits one SamplingParams; ``sig_changed`` fires on every user edit."""

    sig_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.temperature = _double(0.0, 2.0, 0.05)
        self.top_p = _double(0.0, 1.0, 0.01)
        self.top_k = _int(0, 1000)
        self.min_p = _double(0.0, 1.0, 0.01)
        self.repeat_penalty = _double(0.5, 2.0, 0.05)
        self.max_tokens = _int(1, 32768)
        self.seed = _int(0, 2_147_483_647)
        self.random_seed = QCheckBox("random")
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))

        seed_row = QHBoxLayout()
        seed_row.setContentsMargins(0, 0, 0, 0)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        form = QFormLayout(self)
        for label, name in (("Temperature", "temperature"), ("Top-p", "top_p"), ("Top-k", "top_k"),
                            ("Min-p", "min_p"), ("Repeat penalty", "repeat_penalty"),
                            ("Max tokens", "max_tokens")):
            widget = getattr(self, name)
            widget.setToolTip(_TIPS[name])
            widget.valueChanged.connect(self._emit_changed)
            form.addRow(label, widget)
        self.seed.setToolTip(_TIPS["seed"])
        self.seed.valueChanged.connect(self._emit_changed)
        self.random_seed.toggled.connect(self._emit_changed)
        form.addRow("Seed", seed_row)
        self._quiet = False
        self.set_params(SamplingParams())

    def params(self) -> SamplingParams:
        return SamplingParams(
            temperature=round(self.temperature.value(), 4), top_p=round(self.top_p.value(), 4),
            top_k=self.top_k.value(), min_p=round(self.min_p.value(), 4),
            repeat_penalty=round(self.repeat_penalty.value(), 4), max_tokens=self.max_tokens.value(),
            seed=None if self.random_seed.isChecked() else self.seed.value())

    def set_params(self, params: SamplingParams) -> None:
        """Show these values without emitting sig_changed."""
        self._quiet = True
        try:
            self.temperature.setValue(params.temperature)
            self.top_p.setValue(params.top_p)
            self.top_k.setValue(params.top_k)
            self.min_p.setValue(params.min_p)
            self.repeat_penalty.setValue(params.repeat_penalty)
            self.max_tokens.setValue(params.max_tokens)
            self.random_seed.setChecked(params.seed is None)
            if params.seed is not None:
                self.seed.setValue(int(params.seed))
        finally:
            self._quiet = False

    def _emit_changed(self, *_args) -> None:
        if not self._quiet:
            self.sig_changed.emit()
