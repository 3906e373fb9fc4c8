"""The recipes page (one card per recipe: claim, measured, verdict badge, chart button) and its place
in the Benchmark tab: the chart button switches to that chart page, the KV cache chart is drawn, a
run without these figures (an old stored run) still shows, and the Markdown export has the recipes."""
from __future__ import annotations

import pytest

from runtime.bench.recipes import NOT_MEASURED, recipes
from tests.runtime.bench.recipe_samples import recipe_run
from tests.runtime.bench.sample_results import sample_run


@pytest.fixture
def page(qtbot):
    from widgets.bench.recipes_page import RecipesPage

    widget = RecipesPage()
    qtbot.addWidget(widget)
    return widget


@pytest.fixture
def tab(qtbot, workbench_home):
    from widgets.bench.tab import BenchmarkTab

    widget = BenchmarkTab()
    qtbot.addWidget(widget)
    widget.resize(1200, 800)
    yield widget
    widget.shutdown()


def test_one_card_per_recipe_with_claim_measured_and_verdict(page, qtbot):
    assert page.message.isVisibleTo(page) and page.cards == []
    run = recipe_run()
    page.set_run(run)
    expected = recipes(run)
    assert [c.recipe for c in page.cards] == expected and not page.message.isVisibleTo(page)
    int8 = page.cards[1]
    assert "PyTorch dynamic INT8: 4x smaller" in int8.claim.text()
    assert int8.measured.text().startswith("INT8 (PyTorch dynamic): 3.6x smaller (peak memory 2.1x lower), 1.4x")
    assert int8.badge.text() == "partly" and int8.chart_button.text() == "Show chart: Size vs quality"
    assert [c.badge.text() for c in page.cards] == [r.verdict for r in expected]
    assert page.text().splitlines()[5].startswith("Reusing the KV cache makes a continued dialogue 2x faster → ")
    with qtbot.waitSignal(page.sig_show_chart) as shown:
        page.cards[5].chart_button.click()
    assert shown.args == ["KV cache reuse"]
    page.set_run(sample_run())          # cards are replaced, not added
    assert len(page.cards) == 6
    unmeasured = [c for c in page.cards if c.recipe.verdict == NOT_MEASURED]
    assert unmeasured and all(not c.chart_button.isEnabled() for c in unmeasured)
    assert unmeasured[0].measured.text().startswith("Tick 'Add original checkpoint'")
    page.set_run(None)
    assert page.cards == [] and page.message.isVisibleTo(page)


def test_the_tab_shows_the_recipes_and_a_card_opens_its_chart(tab, qtbot, tmp_path):
    assert [tab.right.tabText(i) for i in range(tab.right.count())][:3] == ["Results", "Charts", "Recipes"]
    assert tab.recipes_page.cards == [] and not tab.kv_view.has_chart
    tab._show_run(recipe_run())
    assert len(tab.recipes_page.cards) == 6 and tab.kv_view.has_chart
    tab.show()
    tab.right.setCurrentWidget(tab.recipes_page)
    with qtbot.waitSignal(tab.kv_view.sig_rendered, timeout=30_000):
        tab.recipes_page.cards[5].chart_button.click()
    assert tab.right.currentWidget() is tab.chart_tabs
    assert tab.chart_tabs.tabText(tab.chart_tabs.currentIndex()) == "KV cache reuse"
    assert tab.kv_view.figure().axes[0].get_xlabel() == "Turn of the conversation"
    tab.recipes_page.cards[0].chart_button.click()
    assert tab.chart_tabs.tabText(tab.chart_tabs.currentIndex()) == "Memory"
    assert tab.show_chart("Size vs quality") and not tab.show_chart("No such chart")
    report = tab.export_figures(str(tmp_path / "report.md"))
    assert "## Recipes checked on this machine" in report.read_text(encoding="utf-8")


def test_a_run_without_the_new_figures_still_shows(tab):
    tab._show_run(sample_run())
    assert tab.table.proxy.rowCount() == 7
    assert {c.recipe.verdict for c in tab.recipes_page.cards[4:]} == {NOT_MEASURED}
    assert not tab.kv_view.has_chart and "Measure KV cache reuse" in tab.kv_view.picture.text()
    tab._show_run(None)
    assert tab.recipes_page.cards == []


def test_the_options_panel_asks_for_kv_reuse(qtbot):
    from widgets.bench.options_panel import OptionsPanel

    panel = OptionsPanel()
    qtbot.addWidget(panel)
    assert panel.options().kv_reuse is False
    with qtbot.waitSignal(panel.sig_changed):
        panel.kv_reuse.setChecked(True)
    assert panel.options().kv_reuse is True
    panel.set_enabled(False)
    assert not panel.kv_reuse.isEnabled()
