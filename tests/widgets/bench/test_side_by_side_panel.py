"""The side-by-side panel: columns stream one after another; a bad variant says why; Stop stops."""
from __future__ import annotations

import pytest

from widgets.bench.side_by_side import SideBySidePanel


@pytest.fixture
def panel(qtbot):
    widget = SideBySidePanel()
    qtbot.addWidget(widget)
    yield widget
    widget.shutdown()


def test_two_variants_answer_in_their_columns_and_a_damaged_one_says_why(qtbot, panel, starter_model, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 20)
    panel.prompt.setPlainText("Name a colour.")
    assert not panel.answer_button.isEnabled()          # one variant is not a comparison
    panel.set_variants([str(starter_model), str(bad), str(starter_model)])
    assert panel.answer_button.isEnabled()
    with qtbot.waitSignal(panel.sig_all_done, timeout=120_000):
        assert panel.start()
        assert panel.stop_button.isEnabled() and not panel.answer_button.isEnabled()
    first, broken, third = panel.columns
    assert first.text and first.text == third.text       # greedy: the same file answers the same
    assert "tokens/s" in first.figures.text() and "first token after" in first.figures.text()
    assert broken.figures.text().startswith("Could not answer") and "broken.gguf" in broken.figures.text()
    assert panel.status.text() == "All variants have answered."
    assert panel.answer_button.isEnabled() and not panel.stop_button.isEnabled()


def test_stop_leaves_the_rest_unasked(qtbot, panel, starter_model):
    panel.set_variants([str(starter_model)] * 3)
    with qtbot.waitSignal(panel.sig_all_done, timeout=120_000):
        panel.start()
        panel.stop()
    assert panel.status.text() == "Stopped."
    assert [c.figures.text() for c in panel.columns[1:]] == ["Not asked (stopped)."] * 2


def test_more_than_four_are_cut_to_four(panel, starter_model):
    panel.set_variants([str(starter_model)] * 6)
    assert len(panel.paths) == 4 and "first 4" in panel.status.text()
