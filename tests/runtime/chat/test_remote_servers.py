"""Remote server addresses are checked in words before any network call; API keys go to the keyring."""
from __future__ import annotations

import pytest
from keyring.backends import fail
from memory_keyring import MemoryKeyring

from runtime.chat.remote_servers import SERVICE, ServerKeys, keyring_status
from runtime.engine.client import ADD_SCHEME_HINT, ChatClient, check_base_url
from runtime.errors import RemoteServerError


@pytest.mark.parametrize("text, words", [
    ("192.168.1.20:8080/v1", "missing http:// or https://"),
    ("localhost:8080", "missing http:// or https://"),
    ("", "Enter the server's address"),
    ("ftp://host/v1", "starts with ftp://"),
    ("http://", "no host name"),
    ("http://host:99999/v1", "port"),
])
def test_a_wrong_address_is_explained(text, words):
    with pytest.raises(RemoteServerError) as caught:
        check_base_url(text)
    assert words in caught.value.message
    with pytest.raises(RemoteServerError) as by_client:  # every client makes the same check
        ChatClient(text)
    assert by_client.value.message == caught.value.message
    if "missing" in words:
        assert caught.value.hint == ADD_SCHEME_HINT == "Add http:// or https:// in front, e.g. http://192.168.1.20:8080/v1"


def test_a_good_address_is_trimmed():
    assert check_base_url("  http://127.0.0.1:9/v1/ ") == "http://127.0.0.1:9/v1"
    assert check_base_url("https://example.org/v1") == "https://example.org/v1"


def test_keys_go_to_the_keyring(use_keyring):
    ring = use_keyring(MemoryKeyring())
    keys = ServerKeys()
    assert keyring_status() == (True, "")
    assert keys.put("server-1", " sk-secret ") == "keyring"
    assert ring.items == {(SERVICE, "server-1"): "sk-secret"}
    assert ServerKeys().get("server-1") == "sk-secret"  # another session finds it
    keys.forget("server-1")
    assert ring.items == {} and keys.get("server-1") == ""


def test_without_a_keyring_keys_last_for_this_session_only(use_keyring):
    use_keyring(fail.Keyring())
    ok, why = keyring_status()
    assert not ok and "this session only" in why
    keys = ServerKeys()
    assert keys.put("server-1", "sk-secret") == "session"
    assert keys.get("server-1") == "sk-secret"
    assert ServerKeys().get("server-1") == ""  # a new session (restart) has no key
