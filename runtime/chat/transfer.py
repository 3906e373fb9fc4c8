"""Export a conversation to Markdown (to read or share) or JSON (to import again), and import that JSON.

The JSON keeps everything a conversation needs to continue elsewhere: title, system prompt, sampling,
context policy, which model or server answered (the model's file name, not its full path), and every
message with its stats. It never holds an API key. Files are written safely (no half file on failure).

Import checks the whole file before it writes anything, then writes the conversation in one go; a
failure part-way removes what was written, so a bad file never leaves half a conversation behind.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from runtime import paths
from runtime.engine.types import ReplyStats, SamplingParams
from runtime.errors import TransferError
from runtime.store.conversations import BACKENDS, CONTEXT_POLICIES, ROLES, ConversationStore

FORMAT = "model-workbench-conversation"
VERSION = 1
MAX_IMPORT_BYTES = 64 << 20
ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


def conversation_document(store: ConversationStore, conversation_id: int) -> dict:
    """The conversation as the JSON-ready dict that ``export_json`` writes."""
    conv = store.get_conversation(conversation_id)
    return {
        "format": FORMAT, "version": VERSION,
        "title": conv.title,
        "created_at": _iso(conv.created_at),
        "system_prompt": conv.system_prompt,
        "sampling": conv.sampling.to_dict(),
        "context_policy": conv.context_policy,
        "backend": conv.backend,
        "model": Path(conv.model_ref).name if conv.backend == "local" else conv.model_ref,
        "remote_base_url": conv.remote_base_url if conv.backend == "remote" else "",
        "messages": [{"role": m.role, "content": m.content, "created_at": _iso(m.created_at),
                      "stats": m.stats.to_dict() if m.stats is not None else None}
                     for m in store.messages(conversation_id)],
    }


def export_json(store: ConversationStore, conversation_id: int, path: str | Path) -> Path:
    text = json.dumps(conversation_document(store, conversation_id), indent=2, ensure_ascii=False)
    return paths.write_safely(Path(path), lambda handle: handle.write(text + "\n"), binary=False)


def conversation_markdown(store: ConversationStore, conversation_id: int) -> str:
    """The conversation as Markdown: a heading per message, the reply figures in small print."""
    doc = conversation_document(store, conversation_id)
    answered_by = doc["model"] or "an unknown model"
    if doc["backend"] == "remote":
        answered_by = f"{answered_by} on {doc['remote_base_url']}"
    lines = [f"# {doc['title']}", "",
             f"*Exported from Model Workbench on {dt.date.today().isoformat()} · answered by {answered_by}*", ""]
    if doc["system_prompt"]:
        lines += ["**System prompt:**", "", _quoted(doc["system_prompt"]), ""]
    for message in doc["messages"]:
        lines += [f"## {ROLE_HEADINGS.get(message['role'], message['role'])}", "", message["content"], ""]
        if message["stats"]:
            lines += [f"<sub>{ReplyStats.from_dict(message['stats']).summary()}</sub>", ""]
    return "\n".join(lines)


def export_markdown(store: ConversationStore, conversation_id: int, path: str | Path) -> Path:
    text = conversation_markdown(store, conversation_id)
    return paths.write_safely(Path(path), lambda handle: handle.write(text), binary=False)


def import_json(store: ConversationStore, path: str | Path) -> int:
    """Add the conversation in ``path`` (written by ``export_json``) to the store; return its id.

    Raises TransferError saying what is wrong with the file; nothing is written then.
    """
    path = Path(path)
    doc = _read_document(path)
    conversation = _checked(doc, path)
    conv = store.create_conversation(**conversation["fields"])
    try:
        for role, content, stats in conversation["messages"]:
            store.add_message(conv.id, role, content, stats)
    except BaseException:
        store.delete_conversation(conv.id)  # never half a conversation
        raise
    return conv.id


def _read_document(path: Path) -> dict:
    try:
        size = path.stat().st_size
        if size > MAX_IMPORT_BYTES:
            raise TransferError(f"{path.name} is {size >> 20} MiB: too big to be an exported conversation.",
                                path=path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TransferError(f"{path} does not exist.", path=path, hint="Choose the .json file you exported.") from None
    except IsADirectoryError:
        raise TransferError(f"{path} is a folder.", path=path, hint="Choose the .json file you exported.") from None
    except UnicodeDecodeError:
        raise TransferError(f"{path.name} is not a text file, so it is not an exported conversation.",
                            path=path) from None
    except OSError as exc:
        raise TransferError(f"{path.name} cannot be read: {exc.strerror or exc}.", path=path,
                            hint="Check that the file is readable by you.") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        hint = ("This looks like a Markdown export, which is for reading: import the .json export instead."
                if text.lstrip().startswith("#") else TransferError.default_hint)
        raise TransferError(f"{path.name} is not valid JSON, so it is not an exported conversation.",
                            path=path, hint=hint, details=str(exc)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
        raise TransferError(f"{path.name} is JSON, but not a conversation exported by Model Workbench "
                            "(it has no list of messages).", path=path)
    if doc.get("format", FORMAT) != FORMAT or not isinstance(doc.get("version", VERSION), int):
        raise TransferError(f"{path.name} is not a Model Workbench conversation (its format is "
                            f"{str(doc.get('format'))[:60]!r}).", path=path)
    if doc.get("version", VERSION) > VERSION:
        raise TransferError(f"{path.name} was exported by a newer Model Workbench (format version "
                            f"{doc['version']}).", path=path, hint="Update Model Workbench, then import it again.")
    return doc


def _checked(doc: dict, path: Path) -> dict:
    """The store fields and messages of ``doc``, every value checked (TransferError names the bad one)."""
    messages = []
    for index, message in enumerate(doc["messages"], 1):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(
                message.get("content"), str):
            raise TransferError(f"Message {index} in {path.name} is not a message: it needs a role "
                                f"({', '.join(ROLES)}) and a text content.", path=path)
        stats = message.get("stats")
        messages.append((message["role"], message["content"],
                         ReplyStats.from_dict(stats) if isinstance(stats, dict) else None))
    try:
        sampling = SamplingParams.from_dict(doc.get("sampling") if isinstance(doc.get("sampling"), dict) else {})
        sampling.validate()
    except (TypeError, ValueError) as exc:
        raise TransferError(f"The sampling settings in {path.name} are not usable: {exc}", path=path) from None
    backend = doc.get("backend") if doc.get("backend") in BACKENDS else "local"
    title = doc.get("title") if isinstance(doc.get("title"), str) and doc["title"].strip() else path.stem
    fields = {
        "title": title.strip()[:200], "backend": backend,
        "model_ref": str(doc.get("model") or ""),
        "remote_base_url": str(doc.get("remote_base_url") or "") if backend == "remote" else "",
        "system_prompt": doc.get("system_prompt") if isinstance(doc.get("system_prompt"), str) else "",
        "sampling": sampling,
        "context_policy": doc.get("context_policy") if doc.get("context_policy") in CONTEXT_POLICIES
        else "drop_oldest",
    }
    return {"fields": fields, "messages": messages}


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")
