"""The figures a benchmark produces, as plain data shared by the runner, the store, the charts,
the export and the CLI.

One ``VariantResult`` per model file in a run. A figure that was not measured is None (quality
without ``--quality``, VRAM on a CPU build). ``status`` says whether the row is complete:
"ok", "failed" (``error`` says why, in words) or "skipped" (``error`` gives the numbers, e.g. a
model that does not fit in memory). Only complete rows ("ok") carry figures.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Sequence


@dataclass
class Spread:
    """The repetitions of one timing: their median, smallest and largest value."""

    median: float
    low: float
    high: float
    values: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        values = [float(v) for v in values]
        if not values:
            raise ValueError("a spread needs at least one value")
        return cls(statistics.median(values), min(values), max(values), values)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Spread | None":
        return None if data is None else cls(**data)


@dataclass
class SpeedOptions:
    """What every variant of one run is measured with (the same for all of them)."""

    threads: int = 0              # 0: as many as llama.cpp picks for this machine
    n_ctx: int = 512              # also the chunk size of the quality measurement (llama.cpp's figures use 512)
    n_batch: int = 2048           # llama-bench's defaults
    n_ubatch: int = 512
    n_gpu_layers: int = -1        # all (a CPU build ignores it)
    prompt_tokens: int = 512      # llama-bench's pp512
    gen_tokens: int = 128         # llama-bench's tg128
    reps: int = 3
    warmup: bool = True
    parallel: list[int] = field(default_factory=list)  # batched test: N sequences at once, e.g. [1, 2, 4, 8]
    kv_reuse: bool = False        # replay a multi-turn chat, time each turn's first token with and without reuse


@dataclass
class SpeedFigures:
    """What the speed runner measured for one model."""

    load_s: float
    pp_tokens_per_s: Spread       # prompt processing, prompt_tokens from an empty cache
    tg_tokens_per_s: Spread       # generation, gen_tokens single-token decodes from an empty cache
    ttft_s: Spread                # a short chat prompt: template, prompt evaluation, first token sampled
    peak_rss_bytes: int | None    # the child's peak resident memory
    vram_bytes: int | None = None  # GPU memory the backend reports using, where it does
    threads: int = 0              # the threads it really ran with


@dataclass
class QualityFigures:
    """One model's quality on one text, against one reference (from the same token windows)."""

    perplexity: float
    kld_mean: float | None = None      # None when the model is scored without a reference
    kld_p99: float | None = None
    top1_agreement: float | None = None  # share of scored positions whose most likely token agrees
    ppl_ratio: float | None = None     # perplexity / the reference's perplexity
    tokens_scored: int = 0
    is_reference: bool = False


@dataclass
class BatchedPoint:
    """Generation with ``n`` sequences decoded together, as llama-batched-bench measures it: ``n``
    prompts of prompt_tokens each, then gen_tokens for each sequence, one token per sequence a step."""

    n: int
    tg_tokens_per_s_aggregate: float     # all sequences' generated tokens / generation time
    tg_tokens_per_s_per_sequence: float  # the aggregate / n
    pp_tokens_per_s_aggregate: float | None = None  # all prompts' tokens / prompt time


@dataclass
class KvTurn:
    """One turn of the replayed conversation: time to its first token with the KV cache reused from
    the turn before, and from an empty cache (the whole conversation evaluated again)."""

    turn: int
    prompt_tokens: int
    ttft_reuse_s: float
    ttft_fresh_s: float
    evaluated_reuse: int | None = None  # prompt tokens evaluated with reuse (the rest came from the cache)
    evaluated_fresh: int | None = None  # prompt tokens evaluated from an empty cache (all of them)


@dataclass
class VariantResult:
    """One model file in a run."""

    path: str
    name: str                     # file name
    quant: str | None             # "Q4_K_M", "F16", ... (header file type)
    size_bytes: int
    status: str = "ok"            # "ok", "failed", "skipped"
    error: str | None = None      # why it failed or was skipped, in words
    note: str | None = None       # what an "ok" row lacks and why (e.g. quality refused: other vocabulary)
    speed: SpeedFigures | None = None
    quality: QualityFigures | None = None
    engine: str = "llama.cpp"     # "llama.cpp" (a GGUF file), or "pytorch" (the original checkpoint, ``path``)
    batched: list[BatchedPoint] | None = None  # with SpeedOptions.parallel
    kv_reuse: list[KvTurn] | None = None       # with SpeedOptions.kv_reuse

    def flat(self) -> dict:
        """The row as one flat dict (the CLI's --json object, a CSV row): medians for timings."""
        row = {"path": self.path, "name": self.name, "quant": self.quant, "size_bytes": self.size_bytes,
               "status": self.status, "error": self.error, "note": self.note}
        s = self.speed
        row.update(load_s=s.load_s if s else None,
                   pp_tokens_per_s=s.pp_tokens_per_s.median if s else None,
                   tg_tokens_per_s=s.tg_tokens_per_s.median if s else None,
                   ttft_s=s.ttft_s.median if s else None,
                   peak_rss_bytes=s.peak_rss_bytes if s else None,
                   vram_bytes=s.vram_bytes if s else None)
        q = self.quality
        for f in fields(QualityFigures):
            row[f.name] = getattr(q, f.name) if q else None
        row["engine"] = self.engine
        row["batched"] = [asdict(b) for b in self.batched] if self.batched is not None else None
        row["kv_reuse"] = [asdict(t) for t in self.kv_reuse] if self.kv_reuse is not None else None
        return row

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VariantResult":
        data = dict(data)
        speed = data.pop("speed", None)
        quality = data.pop("quality", None)
        if data.get("batched") is not None:
            data["batched"] = [BatchedPoint(**b) for b in data["batched"]]
        if data.get("kv_reuse") is not None:
            data["kv_reuse"] = [KvTurn(**t) for t in data["kv_reuse"]]
        if speed is not None:
            speed = dict(speed)
            for key in ("pp_tokens_per_s", "tg_tokens_per_s", "ttft_s"):
                speed[key] = Spread.from_dict(speed[key])
            speed = SpeedFigures(**speed)
        return cls(**data, speed=speed, quality=QualityFigures(**quality) if quality else None)


@dataclass
class BenchRun:
    """A whole run: the machine, the options, and one result per model."""

    machine: dict                 # runtime.bench.machine.machine_facts()
    options: SpeedOptions
    results: list[VariantResult] = field(default_factory=list)
    text_name: str | None = None  # the evaluation text's name when quality was measured
    reference_path: str | None = None
    started_at: float = 0.0       # time.time()
    run_id: int | None = None     # set once stored

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BenchRun":
        data = dict(data)
        data.pop("recipes", None)   # derived figures an export adds (runtime.bench.recipes)
        return cls(**{**data, "options": SpeedOptions(**data["options"]),
                      "results": [VariantResult.from_dict(r) for r in data.get("results", [])]})
