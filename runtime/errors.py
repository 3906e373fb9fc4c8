"""One small error hierarchy for the whole app.

Every error carries the facts a user needs (``path``, ``repo_id``, ...) and a ``hint``: what to do
next. The UI and the CLI show ``str(err)`` followed by the hint; they never parse messages.
``Cancelled`` is deliberately *not* a WorkbenchError: a cancel is not a failure.
"""
from __future__ import annotations


class Cancelled(Exception):
    """Raised by long work when its cancel token was set. Never shown as an error."""


class WorkbenchError(Exception):
    """Root of all errors the app expects and explains."""

    default_hint = ""
    kind = "error"  # a stable name for this class, used across the engine's HTTP boundary

    def __init__(self, message: str, *, hint: str | None = None, path: str | None = None, **facts):
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.path = str(path) if path is not None else None
        self.facts = facts

    def user_text(self) -> str:
        """The message and the hint, as one paragraph for a dialog or a terminal."""
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class ModelFileError(WorkbenchError, ValueError):
    """A model file that is missing, not a GGUF, damaged or otherwise unreadable."""
    kind = "model_file"

    default_hint = "Choose a complete .gguf file, or download or convert the model again."


class UnsupportedArchitectureError(ModelFileError):
    """A valid GGUF whose architecture this build of llama.cpp cannot run."""
    kind = "unsupported_architecture"


class InsufficientMemoryError(WorkbenchError, MemoryError):
    """The model (plus its context) needs more memory than the machine has free."""
    kind = "insufficient_memory"


class EngineError(WorkbenchError, RuntimeError):
    """The inference engine failed to start, crashed or answered nonsense."""
    kind = "engine"

    default_hint = "Reload the model. If it keeps failing, try a smaller context length or fewer GPU layers."


class ContextOverflow(EngineError):
    """The conversation no longer fits in the loaded context length."""
    kind = "context_overflow"

    default_hint = "Start a new chat, or reload the model with a larger context length."


class EngineCrashed(EngineError):
    """The engine process died while it was loading or generating."""
    kind = "engine_crashed"


class RemoteServerError(WorkbenchError, ConnectionError):
    """An OpenAI-compatible server that does not answer, rejects the key or returns an error."""
    kind = "remote_server"

    default_hint = "Check the server address and API key, and that the server is running."


class TemplateError(WorkbenchError, ValueError):
    """The model's chat template could not be rendered for this conversation."""
    kind = "template_error"

    default_hint = "This model's chat template is broken or unsupported; try another model or a plain prompt."


class StoreError(WorkbenchError, OSError):
    """The app's database could not be read or written."""
    kind = "store"


def error_class_for(kind: str | None, default: type[WorkbenchError]) -> type[WorkbenchError]:
    """The WorkbenchError subclass named by ``kind`` (see each class's ``kind``), else ``default``."""
    pending = list(WorkbenchError.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.kind == kind:
            return cls
        pending.extend(cls.__subclasses__())
    return default
