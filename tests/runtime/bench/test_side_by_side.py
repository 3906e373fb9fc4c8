"""The same prompt answered by two real variants of the starter model, one after another."""
from __future__ import annotations

import pytest

from runtime.bench.side_by_side import answer_with, check_fits
from runtime.errors import Cancelled, InsufficientMemoryError, ModelFileError
from runtime.jobs import CancelToken


def test_each_variant_answers_greedily_and_reports_its_speed(starter_model):
    pieces: list[str] = []
    steps: list[str] = []
    first = answer_with(starter_model, "Name a colour.", on_text=pieces.append,
                        progress=lambda d, t, m: steps.append(m))
    again = answer_with(starter_model, "Name a colour.")
    assert first.text and first.text == "".join(pieces)
    assert again.text == first.text            # greedy: the same weights give the same words
    assert first.ttft_s > 0 and first.tokens_per_s > 0 and first.load_s > 0
    assert first.stats.completion_tokens >= 1
    assert steps[0].startswith("Loading") and steps[-1].endswith("answered")


def test_a_variant_that_does_not_fit_is_refused_with_numbers(starter_model, monkeypatch):
    import runtime.models.hardware as hardware

    monkeypatch.setattr(hardware, "available_ram", lambda: 10 * 1024**2)
    with pytest.raises(InsufficientMemoryError) as err:
        check_fits(starter_model)
    assert "does not fit" in err.value.message and "MiB" in err.value.message
    assert err.value.facts["available_bytes"] == 10 * 1024**2


def test_a_damaged_file_is_refused_before_loading(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 20)
    with pytest.raises(ModelFileError):
        answer_with(bad, "Hi")


def test_cancel_while_loading_stops_the_engine(starter_model):
    cancel = CancelToken()
    with pytest.raises(Cancelled):
        answer_with(starter_model, "Hi", cancel=cancel,
                    progress=lambda d, t, message: cancel.cancel() if message.startswith("Loading") else None)
