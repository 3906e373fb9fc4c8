"""Which jobs a set of ticked targets becomes: plain logic, no Qt, no disk writes.

A GGUF source gives one quantization per target. A checkpoint source converts first: each ticked
conversion type (F32/F16/BF16/Q8_0) is one conversion; each ticked quantization reads an
unquantized conversion that is ticked (the checkpoint's own dtype first, then F32, F16, BF16), or
else ``via`` (F16, or BF16 for a bf16 checkpoint), which is then queued too and kept (the library
lists it with the others, and the Benchmark tab compares against it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from widgets.compress.source import UNQUANTIZED, SourceFacts, output_name


@dataclass
class PlannedJob:
    kind: str                 # "convert" | "quantize"
    qtype: str
    out_path: str
    expected_bytes: int
    after: int | None = None  # index in the plan of the conversion it reads
    automatic: bool = False   # added because a quantization needed it, not ticked


def plan_jobs(facts: SourceFacts, chosen: list[str], out_dir: str | Path, imatrix: bool = False) -> list[PlannedJob]:
    """The jobs, in run order, that make every type in ``chosen`` from ``facts``' source into ``out_dir``.
    ``imatrix``: the quantizations use an importance matrix (their names carry ``-imat-``)."""
    out_dir = Path(out_dir)

    def planned(kind: str, qtype: str, after=None, automatic=False) -> PlannedJob:
        target = facts.target(qtype)
        named = output_name(facts.name, qtype, imatrix=imatrix and kind == "quantize")
        return PlannedJob(kind, qtype, str(out_dir / named),
                          target.expected_bytes if target else 0, after, automatic)

    chosen = [t for t in dict.fromkeys(chosen) if facts.target(t) is not None]
    if facts.kind == "gguf":
        return [planned("quantize", t) for t in chosen]
    converts = [t for t in chosen if facts.target(t).group == "convert"]
    quantizes = [t for t in chosen if facts.target(t).group != "convert"]
    jobs = [planned("convert", t) for t in converts]
    if quantizes:
        # the checkpoint's own dtype loses nothing, F32 nothing either; only then another
        own = str(facts.dtype).upper()
        preferred = ([own] if own in UNQUANTIZED else []) + ["F32", "F16", "BF16"]
        base = next((t for t in preferred if t in converts), None)
        if base is None:
            base = facts.target(quantizes[0]).via or "F16"
            jobs.append(planned("convert", base, automatic=True))
        base_index = next(i for i, j in enumerate(jobs) if j.qtype == base)
        jobs += [planned("quantize", t, after=base_index) for t in quantizes]
    return jobs


def plan_bytes(jobs: list[PlannedJob]) -> int:
    """The disk space the results will take together (known estimates only)."""
    return sum(j.expected_bytes for j in jobs)
