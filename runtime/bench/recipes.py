"""The recipes beginner guides repeat, checked against one run's figures: ``recipes(run)``.

Each ``Recipe`` holds the guide's claim in one line, what was measured here on this model in one
line ("INT8 (PyTorch dynamic): 3.6x smaller, 1.4x faster, KLD 0.004 against FP32"), a verdict
("holds", "partly", "does not hold", "not measured") and the chart the figures come from (a page
of the Benchmark tab's Charts). A recipe whose figures are missing says what to tick to measure it
and gives no number. Qt-free; ``recipes_text`` and ``recipes_markdown`` give it as words.

Verdicts on a claimed factor ``c`` ("4x smaller"): it holds when the measured factor is at least
``HOLDS_SHARE`` of ``c``; partly when at least a quarter of the promised gain is there
(``1 + PARTLY_SHARE * (c - 1)``); otherwise it does not hold. A claim of several parts (smaller,
faster, as accurate) holds when every measured part holds and does not hold when none does.
Sizes are file sizes (GGUF) or size in memory (PyTorch rows); speeds are median generation tokens/s.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from runtime.bench.compare import find_reference, labels, quality_loss
from runtime.bench.results import BenchRun, VariantResult
from runtime.models.gguf_info import format_size

HOLDS, PARTLY, FAILS, NOT_MEASURED = "holds", "partly", "does not hold", "not measured"
VERDICTS = (HOLDS, PARTLY, FAILS, NOT_MEASURED)
HOLDS_SHARE = 0.9      # 3.6x of a promised 4x holds
PARTLY_SHARE = 0.25    # at least a quarter of the promised gain: partly
LOSS_LIMIT = 0.01      # "under 1% accuracy loss": perplexity at most 1% above the reference's
LOSSLESS_KLD = 0.01    # "practically lossless": mean KL divergence at most this

# Chart pages (the Benchmark tab's titles) the figures come from.
CHART_MEMORY, CHART_SIZE_QUALITY, CHART_SPEED = "Memory", "Size vs quality", "Generation speed"
CHART_BATCHING, CHART_KV = "Batching", "KV cache reuse"

# What to tick when a recipe's figures are missing (the Benchmark tab's words; the CLI's in brackets).
TICK_ORIGINAL = ("Tick 'Add original checkpoint' (the model's Hugging Face folder on disk) to measure it "
                 "in PyTorch as FP32, half precision and dynamic INT8 (`workbench bench --original FOLDER`).")
TICK_QUALITY = "tick 'Measure quality' (`--quality`) for the accuracy part"
TICK_BATCHING = ("Tick 'Measure batching' with sequences 1 and 4 or more (`workbench bench --parallel 1,2,4,8`) "
                 "to measure it.")
TICK_KV = "Tick 'Measure KV cache reuse' (`workbench bench --kv-reuse`) to measure it."
TICK_INT4 = "Add a Q4_0 or Q4_K_M file (make one in the Compress tab) and a 32- or 16-bit one to compare with."
TICK_Q8 = "Add a Q8_0 file (make one in the Compress tab) and a 16-bit one (F16/BF16) to compare with."


@dataclass
class Recipe:
    key: str                 # "half", "int8", "int4", "q8", "batching", "kv_reuse"
    claim: str               # what the guides say, one line
    measured: str            # what this run measured, one line (or what to tick)
    verdict: str             # one of VERDICTS
    chart: str | None        # the chart page the figures come from

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """"Claim → measured [verdict; chart]" as one plain line."""
        where = f"; chart: {self.chart}" if self.chart and self.verdict != NOT_MEASURED else ""
        return f"{self.claim} → {self.measured} [{self.verdict}{where}]"


def recipes(run: BenchRun | Sequence[VariantResult]) -> list[Recipe]:
    """One Recipe per claim, in a fixed order, from a run (or its results)."""
    results = run.results if isinstance(run, BenchRun) else list(run)
    done = [r for r in results if r.status == "ok"]
    names = labels(results)
    ref = find_reference(results, run.reference_path if isinstance(run, BenchRun) else None)
    ctx = _Context(done, names, ref)
    return [build(ctx) for build in RECIPE_BUILDERS]


def recipes_text(items: Sequence[Recipe]) -> str:
    return "\n".join(r.line() for r in items)


def recipes_markdown(items: Sequence[Recipe]) -> str:
    """A Markdown section: a table of claim, measured, verdict and chart."""
    rows = ["## Recipes checked on this machine", "",
            "| The guides say | Measured here | Verdict | Chart |", "|---|---|---|---|"]
    for r in items:
        cells = [r.claim, r.measured, r.verdict, r.chart if r.verdict != NOT_MEASURED and r.chart else ""]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


# -- judging ----------------------------------------------------------------------------------------

def judge_factor(measured: float, claimed: float) -> str:
    """The verdict on a claimed factor (see the module doc)."""
    if measured >= HOLDS_SHARE * claimed:
        return HOLDS
    if measured >= 1 + PARTLY_SHARE * (claimed - 1):
        return PARTLY
    return FAILS


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a claim of several parts (parts not measured are left out)."""
    measured = [v for v in verdicts if v != NOT_MEASURED]
    if not measured:
        return NOT_MEASURED
    if all(v == HOLDS for v in measured):
        return HOLDS
    if all(v == FAILS for v in measured):
        return FAILS
    return PARTLY


def factor(value: float) -> str:
    """3.6x; 10x and more without the decimal."""
    return f"{value:.0f}x" if value >= 10 else f"{value:.1f}x"


def _smaller(base: float, other: float) -> str:
    ratio = base / other
    return f"{factor(ratio)} smaller" if ratio >= 1 else f"{factor(1 / ratio)} larger"


def _faster(ratio: float) -> str:
    return f"{factor(ratio)} faster" if ratio >= 1 else f"{factor(1 / ratio)} slower"


def _kld(value: float) -> str:
    return "0" if value == 0 else f"{value:.2g}"


# -- finding rows -----------------------------------------------------------------------------------

class _Context:
    def __init__(self, done: list[VariantResult], names: dict[int, str], ref: VariantResult | None):
        self.done = [r for r in done if r.size_bytes > 0]   # a size is what every recipe divides by
        self.names, self.ref = names, ref

    def name(self, r: VariantResult) -> str:
        return self.names[id(r)]

    def torch(self, kind: str) -> VariantResult | None:
        """The PyTorch row of ``kind``: "fp32", "half" (BF16 or FP16) or "int8"."""
        return next((r for r in self.done if r.engine == "pytorch" and _torch_kind(r.quant) == kind), None)

    def gguf(self, *quants: str) -> VariantResult | None:
        """The first GGUF row with one of ``quants``, in their order."""
        for q in quants:
            found = next((r for r in self.done if r.engine != "pytorch" and (r.quant or "").upper() == q), None)
            if found is not None:
                return found
        return None

    def base(self, bits: int) -> tuple[VariantResult, int] | None:
        """The row to count a size factor from, and its bits per weight: for 32 bits the FP32 original,
        else an F32 GGUF; for 16 bits an F16/BF16 GGUF, else the PyTorch half row; then the other width."""
        finders = {32: lambda: self.torch("fp32") or self.gguf("F32"),
                   16: lambda: self.gguf("F16", "BF16") or self.torch("half")}
        for width in (bits, 16 if bits == 32 else 32):
            found = finders[width]()
            if found is not None:
                return found, width
        return None

    def quality_reference(self) -> VariantResult | None:
        """The row the quality figures are measured against."""
        return next((x for x in self.done if x.quality is not None and x.quality.is_reference), self.ref)

    def against(self, r: VariantResult) -> str:
        """"against FP32": the quality reference's label, as the figures of ``r`` are measured against it."""
        ref = self.quality_reference()
        return f"against {self.name(ref)}" if ref is not None and ref is not r else "as the reference"


def _torch_kind(quant: str | None) -> str | None:
    q = (quant or "").upper()
    if "INT8" in q:
        return "int8"
    if "BF16" in q or "FP16" in q or q == "F16":
        return "half"
    if "FP32" in q or q == "F32":
        return "fp32"
    return None


def _missing_torch(full: VariantResult | None, other: VariantResult | None, what: str) -> str:
    """What to tick when a PyTorch row is missing: the original itself, or one of its precisions."""
    if full is None and other is None:
        return TICK_ORIGINAL
    lacking = "FP32" if full is None else what
    return f"This run has no PyTorch {lacking} row: add the original checkpoint with {lacking} too and run again."


def _tg(r: VariantResult) -> float | None:
    return r.speed.tg_tokens_per_s.median if r.speed is not None and r.speed.tg_tokens_per_s.median else None


def _peak(r: VariantResult) -> int | None:
    return r.speed.peak_rss_bytes if r.speed is not None and r.speed.peak_rss_bytes else None


def _quality_words(ctx: _Context, r: VariantResult) -> str | None:
    """"KLD 0.004 against FP32, perplexity +0.6%", or None when quality was not measured."""
    kld = quality_loss(r, "kld_mean")
    if kld is None:
        return None
    words = f"KLD {_kld(kld)} {ctx.against(r)}"
    if r.quality is not None and r.quality.ppl_ratio is not None and not r.quality.is_reference:
        words += f", perplexity {r.quality.ppl_ratio - 1:+.1%}"
    return words


# -- the recipes ------------------------------------------------------------------------------------

def _half(ctx: _Context) -> Recipe:
    claim = "model.half() halves memory"
    full, half = ctx.torch("fp32"), ctx.torch("half")
    if full is None or half is None:
        return Recipe("half", claim, _missing_torch(full, half, "half precision (BF16 or FP16)"), NOT_MEASURED,
                      CHART_MEMORY)
    size = full.size_bytes / half.size_bytes if half.size_bytes else None
    parts = [f"{ctx.name(half)} (PyTorch): {factor(size)} smaller in memory "
             f"({format_size(half.size_bytes)} vs {format_size(full.size_bytes)})" if size else ""]
    verdicts = [judge_factor(size, 2.0) if size else NOT_MEASURED]
    peak_full, peak_half = _peak(full), _peak(half)
    if peak_full and peak_half:
        ratio = peak_full / peak_half
        parts.append(f"peak memory {factor(ratio)} lower ({format_size(peak_half)} vs {format_size(peak_full)})")
        verdicts.append(judge_factor(ratio, 2.0))
    return Recipe("half", claim, ", ".join(p for p in parts if p), combine(verdicts), CHART_MEMORY)


def _int8(ctx: _Context) -> Recipe:
    claim = "PyTorch dynamic INT8: 4x smaller, 2.3x faster, under 1% accuracy loss"
    full, int8 = ctx.torch("fp32"), ctx.torch("int8")
    if full is None or int8 is None:
        return Recipe("int8", claim, _missing_torch(full, int8, "dynamic INT8"), NOT_MEASURED, CHART_SIZE_QUALITY)
    size = full.size_bytes / int8.size_bytes
    parts, verdicts = [_smaller(full.size_bytes, int8.size_bytes)], [judge_factor(size, 4.0)]
    if _peak(full) and _peak(int8):   # what the process really held, beside the weights' size
        parts[0] += f" (peak memory {factor(_peak(full) / _peak(int8))} lower)"
    if _tg(full) and _tg(int8):
        speed = _tg(int8) / _tg(full)
        parts.append(_faster(speed))
        verdicts.append(judge_factor(speed, 2.3))
    quality = _quality_words(ctx, int8)
    if quality is None:
        parts.append(f"accuracy not measured: {TICK_QUALITY}")
    else:
        parts.append(quality)
        ratio = int8.quality.ppl_ratio
        if ratio is not None:
            verdicts.append(HOLDS if ratio - 1 <= LOSS_LIMIT else PARTLY if ratio - 1 <= 5 * LOSS_LIMIT else FAILS)
    return Recipe("int8", claim, f"INT8 (PyTorch dynamic): {', '.join(parts)}", combine(verdicts),
                  CHART_SIZE_QUALITY)


def _int4(ctx: _Context) -> Recipe:
    claim = "INT4 makes a model 8x smaller"
    fours = [r for r in (ctx.gguf("Q4_K_M"), ctx.gguf("Q4_0")) if r is not None]
    base = ctx.base(32)
    if not fours or base is None:
        return Recipe("int4", claim, TICK_INT4, NOT_MEASURED, CHART_SIZE_QUALITY)
    row, bits = base
    claimed = 8.0 * bits / 32   # against 16-bit weights the same claim is 4x
    where = f"{ctx.name(row)} ({'PyTorch original' if row.engine == 'pytorch' else 'GGUF'}"
    where += "; no 32-bit model here, so the claimed 8x is 4x against 16 bits)" if bits == 16 else ")"
    parts = []
    against = "" if ctx.quality_reference() is row else f" {ctx.against(row)}"   # the KLD's own reference
    for r in fours:
        kld = quality_loss(r, "kld_mean")
        parts.append(f"{ctx.name(r)} {_smaller(row.size_bytes, r.size_bytes)}"
                     + (f" (KLD {_kld(kld)}{against})" if kld is not None else ""))
    best = max(row.size_bytes / r.size_bytes for r in fours)
    measured = f"Against {where}: {', '.join(parts)}"
    return Recipe("int4", claim, measured, judge_factor(best, claimed), CHART_SIZE_QUALITY)


def _q8(ctx: _Context) -> Recipe:
    claim = "8-bit (Q8_0) halves a 16-bit model and is practically lossless"
    q8, base = ctx.gguf("Q8_0"), ctx.base(16)
    if q8 is None or base is None:
        return Recipe("q8", claim, TICK_Q8, NOT_MEASURED, CHART_SIZE_QUALITY)
    row, bits = base
    size = row.size_bytes / q8.size_bytes
    parts, verdicts = [f"{_smaller(row.size_bytes, q8.size_bytes)} than {ctx.name(row)}"], \
        [judge_factor(size, 2.0 * bits / 16)]
    if _tg(row) and _tg(q8):
        parts.append(_faster(_tg(q8) / _tg(row)))
    kld = quality_loss(q8, "kld_mean")
    if kld is None:
        parts.append(f"quality not measured: {TICK_QUALITY}")
    else:
        parts.append(_quality_words(ctx, q8))
        if q8.quality is not None and q8.quality.top1_agreement is not None:
            parts.append(f"same next word {q8.quality.top1_agreement:.1%}")
        verdicts.append(HOLDS if kld <= LOSSLESS_KLD else PARTLY if kld <= 10 * LOSSLESS_KLD else FAILS)
    return Recipe("q8", claim, f"Q8_0 (llama.cpp): {', '.join(parts)}", combine(verdicts), CHART_SIZE_QUALITY)


def _batching(ctx: _Context) -> Recipe:
    claim = "Processing requests in batches is 3-5x faster"
    measured = []
    for r in ctx.done:
        points = {p.n: p for p in (r.batched or [])}
        if 1 not in points or len(points) < 2:
            continue
        n = 4 if 4 in points else max(points, key=lambda k: points[k].tg_tokens_per_s_aggregate)
        if n == 1:
            n = max(k for k in points if k != 1)
        one, many = points[1].tg_tokens_per_s_aggregate, points[n].tg_tokens_per_s_aggregate
        if one > 0:
            measured.append((r, n, many / one, one, many, points[n].tg_tokens_per_s_per_sequence))
    if not measured:
        return Recipe("batching", claim, TICK_BATCHING, NOT_MEASURED, CHART_BATCHING)
    r, n, ratio, one, many, each = max(measured, key=lambda m: m[2])
    text = (f"{ctx.name(r)}: {n} sequences at once give {factor(ratio)} the tokens/s of one "
            f"({many:,.0f} vs {one:,.0f}), each sequence {each / one:.2f}x as fast")
    others = [f"{ctx.name(o)} {factor(x)} at N={k}" for o, k, x, *_ in measured if o is not r]
    if others:
        text += f" (also {', '.join(others[:3])})"
    return Recipe("batching", claim, text, judge_factor(ratio, 3.0), CHART_BATCHING)


def _kv_reuse(ctx: _Context) -> Recipe:
    from runtime.bench.kv_reuse import reuse_speedup

    claim = "Reusing the KV cache makes a continued dialogue 2x faster"
    measured = [(r, reuse_speedup(r.kv_reuse)) for r in ctx.done if r.kv_reuse]
    measured = [(r, x) for r, x in measured if x is not None]
    if not measured:
        return Recipe("kv_reuse", claim, TICK_KV, NOT_MEASURED, CHART_KV)
    r, ratio = measured[0]   # the first in the run's order; the others follow in brackets
    last = max(r.kv_reuse, key=lambda k: k.turn)
    later = sum(1 for k in r.kv_reuse if k.turn > 1)
    text = (f"{ctx.name(r)}: first token {factor(ratio)} sooner from turn 2 on (mean of {later} turn"
            f"{'s' if later != 1 else ''}; turn {last.turn}: {_ms(last.ttft_reuse_s)} vs {_ms(last.ttft_fresh_s)}); "
            "the reply itself comes at the same speed")
    others = [f"{ctx.name(o)} {factor(x)}" for o, x in measured if o is not r]
    if others:
        text += f" (also {', '.join(others[:3])})"
    return Recipe("kv_reuse", claim, text, judge_factor(ratio, 2.0), CHART_KV)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


RECIPE_BUILDERS: tuple[Callable[[_Context], Recipe], ...] = (_half, _int8, _int4, _q8, _batching, _kv_reuse)
