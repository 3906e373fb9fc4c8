"""Render a conversation into a prompt with the model's own Jinja chat template.

Templates come from the GGUF file (``tokenizer.chat_template``) and are untrusted, so they run in
Jinja's immutable sandbox, and within bounds: at most ``RenderLimits.seconds`` of work, no string or
list longer than ``max_chars`` built in one step, no call with a number above ``MAX_CALL_INT``, the
process's memory growing by at most ``MAX_RENDER_GROWTH_BYTES``, and output of at most ``max_chars``.
The time and memory bounds are checked from a trace function that runs only while a template renders
(~0.3 ms extra for a 20-message conversation). A template that fails or breaks a bound raises
TemplateError with its own words or the bound; ``stop()`` turning true raises ``RenderStopped``.
"""
from __future__ import annotations

import datetime
import functools
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from runtime.errors import TemplateError

# Used only when a model ships no template at all (old or base models): ChatML is the most common.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

MAX_CALL_INT = 1_000_000          # no chat template needs a bigger number in a call ('x'|center(10**9))
MAX_RENDER_GROWTH_BYTES = 256 << 20
_TEMPLATE_CODE = "<template>"     # the file name Jinja gives compiled template code


class RenderStopped(BaseException):
    """The caller's stop() turned true while a template was rendering (a BaseException, so no
    ``except Exception`` inside Jinja can swallow it)."""


class _OverBound(BaseException):
    """A render bound was broken; becomes a TemplateError outside the template."""


@dataclass(frozen=True)
class RenderLimits:
    seconds: float = 5.0
    max_chars: int = 64 << 20
    stop: Callable[[], bool] = lambda: False


def _raise_exception(message: str):
    raise TemplateError(f"The model's chat template refused this conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


MEMORY_CHECK_S = 0.001  # how often a render's current memory is read (psutil: ~12 us a read)

try:
    import resource

    def _peak_rss_bytes() -> int:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB
except ImportError:  # Windows: no getrusage; psutil's peak working set is the same figure
    def _peak_rss_bytes() -> int:
        import psutil

        return psutil.Process().memory_info().peak_wset


def _rss_bytes() -> int:
    """This process's resident memory now."""
    import psutil

    return int(psutil.Process().memory_info().rss)


class _Guard:
    """The bounds of one render: checked by the sandbox hooks and, line by line, by a trace function."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        # The bound counts from the memory in use now. The peak (cheap to read, and it sees the
        # transient copies inside one line) counts only above the peak so far: an earlier, higher
        # peak (a model loaded and freed) would otherwise hide growth up to it, which the current
        # figure, read every MEMORY_CHECK_S, catches.
        self.rss_limit = _rss_bytes() + MAX_RENDER_GROWTH_BYTES
        self.peak_limit = max(self.rss_limit, _peak_rss_bytes())
        self._memory_read_at = time.monotonic()

    def check(self) -> None:
        now = time.monotonic()
        if now > self.deadline:
            raise _OverBound(f"it took longer than {self.limits.seconds:g} s")
        over = _peak_rss_bytes() > self.peak_limit
        if not over and now - self._memory_read_at >= MEMORY_CHECK_S:
            self._memory_read_at = now
            over = _rss_bytes() > self.rss_limit
        if over:
            raise _OverBound(f"it used more than {MAX_RENDER_GROWTH_BYTES >> 20} MiB of memory")
        if self.limits.stop():
            raise RenderStopped()

    def check_size(self, size: int) -> None:
        if size > self.limits.max_chars:
            raise _OverBound(f"it built a value of more than {self.limits.max_chars:,} characters")

    def trace(self, frame, event, arg):
        """sys.settrace hook: trace only template code, and check the bounds on every line of it."""
        if frame.f_code.co_filename != _TEMPLATE_CODE:
            return None
        self.check()
        return self._line

    def _line(self, frame, event, arg):
        self.check()
        return self._line


_local = threading.local()  # .guard: the bounds of the render in progress on this thread


def _guard() -> _Guard | None:
    return getattr(_local, "guard", None)


def _sized(value):
    guard = _guard()
    if guard is not None and isinstance(value, (str, bytes, list, tuple, dict)):
        guard.check_size(len(value))
    return value


def _check_args(args, kwargs) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_CALL_INT:
            raise _OverBound(f"it called a function with the number {value}")


def _bounded_filter(fn):
    def wrapper(*args, **kwargs):
        _check_args(args[1:], kwargs)  # args[0] is the filtered value (or the context)
        return _sized(fn(*args, **kwargs))

    return functools.update_wrapper(wrapper, fn)  # keeps Jinja's pass_context / pass_environment marks


def _sandbox_class():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "+", "**"})

        def call_binop(self, context, operator, left, right):
            guard = _guard()
            if guard is not None:
                if operator == "*":
                    for seq, n in ((left, right), (right, left)):
                        if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                            guard.check_size(len(seq) * n)
                elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, type(left)):
                    guard.check_size(len(left) + len(right))
                elif operator == "**" and isinstance(left, (int, float)) and isinstance(right, (int, float)):
                    if abs(right) * math.log2(abs(left) + 2) > 4096:
                        raise _OverBound(f"it computed {left} ** {right}")
            return super().call_binop(context, operator, left, right)

        def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's own signature)
            _check_args(args, kwargs)
            return _sized(super().call(__context, __obj, *args, **kwargs))

    return BoundedSandbox


@functools.lru_cache(maxsize=8)
def _compile(source: str):
    import jinja2

    env = _sandbox_class()(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters = {name: _bounded_filter(fn) for name, fn in env.filters.items()}
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"The model's chat template does not compile: {exc}") from exc
    except (RecursionError, MemoryError, OverflowError, ValueError) as exc:
        raise TemplateError(f"The model's chat template does not compile: {type(exc).__name__}: {exc}") from exc


def message_text(content) -> str:
    """A message's text: a string as is; an OpenAI parts list (``[{"type": "text", "text": ...}]``)
    joined; None as ''. Raises TypeError for anything else (images are not supported)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise TypeError(f"a message part of type {kind!r} is not supported (only text parts are)")
        return "".join(texts)
    raise TypeError(f"a message's content must be text or a list of text parts, not {type(content).__name__}")


def render_chat(template: str | None, messages: list[dict], *, bos_token: str = "",
                eos_token: str = "", add_generation_prompt: bool = True,
                limits: RenderLimits = RenderLimits()) -> str:
    """Return the prompt text for ``messages`` (OpenAI-style dicts with role and content).

    Malformed messages (no role, content neither text nor text parts) raise KeyError or TypeError.
    """
    import jinja2

    compiled = _compile(template or FALLBACK_TEMPLATE)
    messages = [{"role": m["role"], "content": message_text(m.get("content"))} for m in messages]
    guard = _Guard(limits)
    previous, outer = sys.gettrace(), _guard()
    _local.guard = guard
    sys.settrace(guard.trace)
    try:
        pieces, size = [], 0
        for piece in compiled.generate(messages=messages, bos_token=bos_token, eos_token=eos_token,
                                       add_generation_prompt=add_generation_prompt):
            size += len(piece)
            guard.check_size(size)
            pieces.append(piece)
        return "".join(pieces)
    except _OverBound as exc:
        raise TemplateError(f"The model's chat template was stopped: {exc}.",
                            hint="This model's chat template is broken or hostile; use another model.") from None
    except TemplateError:
        raise
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError, IndexError,
            OverflowError, RecursionError, MemoryError, ArithmeticError) as exc:
        raise TemplateError(f"The model's chat template failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.settrace(previous)
        _local.guard = outer
