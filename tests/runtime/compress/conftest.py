"""Tiny random checkpoints (tests/tiny_checkpoints.py), built once per test session and shared."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tiny_checkpoints import cached_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """``tiny_checkpoint(kind, weights="safetensors", dtype="float32") -> Path``, built on first use.

    The folders are shared by the whole session: never modify one, copy it (``copy_checkpoint``).
    """
    root = tmp_path_factory.mktemp("tiny_checkpoints")

    def get(kind: str, weights: str = "safetensors", dtype: str = "float32") -> Path:
        return cached_checkpoint(kind, root, weights=weights, dtype=dtype)

    return get


@pytest.fixture
def copy_checkpoint(tiny_checkpoint, tmp_path):
    """``copy_checkpoint(kind, weights=..., dtype=...) -> Path``: a private copy a test may damage."""
    def copy(kind: str, weights: str = "safetensors", dtype: str = "float32") -> Path:
        src = tiny_checkpoint(kind, weights, dtype)
        dst = tmp_path / f"{src.name}-copy"
        shutil.copytree(src, dst)
        return dst

    return copy
