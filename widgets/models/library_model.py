"""The local model library as a Qt table model, and the plain function that fills it.

``scan_library_rows`` runs on a worker thread: it scans the disk, reads the GGUF headers and asks
``runtime.models.hardware.check_fit`` for each readable model. ``LibraryTableModel`` only displays the rows.
Names and paths are shown through ``readable`` (Qt silently drops the bytes of a non-UTF-8 file name).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt

from widgets.common.fit_badge import fit_colours, fit_label

COLUMNS = ("Name", "Source", "Architecture", "Params", "Quant", "Context", "Size", "Fit", "Problem")
SOURCE_LABELS = {"app": "App folder", "hf-cache": "Hugging Face cache", "starter": "Starter model"}


@dataclass
class LibraryRow:
    """One library entry plus its fit verdict (None when the file could not be read)."""

    entry: Any          # runtime.models.library.ModelEntry
    fit: Any = None     # runtime.models.hardware.FitVerdict | None
    fit_ctx: int = 0    # the context length the verdict was computed for


def scan_library_rows() -> tuple[list[LibraryRow], list[str]]:
    """Scan the library and judge each model's fit; also return what the scan skipped.

    Blocking: call it from a worker.
    """
    from runtime.models.hardware import check_fit, default_fit_context
    from runtime.models.library import scan_library_report

    scan = scan_library_report()
    rows = []
    for entry in scan.entries:
        row = LibraryRow(entry)
        if entry.info is not None:
            row.fit_ctx = default_fit_context(entry.info)
            try:
                row.fit = check_fit(entry.info, row.fit_ctx)
            except Exception:  # noqa: BLE001 - a missing verdict must not hide the model
                row.fit = None
        rows.append(row)
    return rows, scan.problems


def _cells(row: LibraryRow) -> list[str]:
    from runtime.models.gguf_info import format_size, param_label
    from runtime.models.library import readable

    entry, info = row.entry, row.entry.info
    source = SOURCE_LABELS.get(entry.source, entry.source)
    if entry.repo_id:
        source = f"{source} ({entry.repo_id})"
    if info is None:
        return [entry.display_name, source, "", "", "", "", format_size(entry.size_bytes), "",
                readable(entry.error or "unreadable")]
    context = f"{info.context_length:,}" if info.context_length else "?"
    return [entry.display_name, source, info.architecture, param_label(info.parameter_count), info.file_type,
            context, format_size(entry.size_bytes), fit_label(row.fit.status if row.fit else None), ""]


class LibraryTableModel(QAbstractTableModel):
    """Read-only table of LibraryRow objects."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows: list[LibraryRow] = []
        self._cells: list[list[str]] = []

    def set_rows(self, rows: list[LibraryRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self._cells = [_cells(r) for r in self._rows]
        self.endResetModel()

    def rows(self) -> list[LibraryRow]:
        return list(self._rows)

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, col = self._rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._cells[index.row()][col]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, col)
        if COLUMNS[col] == "Fit" and row.fit is not None:
            colours = fit_colours(row.fit.status)
            if colours and role == Qt.ItemDataRole.ForegroundRole:
                return colours[0]
            if colours and role == Qt.ItemDataRole.BackgroundRole:
                return colours[1]
        return None

    @staticmethod
    def _tooltip(row: LibraryRow, col: int) -> str | None:
        from runtime.models.library import readable

        name = COLUMNS[col]
        if name == "Fit" and row.fit is not None:
            return f"At a context of {row.fit_ctx:,} tokens: {row.fit.message}"
        if name == "Problem" and row.entry.error:
            return readable("\n".join(filter(None, [row.entry.error, row.entry.error_hint])))
        if name == "Name":
            return readable(str(row.entry.path))
        return None
