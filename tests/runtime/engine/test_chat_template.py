"""Chat templates: the model's own Jinja template, sandboxed, with clear errors."""
import pytest

from runtime.engine.templates import render_chat
from runtime.errors import TemplateError

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_renders_with_generation_prompt():
    text = render_chat(CHATML, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_bos_token_and_missing_template_fallback():
    assert render_chat("{{ bos_token }}{{ messages[0]['content'] }}", [{"role": "user", "content": "x"}],
                       bos_token="<s>") == "<s>x"
    assert "<|im_start|>user\nx" in render_chat(None, [{"role": "user", "content": "x"}])


def test_raise_exception_becomes_template_error():
    template = "{{ raise_exception('Conversation roles must alternate') }}"
    with pytest.raises(TemplateError, match="roles must alternate"):
        render_chat(template, [{"role": "user", "content": "x"}])


def test_broken_template_and_sandbox():
    with pytest.raises(TemplateError, match="does not compile"):
        render_chat("{% for %}", [])
    with pytest.raises(TemplateError):  # the sandbox refuses attribute access to internals
        render_chat("{{ messages.__class__.__mro__[1].__subclasses__() }}", [{"role": "user", "content": "x"}])
