"""Sampling panel and per-conversation settings: values round-trip, edits are reported once."""
from __future__ import annotations

from runtime.engine.types import SamplingParams
from widgets.chat.conversation_settings import ConversationSettings
from widgets.chat.sampling_panel import SamplingPanel


def test_round_trip(qtbot):
    panel = SamplingPanel()
    qtbot.addWidget(panel)
    params = SamplingParams(temperature=0.3, top_p=0.8, top_k=12, min_p=0.1, repeat_penalty=1.25,
                            max_tokens=777, seed=1234)
    panel.set_params(params)
    assert panel.params() == params
    assert panel.seed.isEnabled()


def test_random_seed(qtbot):
    panel = SamplingPanel()
    qtbot.addWidget(panel)
    panel.set_params(SamplingParams(seed=None))
    assert panel.params().seed is None and not panel.seed.isEnabled()
    panel.random_seed.setChecked(False)
    panel.seed.setValue(99)
    assert panel.params().seed == 99


def test_defaults_match_the_runtime(qtbot):
    panel = SamplingPanel()
    qtbot.addWidget(panel)
    assert panel.params() == SamplingParams()


def test_set_params_is_silent_but_user_edits_are_not(qtbot):
    panel = SamplingPanel()
    qtbot.addWidget(panel)
    changes = []
    panel.sig_changed.connect(lambda: changes.append(1))
    panel.set_params(SamplingParams(temperature=1.5))
    assert changes == []
    panel.top_k.setValue(5)
    assert changes == [1]


def test_conversation_settings_coalesce_edits(qtbot):
    settings = ConversationSettings()
    qtbot.addWidget(settings)
    changes = []
    settings.sig_changed.connect(lambda: changes.append(1))
    settings.system_prompt.setPlainText("Be brief.")
    settings.sampling.temperature.setValue(0.2)
    settings.sampling.top_k.setValue(7)
    assert changes == []  # not yet: debounced
    qtbot.waitUntil(lambda: changes == [1], timeout=5_000)
    prompt, params = settings.values()
    assert prompt == "Be brief." and params.temperature == 0.2 and params.top_k == 7
    settings.sampling.top_k.setValue(8)
    settings.flush()
    assert changes == [1, 1]
