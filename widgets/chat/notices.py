"""What the Chat tab's banner says when nothing could be sent, the engine died, or a reply is not saved.

Each function puts one message in plain words on a ``Banner``, with the action buttons that fit
("stop_reply", "use_local", "reload", "copy_reply", "retry_save"); the tab carries the actions out.
"""
from __future__ import annotations

from runtime.errors import EngineBuildMismatch
from widgets.workers import error_details, error_text


def one_at_a_time(banner, elsewhere: str | None) -> None:
    """Send while a reply streams (one reply at a time); ``elsewhere``: the title of the conversation
    it streams into, None for the one on screen. The typed text stays."""
    if elsewhere is None:
        banner.show_message("Wait for this reply to finish, or press Stop; your message stays in the box.", "info")
        return
    banner.show_message(
        f"Nothing was sent: a reply is still being written in “{elsewhere}” and only one reply "
        "is written at a time. Your message stays in the box: send it when that reply is done, or stop it.",
        "info", "stop_reply", "Stop that reply")


def not_ready(banner, session) -> bool:
    """Say why nothing was sent to the ChatSession's target; False (nothing said) when its engine died."""
    if session.loading:
        what = ("The server is still being checked" if session.loading_kind == "remote"
                else "The model is still loading")
        banner.show_message(f"{what}: nothing was sent. Your message stays in the box.", "info")
    elif session.active == "remote":
        text = ("Remote server is chosen but not connected, so nothing was sent (not to this computer either). "
                "Press Connect on the right; your message stays in the box.")
        if session.local_ready:
            banner.show_message(text, "info", "use_local", f"Use {session.local_label} on this computer")
        else:
            banner.show_message(text, "info")
    elif session.engine_dead:
        return False
    else:
        banner.show_message("Load a model (or connect to a server) first, on the right.", "info")
    return True


def engine_died(banner, error) -> None:
    """Say why the engine died; offer Reload unless this llama.cpp build cannot run on this CPU."""
    if isinstance(error, EngineBuildMismatch):
        banner.show_error(error, after="This conversation is saved.")
    else:
        banner.show_message(f"{error.message} This conversation is saved; reload the model to continue.",
                            "error", action="reload", action_text="Reload", details=error_details(error))


def unsaved(banner, error, final: bool, before: str = "") -> None:
    """Say that a reply is not saved: retrying in the background, or (``final``) failed, with Retry."""
    if final:
        text = (f"The reply could not be saved. {error_text(error)}\nIt is still shown here: click Retry "
                "once that is done, or Copy reply to keep it elsewhere.")
    else:
        text = (f"The reply is not saved yet ({error.message}). Retrying in the background; "
                "the reply stays shown here meanwhile.")
    text = f"{before}\n{text}" if before else text
    more = (("retry_save", "Retry"),) if final else ()
    banner.show_message(text, "error" if final else "warning", "copy_reply", "Copy reply", more,
                        details=error_details(error))
