"""The engine's sampler chain: the top-k prefilter before the repeat penalty changes no choice."""
from __future__ import annotations

import pytest

from runtime.engine.types import LoadOptions, SamplingParams

STEPS = 48


@pytest.fixture(scope="module")
def runner(starter_model):
    from runtime.engine.runner import LlamaRunner

    r = LlamaRunner(starter_model, LoadOptions(n_ctx=512, n_threads=2, n_gpu_layers=0))
    yield r
    r.close()


def _choices(runner, params: SamplingParams, prefilter: bool, prompt_text: str) -> list[int]:
    """Tokens chosen over STEPS decodes, from an empty cache, with one chain or the other."""
    ll = runner._ll
    runner.reset_cache()
    prompt = runner.tokenize(runner.render([{"role": "user", "content": prompt_text}]))
    runner._evaluate_prompt(prompt, lambda: False)
    sampler = runner._make_sampler(params, prompt, prefilter=prefilter)
    chosen = []
    try:
        for _ in range(STEPS):
            token = ll.llama_sampler_sample(sampler, runner.ctx, -1)
            chosen.append(token)
            runner._decode([token])
    finally:
        ll.llama_sampler_free(sampler)
    return chosen


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=0, repeat_penalty=1.3),
    SamplingParams(temperature=0.9, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.5, seed=11),
    SamplingParams(temperature=1.5, top_k=5, top_p=1.0, min_p=0.0, repeat_penalty=2.0, seed=3),
], ids=["greedy", "default-like", "hot-small-k"])
def test_prefilter_gives_the_same_tokens_as_the_plain_chain(runner, params):
    # a prompt that invites repetition, so the penalty really changes choices
    text = "Repeat after me: the cat the cat the cat the cat the cat the cat"
    plain = _choices(runner, params, False, text)
    fast = _choices(runner, params, True, text)
    assert fast == plain
    unpenalized = _choices(runner, SamplingParams(**{**params.to_dict(), "repeat_penalty": 1.0}), False, text)
    assert unpenalized != plain, "the penalty should matter for this prompt, or the test proves nothing"


def test_greedy_from_the_logits_picks_what_llama_cpp_greedy_picks(runner):
    from runtime.engine.runner import _plain_greedy

    params = SamplingParams(temperature=0, repeat_penalty=1.0)
    assert _plain_greedy(params) and not _plain_greedy(SamplingParams(temperature=0, repeat_penalty=1.1))
    ll = runner._ll
    runner.reset_cache()
    prompt = runner.tokenize(runner.render([{"role": "user", "content": "Name three rivers."}]))
    runner._evaluate_prompt(prompt, lambda: False)
    sampler = runner._make_sampler(params, prompt)
    pick = runner._argmax_picker()
    try:
        for _ in range(STEPS):
            token = pick()
            assert token == ll.llama_sampler_sample(sampler, runner.ctx, -1)
            runner._decode([token])
    finally:
        ll.llama_sampler_free(sampler)
