"""The batching chart: generation tokens/s against the number of sequences decoded together.

``batched_chart(results, theme)`` returns a matplotlib ``Figure`` (never pyplot state) with its hover
data attached (``runtime.bench.charts.hover_of``): per model, the aggregate tokens/s of all
sequences (solid line) and each sequence's share (dashed) at N = 1, 2, 4, 8 ... as the speed runner
measured them the way llama-batched-bench does (``VariantResult.batched``). The x axis is in powers
of two with a tick at every N measured. Rows that are not complete, or were measured without
batching, are named in the note under the chart; with nothing to draw it says "No data". Themes,
colours and hover data are those of ``runtime.bench.charts``.
"""
from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from runtime.bench.charts import (LABEL_PT, NOTE_PT, TITLE_PT, Theme, _colours, _left_out, _new_figure, _no_data,
                                  _note, _style_legend, exact_text, theme_of)
from runtime.bench.compare import labels
from runtime.bench.results import BatchedPoint, VariantResult

TITLE = "Batched generation speed (higher is better)"


def batched_chart(results: Sequence[VariantResult], theme: str | Theme = "light") -> Figure:
    """Aggregate and per-sequence generation tokens/s against N, one colour per model."""
    from matplotlib.ticker import NullLocator

    t = theme_of(theme)
    fig, ax, hover = _new_figure(t)
    names = labels(results)
    colours = _colours(results, t)
    left_out = _left_out(results, names)
    shown: list[tuple[VariantResult, list[BatchedPoint]]] = []
    for r in results:
        if r.status != "ok":
            continue
        if r.batched:
            shown.append((r, sorted(r.batched, key=lambda b: b.n)))
        else:
            left_out.append(f"{names[id(r)]} (batching not measured)")
    if not shown:
        _no_data(fig, ax, t, TITLE, left_out)
        return fig
    ns = sorted({b.n for _, points in shown for b in points})
    for r, points in shown:
        colour, name = colours[id(r)], names[id(r)]
        xs = [b.n for b in points]
        (aggregate,) = ax.plot(xs, [b.tg_tokens_per_s_aggregate for b in points], marker="o", markersize=7,
                               linewidth=2, color=colour, zorder=3)
        (each,) = ax.plot(xs, [b.tg_tokens_per_s_per_sequence for b in points], marker="s", markersize=6,
                          linewidth=1.6, linestyle="--", color=colour, zorder=3)
        hover.add(aggregate, [_aggregate_text(name, b, points) for b in points])
        hover.add(each, [_per_sequence_text(name, b, points) for b in points])
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.xaxis.set_minor_locator(NullLocator())
    pad = 2 ** 0.25
    ax.set_xlim(ns[0] / pad, ns[-1] * pad)
    top = max(b.tg_tokens_per_s_aggregate for _, points in shown for b in points)
    ax.set_ylim(0, top * 1.15 or 1.0)
    ax.set_xlabel("Sequences decoded together (N)", fontsize=LABEL_PT)
    ax.set_ylabel("Generation speed (tokens/s)", fontsize=LABEL_PT)
    ax.grid(True, color=t.grid, linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.set_title(TITLE, fontsize=TITLE_PT, color=t.foreground)
    _legend(ax, t, [(names[id(r)], colours[id(r)]) for r, _ in shown])
    _note(fig, t, left_out, lead="Solid: all sequences together (aggregate); dashed: each sequence. "
                                 "Measured as llama-batched-bench does.")
    return fig


def _base(points: list[BatchedPoint]) -> BatchedPoint | None:
    return next((b for b in points if b.n == 1), None)


def _sequences(n: int) -> str:
    return f"{n} sequence{'s' if n != 1 else ''}"


def _aggregate_text(name: str, b: BatchedPoint, points: list[BatchedPoint]) -> str:
    text = f"{name}, {_sequences(b.n)}: {exact_text('rate', b.tg_tokens_per_s_aggregate)} in all"
    base = _base(points)
    if base is not None and b.n != 1 and base.tg_tokens_per_s_aggregate > 0:
        text += f" ({b.tg_tokens_per_s_aggregate / base.tg_tokens_per_s_aggregate:.2f}x one sequence)"
    if b.pp_tokens_per_s_aggregate is not None:
        text += f"\nprompts: {exact_text('rate', b.pp_tokens_per_s_aggregate)} in all"
    return text


def _per_sequence_text(name: str, b: BatchedPoint, points: list[BatchedPoint]) -> str:
    text = f"{name}, {_sequences(b.n)}: {exact_text('rate', b.tg_tokens_per_s_per_sequence)} each"
    base = _base(points)
    if base is not None and b.n != 1 and base.tg_tokens_per_s_per_sequence > 0:
        text += f" ({b.tg_tokens_per_s_per_sequence / base.tg_tokens_per_s_per_sequence:.0%} of one alone)"
    return text


def _legend(ax, t: Theme, models: list[tuple[str, str]]) -> None:
    handles = [Line2D([], [], color=colour, linewidth=2, label=name) for name, colour in models]
    handles += [Line2D([], [], color=t.muted, linewidth=2, marker="o", label="aggregate"),
                Line2D([], [], color=t.muted, linewidth=1.6, linestyle="--", marker="s", label="per sequence")]
    legend = ax.legend(handles=handles, fontsize=NOTE_PT, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                       frameon=False)
    _style_legend(legend, t)
