"""runtime.errors: every error crosses a process or HTTP boundary as to_payload() / from_payload()."""
from __future__ import annotations

import json

import pytest

import runtime.errors as errors
from runtime.errors import EngineError, RemoteServerError, WorkbenchError, from_payload


def all_error_classes() -> list[type[WorkbenchError]]:
    found, pending = [], [WorkbenchError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == errors.__name__:
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


def test_every_kind_is_unique():
    kinds = [cls.kind for cls in all_error_classes()]
    assert len(kinds) == len(set(kinds)) and len(kinds) >= 10


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_round_trip_keeps_class_message_hint_path_and_facts(cls):
    original = cls("It broke.", hint="Do this.", path="/models/m.gguf", signal="SIGILL", exit_code=-4,
                   details="last\nlines\n", sizes=[1, 2])
    payload = json.loads(json.dumps(original.to_payload()))  # really JSON-safe
    rebuilt = from_payload(payload, default_cls=EngineError)
    assert type(rebuilt) is cls
    assert (rebuilt.message, rebuilt.hint, rebuilt.path) == ("It broke.", "Do this.", "/models/m.gguf")
    assert rebuilt.facts == {"signal": "SIGILL", "exit_code": -4, "details": "last\nlines\n", "sizes": [1, 2]}
    assert str(rebuilt) == "It broke."


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_round_trip_keeps_the_default_hint_and_no_path(cls):
    rebuilt = from_payload(cls("Plain.").to_payload(), EngineError)
    assert type(rebuilt) is cls and rebuilt.hint == cls.default_hint and rebuilt.path is None


def test_facts_that_json_cannot_carry_travel_as_text():
    payload = WorkbenchError("x", when=object, where={1, 2}).to_payload()
    json.dumps(payload)
    assert isinstance(payload["facts"]["when"], str) and isinstance(payload["facts"]["where"], str)


def test_an_unknown_kind_falls_back_to_the_default_class():
    rebuilt = from_payload({"kind": "no_such_kind", "message": "Odd.", "hint": "Hm."}, RemoteServerError)
    assert type(rebuilt) is RemoteServerError and rebuilt.message == "Odd." and rebuilt.hint == "Hm."


def test_openai_style_errors_from_other_servers_decode():
    rebuilt = from_payload({"message": "model not found", "type": "invalid_request_error", "code": 404},
                           RemoteServerError)
    assert type(rebuilt) is RemoteServerError and rebuilt.hint == RemoteServerError.default_hint
    assert from_payload({"message": "too long", "type": "context_overflow"}, RemoteServerError).__class__ \
        is errors.ContextOverflow


def test_a_missing_message_still_says_something():
    assert from_payload({}, EngineError).message
