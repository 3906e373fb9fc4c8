"""The Compress tab: pick a source, tick what to make, run the jobs, find the results in the library.

It composes small widgets and one controller: ``SourcePanel`` (a library model or a checkpoint
folder, and its facts), ``TargetsPanel`` (each type with its expected size, fit and quality note),
``ImatrixPanel`` ("Use importance matrix": computed first from a calibration text, as a job of its
own, or an existing file; ticked for the types that need one), the output bar (where results go,
the plan in words, Compress) and ``JobsPanel`` on a
``CompressJobs`` queue. Reading a source runs on a worker (``widgets.compress.source.inspect_source``);
an answer about a source that is no longer picked is dropped.

Results go into the app's models folder by default (the library scans it), or into a chosen folder,
added to the library by reference. The tab emits ``sig_library_changed(path)`` when a result
lands (the main window refreshes the Models tab) and ``sig_open_requested(action, path)`` for Chat
and Benchmark.

Test hooks: ``open_source(path)`` (then ``sig_source_ready(facts)`` or ``sig_source_refused(path, error)``), ``set_library(rows)``, ``compress()``, ``source``, ``targets``,
``imatrix`` (the panel), ``jobs`` (the controller), ``jobs_panel``, ``banner``, ``facts``, and the replaceable
``choose_folder(parent, title, start) -> str | None`` used by "Checkpoint folder…" and
"Other folder…".
"""
from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFileDialog, QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSplitter,
                               QVBoxLayout, QWidget)

from runtime import paths
from runtime.models.gguf_info import format_size
from widgets.common.banner import Banner
from widgets.compress.jobs import CompressJobs
from widgets.compress.imatrix_panel import ImatrixPanel
from widgets.compress.jobs_panel import JobsPanel
from widgets.compress.plan import plan_bytes, plan_jobs
from widgets.compress.source_panel import SourcePanel
from widgets.compress.targets_panel import TargetsPanel
from widgets.workers import Worker, error_text


def ask_folder(parent, title: str, start: str = "") -> str | None:
    """A folder dialog; None when cancelled."""
    folder = QFileDialog.getExistingDirectory(parent, title, start)
    return folder or None


class OutputBar(QWidget):
    """Where the results go, what will run (in words), and the Compress button."""

    sig_other_folder = Signal()
    sig_models_folder = Signal()
    sig_compress = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.where = QLabel()
        self.where.setTextFormat(Qt.TextFormat.PlainText)
        self.where.setWordWrap(True)
        self.other_button = QPushButton("Other folder…")
        self.other_button.setToolTip("Save the results in a folder of your choice; the library lists them from there.")
        self.models_button = QPushButton("Models folder")
        self.models_button.setToolTip("Save the results in the app's models folder (the default).")
        self.plan = QLabel()
        self.plan.setWordWrap(True)
        self.plan.setTextFormat(Qt.TextFormat.PlainText)
        self.compress_button = QPushButton("Compress")
        self.compress_button.setDefault(True)
        self.compress_button.setEnabled(False)
        self.other_button.clicked.connect(self.sig_other_folder)
        self.models_button.clicked.connect(self.sig_models_folder)
        self.compress_button.clicked.connect(self.sig_compress)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.where, 1)
        top.addWidget(self.models_button)
        top.addWidget(self.other_button)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(self.plan, 1)
        bottom.addWidget(self.compress_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(bottom)


class CompressTab(QWidget):
    """Source + targets + output + the job list. ``store`` is accepted for symmetry and unused: the
    queue lives as long as the window."""

    sig_open_requested = Signal(str, str)   # "chat" | "benchmark", the result's path
    sig_library_changed = Signal(str)       # a result landed at this path
    sig_source_ready = Signal(object)       # SourceFacts of the picked source, shown
    sig_source_refused = Signal(str, object)  # path, the error that says why it cannot be used

    def __init__(self, store=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.choose_folder = ask_folder
        self.facts = None                    # SourceFacts of the picked source, once read
        self.out_dir: Path | None = None     # None: the app's models folder
        self.banner = Banner()
        self.source = SourcePanel()
        self.targets = TargetsPanel()
        self.imatrix = ImatrixPanel()
        self.output = OutputBar()
        self.jobs = CompressJobs(self)
        self.jobs_panel = JobsPanel(self.jobs)

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 6, 0)
        top_layout.addWidget(self.source)
        top_layout.addWidget(_line())
        top_layout.addWidget(self.targets)
        top_layout.addWidget(self.imatrix)
        top_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(top)
        upper = QWidget()
        upper_layout = QVBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.addWidget(scroll, 1)
        upper_layout.addWidget(_line())
        upper_layout.addWidget(self.output)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(upper)
        self.splitter.addWidget(self.jobs_panel)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([520, 300])
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.splitter, 1)

        self._reader: Worker | None = None
        self._readers: list[Worker] = []     # every reader still running (an older one is left to end)
        self._wanted: str | None = None      # the source whose facts are awaited
        self._closing = False
        self._wire()
        self._update_where()
        self._update_plan()

    def _wire(self) -> None:
        self.source.sig_source_chosen.connect(self._read_source)
        self.source.sig_folder_requested.connect(self.choose_checkpoint)
        self.targets.sig_changed.connect(self._update_plan)
        self.imatrix.sig_changed.connect(self._update_plan)
        self.output.sig_other_folder.connect(self.choose_output_folder)
        self.output.sig_models_folder.connect(lambda: self.set_output_folder(None))
        self.output.sig_compress.connect(self.compress)
        self.jobs.sig_done.connect(self._on_job_done)
        self.jobs.sig_failed.connect(self._on_job_failed)
        self.jobs.sig_changed.connect(lambda _job: self._update_plan())
        self.jobs_panel.sig_open_requested.connect(self.sig_open_requested)

    # -- the source -------------------------------------------------------------------------------

    def set_library(self, rows: list) -> None:
        """The Models tab's library rows (``ModelsTab.sig_library_loaded``): the models on offer."""
        self.source.set_library(rows)

    def open_source(self, path: str) -> None:
        """Pick ``path`` (a GGUF file or a checkpoint folder) as the source and read it."""
        self.banner.dismiss()
        self.source.select_path(str(path))

    def choose_checkpoint(self) -> None:
        """"Checkpoint folder…": a folder with config.json and its weights."""
        folder = self.choose_folder(self, "Choose a Hugging Face checkpoint folder", str(paths.hf_cache_dir()))
        if folder:
            self.open_source(folder)

    def _read_source(self, path: str) -> None:
        if self._closing:
            return
        from widgets.compress.source import inspect_source

        self._wanted = path
        self.facts = None
        self.source.show_reading(path)
        self.targets.clear("Reading the source…")
        worker = Worker(lambda job: inspect_source(path), name="compress-inspect")
        worker.sig_done.connect(lambda facts: self._on_facts(path, facts))
        worker.sig_failed.connect(lambda error: self._on_source_failed(path, error))
        worker.sig_finished.connect(lambda: self._readers.remove(worker) if worker in self._readers else None)
        self._readers.append(worker)
        self._reader = worker
        worker.start()

    def _on_facts(self, path: str, facts) -> None:
        if path != self._wanted:
            return   # another source was picked meanwhile
        self.facts = facts
        self.source.show_facts(facts)
        self.targets.set_facts(facts)
        if facts.problem:
            self.banner.show_message(f"{Path(path).name} cannot be converted: {facts.problem}", "error")
        else:
            self.banner.dismiss()
        self.sig_source_ready.emit(facts)

    def _on_source_failed(self, path: str, error) -> None:
        if path != self._wanted:
            return
        self.facts = None
        text = error_text(error)
        self.source.show_problem(path, text)
        self.targets.clear("Nothing can be made from this source.")
        self.banner.show_message(f"{Path(path).name} cannot be compressed: {text}", "error")
        self.sig_source_refused.emit(path, error)

    @property
    def reading(self) -> bool:
        return any(w.running for w in self._readers)

    # -- where results go -------------------------------------------------------------------------

    def output_folder(self) -> Path:
        return self.out_dir if self.out_dir is not None else paths.models_dir()

    def choose_output_folder(self) -> None:
        folder = self.choose_folder(self, "Save the results in", str(self.output_folder()))
        if folder:
            self.set_output_folder(folder)

    def set_output_folder(self, folder: str | None) -> None:
        """Results go into ``folder`` (added to the library by reference), or the models folder (None)."""
        self.out_dir = Path(folder) if folder else None
        self._update_where()
        self._update_plan()

    def _update_where(self) -> None:
        from runtime.models.library import readable

        if self.out_dir is None:
            self.output.where.setText(f"Save into the app's models folder: {readable(str(paths.models_dir()))}")
        else:
            self.output.where.setText(f"Save into {readable(str(self.out_dir))} (the library lists the results "
                                      "from there, added by reference)")
        self.output.models_button.setEnabled(self.out_dir is not None)

    # -- running ----------------------------------------------------------------------------------

    def planned(self):
        """The jobs the ticked targets would become (see ``widgets.compress.plan``)."""
        if self.facts is None:
            return []
        return plan_jobs(self.facts, self.targets.chosen(), self.output_folder(), imatrix=self.imatrix.enabled)

    def imatrix_out_path(self) -> Path:
        """Where a computed importance matrix goes: the app's own folder, not the models folder (the
        library would list it as a model)."""
        text = self.imatrix.text().stem
        return paths.app_home() / "imatrix" / f"{self.facts.name}.{text}.imatrix.gguf"

    def _uses_imatrix(self, jobs) -> bool:
        return self.imatrix.enabled and any(j.kind == "quantize" for j in jobs)

    def _update_plan(self) -> None:
        if self.facts is not None:
            self.imatrix.set_required([t for t in self.targets.chosen()
                                       if getattr(self.facts.target(t), "needs_imatrix", False)])
        jobs = self.planned()
        button = self.output.compress_button
        if self.facts is None or not jobs:
            self.output.plan.setText("Tick one or more types to make." if self.facts is not None else "")
            self.output.plan.setStyleSheet("")
            button.setEnabled(False)
            button.setText("Compress")
            return
        words = []
        for job in jobs:
            verb = "convert to" if job.kind == "convert" else "quantize to"
            words.append(f"{verb} {job.qtype}" + (" (needed first)" if job.automatic else ""))
        if self._uses_imatrix(jobs):
            if self.imatrix.computes:
                first = next(i for i, w in enumerate(words) if w.startswith("quantize"))
                words.insert(first, f"compute the importance matrix from {self.imatrix.text().name}")
            words = [w + " with it" if w.startswith("quantize") else w for w in words]
        needed = plan_bytes(jobs)
        text = f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}, one after another: {', '.join(words)}."
        text += f" About {format_size(needed)} in all."
        warn = False
        free = _free_bytes(self.output_folder())
        if free is not None:
            text += f" {format_size(free)} free on that disk."
            warn = needed > free
            if warn:
                text += " Not enough space: free some or choose another folder."
        existing = [Path(j.out_path).name for j in jobs if Path(j.out_path).exists()]
        if existing:
            text += f" Replaces {', '.join(existing)}."
        pending = [Path(j.out_path).name for j in jobs if self.jobs.pending_output(j.out_path) is not None]
        if pending:
            text += f" Already queued: {', '.join(pending)}."
        problem = self.imatrix.problem() if self._uses_imatrix(jobs) else ""
        if problem:
            text += f" {problem}"
        self.output.plan.setText(text)
        self.output.plan.setStyleSheet("color: #b71c1c;" if warn or pending or problem else "")
        button.setEnabled(not pending and not problem)
        button.setText(f"Compress ({len(jobs)} job{'s' if len(jobs) != 1 else ''})")

    def compress(self) -> list[int]:
        """Queue the planned jobs; returns their ids ([] when nothing was queued)."""
        facts = self.facts
        jobs = self.planned()
        if facts is None or not jobs:
            return []
        busy = [j for j in jobs if self.jobs.pending_output(j.out_path) is not None]
        if busy:
            self.banner.show_message(f"{Path(busy[0].out_path).name} is being made already: wait for it, or "
                                     "cancel it first.", "warning")
            return []
        try:
            paths.ensure_dir(self.output_folder())
        except OSError as exc:
            self.banner.show_message(f"Cannot use the folder {self.output_folder()}: {exc.strerror or exc}",
                                     "error")
            return []
        if self._uses_imatrix(jobs) and self.imatrix.problem():
            self.banner.show_message(self.imatrix.problem(), "warning")
            return []
        matrix_job, matrix_file = None, ""
        compute = self._uses_imatrix(jobs) and self.imatrix.computes
        if self._uses_imatrix(jobs) and not compute:
            matrix_file = str(self.imatrix.matrix_path)
        ids: list[int] = []
        for planned in jobs:
            after = ids[planned.after] if planned.after is not None else None
            quantize = planned.kind == "quantize"
            if quantize and compute and matrix_job is None:
                # just before the first quantization: from the GGUF itself, or (a checkpoint) from the
                # conversion the quantizations read, with llama.cpp (quick; PyTorch is not needed)
                matrix_job = self.jobs.enqueue("imatrix", facts.path if after is None else "",
                                               str(self.imatrix_out_path()), "imatrix", after=after,
                                               label=facts.name, imatrix=str(self.imatrix.text())).id
            job = self.jobs.enqueue(planned.kind, facts.path if after is None else "", planned.out_path,
                                    planned.qtype, requantize=self.targets.requantize_ticked, after=after,
                                    expected_bytes=planned.expected_bytes, label=facts.name,
                                    imatrix=matrix_file if quantize else "",
                                    imatrix_job=matrix_job if quantize else None)
            ids.append(job.id)
        if matrix_job is not None:
            ids.insert(next(i for i, j in enumerate(ids) if self.jobs.jobs[j].imatrix_job == matrix_job), matrix_job)
        self.targets.tick(*self.targets.chosen(), on=False)
        self.banner.dismiss()
        return ids

    def _on_job_done(self, job_id: int, path: str) -> None:
        job = self.jobs.jobs.get(job_id)
        if job is None or job.kind != "imatrix":
            self.sig_library_changed.emit(path)
        self._update_plan()

    def _on_job_failed(self, job_id: int, error) -> None:
        job = self.jobs.jobs.get(job_id)
        what = job.title if job is not None else "A job"
        self.banner.show_error(error, before=f"{what} failed.")

    # -- shut-down --------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Cancel the running job (its partial output is removed) and join every thread of the tab."""
        self._closing = True
        self.jobs.shutdown()
        for worker in list(self._readers):
            worker.wait()


def _line() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setStyleSheet("color: #dddddd;")
    return line


def _free_bytes(folder: Path) -> int | None:
    """Free space on the disk that holds ``folder`` (or its nearest existing parent)."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None
