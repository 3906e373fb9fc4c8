"""The access token: HF_TOKEN first, else the OS keyring (here an in-memory keyring backend); never shown."""
from __future__ import annotations

import logging

import pytest
from keyring.backends import fail

from memory_keyring import MemoryKeyring
from runtime.errors import WorkbenchError
from runtime.hub import token as tok

SECRET = "hf_ThisIsTheSecret0123456789"


class BrokenKeyring(MemoryKeyring):
    """A keyring whose every call fails, with the secret in its error text (the worst case)."""

    def get_password(self, service, username):
        raise RuntimeError(f"dbus exploded while reading {SECRET}")

    def set_password(self, service, username, password):
        raise RuntimeError(f"cannot store {password}")


@pytest.fixture(autouse=True)
def no_hf_token(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)


def test_hf_token_comes_first(use_keyring, monkeypatch):
    ring = use_keyring(MemoryKeyring())
    ring.set_password(tok.SERVICE, tok.USER, "hf_from_keyring")
    assert tok.get_token() == "hf_from_keyring" and tok.token_source() == "keyring"
    monkeypatch.setenv("HF_TOKEN", "  hf_from_env \n")
    assert tok.get_token() == "hf_from_env" and tok.token_source() == "env"
    monkeypatch.setenv("HF_TOKEN", "")
    assert tok.get_token() == "hf_from_keyring"


def test_save_get_forget(use_keyring):
    ring = use_keyring(MemoryKeyring())
    assert tok.keyring_available() == (True, "")
    assert tok.get_token() is None and tok.token_source() is None
    tok.save_token(f"  {SECRET}  ")
    assert ring.items == {("model-workbench", "huggingface"): SECRET}
    assert tok.get_token() == SECRET
    assert tok.forget_token() is True
    assert tok.get_token() is None and tok.forget_token() is False


def test_no_keyring_says_why_and_points_at_hf_token(use_keyring):
    use_keyring(fail.Keyring())
    ok, why = tok.keyring_available()
    assert not ok and "HF_TOKEN" in why and "keyring" in why.lower()
    assert tok.get_token() is None and tok.token_source() is None
    with pytest.raises(WorkbenchError) as info:
        tok.save_token(SECRET)
    assert "HF_TOKEN" in info.value.hint and SECRET not in info.value.user_text()


def test_a_broken_keyring_never_leaks_the_token(use_keyring, caplog):
    """The backend's own error text (which here quotes the secret) is never passed on."""
    caplog.set_level(logging.DEBUG)
    use_keyring(BrokenKeyring())
    assert tok.get_token() is None
    with pytest.raises(WorkbenchError) as info:
        tok.save_token(SECRET)
    assert "RuntimeError" in info.value.message
    assert SECRET not in info.value.user_text() and SECRET not in str(info.value.to_payload())
    assert info.value.__cause__ is None and info.value.__context__ is None  # not even kept behind the error
    assert SECRET not in caplog.text


@pytest.mark.parametrize("bad", ["", "   ", "hf_two words", "hf_line\nbreak", "hf_\x07bell"])
def test_tokens_that_cannot_be_right_are_refused_without_echo(use_keyring, bad):
    ring = use_keyring(MemoryKeyring())
    with pytest.raises(WorkbenchError) as info:
        tok.save_token(bad)
    if bad.strip():
        assert bad.strip() not in info.value.user_text()
    assert ring.items == {}


def test_forget_with_a_broken_keyring_says_so(use_keyring):
    use_keyring(BrokenKeyring())
    with pytest.raises(WorkbenchError, match="refused to remove"):
        tok.forget_token()
