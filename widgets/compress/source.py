"""What the Compress tab knows about a source before anything runs: its facts and each target's estimate.

``inspect_source(path)`` is the plain function a worker runs when a source is picked: a GGUF is read
through ``runtime.models.gguf_info.read_gguf_info``, a checkpoint folder through
``runtime.compress.checkpoint.inspect_checkpoint`` (headers only, fast). For every target type it
asks ``runtime.compress.sizes`` for the expected size and for what the model's shapes cannot take,
and ``runtime.models.hardware.check_fit`` whether the result would run here for chat (against free
RAM, at the context the library judges at). Errors stay the runtime's typed ones (ModelFileError,
ConversionError, ...), so the tab shows their message and hint.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

CONVERT_TYPES = ("F32", "F16", "BF16", "Q8_0")   # what a checkpoint converts to directly
UNQUANTIZED = ("F32", "F16", "BF16")
BENCH_NOTE = ("llama.cpp's published figure for Llama-3-8B; the Benchmark tab measures this model "
              "once it is built.")


@dataclass
class TargetEstimate:
    """One type the source can be turned into, as shown before running."""

    qtype: str
    group: str                      # "convert" (checkpoint -> GGUF) | "main" | "advanced"
    expected_bytes: int = 0         # 0: unknown
    fit: object = None              # runtime.models.hardware.FitVerdict | None
    problem: str = ""               # why this target cannot be made (shown disabled), '' when it can
    note: str = ""                  # the quality note in plain words
    via: str = ""                   # a checkpoint's quantization goes through this conversion first
    warning: str = ""               # what the shapes do to it although it can be made (some tensors fall back)
    note_full: str = ""             # the whole quality note (a tooltip); ``note`` is its short form
    warning_full: str = ""          # the whole warning (a tooltip)
    needs_imatrix: bool = False     # llama.cpp makes it only with an importance matrix (IQ2_XXS, IQ1_S, ...)


@dataclass
class SourceFacts:
    """A picked source: a GGUF file or a checkpoint folder, and the targets it offers."""

    path: str
    kind: str                       # "gguf" | "checkpoint"
    name: str                       # the model's name for output files (no quant suffix)
    architecture: str
    parameters: int
    dtype: str                      # a GGUF's file type ("Q4_1", "F16") or a checkpoint's dtype ("bf16")
    size_bytes: int
    context_length: int | None = None
    quantized: bool = False         # already quantized: a quantization needs "Requantize"
    problem: str = ""               # a checkpoint that cannot be converted (nothing can be made)
    details: list[tuple[str, str]] = field(default_factory=list)   # (label, value) for the facts panel
    targets: list[TargetEstimate] = field(default_factory=list)
    info: object = None             # GGUFInfo | CheckpointInfo

    def target(self, qtype: str) -> TargetEstimate | None:
        return next((t for t in self.targets if t.qtype == qtype), None)


def output_name(source_name: str, qtype: str, imatrix: bool = False) -> str:
    """``SmolLM2-135M-Instruct`` + Q8_0 -> ``SmolLM2-135M-Instruct-Q8_0.gguf``: the library groups them.
    Made with an importance matrix: ``SmolLM2-135M-Instruct-imat-Q4_K_M.gguf`` (the same group)."""
    from runtime.models.grouping import base_name

    return f"{base_name(source_name) or 'model'}-{'imat-' if imatrix else ''}{qtype}.gguf"


IMATRIX_NOTE = "Needs an importance matrix: \"Use importance matrix\" is ticked for it."


def inspect_source(path: str | os.PathLike) -> SourceFacts:
    """The facts and target estimates of a GGUF file or a checkpoint folder. Blocking: run it on a worker."""
    path = Path(path)
    if path.is_dir():
        return _inspect_checkpoint(path)
    return _inspect_gguf(path)


def quality_note(qtype: str) -> str:
    """The plain-language note for ``qtype`` (runtime.compress.sizes.QUALITY_NOTES), or ''."""
    from runtime.compress.sizes import QUALITY_NOTES

    return QUALITY_NOTES.get(qtype, "")


def short_quality_note(qtype: str) -> str:
    """One line for a target's row: the verdict and llama.cpp's Llama-3-8B figures, or the whole note.

    "Practically the same as the original. Llama-3-8B: perplexity +0.0%, KL divergence 0.0014
    (llama.cpp's published figure)."
    """
    from runtime.compress.sizes import QUALITY_FIGURES

    note = quality_note(qtype)
    figure = QUALITY_FIGURES.get(qtype)
    if figure is None or not note.startswith(f"{qtype}: "):
        return note
    verdict = note[len(qtype) + 2:].split(". ", 1)[0].rstrip(".")
    verdict = verdict[:1].upper() + verdict[1:]
    imatrix = ", with an importance matrix" if figure.imatrix else ""
    return (f"{verdict}. Llama-3-8B: perplexity +{figure.ppl_increase_pct:.1f}%, KL divergence "
            f"{figure.kld:.4f} (llama.cpp's published figure{imatrix}).")


def _shape_warning(plan) -> str:
    """What a target's fallbacks mean, short: '59% of the weights stay Q8_0: rows of 576 values'."""
    fallbacks = plan.fallbacks
    if not fallbacks:
        return ""

    def count(tensors):
        total = 0
        for t in tensors:
            n = 1
            for d in t.dims:
                n *= d
            total += n
        return total

    share = count(fallbacks) / max(1, count([t for t in plan.tensors if t.quantized]))
    became = "/".join(sorted({t.target_type for t in fallbacks}))
    rows = "/".join(str(r) for r in sorted({t.dims[0] for t in fallbacks})[:3])
    return (f"{share:.0%} of the weights become {became} instead: this model's rows of {rows} values do not "
            f"fit {plan.qtype}'s blocks.")


def _fit(info, size_bytes: int, qtype: str):
    """Whether a result of ``size_bytes`` would run here for chat (None when unknown)."""
    from runtime.models.hardware import check_fit, default_fit_context

    if not size_bytes or info is None:
        return None
    shaped = dataclasses.replace(info, size_bytes=int(size_bytes), file_type=qtype)
    try:
        return check_fit(shaped, default_fit_context(shaped))
    except Exception:  # noqa: BLE001 - a missing verdict must not hide the target
        return None


def _quantize_lists() -> tuple[list[str], list[str]]:
    from runtime.compress.quantize import advanced_types, imatrix_types, quantize_types

    main = list(quantize_types())
    return main, [t for t in advanced_types() + imatrix_types() if t not in main]


def _inspect_gguf(path: Path) -> SourceFacts:
    from runtime.compress.quantize import check_target
    from runtime.compress.sizes import plan_from_source, read_source
    from runtime.errors import QuantizeError
    from runtime.models.gguf_info import format_size, param_label
    from runtime.models.library import model_name

    src = read_source(path)       # the header, every length checked (ModelFileError when damaged)
    info = src.info
    file_type = (info.file_type or "?").upper()
    quantized = file_type not in UNQUANTIZED
    main, advanced = _quantize_lists()
    targets = []
    for qtype in main + advanced:
        try:   # what the quantizer refuses before it starts (Requantize aside: the tab asks for that)
            plan = check_target(path, qtype, requantize=True)
            problem, warning = "", plan.problem or ""
        except QuantizeError as exc:
            plan = plan_from_source(src, qtype)
            problem, warning = exc.message, ""
            if exc.facts.get("needs_imatrix"):   # offered: the tab ticks "Use importance matrix" for it
                problem = (plan.problem or f"{qtype} cannot be made from this model.") if plan.refused else ""
        if qtype == file_type:
            problem, warning = f"The source is already {qtype}.", ""
        size = plan.expected_bytes
        targets.append(_with_imatrix_note(TargetEstimate(
            qtype, "main" if qtype in main else "advanced", size, _fit(info, size, qtype), problem,
            short_quality_note(qtype), warning=_shape_warning(plan) if warning else "",
            note_full=quality_note(qtype), warning_full=warning)))
    details = [("Architecture", info.architecture), ("Parameters", param_label(info.parameter_count)),
               ("Quant", file_type), ("Size", format_size(info.size_bytes))]
    if info.context_length:
        details.append(("Context", f"{info.context_length:,} tokens"))
    if info.block_count:
        details.append(("Layers", str(info.block_count)))
    return SourceFacts(path=str(path), kind="gguf", name=model_name(path), architecture=info.architecture,
                       parameters=info.parameter_count, dtype=file_type, size_bytes=info.size_bytes,
                       context_length=info.context_length, quantized=quantized, details=details,
                       targets=targets, info=info)


def checkpoint_name(folder: Path) -> str:
    """A checkpoint's model name: the folder's, or the repo's for a Hugging Face cache snapshot."""
    folder = Path(os.path.abspath(folder))
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name.removeprefix("models--").split("--")[-1]
    return folder.name or "model"


def _inspect_checkpoint(folder: Path) -> SourceFacts:
    from runtime.compress.checkpoint import inspect_checkpoint
    from runtime.models.gguf_info import format_size, param_label

    ck = inspect_checkpoint(folder)     # ConversionError: not a checkpoint, damaged, already quantized
    main, advanced = _quantize_lists()
    quantize = [t for t in main + advanced if t not in CONVERT_TYPES and t not in UNQUANTIZED]
    via = "BF16" if _dtype_name(str(ck.dtype)) == "BF16" else "F16"
    problem = "" if ck.supported else (ck.problem or "This checkpoint cannot be converted.")
    if problem:
        problem = problem[0].upper() + problem[1:]
    estimates = {} if problem else _checkpoint_estimates(folder, via, quantize)
    targets = []
    for qtype in list(CONVERT_TYPES) + quantize:
        group = "convert" if qtype in CONVERT_TYPES else ("main" if qtype in main else "advanced")
        size, fit, refused, warning, warning_full = estimates.get(qtype, (0, None, "", "", ""))
        targets.append(_with_imatrix_note(TargetEstimate(
            qtype, group, size, fit, problem or refused, short_quality_note(qtype),
            via="" if group == "convert" else via, warning=warning, note_full=quality_note(qtype),
            warning_full=warning_full)))
    arch = ck.hf_architecture or ck.model_type or "?"
    details = [("Architecture", f"{arch} (GGUF: {ck.gguf_architecture})" if ck.gguf_architecture else arch),
               ("Parameters", param_label(ck.parameter_count)), ("Dtype", _dtype_words(str(ck.dtype))),
               ("Size", format_size(ck.size_bytes))]
    files = list(ck.weight_files or [])
    details.append(("Weights", f"{len(files)} {ck.weight_format} file{'s' if len(files) != 1 else ''}"))
    if ck.tokenizer_kind:
        template = "with a chat template" if ck.has_chat_template else "no chat template"
        details.append(("Tokenizer", f"{ck.tokenizer_kind}, {template}"))
    if ck.context_length:
        details.append(("Context", f"{ck.context_length:,} tokens"))
    if ck.block_count:
        details.append(("Layers", str(ck.block_count)))
    return SourceFacts(path=str(folder), kind="checkpoint", name=checkpoint_name(folder), architecture=arch,
                       parameters=int(ck.parameter_count or 0), dtype=_dtype_name(str(ck.dtype)),
                       size_bytes=int(ck.size_bytes),
                       context_length=ck.context_length, quantized=False, problem=problem, details=details,
                       targets=targets, info=ck)


def _checkpoint_estimates(folder: Path, via: str, quantize: list[str]) -> dict:
    """{type: (expected bytes, fit, why it cannot be made, short warning, whole warning)} for a checkpoint.

    The conversion to ``via`` is planned once (``runtime.compress.sizes.checkpoint_source``: every
    tensor's shape and type as ``runtime.compress.convert`` will write it); the other conversion
    types and every quantization are planned from it by the quantizer's per-tensor rules.
    """
    from runtime.compress.sizes import checkpoint_source, plan_from_source

    source = checkpoint_source(folder, via.lower())
    found = {}
    for qtype in list(CONVERT_TYPES) + quantize:
        plan = None if qtype == via else plan_from_source(source, qtype)
        size = source.info.size_bytes if plan is None else plan.expected_bytes
        problem = plan.problem if plan is not None else None
        refused = plan is not None and plan.refused
        why = (problem or f"{qtype} cannot be made from this model.") if refused else ""
        warning = "" if refused or not problem else problem
        found[qtype] = (size, _fit(source.info, size, qtype), why,
                        _shape_warning(plan) if warning else "", warning)
    return found


def _with_imatrix_note(target: TargetEstimate) -> TargetEstimate:
    """Mark the types llama.cpp makes only with an importance matrix, and say so in their note."""
    from runtime.compress.sizes import IMATRIX_TYPES

    if target.qtype in IMATRIX_TYPES:
        target.needs_imatrix = True
        target.note = f"{target.note} {IMATRIX_NOTE}".strip()
    return target


def _dtype_name(dtype: str) -> str:
    """A checkpoint's dtype as the tab names types: 'bfloat16' or 'BF16' -> 'BF16'."""
    from runtime.compress.checkpoint import DTYPE_WORDS

    by_words = {words: name for name, words in DTYPE_WORDS.items()}
    return by_words.get(dtype.lower(), dtype.upper())


def _dtype_words(dtype: str) -> str:
    """'BF16 (bfloat16)'; a dtype without words as it is."""
    from runtime.compress.checkpoint import DTYPE_WORDS

    name = _dtype_name(dtype)
    words = DTYPE_WORDS.get(name)
    return f"{name} ({words})" if words else dtype
