"""The variant picker: library groups, ticks that survive a library refresh, the reference list."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from widgets.bench.picker import OTHER_FILES, VariantPicker


def row(name: str, quant: str, size: int = 1000):
    info = SimpleNamespace(file_type=quant)
    return SimpleNamespace(entry=SimpleNamespace(name=name, path=f"/models/{name}", size_bytes=size, info=info,
                                                 repo_id=None))


@pytest.fixture
def picker(qtbot):
    widget = VariantPicker()
    qtbot.addWidget(widget)
    return widget


def test_a_group_is_offered_highest_precision_first_and_ticks_survive_a_refresh(picker):
    rows = [row("Tiny-Q4_0.gguf", "Q4_0"), row("Tiny-F16.gguf", "F16"), row("Other-Q8_0.gguf", "Q8_0")]
    picker.set_library(rows)
    assert picker.groups.count() == 2
    picker.select_path("/models/Tiny-Q4_0.gguf")
    assert picker.chosen_paths() == ["/models/Tiny-F16.gguf", "/models/Tiny-Q4_0.gguf"]
    picker.tick(["/models/Tiny-F16.gguf"])
    assert [picker.reference.itemText(i) for i in range(picker.reference.count())][1:] == ["Tiny-F16.gguf · F16 · 1000 B"]
    # a new file lands (a compress job, a download): the library refreshes
    picker.set_library(rows + [row("Tiny-Q8_0.gguf", "Q8_0")])
    assert picker.chosen_paths() == ["/models/Tiny-F16.gguf", "/models/Tiny-Q8_0.gguf"]   # Q4_0 stays unticked
    picker.select_path("/models/Tiny-Q4_0.gguf")                                          # asked again: all of it
    assert len(picker.chosen_paths()) == 3 and picker.reference_path() is None


def test_files_from_anywhere(picker, tmp_path):
    picker.set_library([row("Tiny-F16.gguf", "F16")])
    f = tmp_path / "elsewhere.gguf"
    f.write_bytes(b"x" * 10)
    picker.choose_files = lambda parent, title: [str(f)]
    picker.add_button.click()
    assert picker.groups.currentData() == OTHER_FILES and picker.chosen_paths() == [str(f)]
    picker.set_library([row("Tiny-F16.gguf", "F16")])          # kept across refreshes
    assert picker.groups.currentData() == OTHER_FILES and picker.chosen_paths() == [str(f)]
