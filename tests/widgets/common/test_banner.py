"""The banner says what went wrong in words; the technical side is one click away (Details)."""
from __future__ import annotations

import errno
import socket

from runtime.engine.client import ChatClient
from runtime.errors import RemoteServerError
from widgets.common.banner import Banner
from widgets.workers import error_details, error_text


def refused_error() -> RemoteServerError:
    """The error a chat gets from a port nothing listens on (a real connection attempt)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free, and closed again before the client tries it
    try:
        ChatClient(f"http://127.0.0.1:{port}/v1").check()
    except RemoteServerError as exc:
        return exc
    raise AssertionError("a closed port answered")


def test_a_refused_connection_is_said_in_words_with_the_errno_behind_details(qtbot):
    error = refused_error()
    assert "Nothing answered at 127.0.0.1:" in error.message and "running" in error.hint
    assert "Errno" not in error_text(error) and "111" not in error_text(error)
    assert f"[Errno {errno.ECONNREFUSED}]" in error_details(error)

    banner = Banner()
    qtbot.addWidget(banner)
    banner.show()
    banner.show_error(error, before="The server was not connected.")
    assert banner.text().startswith("The server was not connected.\nNothing answered")
    assert banner.details_button.isVisible() and not banner.details_view.isVisible()
    banner.details_button.click()
    assert banner.details_view.isVisible() and "ConnectionRefusedError" in banner.details_view.toPlainText()
    assert banner.details_button.text() == "Hide details"


def test_a_message_without_details_has_no_details_button(qtbot):
    banner = Banner()
    qtbot.addWidget(banner)
    banner.show()
    banner.show_message("Saved.", "info")
    assert not banner.details_button.isVisible() and banner.details() == ""
    banner.show_error(RemoteServerError("'x' is missing http:// in front."))  # nothing more to tell
    assert not banner.details_button.isVisible()


def test_an_unexpected_error_keeps_its_python_text_out_of_the_message():
    error = KeyError("sampling_json")
    assert "KeyError" not in error_text(error) and "sampling_json" not in error_text(error)
    assert "KeyError" in error_details(error) and "sampling_json" in error_details(error)
