"""The GPU list for fit badges comes from a short-lived engine child, the same registry the engine uses."""
from __future__ import annotations

import psutil

from runtime.engine import local
from runtime.engine.server import gpu_devices


def test_the_child_lists_what_the_engine_would_use_and_is_gone_afterwards(monkeypatch):
    monkeypatch.setattr(local, "_GPUS", None)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    found = local.list_gpus()
    assert [d.__dict__ for d in found] == [d.__dict__ for d in gpu_devices()]  # [] on a CPU-only build
    assert {p.pid for p in psutil.Process().children(recursive=True) if p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE} <= before
    monkeypatch.setattr(local, "ChildProcess", None)  # asked once per process: no second child
    assert local.list_gpus() == found
