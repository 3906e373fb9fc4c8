"""Qt fixtures for the widget tests: offscreen platform, leak checks, and a real loaded chat tab."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from widgets import workers  # noqa: E402


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves worker threads running once its widgets are closed.

    Autouse fixtures are set up before ``qtbot``, so this teardown runs after qtbot has closed the
    widgets the test registered: by then every thread must have been joined.
    """
    yield
    leaked = workers.running_workers()
    if leaked:
        names = ", ".join(w.name for w in leaked)
        workers.shutdown_all(timeout_ms=30_000)
        pytest.fail(f"the test left worker threads running: {names}")


@pytest.fixture(autouse=True)
def no_leaked_engines():
    """Fail a test that leaves an engine child process behind."""
    import psutil

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    left = [p for p in psutil.Process().children(recursive=True)
            if p.pid not in before and _is_engine(p)]
    for proc in left:
        proc.kill()
    if left:
        pytest.fail(f"the test left {len(left)} engine process(es) running")


def _is_engine(proc) -> bool:
    try:
        return proc.is_running() and proc.status() != "zombie" and "runtime.engine.server" in " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001 - the process vanished meanwhile
        return False


@pytest.fixture
def store(workbench_home):
    from runtime.store.conversations import ConversationStore

    with ConversationStore() as s:
        yield s


@pytest.fixture
def window(qtbot):
    """The main window on the test's folders, without loading a model on start."""
    from app.main_window import MainWindow

    win = MainWindow(auto_load=False)
    qtbot.addWidget(win)
    win.show()
    return win


@pytest.fixture
def chat_tab(qtbot, store):
    """A ChatTab on the test's own database; shut down (threads joined, engine stopped) at the end."""
    from widgets.chat.tab import ChatTab

    tab = ChatTab(store)
    qtbot.addWidget(tab, before_close_func=lambda w: w.shutdown())
    tab.resize(1100, 700)
    tab.show()
    return tab


LOAD_TIMEOUT_MS = 120_000
REPLY_TIMEOUT_MS = 180_000


@pytest.fixture
def loaded_chat_tab(qtbot, chat_tab, starter_model):
    """The chat tab with the real starter model loaded in a real engine process (never mocked)."""
    from runtime.engine.types import LoadOptions

    with qtbot.waitSignal(chat_tab.sig_model_ready, timeout=LOAD_TIMEOUT_MS):
        chat_tab.load_local(str(starter_model), LoadOptions(n_ctx=2048, n_threads=2))
    chat_tab.settings_panel.sampling.max_tokens.setValue(24)
    chat_tab.settings_panel.sampling.temperature.setValue(0.0)
    return chat_tab
