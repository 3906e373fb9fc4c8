"""A few plain sentences under the charts, for people who do not read charts:

    "Q4_K_M is 3.1x smaller and 2.4x faster than F16 here; it agrees with F16 on the next word 92%
    of the time."

The variant it speaks of is the best trade-off (``runtime.bench.compare``), or without quality
figures the smallest one. It says so when quality or speed was not measured, when variants are not
faster than the reference, when the smallest one loses clearly, and which rows did not finish.
Ratios are of file sizes and of median generation speeds (tokens/s).
"""
from __future__ import annotations

from typing import Sequence

from runtime.bench.compare import (KLD_CLOSE, PPL_RATIO_CLOSE, best_tradeoff, complete, find_reference, labels,
                                   preferred_metric, quality_loss)
from runtime.bench.results import VariantResult
from runtime.models.gguf_info import format_size

SAME_BAND = 0.05   # within 5%: "about the same size", "about as fast"


def summarize(results: Sequence[VariantResult], reference: VariantResult | str | None = None) -> str:
    """The summary for one run's results. ``reference``: the variant (or its path) the others are
    compared with; None: the one the quality figures name, else the highest precision."""
    names = labels(results)
    ref = _reference(results, reference)
    done = complete(results)
    sentences = []
    if not done:
        sentences.append("No variant finished, so there is nothing to compare.")
    elif ref is None:
        sentences.append(f"The reference {_name_of(results, reference, names)} did not finish, "
                         "so the others cannot be compared with it.")
    elif len(done) == 1:
        sentences.append(_alone(ref, names))
    else:
        sentences.extend(_comparison(results, ref, names))
    not_done = _not_finished(results, names)
    if not_done:
        sentences.append(not_done)
    return " ".join(sentences)


def _reference(results, reference) -> VariantResult | None:
    if isinstance(reference, VariantResult):
        return reference if reference.status == "ok" else None
    found = find_reference(results, reference)
    if isinstance(reference, str) and (found is None or found.path != reference):
        return None   # the chosen reference did not finish
    return found


def _name_of(results, reference, names) -> str:
    if isinstance(reference, VariantResult):
        return names.get(id(reference), reference.name)
    for r in results:
        if r.path == reference:
            return names[id(r)]
    return str(reference)


def _comparison(results, ref: VariantResult, names) -> list[str]:
    metric = preferred_metric(results)
    others = [r for r in complete(results) if r is not ref]
    measured = [r for r in others if quality_loss(r, metric) is not None]
    pick = best_tradeoff(results, metric, ref) if measured else min(others, key=lambda r: r.size_bytes)
    ref_name, pick_name = names[id(ref)], names[id(pick)]
    # Quality figures are against the variant they were measured with, which may not be ``ref``.
    quality_ref = next((names[id(r)] for r in complete(results) if r.quality is not None and r.quality.is_reference), ref_name)
    out = [_headline(pick, ref, pick_name, ref_name) + "; " + _quality_clause(pick, quality_ref) + "."]
    if measured and pick is not None:
        out.append(_why_pick(pick, metric, quality_ref, pick_name))
    smallest = min(others, key=lambda r: r.size_bytes)
    if smallest is not pick and quality_loss(smallest, metric) is not None and not _close(smallest, metric):
        out.append(f"The smallest, {names[id(smallest)]} ({_size_part(smallest, ref)}), "
                   f"{_quality_predicate(smallest, quality_ref, only=True)}.")
    slow = [names[id(r)] for r in others if r is not pick and _speed_ratio(r, ref) is not None
            and _speed_ratio(r, ref) < 1 + SAME_BAND]
    if slow:
        verb = "is" if len(slow) == 1 else "are"
        out.append(f"{_join(slow)} {verb} not faster than {ref_name} on this machine.")
    if _speed_ratio(pick, ref) is None:
        anywhere = any(r.speed is not None for r in complete(results))
        out.append("Speed was not measured for every variant." if anywhere else "Speed was not measured.")
    return out


def _headline(pick: VariantResult, ref: VariantResult, pick_name: str, ref_name: str) -> str:
    parts = [_size_part(pick, ref)]
    speed = _speed_part(pick, ref)
    if speed:
        parts.append(speed)
    if all(p.split()[0].endswith("x") for p in parts):   # "3.1x smaller and 2.4x faster than F16"
        return f"{pick_name} is {' and '.join(parts)} than {ref_name} here"
    return f"Compared with {ref_name}, {pick_name} is {' and '.join(parts)} here"


def _size_part(r: VariantResult, ref: VariantResult) -> str:
    ratio = ref.size_bytes / r.size_bytes if r.size_bytes else 1.0
    if ratio >= 1 + SAME_BAND:
        return f"{ratio:.1f}x smaller"
    if ratio <= 1 / (1 + SAME_BAND):
        return f"{1 / ratio:.1f}x larger"
    return "about the same size"


def _speed_ratio(r: VariantResult, ref: VariantResult) -> float | None:
    if r.speed is None or ref.speed is None or not ref.speed.tg_tokens_per_s.median:
        return None
    return r.speed.tg_tokens_per_s.median / ref.speed.tg_tokens_per_s.median


def _speed_part(r: VariantResult, ref: VariantResult) -> str | None:
    ratio = _speed_ratio(r, ref)
    if ratio is None:
        return None
    if ratio >= 1 + SAME_BAND:
        return f"{ratio:.1f}x faster"
    if ratio <= 1 / (1 + SAME_BAND):
        return f"{1 / ratio:.1f}x slower"
    return "about as fast"


def _quality_clause(r: VariantResult, ref_name: str) -> str:
    """"it agrees with F16 on the next word 92% of the time", or why nothing can be said."""
    said = _quality_predicate(r, ref_name)
    return f"it {said}" if said else "its quality was not measured, so what it costs is unknown (turn on the quality test)"


def _quality_predicate(r: VariantResult, ref_name: str, only: bool = False) -> str | None:
    q = r.quality
    if q is None:
        return None
    if q.top1_agreement is not None:
        return f"agrees with {ref_name} on the next word {'only ' if only else ''}{_percent(q.top1_agreement)} of the time"
    if q.kld_mean is not None:
        return f"has a mean KL divergence of {q.kld_mean:.3g} from {ref_name} (0 is identical)"
    if q.ppl_ratio is not None:
        change = q.ppl_ratio - 1
        return f"has a perplexity {abs(change):.1%} {'higher' if change >= 0 else 'lower'} than {ref_name}'s"
    return None


def _why_pick(pick: VariantResult, metric: str, ref_name: str, pick_name: str) -> str:
    loss = quality_loss(pick, metric)
    if _close(pick, metric):
        what = "mean KL divergence" if metric == "kld_mean" else "perplexity ratio"
        limit = KLD_CLOSE if metric == "kld_mean" else PPL_RATIO_CLOSE
        return f"{pick_name} is the best trade-off: it stays close to {ref_name} ({what} {loss:.3g}, under {limit:g}) for its size."
    return (f"No variant stays close to {ref_name}; {pick_name} loses the least "
            f"({'mean KL divergence' if metric == 'kld_mean' else 'perplexity ratio'} {loss:.3g}).")


def _close(r: VariantResult, metric: str) -> bool:
    loss = quality_loss(r, metric)
    return loss is not None and loss <= (KLD_CLOSE if metric == "kld_mean" else PPL_RATIO_CLOSE)


def _alone(r: VariantResult, names) -> str:
    text = f"Only {names[id(r)]} finished ({format_size(r.size_bytes)}"
    if r.speed is not None:
        text += f", {r.speed.tg_tokens_per_s.median:.1f} tokens/s generation"
    return text + "), so there is nothing to compare it with."


def _not_finished(results, names) -> str:
    failed = [names[id(r)] for r in results if r.status == "failed"]
    skipped = [names[id(r)] for r in results if r.status == "skipped"]
    parts = []
    if failed:
        parts.append(f"{_join(failed)} failed")
    if skipped:
        parts.append(f"{_join(skipped)} {'was' if len(skipped) == 1 else 'were'} skipped")
    return f"{' and '.join(parts)} (the table says why)." if parts else ""


def _percent(share: float) -> str:
    """92%, but 99.4% rather than a misleading 99% or 100% near the top."""
    return f"{share:.1%}" if 0.99 <= share < 1 else f"{share:.0%}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
