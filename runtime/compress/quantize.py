"""Quantize a GGUF with llama.cpp's own quantizer, safely: in a child process, with progress and Cancel.

``quantize_gguf(src, out, "Q4_K_M", progress=..., cancel=...)`` runs ``llama_model_quantize`` in
``runtime.compress.quantize_child`` (llama.cpp offers neither a progress callback nor a cancel hook
for it). Before it starts, everything that can be checked is: the source's header (a damaged file
never reaches llama.cpp), a source that is already quantized (only with ``requantize=True``: its
quality suffers twice), a target its shapes cannot take (``sizes.TargetPlan.refused``), a target
that needs an importance matrix when none is given (or one that does not fit the model), and the free
disk space against the expected size.

``imatrix=PATH`` (a GGUF imatrix file: ``workbench imatrix`` or llama-imatrix made it) is handed to
llama.cpp (see ``quantize_child``); it improves every type below 8 bits and is required for the
types in ``imatrix_types()``. The output's default name then carries ``-imat-`` before the type
(``model-imat-Q4_K_M.gguf``), so the same type with and without one can sit side by side and the
library groups them together.

llama.cpp writes under a temporary name in the destination folder (``<name>.<random>.partial``);
progress is that file's size against the expected size, read at each tensor llama.cpp starts.
Cancel kills the child; a kill, a crash or a refusal removes the partial file. When the child is
done the header is read back (``read_gguf_info``: tensor count and file type must be what was
asked), and only then does the file get its name. ``quantize_queue`` runs several targets in order.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from runtime.compress import sizes
from runtime.errors import Cancelled, ProcessCrashed, QuantizeError, WorkbenchError
from runtime.jobs import CancelToken, ProgressCallback, no_progress
from runtime.models.gguf_info import format_size, read_gguf_info
from runtime.procs import ChildProcess

CHILD_MODULE = "runtime.compress.quantize_child"
START_TIMEOUT_S = 120.0          # importing llama.cpp on a cold, busy machine
RUN_TIMEOUT_S = 7 * 24 * 3600.0  # no time limit worth the name: Cancel is the way out
DISK_MARGIN_BYTES = 64 * 1024**2  # the most kept free beyond the expected size (see disk_margin)
PARTIAL_SUFFIX = ".partial"

MAIN_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0")
# Offered after the main list, best first. Left out: the types in sizes.IMATRIX_TYPES (they need an
# importance matrix: offered by imatrix_types() when one is given), TQ1_0/TQ2_0 (ternary: only for models trained
# for them, such as BitNet), MXFP4_MOE (for mixture-of-experts models such as gpt-oss), and the
# newer Q1_0, Q2_0 and NVFP4 (the gguf package here cannot read them back, or this llama.cpp's
# quantizer has no recipe for them).
_ADVANCED_ORDER = ("Q5_K_S", "Q5_1", "Q5_0", "Q4_K_S", "Q4_1", "IQ4_NL", "IQ4_XS", "Q3_K_L", "Q3_K_M", "IQ3_M",
                   "IQ3_S", "Q3_K_S", "Q2_K", "F16", "BF16", "F32")
_CRASH_HINT = ("The source file may be damaged, or the computer ran out of memory: close other programs "
               "and try again.")
_TWICE = ("Quantizing an already-quantized model again loses quality twice: the result is worse than the "
          "same type made from the original F16/BF16/F32 file.")


def quantize_types() -> list[str]:
    """The main targets, best quality first: Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0."""
    return [t for t in MAIN_TYPES if t in _offered_by_llama_cpp()]


def advanced_types() -> list[str]:
    """The other targets this llama.cpp offers without an importance matrix (the main list excluded).

    Read from the LLAMA_FTYPE_* names of the installed llama-cpp-python bindings (their source text,
    so the library is not loaded into this process). Left out and why: see ``_ADVANCED_ORDER``'s
    comment; the ones needing an importance matrix are ``imatrix_types()``.
    """
    return [t for t in _ADVANCED_ORDER if t in _offered_by_llama_cpp()]


def all_types() -> list[str]:
    """Every target ``quantize_gguf`` accepts: the main list, then the advanced one."""
    return quantize_types() + advanced_types()


def imatrix_types() -> list[str]:
    """Types this llama.cpp offers that need an importance matrix (llama.cpp refuses them without one)."""
    return [t for t in sizes.IMATRIX_TYPES if t in _offered_by_llama_cpp()]


_OFFERED: set[str] | None = None


def _offered_by_llama_cpp() -> set[str]:
    """The targets of ``sizes.FTYPES`` whose LLAMA_FTYPE_* constant the installed bindings define
    with the same number."""
    global _OFFERED
    if _OFFERED is None:
        import importlib.util

        defined: dict[str, int] = {}
        spec = importlib.util.find_spec("llama_cpp")
        if spec is not None and spec.origin:
            source = Path(spec.origin).with_name("llama_cpp.py")
            try:
                text = source.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            defined = {m[1]: int(m[2]) for m in re.finditer(r"^LLAMA_FTYPE_(?:MOSTLY_|ALL_)(\w+) = (\d+)$",
                                                             text, re.MULTILINE)}
        _OFFERED = {name for name, (number, _) in sizes.FTYPES.items() if defined.get(name) == number}
    return _OFFERED


def default_out_path(src: str | os.PathLike, qtype: str, out_dir: str | os.PathLike | None = None,
                     imatrix: bool = False) -> Path:
    """``<stem>-<TYPE>.gguf`` beside the source (or in ``out_dir``); ``<stem>-imat-<TYPE>.gguf`` when
    made with an importance matrix.

    A type the source's name ends with is dropped first: ``model-F16.gguf`` gives ``model-Q4_K_M.gguf``,
    ``SmolLM2.Q4_1.gguf`` gives ``SmolLM2-Q8_0.gguf``.
    """
    from runtime.models.quants import quant_from_name

    src = Path(src)
    qtype = sizes.normalize_type(qtype)
    stem = src.name[:-5] if src.name.lower().endswith(".gguf") else src.stem
    own = quant_from_name(src.name)
    if own:
        own_pattern = {"F16": "F?P?16", "F32": "F?P?32"}.get(own, re.escape(own))
        stem = re.sub(rf"[-._]{own_pattern}$", "", stem, flags=re.IGNORECASE) or stem
    folder = Path(out_dir) if out_dir is not None else src.parent
    return folder / f"{stem}-{'imat-' if imatrix else ''}{qtype}.gguf"


# --- one target ------------------------------------------------------------------------------------

def check_target(src: str | os.PathLike, qtype: str, *, requantize: bool = False,
                 imatrix: str | os.PathLike | None = None) -> sizes.TargetPlan:
    """Everything about the source and target that can be refused before llama.cpp runs.

    Returns the plan (expected size, per-tensor types). Raises ModelFileError for a damaged source
    and QuantizeError for: an unknown type, one needing an importance matrix when ``imatrix`` is None,
    an importance matrix that does not fit the model (ModelFileError: not an imatrix file), the
    source's own type, an already-quantized
    source without ``requantize``, an unquantized target from a quantized source, a target the
    model's shapes cannot take.
    """
    qtype = sizes.normalize_type(qtype)
    if qtype in sizes.IMATRIX_TYPES and imatrix is None:
        raise QuantizeError(
            f"{qtype} needs an importance matrix: llama.cpp refuses to make it without one.",
            hint="Use an importance matrix: compute one with `workbench imatrix MODEL --out FILE.gguf` (or tick "
                 "\"Use importance matrix\" in the Compress tab) and pass it with --imatrix FILE; or choose "
                 "Q4_K_M or Q3_K_M.", qtype=qtype, needs_imatrix=True)
    offered = all_types() + imatrix_types()
    if qtype not in offered:
        raise QuantizeError(f"{qtype} is not offered here.",
                            hint="Choose one of: " + ", ".join(offered) + ".", qtype=qtype)
    source = sizes.read_source(src)
    name = Path(source.path).name
    quantized = source.quantized_types
    # Name the file's own type (Q4_1) rather than every type inside it (Q4_1 and a Q8_0 embedding).
    label = source.info.file_type if source.info.file_type not in sizes.UNQUANTIZED_TYPES + ("unknown",) \
        else ", ".join(quantized)
    if source.info.file_type == qtype:
        raise QuantizeError(f"{name} is already {qtype}: there is nothing to do.",
                            hint="Choose another target type.", path=source.path, qtype=qtype)
    if quantized and qtype in sizes.UNQUANTIZED_TYPES:
        raise QuantizeError(
            f"{name} is already quantized ({label}); turning it into {qtype} would make it "
            "bigger without bringing back the quality it lost.",
            hint="Use the original F16/BF16/F32 file (or convert the checkpoint again).", path=source.path,
            qtype=qtype)
    if quantized and not requantize:
        raise QuantizeError(
            f"{name} is already quantized ({label}). {_TWICE}",
            hint="Quantize the original F16/BF16/F32 file instead; or, knowing the cost, choose "
                 "\"requantize\" (workbench quantize --requantize).",
            path=source.path, qtype=qtype, source_types=quantized)
    if imatrix is not None:
        from runtime.compress.imatrix import load

        load(imatrix).check_model({t.name: t.dims for t in source.tensors}, name)
    plan = sizes.plan_from_source(source, qtype)
    if plan.refused:
        raise QuantizeError(plan.problem or f"{qtype} cannot be made from {name}.",
                            hint="Choose another target type.", path=source.path, qtype=qtype)
    return plan


def disk_margin(needed: int) -> int:
    """Space to keep free beyond a file of ``needed`` bytes: 2%, at least 4 MiB, at most 64 MiB."""
    return max(4 * 1024**2, min(DISK_MARGIN_BYTES, needed // 50))


def _check_disk(folder: Path, needed: int, qtype: str) -> None:
    free = shutil.disk_usage(folder).free
    margin = disk_margin(needed)
    if free < needed + margin:
        raise QuantizeError(
            f"Not enough free disk space for {qtype}: it needs about {format_size(needed)} and "
            f"{format_size(margin)} to spare, and {folder} has {format_size(free)} free.",
            hint="Free some disk space or choose another folder, then try again.",
            path=str(folder), needed_bytes=needed, free_bytes=free, qtype=qtype)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def quantize_gguf(src: str | os.PathLike, out_path: str | os.PathLike, qtype: str, *, requantize: bool = False,
                  progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
                  overwrite: bool = False, threads: int = 0, imatrix: str | os.PathLike | None = None) -> Path:
    """Quantize the GGUF ``src`` to ``qtype`` into ``out_path`` with llama.cpp; return ``out_path``.

    ``imatrix``: a GGUF importance-matrix file to quantize with (required for ``imatrix_types()``).

    ``progress(done_bytes, expected_bytes, message)`` follows the output file's growth, tensor by
    tensor. ``cancel`` kills the child and raises Cancelled. ``requantize`` allows an
    already-quantized source (quality suffers twice). ``overwrite`` replaces an existing
    ``out_path`` (only once the new file is complete). ``threads`` 0: all cores, as llama.cpp does.
    Raises QuantizeError (see ``check_target``; also: llama.cpp refused, the disk is full, the output
    does not read back), ModelFileError for a damaged source (its header, or tensor data llama.cpp
    rejects), ProcessCrashed when the child dies (its signal in ``facts["signal"]``). No partial
    file is left behind in any case.
    """
    cancel = cancel or CancelToken()
    out = Path(out_path).absolute()
    plan = check_target(src, qtype, requantize=requantize, imatrix=imatrix)
    qtype, src_path = plan.qtype, Path(plan.source.path)
    if out.exists() and out.resolve() == src_path.resolve():
        raise QuantizeError(f"The output would replace the source {src_path.name}.",
                            hint="Choose another output name or folder.", path=str(out))
    if out.exists() and not overwrite:
        raise QuantizeError(f"{out} already exists.", hint="Delete it, or choose another name or folder.",
                            path=str(out))
    if not out.parent.is_dir():
        raise QuantizeError(f"The folder {out.parent} does not exist.", hint="Create it or choose another.",
                            path=str(out.parent))
    expected = plan.expected_bytes
    _check_disk(out.parent, expected, qtype)
    cancel.check()

    fd, temp_name = tempfile.mkstemp(prefix=f"{out.name}.", suffix=PARTIAL_SUFFIX, dir=out.parent)
    os.close(fd)
    temp = Path(temp_name)
    child = ChildProcess(CHILD_MODULE, [str(src_path), str(temp), str(sizes.ftype_number(qtype)),
                                        *(["--requantize"] if requantize else []), "--threads", str(threads),
                                        *(["--imatrix", str(Path(imatrix).absolute())] if imatrix else [])],
                         name="quantizer", error_class=ProcessCrashed)
    doing = f"quantizing to {qtype}"

    def on_event(event: dict) -> None:
        if event.get("event") == "tensor":
            done = min(_size(temp), expected)
            progress(done, expected, f"{qtype}: {event.get('name', '')} ({event.get('index')}/{event.get('total')})")

    try:
        progress(0, expected, f"{qtype}: starting llama.cpp")
        child.start()
        child.wait_for("started", START_TIMEOUT_S, cancel, doing="starting", hint=_CRASH_HINT)
        try:
            child.wait_for("done", RUN_TIMEOUT_S, cancel, on_event=on_event, doing=doing, hint=_CRASH_HINT)
        except QuantizeError as exc:
            raise _explain_failure(exc, out.parent, expected - _size(temp), qtype) from None
        child.wait(10)
        progress(expected, expected, f"{qtype}: checking the file")
        _check_output(temp, plan)
        os.replace(temp, out)
    except BaseException:
        child.kill()
        _remove(temp)
        raise
    finally:
        child.kill()
    real = _size(out)
    progress(real, real, f"{qtype}: done, {format_size(real)}")
    return out


def _explain_failure(exc: QuantizeError, folder: Path, still_needed: int, qtype: str) -> QuantizeError:
    """llama.cpp's refusal, or, when the disk filled up under it, a disk-full error that says so."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return exc
    if free < max(still_needed, 0) + 1024**2:
        return QuantizeError(f"The disk filled up while writing {qtype} ({format_size(free)} left in {folder}); "
                             "the partial file was removed.",
                             hint="Free some disk space or choose another folder, then try again.",
                             path=str(folder), free_bytes=free, qtype=qtype, details=exc.facts.get("details"))
    return exc


def _check_output(temp: Path, plan: sizes.TargetPlan) -> None:
    """The written file must read back as a complete GGUF of the asked type with every tensor."""
    try:
        info = read_gguf_info(temp)
    except WorkbenchError as exc:
        raise QuantizeError(f"llama.cpp's output for {plan.qtype} does not read back: {exc.message}",
                            hint="Try again; if it keeps failing, the source file may be damaged.") from None
    if info.tensor_count != len(plan.source.tensors) or info.file_type != plan.qtype:
        raise QuantizeError(
            f"llama.cpp's output for {plan.qtype} is not what was asked: {info.tensor_count} tensors of type "
            f"{info.file_type}, expected {len(plan.source.tensors)} of type {plan.qtype}.",
            hint="Try again; if it keeps failing, report it with the source file's details.")


# --- a queue of targets -------------------------------------------------------------------------

def check_queue(src: str | os.PathLike, qtypes: Sequence[str], *, out_dir=None, requantize: bool = False,
                overwrite: bool = False,
                imatrix: str | os.PathLike | None = None) -> list[tuple[sizes.TargetPlan, Path]]:
    """``check_target`` for every target, and what only the whole queue shows, before anything runs.

    Returns (plan, output path) per target. Raises QuantizeError for the first target refused, a type
    asked twice, an output that exists (unless ``overwrite``) or is the source, a missing folder, and
    when the outputs together need more disk space than their folder has free.
    """
    checked: list[tuple[sizes.TargetPlan, Path]] = []
    seen: set[str] = set()
    for qtype in qtypes:
        plan = check_target(src, qtype, requantize=requantize, imatrix=imatrix)
        if plan.qtype in seen:
            raise QuantizeError(f"{plan.qtype} is asked for twice.", hint="Name each type once.")
        seen.add(plan.qtype)
        out = default_out_path(plan.source.path, plan.qtype, out_dir, imatrix=imatrix is not None).absolute()
        if not out.parent.is_dir():
            raise QuantizeError(f"The folder {out.parent} does not exist.", hint="Create it or choose another.",
                                path=str(out.parent))
        if out.exists() and out.resolve() == Path(plan.source.path).resolve():
            raise QuantizeError(f"The output would replace the source {out.name}.",
                                hint="Choose another output folder.", path=str(out))
        if out.exists() and not overwrite:
            raise QuantizeError(f"{out} already exists.",
                                hint="Delete it, choose another folder, or replace it (--overwrite).", path=str(out))
        checked.append((plan, out))
    by_folder: dict[Path, int] = {}
    for plan, out in checked:
        by_folder[out.parent] = by_folder.get(out.parent, 0) + plan.expected_bytes
    for folder, needed in by_folder.items():
        _check_disk(folder, needed, " + ".join(p.qtype for p, o in checked if o.parent == folder))
    return checked


@dataclass
class QuantizeResult:
    """How one target of a queue ended: ``path`` and ``real_bytes`` on success, else ``error``."""

    qtype: str
    out_path: Path
    expected_bytes: int = 0
    real_bytes: int | None = None
    seconds: float = 0.0
    error: WorkbenchError | None = None
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled

    def to_dict(self) -> dict:
        return {"type": self.qtype, "path": str(self.out_path), "expected_bytes": self.expected_bytes,
                "real_bytes": self.real_bytes, "seconds": round(self.seconds, 3),
                "error": self.error.to_payload() if self.error else None, "cancelled": self.cancelled}


@dataclass
class QueueItem:
    """One target of a queue; ``out_path`` None means ``default_out_path(src, qtype, out_dir)``."""

    qtype: str
    out_path: Path | None = None


def quantize_queue(src: str | os.PathLike, targets: Sequence[str | QueueItem], *, out_dir=None,
                   requantize: bool = False, overwrite: bool = False, threads: int = 0,
                   imatrix: str | os.PathLike | None = None, progress: ProgressCallback = no_progress,
                   cancel: CancelToken | None = None,
                   on_start: Callable[[int, str, Path], None] | None = None,
                   on_result: Callable[[QuantizeResult], None] | None = None) -> list[QuantizeResult]:
    """Quantize ``src`` to each target in order; return one QuantizeResult per target.

    A target that fails (refused, disk full, crash) is reported in its result and the next one runs.
    Cancel stops the one running (its partial removed), reports it as cancelled and skips the rest
    (they are not reported); then Cancelled is raised. ``progress`` is called with the running
    target's bytes and a message starting "[2/3]"; ``on_start(index, type, path)`` before each,
    ``on_result`` after each.
    """
    cancel = cancel or CancelToken()
    items = [t if isinstance(t, QueueItem) else QueueItem(t) for t in targets]
    results: list[QuantizeResult] = []
    for i, item in enumerate(items, 1):
        qtype = sizes.normalize_type(item.qtype)
        out = Path(item.out_path) if item.out_path else default_out_path(src, qtype, out_dir,
                                                                         imatrix=imatrix is not None)
        result = QuantizeResult(qtype, out)
        prefix = f"[{i}/{len(items)}] "
        t0 = time.monotonic()
        if on_start:
            on_start(i, qtype, out)
        try:
            cancel.check()
            result.expected_bytes = sizes.plan_quantization(src, qtype).expected_bytes
            quantize_gguf(src, out, qtype, requantize=requantize, overwrite=overwrite, threads=threads,
                          imatrix=imatrix, progress=lambda d, t, m: progress(d, t, prefix + m), cancel=cancel)
            result.real_bytes = _size(out)
        except Cancelled:
            result.cancelled = True
        except WorkbenchError as exc:
            result.error = exc
        result.seconds = time.monotonic() - t0
        results.append(result)
        if on_result:
            on_result(result)
        if result.cancelled:
            raise Cancelled()
    return results
