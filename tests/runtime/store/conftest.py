"""Fixtures of the store tests: one database file per test."""
from __future__ import annotations

import pytest


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "workbench.sqlite3"
