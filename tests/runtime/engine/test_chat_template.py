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


# --- bounds: a hostile template costs at most a few seconds and a few hundred MiB -----------------

import resource
import time

from runtime.engine.templates import MAX_RENDER_GROWTH_BYTES, RenderLimits, RenderStopped

USER = [{"role": "user", "content": "hi"}]
TIGHT = RenderLimits(seconds=1.0, max_chars=1 << 20)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("template, reason", [
    ("{{ 'x' * 10**8 }}", "more than 1,048,576 characters"),             # one huge string
    ("{{ [0] * 10**9 }}", "more than 1,048,576 characters"),             # one huge list
    ("{{ 'x'|center(10**9) }}", "the number 1000000000"),                 # a filter asked for a lot
    ("{{ 'x'.ljust(10**9) }}", "the number 1000000000"),                  # a method asked for a lot
    ("{{ 7 ** 100000000 }}", "7 ** 100000000"),                           # a huge integer
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "longer than 1 s"),
    ("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", "more than 1,048,576 characters"),  # output
    ("{% set ns = namespace(s='x' * 1000) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}{{ ns.s|length }}", "MiB of memory"),                  # doubling by concatenation
])
def test_hostile_templates_are_stopped_with_the_bound_they_broke(template, reason):
    # The memory case copies a few hundred MB before it breaks its bound, which on a busy machine can
    # take longer than TIGHT's second: it gets time enough for the bound under test to be the one hit.
    limits = RenderLimits(seconds=10.0, max_chars=TIGHT.max_chars) if "memory" in reason else TIGHT
    before = _peak_mib()
    started = time.monotonic()
    with pytest.raises(TemplateError, match="was stopped") as caught:
        render_chat(template, USER, limits=limits)
    assert reason in caught.value.message
    assert time.monotonic() - started < limits.seconds + 2
    assert _peak_mib() - before < 2 * MAX_RENDER_GROWTH_BYTES / 2**20


@pytest.mark.parametrize("template, cause", [
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "RecursionError"),
    ("{{ range(10**9)|list }}", "the number 1000000000"),
    ("{{ messages[5]['content'] }}", "UndefinedError"),
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
])
def test_failures_inside_a_template_name_their_cause(template, cause):
    with pytest.raises(TemplateError) as caught:
        render_chat(template, USER, limits=TIGHT)
    assert cause in caught.value.message


def test_stop_interrupts_a_slow_template():
    stop_at = time.monotonic() + 0.2
    slow = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    with pytest.raises(RenderStopped):
        render_chat(slow, USER, limits=RenderLimits(seconds=30, stop=lambda: time.monotonic() > stop_at))
    assert time.monotonic() - stop_at < 0.1


def test_message_content_as_openai_text_parts_is_joined():
    parts = [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}]
    assert render_chat(CHATML, [{"role": "user", "content": parts}]) == render_chat(
        CHATML, [{"role": "user", "content": "Hello, world"}])
    with pytest.raises(TypeError, match="image_url"):
        render_chat(CHATML, [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])


def test_bounds_leave_real_templates_alone():
    conversation = [{"role": "user" if i % 2 == 0 else "assistant", "content": "hello " * 50} for i in range(40)]
    text = render_chat(CHATML, conversation, limits=TIGHT)
    assert text.count("<|im_start|>") == 41


def test_an_earlier_higher_peak_does_not_hide_a_render_that_grows():
    """The bound counts from the memory in use when the render starts, not from the process's peak:
    after 700 MiB were used and freed (a model loaded and gone, say), a growing template is still
    stopped soon after it passes 256 MiB (one doubling of its string can overshoot), well before it
    reaches the old peak plus 256 MiB, where a bound counted from the peak would stop it."""
    import threading

    import psutil

    block = bytearray(700 << 20)
    block[::4096] = b"\x01" * len(range(0, len(block), 4096))  # touch every page: really resident
    del block
    me = psutil.Process()
    start = me.memory_info().rss
    highest = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            highest[0] = max(highest[0], me.memory_info().rss)
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with pytest.raises(TemplateError, match="MiB of memory"):
            render_chat("{% set ns = namespace(s='x' * 1000) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                        "{% endfor %}{{ ns.s|length }}", USER, limits=RenderLimits(seconds=30.0, max_chars=1 << 20))
    finally:
        done.set()
        sampler.join()
    assert highest[0] - start < 0.9 * ((700 << 20) + MAX_RENDER_GROWTH_BYTES)
