"""The target that answered a conversation, compared with the one messages go to now.

A conversation remembers its backend, model and saved server (or address). Reopening one answered
by another target keeps sending to the current one; these functions tell whether the two are the
same, name the conversation's target in words, and pre-set the picker to it.
"""
from __future__ import annotations

from widgets.chat.session import model_label


def same_target(session, conv) -> bool:
    """Whether the next message goes to the model or server (and model) that answered ``conv``."""
    if conv.backend == "local":
        return session.active == "local" and session.engine is not None and session.local_model_ref == conv.model_ref
    if session.active != "remote" or session.remote is None:
        return False
    return _same_saved_server(session, conv) or (
        _same_address(session, conv) and (not conv.model_ref or conv.model_ref == session.remote.model))


def same_server(session, conv) -> bool:
    """Whether the connected server (chosen or not, whatever its model) is the one ``conv`` used."""
    return session.remote is not None and (_same_saved_server(session, conv) or _same_address(session, conv))


def target_text(conv, session, local_form, saved_servers) -> str:
    """``conv``'s target in words: "SmolLM2 Q4_K_M on this computer", "server 'Lab' (model …)"."""
    if conv.backend == "local":
        if not conv.model_ref:
            return "a model on this computer"
        if conv.model_ref == session.local_model_ref and session.local_label:
            return f"{session.local_label} on this computer"
        row = local_form.row_for(conv.model_ref)
        label = model_label(conv.model_ref, row.entry.info.file_type if row is not None else "")
        return f"{label} on this computer"
    server = saved_servers.get(conv.remote_server_id)
    where = f"server '{server.name}'" if server else f"the server at {conv.remote_base_url}"
    return f"{where} (model {conv.model_ref or 'its default'})"


def preset_picker(picker, conv) -> str | None:
    """Fill the picker with what ``conv`` used (nothing is loaded or connected); the kind to choose, if any."""
    if conv.backend == "remote":
        form = picker.remote
        if not (conv.remote_server_id and form.select_server(conv.remote_server_id)):
            form.select_server(None)
            form.servers.setCurrentIndex(form.servers.count() - 1)  # "New server…"
            form.base_url.setText(conv.remote_base_url)
            form.model.setText(conv.model_ref)
        return "remote"
    if conv.model_ref:
        picker.local.select_path(conv.model_ref)
        return "local"
    return None


def _same_saved_server(session, conv) -> bool:
    return conv.remote_server_id is not None and conv.remote_server_id == session.remote_server_id


def _same_address(session, conv) -> bool:
    return session.remote.base_url.rstrip("/") == conv.remote_base_url.rstrip("/")
