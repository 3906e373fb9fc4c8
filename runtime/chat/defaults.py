"""What a new chat starts from: the system prompt, sampling and context policy the person saved
with "Save as default" (never the last chat's settings).

Kept as JSON in the app's folder (``chat-defaults.json``), shared by the window and ``workbench
chat``. A missing or unreadable file means the built-in defaults; a value that no longer makes sense
(hand-edited, or from another version) is replaced by the built-in one, so a new chat always starts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from runtime import paths
from runtime.engine.types import SamplingParams
from runtime.store.conversations import CONTEXT_POLICIES


@dataclass
class ChatDefaults:
    system_prompt: str = ""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    context_policy: str = "drop_oldest"

    def to_dict(self) -> dict:
        return {"system_prompt": self.system_prompt, "sampling": self.sampling.to_dict(),
                "context_policy": self.context_policy}

    @classmethod
    def from_dict(cls, data: dict) -> "ChatDefaults":
        """The defaults in ``data``; each missing or unusable value falls back to the built-in one."""
        data = data if isinstance(data, dict) else {}
        prompt = data.get("system_prompt")
        policy = data.get("context_policy")
        try:
            sampling = SamplingParams.from_dict(data.get("sampling")).validate()
        except (TypeError, ValueError):
            sampling = SamplingParams()
        return cls(system_prompt=prompt if isinstance(prompt, str) else "", sampling=sampling,
                   context_policy=policy if policy in CONTEXT_POLICIES else "drop_oldest")


def defaults_path() -> Path:
    return paths.app_home() / "chat-defaults.json"


def load_defaults() -> ChatDefaults:
    """The saved defaults, or the built-in ones when none are saved or the file cannot be read."""
    try:
        data = json.loads(defaults_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ChatDefaults()
    return ChatDefaults.from_dict(data)


def save_defaults(defaults: ChatDefaults) -> Path:
    """Save these as what new chats start from (written safely: a failure keeps the old file).

    Raises ExportError when the file cannot be written.
    """
    defaults.sampling.validate()
    if defaults.context_policy not in CONTEXT_POLICIES:
        raise ValueError(f"Unknown context policy {defaults.context_policy!r}.")
    text = json.dumps(defaults.to_dict(), indent=2)
    path = defaults_path()
    paths.ensure_dir(path.parent)
    return paths.write_safely(path, lambda handle: handle.write(text + "\n"), binary=False)


def reset_defaults() -> None:
    """Back to the built-in defaults."""
    defaults_path().unlink(missing_ok=True)
