"""Fixtures for the Models tab tests: the tab on the test's database, and repos on the fake hub."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

STARTER_REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"   # a catalog repo, so it is listed with a ★


def padded_copy(src: Path, dest: Path, size: int) -> Path:
    """``src`` (a real GGUF, so its header reads) grown to ``size`` bytes with a sparse tail."""
    shutil.copyfile(src, dest)
    with open(dest, "r+b") as fh:
        fh.truncate(size)
    return dest


@pytest.fixture(scope="session")
def variant_files(tmp_path_factory, starter_model) -> dict[str, Path]:
    """Three variants of the starter as files on disk: the real Q4_1, and padded Q8_0 and F16 copies."""
    folder = tmp_path_factory.mktemp("variants")
    return {
        "SmolLM2-135M-Instruct-Q4_1.gguf": starter_model,
        "SmolLM2-135M-Instruct-Q8_0.gguf": padded_copy(starter_model, folder / "q8.gguf", 150 * 2**20),
        "SmolLM2-135M-Instruct-F16.gguf": padded_copy(starter_model, folder / "f16.gguf", 280 * 2**20),
    }


@pytest.fixture
def starter_repo(hub, variant_files):
    """The starter's GGUF repo on the fake hub, with three variants and a README."""
    hub.add_repo(STARTER_REPO, {**variant_files, "README.md": "# SmolLM2 135M Instruct GGUF"},
                 downloads=900, likes=40, licence="apache-2.0")
    return hub


@pytest.fixture
def models_tab(qtbot, store):
    """A ModelsTab on the test's own database; shut down (threads joined) at the end."""
    from widgets.models.tab import ModelsTab

    tab = ModelsTab(store)
    qtbot.addWidget(tab, before_close_func=lambda w: w.shutdown())
    tab.resize(1280, 800)
    tab.show()
    return tab
