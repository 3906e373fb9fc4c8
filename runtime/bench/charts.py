"""Benchmark charts as matplotlib Figures (never pyplot state, never a Qt backend).

Three builders, each returning a ``Figure`` with its hover data attached (``hover_of(figure)``):

- ``metric_bars(results, metric, theme)``: one bar per variant for one metric (median, with the
  lowest and highest repetition as error bars where the timing was repeated);
- ``size_quality_scatter(results, quality_metric, fits, theme)``: file size against KL divergence or
  perplexity ratio (log axis), with the Pareto front, the best trade-off and what fits this machine;
- ``history_chart(runs, metric, theme)``: one model across runs, one line per quant.

Only complete rows ("ok") are drawn; a note under the chart names the rows left out and why. A chart
with nothing to draw says "No data". Colours are the Okabe-Ito palette (safe for colour-blind eyes),
given to variants in the order of the results so a variant keeps its colour across the charts.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from runtime.bench.compare import (KLD_CLOSE, PPL_RATIO_CLOSE, best_tradeoff, find_reference, labels,
                                   pareto_front, quality_loss)
from runtime.bench.results import BenchRun, Spread, VariantResult
from runtime.models.gguf_info import format_size
from runtime.models.grouping import base_name
from runtime.models.quants import quant_rank

# -- themes ----------------------------------------------------------------------------------------

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


@dataclass(frozen=True)
class Theme:
    name: str
    background: str
    foreground: str
    muted: str           # notes, grid labels
    grid: str
    palette: tuple[str, ...]
    good: str            # marks for the best trade-off
    bad: str             # marks for "does not fit"


THEMES = {
    "light": Theme("light", "#ffffff", "#1a1a1a", "#5c5c5c", "#d9d9d9", OKABE_ITO, "#000000", "#D55E00"),
    # On a dark background the palette's black becomes light grey and blue a lighter sky blue.
    "dark": Theme("dark", "#1e1f22", "#e8e8e8", "#a8a8a8", "#3a3c40",
                  ("#56B4E9", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#0072B2", "#F0E442", "#d0d0d0"),
                  "#ffffff", "#ff8a4c"),
}

TITLE_PT, LABEL_PT, TICK_PT, NOTE_PT = 13, 11, 10, 9
FIGSIZE = (7.0, 4.2)


def theme_of(theme: str | Theme | None) -> Theme:
    """``theme`` as a Theme: "light" (default), "dark", or a Theme itself."""
    if isinstance(theme, Theme):
        return theme
    try:
        return THEMES[theme or "light"]
    except KeyError:
        raise ValueError(f"Unknown theme {theme!r}; expected one of {', '.join(THEMES)}.") from None


# -- hover data ------------------------------------------------------------------------------------

@dataclass
class HoverTarget:
    """One drawn artist and the exact value text of each of its points (a bar: one text)."""

    artist: Any
    texts: list[str]


@dataclass
class Hover:
    """What to show under the mouse: artists and their texts. Qt-free: give it matplotlib mouse events."""

    targets: list[HoverTarget] = field(default_factory=list)

    def add(self, artist, texts: str | list[str]) -> None:
        self.targets.append(HoverTarget(artist, [texts] if isinstance(texts, str) else list(texts)))

    def text_at(self, event) -> str | None:
        """The text of the point under ``event`` (a matplotlib MouseEvent), or None."""
        for target in reversed(self.targets):   # drawn last is on top
            hit, info = target.artist.contains(event)
            if not hit:
                continue
            ind = list(info.get("ind", [])) if isinstance(info, dict) else []
            if not ind or len(target.texts) == 1:
                return target.texts[0]
            return target.texts[_nearest(target.artist, ind, event)]
        return None

    def texts(self) -> list[str]:
        return [text for target in self.targets for text in target.texts]


def _nearest(artist, ind: list[int], event) -> int:
    """Of the points ``ind`` of a line or collection, the one closest to the mouse."""
    if isinstance(artist, Line2D):
        xy = artist.get_xydata()
        to_display = artist.get_transform().transform
    else:
        xy = artist.get_offsets()
        to_display = artist.get_offset_transform().transform
    points = to_display(xy[ind])
    distances = [math.hypot(px - event.x, py - event.y) for px, py in points]
    return ind[distances.index(min(distances))]


HOVER_ATTR = "workbench_hover"


def hover_of(figure: Figure) -> Hover:
    """The hover data a builder attached to ``figure`` (empty for any other figure)."""
    return getattr(figure, HOVER_ATTR, None) or Hover()


# -- metrics and units -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    kind: str                      # "bytes", "time", "rate", "share", "plain"
    better: str                    # "higher" or "lower"
    get: Callable[[VariantResult], "float | Spread | None"]


def _speed(attr: str):
    return lambda r: getattr(r.speed, attr) if r.speed is not None else None


def _quality(attr: str):
    def get(r: VariantResult):
        if attr in ("kld_mean", "ppl_ratio"):
            return quality_loss(r, attr)
        return getattr(r.quality, attr) if r.quality is not None else None
    return get


METRICS = {m.key: m for m in (
    Metric("size_bytes", "File size", "bytes", "lower", lambda r: r.size_bytes),
    Metric("pp_tokens_per_s", "Prompt processing speed", "rate", "higher", _speed("pp_tokens_per_s")),
    Metric("tg_tokens_per_s", "Generation speed", "rate", "higher", _speed("tg_tokens_per_s")),
    Metric("ttft_s", "Time to first token", "time", "lower", _speed("ttft_s")),
    Metric("peak_rss_bytes", "Peak memory", "bytes", "lower", _speed("peak_rss_bytes")),
    Metric("vram_bytes", "GPU memory", "bytes", "lower", _speed("vram_bytes")),
    Metric("load_s", "Load time", "time", "lower", _speed("load_s")),
    Metric("perplexity", "Perplexity", "plain", "lower", _quality("perplexity")),
    Metric("kld_mean", "Mean KL divergence", "plain", "lower", _quality("kld_mean")),
    Metric("kld_p99", "KL divergence, 99th percentile", "plain", "lower", _quality("kld_p99")),
    Metric("top1_agreement", "Same next word as the reference", "share", "higher", _quality("top1_agreement")),
    Metric("ppl_ratio", "Perplexity ratio", "plain", "lower", _quality("ppl_ratio")),
)}
ALIASES = {"size": "size_bytes", "pp": "pp_tokens_per_s", "tg": "tg_tokens_per_s", "ttft": "ttft_s",
           "memory": "peak_rss_bytes", "peak_memory": "peak_rss_bytes", "load": "load_s", "kld": "kld_mean"}
BAR_METRICS = ("size_bytes", "pp_tokens_per_s", "tg_tokens_per_s", "ttft_s", "peak_rss_bytes")


def metric_of(metric: str) -> Metric:
    key = ALIASES.get(metric, metric)
    if key not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; expected one of {', '.join(METRICS)}.")
    return METRICS[key]


@dataclass(frozen=True)
class Unit:
    label: str      # for the axis: "MiB", "tokens/s", "ms", "%", ""
    scale: float    # value in base units / scale = value in this unit


def unit_for(kind: str, largest: float) -> Unit:
    """The unit that reads best for values up to ``largest`` (bytes: MiB or GiB; time: ms or s)."""
    if kind == "bytes":
        return Unit("GiB", 1024**3) if largest >= 1024**3 else Unit("MiB", 1024**2)
    if kind == "time":
        return Unit("ms", 1e-3) if largest < 1.0 else Unit("s", 1.0)
    if kind == "rate":
        return Unit("tokens/s", 1.0)
    if kind == "share":
        return Unit("%", 0.01)
    return Unit("", 1.0)


def exact_text(kind: str, value: float) -> str:
    """One value with its unit, as precise as a tooltip should be."""
    if kind == "bytes":
        return f"{format_size(value)} ({int(value):,} bytes)"
    if kind == "time":
        return f"{value * 1000:,.1f} ms" if value < 1.0 else f"{value:,.3f} s"
    if kind == "rate":
        return f"{value:,.2f} tokens/s"
    if kind == "share":
        return f"{value:.1%}"
    return f"{value:.4g}"


def _short(value: float, unit: Unit) -> str:
    """A bar's label: the value in the axis unit, three significant figures or so."""
    v = value / unit.scale
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{text}%" if unit.label == "%" else text


def _median(value) -> float | None:
    return value.median if isinstance(value, Spread) else value


def _value_text(metric: Metric, value) -> str:
    if isinstance(value, Spread):
        text = exact_text(metric.kind, value.median)
        if len(value.values) > 1:
            return (f"{text} (median of {len(value.values)}; "
                    f"{exact_text(metric.kind, value.low)} to {exact_text(metric.kind, value.high)})")
        return text
    return exact_text(metric.kind, value)


# -- the builders ----------------------------------------------------------------------------------

def metric_bars(results: Sequence[VariantResult], metric: str, theme: str | Theme = "light") -> Figure:
    """One bar per complete variant for ``metric`` (see METRICS; "size", "tg", ... work too)."""
    m, t = metric_of(metric), theme_of(theme)
    fig, ax, hover = _new_figure(t)
    names = labels(results)
    colours = _colours(results, t)
    reference = find_reference(results)
    shown, left_out = [], _left_out(results, names)
    for r in results:
        if r.status != "ok":
            continue
        value = m.get(r)
        if value is None:
            left_out.append(f"{names[id(r)]} (not measured)")
        else:
            shown.append((r, value))
    title = f"{m.title} ({m.better} is better)"
    if not shown:
        _no_data(fig, ax, t, title, left_out)
        return fig
    unit = unit_for(m.kind, max(_spread_high(v) for _, v in shown))
    xs = list(range(len(shown)))
    heights = [_median(v) / unit.scale for _, v in shown]
    bars = ax.bar(xs, heights, color=[colours[id(r)] for r, _ in shown], width=0.62, zorder=2)
    for bar, (r, value) in zip(bars, shown):
        hover.add(bar, f"{names[id(r)]}: {_value_text(m, value)}")
    spreads = [(x, v) for x, (_, v) in zip(xs, shown) if isinstance(v, Spread) and len(v.values) > 1]
    if spreads:
        ax.errorbar([x for x, _ in spreads], [v.median / unit.scale for _, v in spreads],
                    yerr=[[(v.median - v.low) / unit.scale for _, v in spreads],
                          [(v.high - v.median) / unit.scale for _, v in spreads]],
                    fmt="none", ecolor=t.foreground, elinewidth=1.2, capsize=5, zorder=3)
    for x, (_, v) in zip(xs, shown):   # above the error bar, not across it
        ax.annotate(_short(_median(v), unit), (x, _spread_high(v) / unit.scale), xytext=(0, 4),
                    textcoords="offset points", ha="center", va="bottom", fontsize=TICK_PT, color=t.foreground)
    ticks = [names[id(r)] + ("\n(reference)" if r is reference and len(shown) > 1 else "") for r, _ in shown]
    crowded = len(shown) > 7 or max(len(names[id(r)]) for r, _ in shown) * len(shown) > 60
    ax.set_xticks(xs, ticks, rotation=30 if crowded else 0, ha="right" if crowded else "center",
                  rotation_mode="anchor")
    ax.set_ylabel(f"{m.title} ({unit.label})" if unit.label else m.title, fontsize=LABEL_PT)
    ax.set_ylim(0, (max(_spread_high(v) for _, v in shown) / unit.scale * 1.18) or 1.0)
    ax.grid(axis="y", color=t.grid, linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)
    ax.set_title(title, fontsize=TITLE_PT, color=t.foreground)
    _note(fig, t, left_out)
    return fig


def size_quality_scatter(results: Sequence[VariantResult], quality_metric: str = "kld_mean",
                         fits: "Callable[[VariantResult], Any] | int | None" = None,
                         theme: str | Theme = "light") -> Figure:
    """File size against quality loss (log axis), lower-left being better.

    ``quality_metric``: "kld_mean" or "ppl_ratio". The reference's KLD of 0 cannot sit on a log
    axis: it is drawn at a floor below the smallest KLD, with a note. ``fits``: a memory budget in
    bytes (a variant fits when its peak memory, or else its file size, is within it) or a callable
    giving True/False or a fit status ("fits", "tight", "too_big") per variant; None: not marked.
    """
    t = theme_of(theme)
    m = metric_of(quality_metric)
    if m.key not in ("kld_mean", "ppl_ratio"):
        raise ValueError(f"The scatter shows kld_mean or ppl_ratio, not {quality_metric!r}.")
    fig, ax, hover = _new_figure(t)
    names = labels(results)
    colours = _colours(results, t)
    reference = find_reference(results)
    left_out = _left_out(results, names)
    points = []
    for r in results:
        if r.status != "ok":
            continue
        loss = quality_loss(r, m.key)
        if loss is None:
            left_out.append(f"{names[id(r)]} (quality not measured)")
        else:
            points.append((r, loss))
    title = "Size against quality: " + ("mean KL divergence" if m.key == "kld_mean" else "perplexity ratio")
    if not points:
        _no_data(fig, ax, t, title, left_out)
        return fig
    positive = [loss for _, loss in points if loss > 0]
    floor = min(positive) / 4 if positive else 1e-4
    unit = unit_for("bytes", max(r.size_bytes for r, _ in points))
    xy = {id(r): (r.size_bytes / unit.scale, max(loss, floor)) for r, loss in points}
    front = pareto_front([r for r, _ in points], m.key)
    best = best_tradeoff([r for r, _ in points], m.key, reference)
    fit_status = _fit_judge(fits)
    statuses = {id(r): fit_status(r) if fit_status else None for r, _ in points}

    ax.set_yscale("log")
    _scatter_limits(ax, list(xy.values()))
    if len(front) > 1:   # under the points
        ax.plot([xy[id(r)][0] for r in front], [xy[id(r)][1] for r in front], linestyle="--",
                color=t.muted, linewidth=1.2, zorder=1)
    for r, loss in points:
        x, y = xy[id(r)]
        fitting = statuses[id(r)] in (None, "fits", "tight")
        colour = colours[id(r)]
        dot = ax.scatter([x], [y], s=260 if r is reference else 110, marker="*" if r is reference else "o",
                         zorder=3, linewidths=2, facecolors=colour if fitting else "none", edgecolors=colour)
        if r is best:
            ax.scatter([x], [y], s=520, marker="o", facecolors="none", edgecolors=t.good, linewidths=2.2, zorder=4)
        hover.add(dot, _scatter_hover(r, loss, m, statuses[id(r)], reference, best,
                                      any(r is f for f in front), names))
    _place_labels(ax, t, [(xy[id(r)], names[id(r)], _tags(r, reference, best, statuses[id(r)]), r is best)
                          for r, _ in points])
    ax.set_xlabel(f"File size ({unit.label})", fontsize=LABEL_PT)
    ylabel = "Mean KL divergence vs reference (log)" if m.key == "kld_mean" else "Perplexity / reference's (log)"
    ax.set_ylabel(ylabel, fontsize=LABEL_PT)
    limit = KLD_CLOSE if m.key == "kld_mean" else PPL_RATIO_CLOSE
    limit_shown = ax.get_ylim()[0] < limit < ax.get_ylim()[1]
    if limit_shown:
        ax.axhline(limit, color=t.muted, linewidth=1.0, linestyle=":", zorder=0)
    ax.grid(True, which="major", color=t.grid, linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.set_title(title, fontsize=TITLE_PT, color=t.foreground)
    _scatter_legend(ax, t, bool(fit_status), len(front) > 1, best is not None, reference is not None)
    notes = ["Lower left is better."]
    if any(loss <= 0 for _, loss in points):
        notes.append("The reference's KLD is 0: drawn at the bottom of the log axis.")
    if limit_shown:
        notes.append(f"Dotted line: {'KLD' if m.key == 'kld_mean' else 'ratio'} {limit:g}, still close to the reference.")
    _note(fig, t, left_out, lead=" ".join(notes))
    return fig


def _tags(r: VariantResult, reference, best, status: str | None) -> list[str]:
    tags = (["best trade-off"] if r is best else []) + (["reference"] if r is reference else [])
    return tags + {"too_big": ["too big here"], "tight": ["tight here"]}.get(status or "", [])


def _scatter_hover(r: VariantResult, loss: float, m: Metric, status: str | None, reference, best,
                   on_front: bool, names: dict[int, str]) -> str:
    lines = [names[id(r)] + (" (reference)" if r is reference else ""),
             f"size {exact_text('bytes', r.size_bytes)}",
             f"{m.title.lower().replace('kl ', 'KL ')} {loss:.4g}"
             + (" (drawn at the bottom of the log axis)" if loss <= 0 else "")]
    if r.quality is not None and r.quality.top1_agreement is not None and r is not reference:
        lines.append(f"same next word as the reference {r.quality.top1_agreement:.1%}")
    if status:
        lines.append({"fits": "fits this machine", "tight": "tight on this machine",
                      "too_big": "does not fit this machine"}.get(status, status))
    if on_front:
        lines.append("on the Pareto front (nothing smaller is as good)")
    if r is best:
        lines.append("best trade-off")
    return "\n".join(lines)


def _scatter_limits(ax, xy: list[tuple[float, float]]) -> None:
    """Room around the points for their labels (linear x from near 0, log y padded in log space),
    with plain tick labels (0.01, 1.05) rather than powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    lo, hi = min(xs), max(xs)
    span = (hi - lo) or hi or 1.0
    ax.set_xlim(max(0.0, lo - 0.15 * span), hi + 0.15 * span)
    llo, lhi = math.log10(min(ys)), math.log10(max(ys))
    lspan = max(lhi - llo, 0.02)
    ax.set_ylim(10 ** (llo - 0.3 * lspan), 10 ** (lhi + 0.45 * lspan))
    plain = FuncFormatter(lambda v, _pos: f"{v:.3g}")
    if lspan < 1.0:   # less than a decade: plain, evenly spaced ticks read better than 10^0
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_minor_locator(NullLocator())
    else:
        ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(NullFormatter())


# Where a point's label may go, in order of preference: (dx, dy) in points and its alignment; the far
# ones get a thin line to their point so that it stays clear which point they name.
_NEAR_SPOTS = ((10, 5, "left", "bottom"), (10, -5, "left", "top"), (-10, 5, "right", "bottom"),
               (-10, -5, "right", "top"), (0, 14, "center", "bottom"), (0, -14, "center", "top"))
_FAR_SPOTS = ((24, 26, "left", "bottom"), (24, -26, "left", "top"), (-24, 26, "right", "bottom"),
              (-24, -26, "right", "top"), (0, 40, "center", "bottom"), (0, -40, "center", "top"),
              (40, 0, "left", "center"), (-40, 0, "right", "center"))


def _place_labels(ax, t: Theme, items) -> None:
    """Label each point next to it, on the first side whose box overlaps no label or point placed so
    far (else the side that overlaps least).

    ``items``: ((x, y), name, tags, bold); a bold one (the best trade-off) has its ring around it,
    so its label keeps further off. Boxes are estimated in display units from the text's
    length (no renderer needed), which is close enough to keep neighbours apart.
    """
    px = ax.figure.dpi / 72.0
    anchors = [ax.transData.transform(xy) for xy, *_ in items]
    radii = [13 if bold else 8 for _xy, _name, _tags, bold in items]   # points: the ring, or a dot
    taken = [(ax_x - r * px, ax_y - r * px, ax_x + r * px, ax_y + r * px) for (ax_x, ax_y), r in zip(anchors, radii)]
    bounds = ax.bbox
    for ((x, y), name, tags, bold), (x0, y0) in sorted(zip(items, anchors), key=lambda p: p[1][0]):
        lines = [name] + ([", ".join(tags)] if tags else [])
        width = max(len(s) for s in lines) * TICK_PT * 0.62 * px
        height = len(lines) * TICK_PT * 1.25 * px
        best = None
        for rank, (dx, dy, ha, va) in enumerate(_NEAR_SPOTS + _FAR_SPOTS):
            if bold and rank < len(_NEAR_SPOTS):
                dx, dy = dx * 1.5, dy * 1.8
            box = _label_box(x0 + dx * px, y0 + dy * px, width, height, ha, va)
            outside = max(0.0, bounds.x0 - box[0]) + max(0.0, box[2] - bounds.x1) \
                + max(0.0, bounds.y0 - box[1]) + max(0.0, box[3] - bounds.y1)
            cost = sum(_overlap_area(box, other) for other in taken) + outside * height
            if best is None or cost < best[0]:
                best = (cost, rank, dx, dy, ha, va, box)
            if cost == 0:
                break
        _, rank, dx, dy, ha, va, box = best
        taken.append(box)
        line = dict(arrowstyle="-", color=t.muted, linewidth=0.8, shrinkA=2, shrinkB=6) \
            if rank >= len(_NEAR_SPOTS) else None
        ax.annotate("\n".join(lines), (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                    fontsize=TICK_PT, color=t.foreground, fontweight="bold" if bold else "normal",
                    zorder=5, linespacing=1.1, annotation_clip=False, arrowprops=line)


def _label_box(x: float, y: float, width: float, height: float, ha: str, va: str):
    x0 = {"left": x, "right": x - width, "center": x - width / 2}[ha]
    y0 = {"bottom": y, "top": y - height, "center": y - height / 2}[va]
    return (x0, y0, x0 + width, y0 + height)


def _overlap_area(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def history_chart(runs: Sequence[BenchRun], metric: str, theme: str | Theme = "light",
                  title: str | None = None) -> Figure:
    """One model across runs over time: ``metric`` per run, one line per quant (runs as
    ``BenchStore.history`` gives them, read with ``BenchRun.from_dict``). ``title``: the model's name
    for the title; None: the base name of its files."""
    m, t = metric_of(metric), theme_of(theme)
    fig, ax, hover = _new_figure(t)
    series: dict[str, list[tuple[dt.datetime, Any]]] = {}
    ranks: dict[str, int] = {}
    model = title
    for run in sorted(runs, key=lambda r: r.started_at):
        when = dt.datetime.fromtimestamp(run.started_at)
        for r in run.results:
            value = m.get(r) if r.status == "ok" else None
            if value is None:
                continue
            key = r.quant or base_name(r.name)
            series.setdefault(key, []).append((when, value))
            ranks[key] = quant_rank(r.quant)
            model = model or base_name(r.name)
    chart_title = f"{model + ': ' if model else ''}{m.title} across runs"
    if not series:
        _no_data(fig, ax, t, chart_title, [])
        return fig
    largest = max(_spread_high(v) for points in series.values() for _, v in points)
    unit = unit_for(m.kind, largest)
    for i, key in enumerate(sorted(series, key=lambda k: (-ranks[k], k))):
        points = series[key]
        xs = [when for when, _ in points]
        ys = [_median(v) / unit.scale for _, v in points]
        colour = t.palette[i % len(t.palette)]
        (line,) = ax.plot(xs, ys, marker="o", markersize=7, linewidth=2, color=colour, label=key, zorder=3)
        hover.add(line, [f"{key}, {when:%d %b %Y %H:%M}: {_value_text(m, v)}" for when, v in points])
    _date_axis(ax, [when for points in series.values() for when, _ in points])
    ax.set_ylabel(f"{m.title} ({unit.label})" if unit.label else m.title, fontsize=LABEL_PT)
    ax.set_xlabel("When the run started", fontsize=LABEL_PT)
    if m.kind in ("bytes", "rate", "time", "share"):
        ax.set_ylim(bottom=0, top=largest / unit.scale * 1.15)
    ax.grid(True, color=t.grid, linewidth=0.6, zorder=0)
    ax.set_title(chart_title, fontsize=TITLE_PT, color=t.foreground)
    legend = ax.legend(fontsize=TICK_PT, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="Variant",
                       title_fontsize=TICK_PT, frameon=False)
    _style_legend(legend, t)
    _note(fig, t, [], lead=f"{m.better.capitalize()} is better.")
    return fig


# -- shared pieces ---------------------------------------------------------------------------------

def _new_figure(t: Theme):
    fig = Figure(figsize=FIGSIZE, dpi=100, layout="constrained", facecolor=t.background)
    ax = fig.add_subplot()
    ax.set_facecolor(t.background)
    for spine in ax.spines.values():
        spine.set_color(t.muted)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(colors=t.foreground, labelsize=TICK_PT)
    ax.xaxis.label.set_color(t.foreground)
    ax.yaxis.label.set_color(t.foreground)
    hover = Hover()
    setattr(fig, HOVER_ATTR, hover)
    return fig, ax, hover


def _colours(results: Sequence[VariantResult], t: Theme) -> dict[int, str]:
    return {id(r): t.palette[i % len(t.palette)] for i, r in enumerate(results)}


def _left_out(results: Sequence[VariantResult], names: dict[int, str]) -> list[str]:
    return [f"{names[id(r)]} ({r.status})" for r in results if r.status != "ok"]


def _spread_high(value) -> float:
    return value.high if isinstance(value, Spread) else float(value)


def _no_data(fig: Figure, ax, t: Theme, title: str, left_out: list[str]) -> None:
    ax.set_axis_off()
    ax.set_title(title, fontsize=TITLE_PT, color=t.foreground)
    ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center",
            fontsize=TITLE_PT + 3, color=t.muted)
    _note(fig, t, left_out)


def _note(fig: Figure, t: Theme, left_out: list[str], lead: str = "") -> None:
    """A line under the chart: ``lead``, then the rows not drawn and why."""
    parts = [lead] if lead else []
    if left_out:
        parts.append("Not shown: " + ", ".join(left_out) + ".")
    if parts:
        fig.supxlabel(" ".join(parts), fontsize=NOTE_PT, color=t.muted, wrap=True)


def _fit_judge(fits) -> Callable[[VariantResult], str] | None:
    """``fits`` (a budget in bytes or a callable) as a function giving "fits"/"tight"/"too_big"."""
    if fits is None:
        return None
    if callable(fits):
        def judge(r: VariantResult) -> str:
            answer = fits(r)
            if isinstance(answer, str):
                return answer
            return "fits" if answer else "too_big"
        return judge
    budget = int(fits)

    def by_budget(r: VariantResult) -> str:
        needed = (r.speed.peak_rss_bytes if r.speed and r.speed.peak_rss_bytes else None) or r.size_bytes
        return "fits" if needed <= budget else "too_big"
    return by_budget


def _scatter_legend(ax, t: Theme, fit_marked: bool, front: bool, best: bool, reference: bool) -> None:
    handles = []
    if reference:
        handles.append(Line2D([], [], marker="*", linestyle="none", markersize=13, color=t.muted,
                              label="reference"))
    if best:
        handles.append(Line2D([], [], marker="o", linestyle="none", markersize=15, markerfacecolor="none",
                              markeredgecolor=t.good, markeredgewidth=2, label="best trade-off"))
    if front:
        handles.append(Line2D([], [], linestyle="--", color=t.muted, label="Pareto front"))
    if fit_marked:
        handles.append(Line2D([], [], marker="o", linestyle="none", markersize=9, color=t.muted,
                              label="fits this machine"))
        handles.append(Line2D([], [], marker="o", linestyle="none", markersize=9, markerfacecolor="none",
                              markeredgecolor=t.muted, markeredgewidth=2, label="does not fit"))
    if handles:
        legend = ax.legend(handles=handles, fontsize=NOTE_PT, loc="upper right", framealpha=0.9)
        _style_legend(legend, t)


def _style_legend(legend, t: Theme) -> None:
    legend.get_frame().set_facecolor(t.background)
    legend.get_frame().set_edgecolor(t.grid)
    for text in legend.get_texts():
        text.set_color(t.foreground)
    if legend.get_title() is not None:
        legend.get_title().set_color(t.foreground)


def _date_axis(ax, times: list[dt.datetime]) -> None:
    """Dates on x, with room around them; a day's width at least (one run alone, several in a day)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    lo, hi = min(times), max(times)
    pad = max((hi - lo) * 0.06, dt.timedelta(hours=12) if hi - lo < dt.timedelta(days=1) else dt.timedelta(0))
    ax.set_xlim(lo - pad, hi + pad)
    locator = AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
