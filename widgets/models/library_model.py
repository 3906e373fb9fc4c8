"""The local model library as a Qt tree (model -> its files), and the plain function that fills it.

``scan_library_rows`` runs on a worker thread: it scans the disk, reads the GGUF headers, asks
``runtime.models.hardware.check_fit`` for each readable model and looks up the memory each model
really used when it was last loaded (``measured``, e.g. ``ConversationStore.model_memory``).
``LibraryTreeModel`` only displays the rows: variants of one model (``runtime.models.grouping``) sit
under one model row; a model with a single file is one row. Names and paths are shown through
``readable`` (Qt silently drops the bytes of a non-UTF-8 file name).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QStandardItem, QStandardItemModel

from runtime.models.library import SOURCE_LABELS
from widgets.common.fit_badge import fit_colours, fit_label

COLUMNS = ("Name", "Source", "Architecture", "Params", "Quant", "Context", "Size", "Fit",
           "Estimate", "Measured", "Problem")
NOT_MEASURED = "not measured yet"
ROW_ROLE = Qt.ItemDataRole.UserRole + 1      # the LibraryRow of a file row (column 0)
GROUP_ROLE = Qt.ItemDataRole.UserRole + 2    # the ModelGroup of a model row with several files


@dataclass
class LibraryRow:
    """One library entry plus its fit verdict (None when the file could not be read)."""

    entry: Any                  # runtime.models.library.ModelEntry
    fit: Any = None             # runtime.models.hardware.FitVerdict | None
    fit_ctx: int = 0            # the context length the verdict was computed for
    measured: dict | None = None  # the last load: {"n_ctx", "estimated_bytes", "measured_bytes", "measured_at"}
    gpus: list | None = None    # the GPUs llama.cpp can use (GpuDevice) the verdict was judged with


def scan_library_rows(measured: Callable[[], dict] | None = None) -> tuple[list[LibraryRow], list[str]]:
    """Scan the library and judge each model's fit; also return what the scan skipped.

    ``measured()``: the memory recorded per model path (``ConversationStore.model_memory``); a
    failure there only leaves the Measured column empty. The verdicts count the free memory of the
    GPUs this llama.cpp can use (``list_gpus``: an engine child, once per process). Blocking: call it
    from a worker.
    """
    from runtime.engine.local import list_gpus
    from runtime.models.hardware import check_fit, default_fit_context
    from runtime.models.library import scan_library_report

    scan = scan_library_report()
    try:
        memory = measured() if measured is not None else {}
    except Exception:  # noqa: BLE001 - a busy or damaged store must not hide the library
        memory = {}
    gpus = list_gpus()
    rows = []
    for entry in scan.entries:
        row = LibraryRow(entry, measured=memory.get(str(entry.path)), gpus=gpus)
        if entry.info is not None:
            row.fit_ctx = default_fit_context(entry.info)
            try:
                row.fit = check_fit(entry.info, row.fit_ctx, gpus=gpus)
            except Exception:  # noqa: BLE001 - a missing verdict must not hide the model
                row.fit = None
        rows.append(row)
    return rows, scan.problems


def measured_text(row: LibraryRow) -> str:
    """'1.1 GiB (estimate +12%)' or 'not measured yet' (the context it ran with is in the tooltip)."""
    from runtime.models.gguf_info import format_size

    m = row.measured
    if not m or not m.get("measured_bytes"):
        return NOT_MEASURED
    used, estimated = int(m["measured_bytes"]), int(m.get("estimated_bytes") or 0)
    text = format_size(used)
    if estimated:
        text += f" (estimate {(estimated - used) / used:+.0%})"
    return text


def _measured_tooltip(row: LibraryRow) -> str:
    from runtime.models.gguf_info import format_size

    m = row.measured
    if not m or not m.get("measured_bytes"):
        return "Load the model in the Chat tab and send a message: the memory it really used is recorded here."
    used, estimated = int(m["measured_bytes"]), int(m.get("estimated_bytes") or 0)
    text = (f"Memory really used when this model last ran with a {int(m.get('n_ctx') or 0):,}-token "
            f"context: {format_size(used)}.")
    if estimated:
        diff = estimated - used
        side = "more than it needed" if diff >= 0 else "less than it needed: the estimate was too low"
        text += f"\nThe estimate for that context was {format_size(estimated)}, {format_size(abs(diff))} {side}."
    return text


def _file_cells(row: LibraryRow) -> list[str]:
    from runtime.models.gguf_info import format_size, param_label
    from runtime.models.library import readable

    entry, info = row.entry, row.entry.info
    source = SOURCE_LABELS.get(entry.source, entry.source)
    if entry.repo_id:
        source = f"{source} ({entry.repo_id})"
    if info is None:
        return [entry.display_name, source, "", "", "", "", format_size(entry.size_bytes), "", "", "",
                readable(entry.error or "unreadable")]
    context = f"{info.context_length:,}" if info.context_length else "?"
    estimate = format_size(row.fit.needed_bytes) if row.fit else ""
    return [entry.display_name, source, info.architecture, param_label(info.parameter_count), info.file_type,
            context, format_size(entry.size_bytes), fit_label(row.fit.status if row.fit else None), estimate,
            measured_text(row), ""]


def _group_cells(group, rows: list[LibraryRow]) -> list[str]:
    from runtime.models.gguf_info import format_size, param_label

    infos = [r.entry.info for r in rows if r.entry.info is not None]
    sources = sorted({SOURCE_LABELS.get(r.entry.source, r.entry.source) for r in rows})
    archs = sorted({i.architecture for i in infos})
    params = sorted({param_label(i.parameter_count) for i in infos})
    fitting = sum(1 for r in rows if r.fit is not None and r.fit.status == "fits")
    unreadable = sum(1 for r in rows if r.entry.info is None)
    return [group.name, ", ".join(sources), ", ".join(archs), ", ".join(params),
            f"{len(rows)} files: {', '.join(group.quants)}", "", format_size(group.size_bytes),
            f"{fitting} of {len(rows)} fit", "", "", f"{unreadable} unreadable" if unreadable else ""]


class LibraryTreeModel(QStandardItemModel):
    """Read-only tree of LibraryRow objects grouped by model."""

    def __init__(self, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self._rows: list[LibraryRow] = []
        self._groups: list = []

    def set_rows(self, rows: list[LibraryRow]) -> None:
        from runtime.models.grouping import group_entries

        by_id = {id(r.entry): r for r in rows}
        self._groups = group_entries([r.entry for r in rows])
        self._rows = []
        self.removeRows(0, self.rowCount())
        root = self.invisibleRootItem()
        for group in self._groups:
            members = [by_id[id(e)] for e in group.entries]
            if len(members) == 1:
                root.appendRow(self._file_items(members[0]))
            else:
                parent = self._items(_group_cells(group, members))
                parent[0].setData(group, GROUP_ROLE)
                font = QFont()
                font.setBold(True)
                parent[0].setFont(font)
                parent[0].setToolTip(f"{len(members)} files of this model; the Benchmark tab compares them.")
                for member in members:
                    parent[0].appendRow(self._file_items(member))
                root.appendRow(parent)
            self._rows += members

    def rows(self) -> list[LibraryRow]:
        """Every file row, in the order shown (a model's files from the highest precision down)."""
        return list(self._rows)

    def groups(self) -> list:
        """The ModelGroups shown, in order."""
        return list(self._groups)

    def row_at(self, index) -> LibraryRow | None:
        """The LibraryRow of a file row (any column), or None for a model row with several files."""
        if not index.isValid():
            return None
        return index.siblingAtColumn(0).data(ROW_ROLE)

    def group_at(self, index):
        """The ModelGroup of a model row with several files, or None."""
        return index.siblingAtColumn(0).data(GROUP_ROLE) if index.isValid() else None

    def index_of_path(self, path) -> Any:
        """The index (column 0) of the file row for ``path``; invalid when it is not shown."""
        from PySide6.QtCore import QModelIndex

        for index in self._walk():
            row = index.data(ROW_ROLE)
            if row is not None and str(row.entry.path) == str(path):
                return index
        return QModelIndex()

    def _walk(self):
        for r in range(self.rowCount()):
            top = self.index(r, 0)
            yield top
            for c in range(self.rowCount(top)):
                yield self.index(c, 0, top)

    @staticmethod
    def _items(cells: list[str]) -> list[QStandardItem]:
        items = []
        for text in cells:
            item = QStandardItem(text)
            item.setEditable(False)
            items.append(item)
        return items

    def _file_items(self, row: LibraryRow) -> list[QStandardItem]:
        from runtime.models.library import readable

        items = self._items(_file_cells(row))
        items[0].setData(row, ROW_ROLE)
        items[0].setToolTip(readable(str(row.entry.path)))
        source = items[COLUMNS.index("Source")]
        source.setToolTip(source.text())
        fit = items[COLUMNS.index("Fit")]
        if row.fit is not None:
            fit.setToolTip(f"At a context of {row.fit_ctx:,} tokens: {row.fit.message}")
            colours = fit_colours(row.fit.status)
            if colours:
                fit.setForeground(colours[0])
                fit.setBackground(colours[1])
            items[COLUMNS.index("Estimate")].setToolTip(
                f"Estimated memory with a {row.fit_ctx:,}-token context: weights + KV cache + compute buffers.")
        if row.entry.info is not None:
            items[COLUMNS.index("Measured")].setToolTip(_measured_tooltip(row))
        if row.entry.error:
            items[COLUMNS.index("Problem")].setToolTip(
                readable("\n".join(filter(None, [row.entry.error, row.entry.error_hint]))))
        return items
