"""The KV cache reuse chart from hand-made figures: two lines per model, the values exact on hover,
the speed-up in the note, "No data" with what to tick for runs without the figures."""
from __future__ import annotations

import pytest
from matplotlib.backend_bases import MouseEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex

from runtime.bench.charts import THEMES, hover_of
from runtime.bench.charts_kv import kv_reuse_chart
from runtime.bench.export import export_chart
from tests.runtime.bench.recipe_samples import kv_turns, recipe_results
from tests.runtime.bench.sample_results import sample_results


def drawn(fig):
    FigureCanvasAgg(fig).draw()
    return fig


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_two_lines_per_model_in_its_colour_with_exact_hover(theme):
    results = recipe_results()
    results[4].kv_reuse = kv_turns(reuse_s=0.02, turns=4)      # Q8_0, a shorter replay
    fig = drawn(kv_reuse_chart(results, theme))
    ax = fig.axes[0]
    lines = [line for line in ax.lines]
    assert len(lines) == 4
    palette = THEMES[theme].palette
    assert {to_hex(line.get_color()) for line in lines[:2]} == {palette[4].lower()}   # Q8_0 is the 5th row
    assert {to_hex(line.get_color()) for line in lines[2:]} == {palette[5].lower()}
    fresh, reuse = lines[2], lines[3]                          # Q4_K_M: six turns
    assert list(fresh.get_xdata()) == [1, 2, 3, 4, 5, 6] and fresh.get_linestyle() == "--"
    assert list(reuse.get_ydata()) == pytest.approx([50, 30, 30, 30, 30, 30])   # in ms
    assert ax.get_ylabel() == "Time to first token (ms)"
    target = next(t for t in hover_of(fig).targets if t.artist is reuse)
    assert target.texts[2] == ("Q4_K_M, turn 3, cache reused\nfirst token after 30.0 ms\n"
                               "evaluated 38 of the prompt's 200 tokens\n4.3x faster than from an empty cache")
    x, y = ax.transData.transform((3, 30.0))
    assert hover_of(fig).text_at(MouseEvent("motion_notify_event", fig.canvas, x, y)) == target.texts[2]
    note = fig.get_supxlabel()
    assert "turns 2 and later, on average: Q8_0 " in note and "Q4_K_M 5.7x faster" in note
    assert "Not shown: F16 (not measured), Q4_0 (not measured)." in note and "FP32" not in note


def test_runs_without_the_figures_say_no_data_and_what_to_tick(tmp_path):
    fig = drawn(kv_reuse_chart(sample_results()))
    assert any(t.get_text() == "No data" for t in fig.axes[0].texts)
    assert "tick 'Measure KV cache reuse'" in fig.get_supxlabel()
    assert export_chart(fig, tmp_path / "kv.png").stat().st_size > 1000


def test_a_single_turn_has_nothing_to_reuse():
    results = recipe_results()
    results[5].kv_reuse = kv_turns(turns=1)
    fig = drawn(kv_reuse_chart(results))
    assert "Only one turn" in fig.get_supxlabel() and len(fig.axes[0].lines) == 2
