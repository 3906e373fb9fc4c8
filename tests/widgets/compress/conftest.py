"""Fixtures for the Compress tab tests: the tab, the library rows it picks from, and helpers that wait
on real work (real GGUF reads, real quantizations in llama.cpp's child, real conversions)."""
from __future__ import annotations

import pytest

JOB_TIMEOUT_MS = 120_000


@pytest.fixture
def compress_tab(qtbot):
    """A CompressTab; shut down (running job cancelled, threads joined) at the end."""
    from widgets.compress.tab import CompressTab

    tab = CompressTab()
    qtbot.addWidget(tab, before_close_func=lambda w: w.shutdown())
    tab.resize(1200, 800)
    tab.show()
    return tab


@pytest.fixture
def library_rows(starter_model):
    """The library as the Models tab emits it (scanned for real: the starter model is in it)."""
    from widgets.models.library_model import scan_library_rows

    rows, _problems = scan_library_rows()
    return rows


def open_and_wait(qtbot, tab, path):
    """Open ``path`` as the source and return its SourceFacts (fails when it is refused)."""
    refused = []
    tab.sig_source_refused.connect(lambda p, error: refused.append(error))
    with qtbot.waitSignal(tab.sig_source_ready, timeout=60_000,
                          check_params_cb=lambda facts: facts.path == str(path)) as blocker:
        tab.open_source(str(path))
        qtbot.waitUntil(lambda: refused or blocker.signal_triggered, timeout=60_000)
        if refused:
            pytest.fail(f"the source was refused: {refused[0]}")
    return blocker.args[0]


def refused_error(qtbot, tab, path):
    """Open ``path`` and return the error the tab shows for it (fails when it is accepted)."""
    with qtbot.waitSignal(tab.sig_source_refused, timeout=60_000) as blocker:
        tab.open_source(str(path))
    return blocker.args[1]


def wait_jobs(qtbot, tab, ids, timeout=JOB_TIMEOUT_MS):
    """Wait until every job in ``ids`` has ended; return their jobs."""
    qtbot.waitUntil(lambda: all(tab.jobs.jobs[i].status in ("done", "failed", "cancelled") for i in ids),
                    timeout=timeout)
    return [tab.jobs.jobs[i] for i in ids]


def children_running(module_part: str) -> list:
    """Live child processes of this test process whose command line names ``module_part``."""
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and module_part in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def quantize_children():
    """The quantizer processes (llama.cpp) running now."""
    return children_running("quantize_child")


def converter_children():
    """The converter processes running now."""
    return children_running("runtime.compress.convert_child")


@pytest.fixture(autouse=True)
def no_leaked_children():
    """Fail a test that leaves a quantizer or converter process running."""
    before = {p.pid for p in quantize_children() + converter_children()}
    yield
    left = [p for p in quantize_children() + converter_children() if p.pid not in before]
    for proc in left:
        proc.kill()
    if left:
        pytest.fail(f"the test left {len(left)} quantizer/converter process(es) running")
