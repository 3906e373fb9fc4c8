"""The Token… dialog: keep a Hugging Face access token in the OS keyring, or forget it.

It never shows a saved token: it says only where one is found (HF_TOKEN, the keyring, nowhere).
Every keyring call may block on an unlock prompt, so each runs on a worker.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                               QVBoxLayout)

from widgets.workers import Worker, error_text

INTRO = ("Gated and private models need an access token from your Hugging Face account "
         "(create one at huggingface.co/settings/tokens; “read” access is enough).")


def token_state(_job=None) -> tuple[str | None, bool, str]:
    """(where a token is found, whether a keyring can keep one, why not). Runs on a worker."""
    from runtime.hub.token import keyring_available, token_source

    ok, why = keyring_available()
    return token_source(), ok, why


class TokenDialog(QDialog):
    """Enter a token once (saved in the OS keyring), or forget the saved one."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Hugging Face access token")
        self.setMinimumWidth(480)
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self.state = QLabel("Looking for a saved token…")
        self.state.setWordWrap(True)
        self.state.setTextFormat(Qt.TextFormat.PlainText)
        self.field = QLineEdit()
        self.field.setEchoMode(QLineEdit.EchoMode.Password)
        self.field.setPlaceholderText("hf_…")
        self.save_button = QPushButton("Save in keyring")
        self.forget_button = QPushButton("Forget saved token")
        self.save_button.setEnabled(False)
        self.forget_button.setEnabled(False)
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.result_label.setTextFormat(Qt.TextFormat.PlainText)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.field, 1)
        row.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.state)
        layout.addLayout(row)
        layout.addWidget(self.forget_button)
        layout.addWidget(self.result_label)
        layout.addWidget(close)
        self.save_button.clicked.connect(self.save)
        self.forget_button.clicked.connect(self.forget)
        self.field.returnPressed.connect(self.save)
        self.keyring_ok = False
        self._workers: list[Worker] = []
        self.refresh()

    @property
    def busy(self) -> bool:
        return any(w.running for w in self._workers)

    def refresh(self) -> None:
        self._run(token_state, self._on_state)

    def _on_state(self, state) -> None:
        from runtime.hub.token import ENV_VAR

        source, ok, why = state
        self.keyring_ok = ok
        if source == "env":
            text = (f"A token is set in the {ENV_VAR} environment variable; it is used first, before any "
                    "saved one.")
        elif source == "keyring":
            text = "A token is saved in the OS keyring and is used for Hugging Face."
        else:
            text = "No token is saved: public models download without one."
        if not ok:
            text += f"\n{why}"
        self.state.setText(text)
        self.save_button.setEnabled(ok)
        self.field.setEnabled(ok)
        self.forget_button.setEnabled(source == "keyring")

    def save(self) -> None:
        from runtime.hub.token import save_token

        token = self.field.text()
        if not token.strip() or not self.keyring_ok:
            return
        self.field.clear()   # never kept on screen, even hidden
        self._run(lambda job: save_token(token), lambda _r: self._said("Saved in the OS keyring."))

    def forget(self) -> None:
        from runtime.hub.token import forget_token

        self._run(lambda job: forget_token(),
                  lambda removed: self._said("The saved token is forgotten." if removed else "No token was saved."))

    def _said(self, text: str) -> None:
        self.result_label.setText(text)
        self.refresh()

    def _run(self, fn, on_done) -> None:
        worker = Worker(fn, name="hub-token")
        worker.sig_done.connect(on_done)
        worker.sig_failed.connect(lambda error: self.result_label.setText(error_text(error)))
        worker.sig_finished.connect(lambda: self._workers.remove(worker) if worker in self._workers else None)
        self._workers.append(worker)
        worker.start()

    def done(self, result: int) -> None:  # noqa: D102 - join the keyring calls before closing
        for worker in list(self._workers):
            worker.wait()
        super().done(result)

    def shutdown(self) -> None:
        for worker in list(self._workers):
            worker.wait()
