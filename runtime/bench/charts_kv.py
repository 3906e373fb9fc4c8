"""The KV cache reuse chart: each turn's time to first token with the cache reused and from an empty
cache, per model (``kv_reuse_chart(results, theme)``), as a matplotlib Figure with hover texts.

One colour per model (the same as in the other charts); a solid line with dots for the cache reused,
a dashed line with hollow squares for an empty cache. A note under the chart gives each model's
speed-up from turn 2 on (turn 1 has nothing to reuse) and names the rows without the figures.
"""
from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from runtime.bench.charts import (LABEL_PT, NOTE_PT, TITLE_PT, Theme, _colours, _new_figure, _no_data,
                                  _note, _style_legend, exact_text, theme_of, unit_for)
from runtime.bench.compare import labels
from runtime.bench.results import KvTurn, VariantResult

TITLE = "Time to first token, turn by turn (lower is better)"
NOT_MEASURED = "Not measured in this run: tick 'Measure KV cache reuse' and run again."


def kv_reuse_chart(results: Sequence[VariantResult], theme: str | Theme = "light") -> Figure:
    """Each turn's TTFT with and without cache reuse, one pair of lines per model with the figures."""
    from runtime.bench.kv_reuse import reuse_speedup

    t = theme_of(theme)
    fig, ax, hover = _new_figure(t)
    names = labels(results)
    colours = _colours(results, t)
    shown = [r for r in results if r.status == "ok" and r.kv_reuse]
    if not shown:
        _no_data(fig, ax, t, TITLE, [])
        _note(fig, t, [], lead=NOT_MEASURED)
        return fig
    # PyTorch rows are not replayed (the test runs the chat's own llama.cpp loop): not worth a mention.
    left_out = [f"{names[id(r)]} ({r.status})" if r.status != "ok" else f"{names[id(r)]} (not measured)"
                for r in results if r not in shown and r.engine != "pytorch"]
    largest = max(max(k.ttft_fresh_s, k.ttft_reuse_s) for r in shown for k in r.kv_reuse)
    unit = unit_for("time", largest)
    for r in shown:
        turns = sorted(r.kv_reuse, key=lambda k: k.turn)
        xs = [k.turn for k in turns]
        colour, name = colours[id(r)], names[id(r)]
        (fresh,) = ax.plot(xs, [k.ttft_fresh_s / unit.scale for k in turns], linestyle="--", linewidth=1.6,
                           marker="s", markersize=7, markerfacecolor=t.background, markeredgewidth=1.6,
                           color=colour, zorder=3)
        (reuse,) = ax.plot(xs, [k.ttft_reuse_s / unit.scale for k in turns], linestyle="-", linewidth=2.2,
                           marker="o", markersize=7, color=colour, zorder=4)
        hover.add(fresh, [_hover(name, k, "empty cache") for k in turns])
        hover.add(reuse, [_hover(name, k, "cache reused") for k in turns])
    ax.set_xticks(sorted({k.turn for r in shown for k in r.kv_reuse}))
    ax.set_xlabel("Turn of the conversation", fontsize=LABEL_PT)
    ax.set_ylabel(f"Time to first token ({unit.label})", fontsize=LABEL_PT)
    ax.set_ylim(0, largest / unit.scale * 1.15)
    ax.grid(True, color=t.grid, linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.set_title(TITLE, fontsize=TITLE_PT, color=t.foreground)
    _legend(ax, t, [(names[id(r)], colours[id(r)]) for r in shown])
    speedups = []
    for r in shown:
        ratio = reuse_speedup(r.kv_reuse)
        if ratio is not None:
            speedups.append(f"{names[id(r)]} {ratio:.1f}x")
    lead = ("First token with the cache reused, turns 2 and later, on average: " + ", ".join(speedups) + " faster."
            if speedups else "Only one turn: nothing to reuse yet.")
    _note(fig, t, left_out, lead=lead)
    return fig


def _hover(name: str, k: KvTurn, how: str) -> str:
    seconds = k.ttft_reuse_s if how == "cache reused" else k.ttft_fresh_s
    evaluated = k.evaluated_reuse if how == "cache reused" else k.evaluated_fresh
    lines = [f"{name}, turn {k.turn}, {how}", f"first token after {exact_text('time', seconds)}"]
    if evaluated is not None:
        lines.append(f"evaluated {evaluated:,} of the prompt's {k.prompt_tokens:,} tokens")
    else:
        lines.append(f"prompt of {k.prompt_tokens:,} tokens")
    if how == "cache reused" and k.ttft_reuse_s > 0:
        lines.append(f"{k.ttft_fresh_s / k.ttft_reuse_s:.1f}x faster than from an empty cache")
    return "\n".join(lines)


def _legend(ax, t: Theme, models: list[tuple[str, str]]) -> None:
    handles = [Line2D([], [], linestyle="-", linewidth=2.2, marker="o", color=t.muted, label="cache reused"),
               Line2D([], [], linestyle="--", linewidth=1.6, marker="s", markerfacecolor=t.background,
                      color=t.muted, label="empty cache")]
    if len(models) > 1:
        handles += [Line2D([], [], linestyle="-", linewidth=6, color=c, label=n) for n, c in models]
    legend = ax.legend(handles=handles, fontsize=NOTE_PT, loc="upper left", framealpha=0.9)
    _style_legend(legend, t)

