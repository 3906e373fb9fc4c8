"""``python -m app``: the GUI with no arguments, the command line (``app.cli``) with any.

``--self-test [--model PATH_OR_NAME]`` (``app.self_test``) opens the window offscreen, loads a model
through the engine child process, generates a few tokens, prints one line and exits 0 (or 1): the
check a frozen build (build_installer.spec) and CI run.
"""
from __future__ import annotations

import sys


def run_gui() -> int:
    """Open the main window; background work (library scan, versions) starts once it is shown."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from app.terminate import CloseOnTerminate

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Model Workbench")
    set_window_icon(app)
    window = MainWindow()
    window.show()
    terminate = CloseOnTerminate(window.close)  # logout, shutdown, kill: closed as by Quit, state saved
    app.commitDataRequest.connect(lambda _manager: window.save_state())  # the desktop session is ending
    QTimer.singleShot(0, window.start_background_work)
    status = app.exec()
    terminate.uninstall()
    from widgets.workers import shutdown_all

    shutdown_all()  # join anything still running before Qt objects are torn down
    return status


def set_window_icon(app) -> None:
    """The app's icon (resources/icons/app.png, drawn by scripts/make_icon.py) on every window."""
    from importlib import resources

    from PySide6.QtGui import QIcon

    icon = resources.files("resources").joinpath("icons", "app.png")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))


def run_child(module: str, args: list[str]) -> int:
    """Run ``module`` as ``__main__`` with ``args``: how a frozen app starts its child processes.

    ``runtime.procs`` spawns ``APP --workbench-child MODULE ARGS...`` when there is no ``python -m``.
    """
    import runpy

    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


def self_test_main(args: list[str]) -> int:
    """``--self-test [--model PATH_OR_NAME]``: see ``app.self_test``."""
    import argparse

    parser = argparse.ArgumentParser(prog="model-workbench --self-test",
                                     description="Open the window offscreen, load a model in the engine "
                                                 "process, generate a few tokens, print one line.")
    parser.add_argument("--model", help="a .gguf file or a library name (default: the starter model)")
    options = parser.parse_args(args)
    from app.self_test import run_self_test

    return run_self_test(options.model)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--workbench-child"]:
        if len(argv) < 2:
            print("usage: --workbench-child MODULE [ARGS...]", file=sys.stderr)
            return 2
        return run_child(argv[1], argv[2:])
    if argv[:1] == ["--self-test"]:
        return self_test_main(argv[1:])
    if argv:
        from app.cli import main as cli_main

        return cli_main(argv)
    return run_gui()


if __name__ == "__main__":
    sys.exit(main())
