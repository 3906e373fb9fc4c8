"""One small error hierarchy for the whole app.

Every error carries the facts a user needs (``path``, ``repo_id``, ...) and a ``hint``: what to do
next. The UI and the CLI show ``str(err)`` followed by the hint; they never parse messages.
``Cancelled`` is deliberately *not* a WorkbenchError: a cancel is not a failure.

Errors cross process and HTTP boundaries as ``err.to_payload()`` (a JSON-safe dict) and come back as
the same class with ``from_payload(payload, default_cls)``.
"""
from __future__ import annotations

import json

# How to rebuild llama.cpp for this CPU (scripts/setup.sh rebuilds when the stamp is missing).
REBUILD_LLAMA_HINT = (
    "Rebuild llama.cpp for this computer: in the Model Workbench folder run "
    "`rm .venv/llama-build.stamp && bash scripts/setup.sh`. It compiles llama.cpp again (about "
    "6-10 minutes) without instructions this CPU cannot run (such as AMX). Then reload the model; "
    "the conversation is kept."
)


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

    def to_payload(self) -> dict:
        """This error as a JSON-safe dict: kind, message, hint, path and facts (see ``from_payload``)."""
        return {"kind": self.kind, "message": self.message, "hint": self.hint, "path": self.path,
                "facts": {str(k): _json_safe(v) for k, v in self.facts.items()}}


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


class EngineBuildMismatch(EngineCrashed):
    """The engine died on an instruction this CPU cannot run: llama.cpp was built for another CPU."""
    kind = "engine_build_mismatch"

    default_hint = REBUILD_LLAMA_HINT


class ProcessCrashed(WorkbenchError, RuntimeError):
    """A child process (quantizer, benchmark runner, ...) ended before it finished its work.

    Facts: ``exit_code``, ``signal`` (e.g. "SIGKILL", or None) and ``details`` (its last stderr lines).
    """
    kind = "process_crashed"


class ProcessTimeout(WorkbenchError, TimeoutError):
    """A child process did not get ready within its start-up time; it was stopped."""
    kind = "process_timeout"

    default_hint = "The computer may be too busy or short of memory; close other programs and try again."


class RemoteServerError(WorkbenchError, ConnectionError):
    """An OpenAI-compatible server that does not answer, rejects the key or returns an error."""
    kind = "remote_server"

    default_hint = "Check the server address and API key, and that the server is running."


class TemplateError(WorkbenchError, ValueError):
    """The model's chat template could not be rendered for this conversation."""
    kind = "template_error"

    default_hint = "This model's chat template is broken or unsupported; try another model or a plain prompt."


class BadRequest(WorkbenchError, ValueError):
    """A request a server refused as sent: a missing field, a value out of range, a body too big."""
    kind = "bad_request"  # not "invalid_request_error": from other servers, that stays a RemoteServerError

    default_hint = "Change the value the message names and try again."


class StoreError(WorkbenchError, OSError):
    """The app's database could not be read or written."""
    kind = "store"


class HubError(WorkbenchError, ConnectionError):
    """Hugging Face could not be reached or refused the request. Facts: ``repo_id``, ``filename``, ``status``."""
    kind = "hub"

    default_hint = "Check your internet connection and try again in a moment."


class RepoNotFound(HubError):
    """No such repo (or file, or revision) on the hub, or a private one this token cannot see."""
    kind = "repo_not_found"

    default_hint = "Check the spelling of the name (organisation/model). A private repo needs a token."


class GatedRepo(HubError):
    """A gated repo: the person must accept its licence on huggingface.co and give a token."""
    kind = "gated_repo"

    default_hint = ("Open the model's page on huggingface.co, accept its licence, then add an access token "
                    "(Models tab > Token..., or the HF_TOKEN environment variable).")


class BadToken(HubError):
    """The hub rejected the access token."""
    kind = "bad_token"

    default_hint = ("The access token is wrong or expired: create a new one at huggingface.co/settings/tokens "
                    "and enter it again.")


class HubOffline(HubError):
    """Offline mode (HF_HUB_OFFLINE) is on, so only files already on disk can be used."""
    kind = "hub_offline"

    default_hint = "Unset HF_HUB_OFFLINE (or turn offline mode off) to search and download."


class DownloadError(WorkbenchError, OSError):
    """A download failed after it started; what was received so far is kept for a resume."""
    kind = "download"

    default_hint = "Try again: the download continues from where it stopped."


class ChecksumMismatch(DownloadError):
    """The downloaded bytes do not match the hub's size or sha256; the file was removed, never used."""
    kind = "checksum_mismatch"

    default_hint = "The file was damaged on the way and has been removed. Download it again."


class DiskFull(DownloadError):
    """Not enough free disk space for a download (checked before it starts, and ENOSPC during it)."""
    kind = "disk_full"

    default_hint = "Free some disk space or choose another folder, then try again."


class ConversionError(WorkbenchError, ValueError):
    """A checkpoint that cannot be converted to GGUF: unsupported architecture, missing or damaged
    files, an already-quantized checkpoint. Nothing is written when it is raised before the start."""
    kind = "conversion"

    default_hint = "Check that the folder holds a complete Hugging Face checkpoint (config.json and its weights)."


class QuantizeError(WorkbenchError, RuntimeError):
    """llama.cpp's quantizer refused or failed; no partial output is left behind."""
    kind = "quantize"

    default_hint = "Choose another target type, or check that the source GGUF is complete."


class BenchError(WorkbenchError, RuntimeError):
    """A benchmark that cannot run or cannot compare: a text too short for the context, variants
    whose vocabularies differ, a reference that does not match the text. Nothing half-done is stored."""
    kind = "bench"

    default_hint = "Check the chosen models, text and options, then run the benchmark again."


class ExportError(WorkbenchError, OSError):
    """A chart or figures file could not be written; nothing (no half file) is left at the path."""
    kind = "export"

    default_hint = "Choose a folder you can write to (and with free space), then export again."


class TransferError(WorkbenchError, ValueError):
    """A conversation file that cannot be imported (not JSON, not an export, a bad message). Nothing
    is written to the store then."""
    kind = "transfer"

    default_hint = "Choose a .json file exported by Model Workbench (File > Export conversation > JSON)."


def error_class_for(kind: str | None, default: type[WorkbenchError]) -> type[WorkbenchError]:
    """The WorkbenchError class named by ``kind`` (see each class's ``kind``), else ``default``."""
    pending = [WorkbenchError]
    while pending:
        cls = pending.pop()
        if cls.kind == kind:
            return cls
        pending.extend(cls.__subclasses__())
    return default


def from_payload(payload: dict, default_cls: type[WorkbenchError]) -> WorkbenchError:
    """Rebuild the error that ``to_payload()`` described; an unknown kind becomes ``default_cls``.

    Also reads OpenAI-style error objects (``{"message": ..., "type": ...}``) from other servers:
    ``type`` stands in for ``kind``. A missing hint gives the class's default hint.
    """
    payload = payload if isinstance(payload, dict) else {"message": str(payload)}
    kind = payload.get("kind") or payload.get("type")
    cls = error_class_for(kind if isinstance(kind, str) else None, default_cls)
    message = payload.get("message")
    message = str(message) if message else "Something went wrong (no message was given)."
    hint = payload.get("hint")
    path = payload.get("path")
    facts = payload.get("facts") if isinstance(payload.get("facts"), dict) else {}
    facts = {k: v for k, v in facts.items() if k not in ("message", "hint", "path")}
    return cls(message, hint=str(hint) if hint is not None else None, path=path, **facts)


def _json_safe(value):
    """``value`` if JSON can carry it as is, else its text."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)
