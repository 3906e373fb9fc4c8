"""Render a conversation into a prompt with the model's own Jinja chat template.

Templates come from the GGUF file (``tokenizer.chat_template``) and are untrusted, so they run in
Jinja's immutable sandbox. A template that fails raises TemplateError with the template's own words.
"""
from __future__ import annotations

import datetime
from functools import lru_cache

from runtime.errors import TemplateError

# Used only when a model ships no template at all (old or base models): ChatML is the most common.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _raise_exception(message: str):
    raise TemplateError(f"The model's chat template refused this conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


@lru_cache(maxsize=8)
def _compile(source: str):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"The model's chat template does not compile: {exc}") from exc


def render_chat(template: str | None, messages: list[dict], *, bos_token: str = "",
                eos_token: str = "", add_generation_prompt: bool = True) -> str:
    """Return the prompt text for ``messages`` (OpenAI-style dicts with role and content)."""
    import jinja2

    compiled = _compile(template or FALLBACK_TEMPLATE)
    try:
        return compiled.render(
            messages=[{"role": m["role"], "content": m.get("content") or ""} for m in messages],
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
        )
    except TemplateError:
        raise
    except (jinja2.TemplateError, TypeError, ValueError, KeyError) as exc:
        raise TemplateError(f"The model's chat template failed: {exc}") from exc
