"""What to benchmark: a model group from the library (its variants, ticked), or any files, and the
quality reference (by default the highest-precision variant).

The groups come from ``runtime.models.grouping.group_entries`` over the library's rows, so the
variants made in the Compress tab sit with their source. "Add files…" adds GGUF files from anywhere
to the list of the group shown.

"Original checkpoint (PyTorch)": the model's Hugging Face checkpoint folder, measured in PyTorch
beside the GGUFs (FP32, BF16, dynamic INT8; ``runtime.bench.torch_rows``) and then the default quality
reference. The folder a group's GGUF was converted from (its header's ``workbench.source_checkpoint``)
is filled in when it is still on disk; "Choose folder…" picks any other (``choose_folder``, replaceable
in tests). ``original_path()`` is None unless the box is ticked and a folder is set.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QPushButton, QVBoxLayout, QWidget)

from runtime.models.gguf_info import format_size

OTHER_FILES = "Files you chose"
ORIGINAL_PRECISIONS = (("fp32", "FP32"), ("bf16", "BF16"), ("int8", "INT8 (dynamic)"))
FIND_ORIGINAL_FILES = 8   # headers read per group to find the checkpoint it was converted from


def ask_folder(parent, title: str) -> str | None:
    return QFileDialog.getExistingDirectory(parent, title, "") or None


def ask_files(parent, title: str) -> list[str]:
    files, _ = QFileDialog.getOpenFileNames(parent, title, "", "GGUF models (*.gguf);;All files (*)")
    return list(files)


class VariantPicker(QWidget):
    """Group combo, the group's files with check boxes, Add files…, and the reference combo."""

    sig_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.choose_files = ask_files
        self.choose_folder = ask_folder
        self.groups = QComboBox()
        self.groups.setToolTip("The variants of one model in your library (the files made from it in the "
                               "Compress tab are grouped with it).")
        self.files = QListWidget()
        self.files.setMaximumHeight(130)
        self.add_button = QPushButton("Add files…")
        self.add_button.setToolTip("Compare GGUF files from anywhere, too.")
        self.reference = QComboBox()
        self.reference.setToolTip("Quality is measured against this variant: its own next-word "
                                  "probabilities are the yardstick (KL divergence 0, agreement 100%).")
        self._groups: dict[str, list] = {}   # group name -> [(path, label, tooltip)]
        self._added: list[str] = []
        self._unticked: set[str] = set()     # files the person unticked: a library refresh keeps them so
        row = QHBoxLayout()
        row.addWidget(QLabel("Model:"))
        row.addWidget(self.groups, 1)
        row.addWidget(self.add_button)
        ref = QHBoxLayout()
        ref.addWidget(QLabel("Quality reference:"))
        ref.addWidget(self.reference, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.files)
        layout.addLayout(ref)
        self.groups.currentIndexChanged.connect(self._show_group)
        self.files.itemChanged.connect(self._on_ticked)
        self.reference.currentIndexChanged.connect(lambda _i: self.sig_changed.emit())
        self.add_button.clicked.connect(self._add_clicked)
        self._build_original(layout)

    # -- the original checkpoint ----------------------------------------------------------------

    def _build_original(self, layout: QVBoxLayout) -> None:
        self.original_box = QCheckBox("Original checkpoint (PyTorch):")
        self.original_box.setToolTip("Also measure the model's Hugging Face checkpoint in PyTorch (FP32, half "
                                     "precision, dynamic INT8), the same way; FP32 then becomes the quality "
                                     "reference. Needs about 4 bytes of memory per parameter for FP32.")
        self.original_label = QLabel("no folder chosen")
        self.original_label.setWordWrap(True)
        self.original_button = QPushButton("Choose folder…")
        self.original_button.setToolTip("The folder of the Hugging Face model (config.json, *.safetensors).")
        self.precision_boxes: dict[str, QCheckBox] = {}
        self._original: str | None = None
        self._original_found: str | None = None   # the folder the shown group's GGUFs name
        row = QHBoxLayout()
        row.addWidget(self.original_box)
        row.addWidget(self.original_label, 1)
        row.addWidget(self.original_button)
        precisions = QHBoxLayout()
        precisions.addSpacing(20)
        for key, label in ORIGINAL_PRECISIONS:
            box = QCheckBox(label)
            box.setChecked(True)
            box.toggled.connect(lambda _on: self.sig_changed.emit())
            self.precision_boxes[key] = box
            precisions.addWidget(box)
        precisions.addStretch(1)
        layout.addLayout(row)
        layout.addLayout(precisions)
        self.original_box.toggled.connect(self._original_toggled)
        self.original_button.clicked.connect(self._choose_original)
        self._show_original()

    def set_original(self, folder: str | None, tick: bool = True) -> None:
        """Use ``folder`` as the original checkpoint (ticked unless ``tick`` is False); None clears it."""
        self._original = str(folder) if folder else None
        self.original_box.blockSignals(True)
        self.original_box.setChecked(bool(self._original) and tick)
        self.original_box.blockSignals(False)
        self._show_original()
        self._on_ticked()

    def _choose_original(self) -> None:
        folder = self.choose_folder(self, "Choose the original checkpoint folder (Hugging Face model)")
        if folder:
            self.set_original(folder)

    def _original_toggled(self, on: bool) -> None:
        if on and not self._original:
            self._choose_original()
            if not self._original:
                self.original_box.setChecked(False)
                return
        self._show_original()
        self._on_ticked()

    def _show_original(self) -> None:
        on = self.original_box.isChecked()
        if self._original:
            found = " (the GGUFs were converted from it)" if self._original == self._original_found else ""
            self.original_label.setText(f"{Path(self._original).name}{found}")
            self.original_label.setToolTip(self._original)
        else:
            self.original_label.setText("no folder chosen: choose the model's Hugging Face folder")
            self.original_label.setToolTip("")
        for box in self.precision_boxes.values():
            box.setEnabled(on)

    def _offer_original(self, paths: list[str]) -> None:
        """Fill in the checkpoint the group's GGUFs were converted from, unticked (the person decides)."""
        from runtime.bench.torch_rows import find_original

        found = find_original(paths[:FIND_ORIGINAL_FILES])
        self._original_found = str(found) if found else None
        if found and not self.original_box.isChecked():
            self._original = str(found)
        self._show_original()

    def original_path(self) -> str | None:
        """The checkpoint folder to measure in PyTorch, or None."""
        return self._original if self.original_box.isChecked() and self._original else None

    def original_precisions(self) -> list[str]:
        """The ticked precisions ("fp32", "bf16", "int8"), in that order."""
        return [key for key, box in self.precision_boxes.items() if box.isChecked()]

    # -- the library ------------------------------------------------------------------------------

    def set_library(self, rows: list) -> None:
        """The Models tab's library rows; keeps the group shown when it still exists."""
        from runtime.models.grouping import entry_quant, group_entries

        entries = [r.entry for r in rows if getattr(r.entry, "info", None) is not None]
        groups: dict[str, list] = {}
        for group in group_entries(entries):
            name = group.name if group.name not in groups else f"{group.name} ({len(groups) + 1})"
            groups[name] = [(str(e.path), _label(e.name, entry_quant(e), e.size_bytes), str(e.path))
                            for e in group.entries]
        if self._added:
            groups[OTHER_FILES] = [(p, _label(Path(p).name, None, _size(p)), p) for p in self._added]
        current = self.groups.currentData()
        self._groups = groups
        self.groups.blockSignals(True)
        self.groups.clear()
        for name, files in groups.items():
            self.groups.addItem(f"{name} ({len(files)} file{'s' if len(files) != 1 else ''})", name)
        self.groups.setCurrentIndex(max(self.groups.findData(current), 0))
        self.groups.blockSignals(False)
        self._show_group()

    def select_path(self, path: str) -> bool:
        """Show the group holding ``path`` with all its files ticked ("Benchmark it"); adds the file
        under "Files you chose" when the library does not know it. True when shown."""
        path = str(path)
        for name, files in self._groups.items():
            if any(p == path for p, _l, _t in files):
                self._unticked.difference_update(p for p, _l, _t in files)   # asked for: all of it
                self.groups.setCurrentIndex(self.groups.findData(name))
                self._show_group()
                return True
        self.add_paths([path])
        return True

    def add_paths(self, paths: list[str]) -> None:
        """Add files to "Files you chose" and show that list."""
        for p in paths:
            if p not in self._added:
                self._added.append(str(p))
        self._groups[OTHER_FILES] = [(p, _label(Path(p).name, None, _size(p)), p) for p in self._added]
        if self.groups.findData(OTHER_FILES) < 0:
            self.groups.addItem(OTHER_FILES, OTHER_FILES)
        self.groups.setItemText(self.groups.findData(OTHER_FILES), f"{OTHER_FILES} ({len(self._added)})")
        self.groups.setCurrentIndex(self.groups.findData(OTHER_FILES))
        self._show_group()

    def _add_clicked(self) -> None:
        files = self.choose_files(self, "Choose GGUF files to benchmark")
        if files:
            self.add_paths(files)

    # -- what is chosen ---------------------------------------------------------------------------

    def _show_group(self) -> None:
        name = self.groups.currentData()
        self.files.blockSignals(True)
        self.files.clear()
        for path, label, tip in self._groups.get(name, []):
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setToolTip(tip)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked if path in self._unticked else Qt.CheckState.Checked)
            self.files.addItem(item)
        self.files.blockSignals(False)
        self._offer_original([p for p, _l, _t in self._groups.get(name, [])])
        self._on_ticked()

    def _on_ticked(self, item=None) -> None:
        if item is not None:
            path = item.data(Qt.ItemDataRole.UserRole)
            if item.checkState() == Qt.CheckState.Checked:
                self._unticked.discard(path)
            else:
                self._unticked.add(path)
        chosen = self.chosen_paths()
        wanted = self.reference.currentData()
        self.reference.blockSignals(True)
        self.reference.clear()
        self.reference.addItem("The original checkpoint (PyTorch FP32)" if self.original_path()
                               else "The highest-precision variant", None)
        for i in range(self.files.count()):
            item = self.files.item(i)
            if item.data(Qt.ItemDataRole.UserRole) in chosen:
                self.reference.addItem(item.text(), item.data(Qt.ItemDataRole.UserRole))
        self.reference.setCurrentIndex(max(self.reference.findData(wanted), 0) if wanted else 0)
        self.reference.blockSignals(False)
        self.sig_changed.emit()

    def chosen_paths(self) -> list[str]:
        """The ticked files, in the group's order (highest precision first)."""
        return [self.files.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.files.count())
                if self.files.item(i).checkState() == Qt.CheckState.Checked]

    def tick(self, paths: list[str]) -> None:
        """Tick exactly ``paths`` among the files shown."""
        wanted = {str(p) for p in paths}
        for i in range(self.files.count()):
            item = self.files.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in wanted
                               else Qt.CheckState.Unchecked)

    def reference_path(self) -> str | None:
        """The chosen reference, or None: the highest-precision variant."""
        return self.reference.currentData()


def _label(name: str, quant: str | None, size: int | None) -> str:
    parts = [name]
    if quant:
        parts.append(quant)
    if size:
        parts.append(format_size(size))
    return " · ".join(parts)


def _size(path: str) -> int | None:
    try:
        return Path(path).stat().st_size
    except OSError:
        return None
