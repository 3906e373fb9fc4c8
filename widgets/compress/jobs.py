"""The compress queue: one controller that runs conversions and quantizations one after another.

``CompressJobs`` holds ``CompressJob`` records in the order they were queued and runs the first
waiting one on a ``Worker`` (one at a time: each uses every core). A job is a conversion of a
checkpoint folder (``runtime.compress.convert.convert_checkpoint``, run in its own process by
``runtime.compress.convert_child`` so its pure-Python stretches never hold the window's GIL) or a
quantization of a GGUF (``runtime.compress.quantize.quantize_gguf``, whose llama.cpp runs in a
child at a lower priority); a quantization may wait on a conversion (``after``)
and then reads that job's output. An importance-matrix job
(``runtime.compress.imatrix_run.compute_imatrix``: llama.cpp for a GGUF, PyTorch for a checkpoint, in a
child) runs before the quantizations that use it (``imatrix_job``); they fail without starting when it
does not finish. When the job's folder is not one the library scans anyway
(the app's models folder), its result is added by reference so it shows in the library.

The runtime writes every output under a temporary name and removes it on cancel or failure, so
this controller never deletes files itself. It keeps no store: the queue lives as long as the tab.

Signals (DESIGN.md, one controller per journey): ``sig_added(job)``, ``sig_changed(job)`` on every
status change, ``sig_progress(id, done, total, message)`` (throttled by the worker),
``sig_log(id, text)`` (new log lines), ``sig_done(id, path)``, ``sig_failed(id, error)`` (the
error object) and ``sig_cancelled(id)``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from runtime.errors import WorkbenchError
from widgets.workers import Worker, error_text

ACTIVE = ("queued", "running")
LOG_LIMIT = 2000   # lines kept per job (llama.cpp prints one per tensor)
BACKGROUND_NICE = 10
QUANTIZER_MODULE = "runtime.compress.quantize_child"


@dataclass
class CompressJob:
    """One conversion or quantization in the queue, and what became of it."""

    id: int
    kind: str                       # "convert" (checkpoint -> GGUF) | "quantize" (GGUF -> GGUF) | "imatrix"
    source: str                     # the folder or GGUF it reads ('' while it waits on ``after``)
    out_path: str                   # where the result goes
    qtype: str                      # "F16", "Q8_0", "Q4_K_M", ...
    requantize: bool = False        # the source is already quantized and the person agreed
    after: int | None = None        # the conversion whose output this job reads
    expected_bytes: int = 0         # the size estimate shown before it ran (0: unknown)
    label: str = ""                 # the source's name, for the list
    status: str = "queued"          # queued | running | done | failed | cancelled
    done: float = 0.0
    total: float = 0.0
    message: str = ""
    error: object = None            # the error object of a failed job
    result_path: str | None = None
    real_bytes: int = 0
    added_by_reference: bool = False
    started_at: float | None = None  # time.monotonic()
    ended_at: float | None = None
    log: list[str] = field(default_factory=list)
    imatrix: str = ""               # quantize: the importance matrix it uses ('' for none); imatrix: the text
    imatrix_job: int | None = None  # quantize: the importance-matrix job that makes ``imatrix``

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.started_at

    @property
    def title(self) -> str:
        if self.kind == "imatrix":
            return f"Importance matrix for {self.label or 'the model'} from {Path(self.imatrix).name}"
        what = "Convert" if self.kind == "convert" else "Quantize"
        if self.imatrix:
            what += " (with importance matrix)"
        return f"{what} {self.label} to {self.qtype}" if self.label else f"{what} to {self.qtype}"


def run_job(job: CompressJob, work) -> dict:
    """Run one job on a worker: convert or quantize, then make the result visible to the library.

    Every distinct progress message also goes to the job's log (``work.text``). Returns
    ``{"path", "bytes", "reference"}``.
    """
    from runtime.models.references import add_reference, already_scanned

    last = [""]

    def progress(done: float, total: float, message: str = "") -> None:
        work.progress(done, total, message)
        if message and message != last[0]:
            last[0] = message
            work.text(message + "\n")

    out = Path(job.out_path)
    if job.kind == "imatrix":
        from runtime.compress.imatrix_run import compute_imatrix

        out.parent.mkdir(parents=True, exist_ok=True)
        run = compute_imatrix(job.source, job.imatrix, out, overwrite=True, progress=progress, cancel=work.cancel)
        return {"path": str(run.path), "bytes": run.path.stat().st_size, "reference": False}
    if job.kind == "convert":
        from runtime.compress.convert_child import convert_in_child

        path = convert_in_child(job.source, out, job.qtype, progress=progress, cancel=work.cancel)
    else:
        from runtime.compress.quantize import quantize_gguf

        calls = [0]

        def quantize_progress(done: float, total: float, message: str = "") -> None:
            calls[0] += 1
            if calls[0] > 1:   # the first comes before the child starts, the next ones from it
                calls[0] = -10**9 if lower_child_priority() else calls[0]
            progress(done, total, message)

        # overwrite: the tab said "Replaces ..." before it was queued; the old file goes only once
        # the new one is complete
        path = quantize_gguf(job.source, out, job.qtype, requantize=job.requantize, overwrite=True,
                             imatrix=job.imatrix or None, progress=quantize_progress, cancel=work.cancel)
    path = Path(path)
    reference = False
    if not already_scanned(path):
        add_reference(path)   # a chosen folder: the library lists the result from where it is
        reference = True
    return {"path": str(path), "bytes": path.stat().st_size, "reference": reference}


def lower_child_priority(module: str = QUANTIZER_MODULE) -> bool:
    """Run this process's children that run ``module`` below normal priority; True when one was found.

    llama.cpp's quantizer keeps every core busy; at nice 10 (below-normal on Windows) the window still
    gets its turn at once, and the quantizer loses nothing on an otherwise idle machine. Only the
    child is lowered: a lowered thread of this process holding the GIL would keep the window waiting.
    """
    import sys

    import psutil

    found = False
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return False
    for child in children:
        try:
            if module not in " ".join(child.cmdline()):
                continue
            found = True
            if sys.platform == "win32":
                child.nice(psutil.BELOW_NORMAL_PRIORITY_CLASS)
            elif child.nice() < BACKGROUND_NICE:
                child.nice(BACKGROUND_NICE)
        except psutil.Error:   # it ended meanwhile, or may not be changed
            pass
    return found


class CompressJobs(QObject):
    """The queue of one Compress tab; see the module docstring."""

    sig_added = Signal(object)                 # CompressJob
    sig_changed = Signal(object)               # CompressJob (its status changed)
    sig_progress = Signal(int, float, float, str)
    sig_log = Signal(int, str)                 # id, new lines
    sig_done = Signal(int, str)                # id, the result's path
    sig_failed = Signal(int, object)           # id, error object
    sig_cancelled = Signal(int)
    sig_removed = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.jobs: dict[int, CompressJob] = {}
        self._order: list[int] = []
        self._next_id = 1
        self._worker: Worker | None = None
        self._running_id: int | None = None
        self._closing = False

    # -- what there is ----------------------------------------------------------------------------

    def ids(self) -> list[int]:
        return list(self._order)

    def running_id(self) -> int | None:
        return self._running_id

    def active(self) -> list[CompressJob]:
        """The jobs queued or running, in order."""
        return [self.jobs[i] for i in self._order if self.jobs[i].status in ACTIVE]

    def pending_output(self, out_path: str) -> CompressJob | None:
        """The queued or running job that writes ``out_path``, if any."""
        return next((j for j in self.active() if Path(j.out_path) == Path(out_path)), None)

    # -- asking -----------------------------------------------------------------------------------

    def enqueue(self, kind: str, source: str, out_path: str, qtype: str, *, requantize: bool = False,
                after: int | None = None, expected_bytes: int = 0, label: str = "", imatrix: str = "",
                imatrix_job: int | None = None) -> CompressJob:
        """Queue a job (``kind`` "convert", "quantize" or "imatrix"); it starts when the ones before it end.

        ``imatrix``: for a quantization, the importance matrix it uses (made by job ``imatrix_job`` when
        given); for an importance-matrix job, the calibration text ('' for the shipped one)."""
        if kind not in ("convert", "quantize", "imatrix"):
            raise ValueError(f"unknown job kind {kind!r}")
        for base in (after, imatrix_job):
            if base is not None and base not in self.jobs:
                raise ValueError(f"no job {base} to wait for")
        if kind == "imatrix" and not imatrix:
            from runtime.compress.calibration import default_calibration_path

            imatrix = str(default_calibration_path())
        job = CompressJob(id=self._next_id, kind=kind, source=str(source), out_path=str(out_path),
                          qtype=qtype, requantize=requantize, after=after, expected_bytes=int(expected_bytes),
                          label=label, imatrix=str(imatrix), imatrix_job=imatrix_job)
        self._next_id += 1
        self.jobs[job.id] = job
        self._order.append(job.id)
        self._log(job, f"Queued: {job.title}, into {job.out_path}"
                       + (f" (from the result of job {after})" if after is not None else ""))
        self.sig_added.emit(job)
        self._pump()
        return job

    def cancel(self, job_id: int) -> bool:
        """Stop a running job (the runtime removes its partial output) or take a waiting one off."""
        job = self.jobs.get(job_id)
        if job is None or job.status not in ACTIVE:
            return False
        if job_id == self._running_id and self._worker is not None:
            self._log(job, "Cancelling…")
            job.message = "Cancelling…"
            self.sig_progress.emit(job_id, job.done, job.total, job.message)
            self._worker.cancel()
            return True
        self._end(job, "cancelled", "Cancelled before it started.")
        self.sig_cancelled.emit(job_id)
        self._drop_dependents(job, "cancelled")
        return True

    def remove(self, job_id: int) -> bool:
        """Take a finished, failed or cancelled job off the list (its output stays)."""
        job = self.jobs.get(job_id)
        if job is None or job.status in ACTIVE:
            return False
        del self.jobs[job_id]
        self._order.remove(job_id)
        self.sig_removed.emit(job_id)
        return True

    # -- running ----------------------------------------------------------------------------------

    def _pump(self) -> None:
        if self._closing or self._running_id is not None:
            return
        for job_id in self._order:
            job = self.jobs[job_id]
            if job.status == "queued":
                self._start(job)
                return

    def _start(self, job: CompressJob) -> None:
        if job.after is not None:
            base = self.jobs.get(job.after)
            if base is None or base.status != "done" or not base.result_path:
                self._end(job, "failed", "The conversion it needed did not finish.")
                self.sig_failed.emit(job.id, job.error)
                self._pump()
                return
            job.source = base.result_path
        if job.imatrix_job is not None:
            base = self.jobs.get(job.imatrix_job)
            if base is None or base.status != "done" or not base.result_path:
                self._end(job, "failed", "The importance matrix it needed was not made.")
                self.sig_failed.emit(job.id, job.error)
                self._pump()
                return
            job.imatrix = base.result_path
        job.status, job.started_at, job.message = "running", time.monotonic(), "Starting…"
        self._log(job, f"Started: {job.title}, reading {job.source}")
        worker = Worker(lambda work: run_job(job, work), name=f"compress-{job.kind}")
        worker.sig_progress.connect(lambda done, total, text: self._on_progress(job, done, total, text))
        worker.sig_text.connect(lambda text: self._on_text(job, text))
        worker.sig_done.connect(lambda result: self._on_done(job, result))
        worker.sig_failed.connect(lambda error: self._on_failed(job, error))
        worker.sig_cancelled.connect(lambda: self._on_cancelled(job))
        worker.sig_finished.connect(self._on_finished)
        self._worker, self._running_id = worker, job.id
        self.sig_changed.emit(job)
        worker.start()

    def _on_progress(self, job: CompressJob, done: float, total: float, text: str) -> None:
        job.done, job.total = done, total
        if text and job.message != "Cancelling…":
            job.message = text
        self.sig_progress.emit(job.id, done, total, job.message)

    def _on_text(self, job: CompressJob, text: str) -> None:
        lines = [line for line in text.splitlines() if line]
        job.log.extend(lines)
        if len(job.log) > LOG_LIMIT:
            del job.log[:len(job.log) - LOG_LIMIT]
        if lines:
            self.sig_log.emit(job.id, "\n".join(lines))

    def _on_done(self, job: CompressJob, result: dict) -> None:
        job.result_path, job.real_bytes = result["path"], int(result["bytes"])
        job.added_by_reference = bool(result.get("reference"))
        job.done = job.total = job.total or 1.0
        where = " (added to the library by reference)" if job.added_by_reference else ""
        self._end(job, "done", f"Done: {job.result_path}{where}")
        self.sig_done.emit(job.id, job.result_path)

    def _on_failed(self, job: CompressJob, error) -> None:
        self._end(job, "failed", f"Failed: {error_text(error)}", error=error)
        self.sig_failed.emit(job.id, error)
        self._drop_dependents(job, "failed")

    def _on_cancelled(self, job: CompressJob) -> None:
        self._end(job, "cancelled", "Cancelled; nothing was left behind.")
        self.sig_cancelled.emit(job.id)
        self._drop_dependents(job, "cancelled")

    def _on_finished(self) -> None:
        self._worker, self._running_id = None, None
        self._pump()

    def _drop_dependents(self, base: CompressJob, why: str) -> None:
        """Waiting jobs that read ``base``'s output cannot run any more."""
        what = "importance matrix" if base.kind == "imatrix" else "conversion"
        for job in list(self.active()):
            if base.id in (job.after, job.imatrix_job) and job.status == "queued":
                if why == "cancelled":
                    self._end(job, "cancelled", f"Cancelled: the {what} it needed (job {base.id}) was cancelled.")
                    self.sig_cancelled.emit(job.id)
                else:
                    error = WorkbenchError(f"Not started: the {what} it needed (job {base.id}) failed.",
                                           hint="Fix what that job's message says, then queue it again.")
                    self._end(job, "failed", error.message, error=error)
                    self.sig_failed.emit(job.id, error)
                self._drop_dependents(job, why)

    def _end(self, job: CompressJob, status: str, line: str, error=None) -> None:
        job.status, job.error = status, error
        if status == "failed" and error is None:
            job.error = WorkbenchError(line)
        job.ended_at = time.monotonic()
        if job.started_at is None:
            job.started_at = job.ended_at
        job.message = ""
        self._log(job, line)
        self.sig_changed.emit(job)

    def _log(self, job: CompressJob, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        job.log.append(f"[{stamp}] {line}")
        self.sig_log.emit(job.id, job.log[-1])

    # -- shut-down --------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Cancel the running job (its partial output is removed) and wait for its thread."""
        self._closing = True
        if self._worker is not None:
            worker = self._worker
            worker.cancel()
            worker.wait()
