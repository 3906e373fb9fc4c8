"""How the variants of one run compare: which is the reference, their short labels, the quality
each one loses, the Pareto front of size against quality and the best trade-off. Plain data, shared by
the charts and the summary, so that both point at the same variant.

The best trade-off is picked among the variants that stay close to the reference (mean KL divergence
at most ``KLD_CLOSE``, or a perplexity ratio at most ``PPL_RATIO_CLOSE`` when no KLD was measured):
the one with the lowest ``(size / smallest size - 1) + loss / limit``, so 10% more file counts as
much as a tenth of the loss still called close (Q4_K_M rather than a Q4_0 barely smaller but worse).
When none stays close, the one that loses least. Without quality figures there is none.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from runtime.bench.results import VariantResult
from runtime.models.grouping import base_name
from runtime.models.quants import quant_rank

KLD_CLOSE = 0.1          # mean KLD below this: the next-word choice mostly agrees with the reference
PPL_RATIO_CLOSE = 1.05   # perplexity at most 5% above the reference's
QUALITY_METRICS = ("kld_mean", "ppl_ratio")


def complete(results: Sequence[VariantResult]) -> list[VariantResult]:
    """The rows that finished ("ok"); failed and skipped rows carry no figures."""
    return [r for r in results if r.status == "ok"]


def labels(results: Sequence[VariantResult]) -> dict[int, str]:
    """A short label per result (keyed by ``id(result)``): its quant; where two results share one,
    the quant and the model ("Q4_K_M · Qwen2.5-0.5B"), numbered if that is not enough; a file name
    when the quant is unknown."""
    first = {id(r): r.quant or _short_name(Path(r.name).stem if r.name.lower().endswith(".gguf") else r.name)
             for r in results}
    values = list(first.values())
    out = {}
    for r in results:
        label = first[id(r)]
        if r.quant and values.count(label) > 1:
            label = f"{r.quant} · {_short_name(base_name(r.name))}"
        out[id(r)] = label
    twice = [label for label in set(out.values()) if list(out.values()).count(label) > 1]
    seen: dict[str, int] = {}
    for r in results:   # the same quant of the same model twice (copies in two folders): number them
        label = out[id(r)]
        if label in twice:
            seen[label] = seen.get(label, 0) + 1
            out[id(r)] = f"{label} #{seen[label]}"
    return out


def _short_name(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def find_reference(results: Sequence[VariantResult], reference_path: str | None = None) -> VariantResult | None:
    """The variant the others are compared with: the one at ``reference_path``, else the one the
    quality figures name as reference, else the highest-precision complete one (larger file on a tie)."""
    done = complete(results)
    if reference_path:
        for r in done:
            if r.path == reference_path:
                return r
    for r in done:
        if r.quality is not None and r.quality.is_reference:
            return r
    if not done:
        return None
    return max(done, key=lambda r: (quant_rank(r.quant), r.size_bytes))


def quality_loss(result: VariantResult, metric: str = "kld_mean") -> float | None:
    """What ``result`` loses against the reference by ``metric`` ("kld_mean": 0 for the reference;
    "ppl_ratio": 1 for it), or None when it was not measured."""
    if metric not in QUALITY_METRICS:
        raise ValueError(f"Unknown quality metric {metric!r}; expected one of {', '.join(QUALITY_METRICS)}.")
    q = result.quality
    if q is None:
        return None
    value = getattr(q, metric)
    if value is None and q.is_reference:
        return 0.0 if metric == "kld_mean" else 1.0
    return value


def pareto_front(results: Sequence[VariantResult], metric: str = "kld_mean") -> list[VariantResult]:
    """The complete variants no other beats on both size and quality (smaller *and* no worse, or
    no larger *and* better), smallest first."""
    points = [(r, r.size_bytes, quality_loss(r, metric)) for r in complete(results)]
    points = [(r, size, loss) for r, size, loss in points if loss is not None]
    front = []
    for r, size, loss in points:
        beaten = any((s <= size and q <= loss) and (s < size or q < loss) for _, s, q in points)
        if not beaten:
            front.append((size, loss, r))
    return [r for _, _, r in sorted(front, key=lambda t: (t[0], t[1]))]


def best_tradeoff(results: Sequence[VariantResult], metric: str | None = None,
                  reference: VariantResult | None = None) -> VariantResult | None:
    """The variant worth pointing at (see the module doc), never the reference itself.

    ``metric`` None: KLD where any variant has it, else the perplexity ratio.
    """
    metric = metric or preferred_metric(results)
    reference = reference or find_reference(results)
    candidates = [r for r in complete(results)
                  if r is not reference and quality_loss(r, metric) is not None]
    if not candidates:
        return None
    close = [r for r in candidates if _excess(r, metric) <= _excess_limit(metric)]
    if close:
        smallest = max(1, min(r.size_bytes for r in close))
        return min(close, key=lambda r: ((r.size_bytes / smallest - 1)
                                         + max(_excess(r, metric), 0.0) / _excess_limit(metric), r.size_bytes))
    return min(candidates, key=lambda r: (quality_loss(r, metric), r.size_bytes))


def _excess(result: VariantResult, metric: str) -> float:
    """The loss above the reference's own value (KLD 0, perplexity ratio 1)."""
    return quality_loss(result, metric) - (0.0 if metric == "kld_mean" else 1.0)


def _excess_limit(metric: str) -> float:
    return KLD_CLOSE if metric == "kld_mean" else PPL_RATIO_CLOSE - 1.0


def preferred_metric(results: Sequence[VariantResult]) -> str:
    """"kld_mean" when any complete, non-reference variant has a KLD, else "ppl_ratio"."""
    for r in complete(results):
        if r.quality is not None and not r.quality.is_reference and r.quality.kld_mean is not None:
            return "kld_mean"
    return "ppl_ratio"
