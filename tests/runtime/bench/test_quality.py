"""Quality on real llama.cpp (runtime/bench/quality.py and its child): tiny random llama GGUFs at
F16 / Q8_0 / Q4_0 (tests/quantize_models.py) on a short English text, and the real starter model for
the top-k against full-vocabulary check (a random model's flat distributions say nothing about it)."""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from model_files import write_not_gguf, write_truncated_copy, write_unknown_arch_gguf
from quantize_models import cached_tiny_llama, reference_quantize
from starter_variants import write_starter_variant
from runtime.bench import quality, reference as ref
from runtime.bench.quality import measure_quality, prepare_reference, score_against, score_model
from runtime.errors import BenchError, Cancelled, ModelFileError, UnsupportedArchitectureError
from runtime.jobs import CancelToken

N_CTX = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """{"F16": path, "Q8_0": path, "Q4_0": path}: one tiny random model and two quantizations."""
    folder = tmp_path_factory.mktemp("quality-models")
    f16 = cached_tiny_llama(folder)
    return {"F16": f16, "Q8_0": reference_quantize(f16, folder / "tiny-Q8_0.gguf", "Q8_0"),
            "Q4_0": reference_quantize(f16, folder / "tiny-Q4_0.gguf", "Q4_0")}


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    """The start of the shipped text: ~700 tokens for the tiny byte-level vocabulary, 10 windows of 64."""
    path = tmp_path_factory.mktemp("quality-text") / "short.txt"
    path.write_text(quality.default_text_path().read_text(encoding="utf-8")[:800], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_reference(tiny, text, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # module-scoped: keep its cache out of the real app folder
        mp.setenv("WORKBENCH_HOME", str(tmp_path_factory.mktemp("quality-home")))
        return prepare_reference(tiny["F16"], text, n_ctx=N_CTX, threads=2)


def cache_files() -> list[str]:
    folder = ref.cache_dir()
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


_QUIET: list = []


def _tokenize(model: Path, data: bytes) -> list[int]:
    import llama_cpp

    if not _QUIET:  # the callback must outlive every later call into llama.cpp in this process
        _QUIET.append(llama_cpp.llama_log_callback(lambda level, text, data: None))
    llama_cpp.llama_log_set(_QUIET[0], ctypes.c_void_p(0))  # another test's runner may have set its own
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    handle = llama_cpp.llama_model_load_from_file(str(model).encode(), params)
    try:
        vocab = llama_cpp.llama_model_get_vocab(handle)
        buf = (llama_cpp.llama_token * (len(data) + 8))()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, len(buf), True, False)
        return list(buf[:n])
    finally:
        llama_cpp.llama_model_free(handle)


# --- the figures ---------------------------------------------------------------------------------

def test_windows_are_llama_perplexitys(tiny, text, tiny_reference):
    tokens = _tokenize(tiny["F16"], text.read_bytes().removesuffix(b"\n"))
    meta = tiny_reference.meta
    assert meta.n_windows == len(tokens) // N_CTX >= 2
    assert (np.asarray(tiny_reference.windows).reshape(-1) == tokens[:meta.n_windows * N_CTX]).all()
    assert not meta.bos_replaced  # the tiny vocabulary adds no BOS
    assert meta.n_scored == meta.n_windows * (N_CTX - 1 - N_CTX // 2)
    assert meta.k == meta.n_vocab  # a vocabulary smaller than k is kept whole
    assert 1 < tiny_reference.perplexity < meta.n_vocab * 2


def test_a_model_against_itself(tiny, tiny_reference):
    figures = score_model(tiny["F16"], tiny_reference, threads=2).figures  # run, not taken from the reference
    assert figures.kld_mean == pytest.approx(0, abs=1e-6)
    assert figures.kld_p99 == pytest.approx(0, abs=1e-6)
    assert figures.top1_agreement == 1.0
    assert figures.ppl_ratio == pytest.approx(1, abs=1e-6)
    assert figures.perplexity == pytest.approx(tiny_reference.perplexity, rel=1e-6)
    assert figures.tokens_scored == tiny_reference.meta.n_scored and not figures.is_reference
    own = score_against(tiny["F16"], tiny_reference)  # the reference's own file: its figures, no run
    assert own.is_reference and (own.kld_mean, own.kld_p99, own.top1_agreement, own.ppl_ratio) == (0, 0, 1, 1)
    assert own.perplexity == tiny_reference.perplexity


def test_q8_0_is_far_closer_to_f16_than_q4_0(tiny, tiny_reference):
    q8 = score_model(tiny["Q8_0"], tiny_reference, threads=2)
    q4 = score_model(tiny["Q4_0"], tiny_reference, threads=2)
    assert 0 < q8.figures.kld_mean * 10 < q4.figures.kld_mean
    assert q8.figures.kld_p99 < q4.figures.kld_p99
    assert q8.figures.top1_agreement >= q4.figures.top1_agreement
    assert q4.figures.kld_p99 >= q4.figures.kld_mean
    assert abs(q8.figures.ppl_ratio - 1) < abs(q4.figures.ppl_ratio - 1)
    assert q8.reference_perplexity == pytest.approx(tiny_reference.perplexity)


def test_measure_quality_picks_the_highest_precision_reference(tiny, text):
    order = [tiny["Q4_0"], tiny["F16"], tiny["Q8_0"]]
    updates = []
    results = measure_quality(order, text, n_ctx=N_CTX, threads=2, progress=lambda d, t, m: updates.append((d, t)))
    assert list(results) == [str(p) for p in order]
    assert quality.pick_reference(order) == tiny["F16"]
    reference = results[str(tiny["F16"])]
    assert reference.is_reference and (reference.kld_mean, reference.kld_p99, reference.top1_agreement,
                                       reference.ppl_ratio) == (0, 0, 1, 1)
    q4, q8 = results[str(tiny["Q4_0"])], results[str(tiny["Q8_0"])]
    assert not q4.is_reference and q8.kld_mean < q4.kld_mean
    assert updates[-1][0] == updates[-1][1] > 0
    assert all(b[0] >= a[0] for a, b in zip(updates, updates[1:]))


# --- top-k against the full vocabulary (the real starter model) ------------------------------------

@pytest.fixture(scope="module")
def starter_pair(starter_model, tmp_path_factory):
    """The starter (Q4_1) as reference, Q8_0 and Q4_0 requantized from it, a text of 3 windows of 128."""
    folder = tmp_path_factory.mktemp("quality-starter")
    text = folder / "text.txt"
    text.write_text(quality.default_text_path().read_text(encoding="utf-8")[:2400], encoding="utf-8")
    variants = {q: reference_quantize(Path(starter_model), folder / f"starter-{q}.gguf", q) for q in ("Q8_0", "Q4_0")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_HOME", str(folder / "home"))
        full = prepare_reference(starter_model, text, n_ctx=128, k=1 << 20, max_windows=3, threads=2)
    return full, variants


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_top_k_reference_is_within_2_percent_of_the_full_vocabulary(starter_pair, qtype):
    full, variants = starter_pair
    assert full.k == full.meta.n_vocab == 49152
    score = score_model(variants[qtype], full, threads=2, compare_k=(128, ref.DEFAULT_K))
    exact = score.figures.kld_mean
    assert exact > 0
    assert abs(score.kld_mean_by_k[ref.DEFAULT_K] / exact - 1) < 0.02
    assert score.kld_mean_by_k[128] < score.kld_mean_by_k[ref.DEFAULT_K] <= exact * (1 + 1e-6)


# --- the cache ---------------------------------------------------------------------------------------

def test_the_reference_is_cached_and_reused(tiny, text, monkeypatch):
    first = prepare_reference(tiny["F16"], text, n_ctx=N_CTX, threads=2)
    assert cache_files() == [first.path.name]

    def no_child(*args, **kwargs):
        raise AssertionError("the cached reference was computed again")

    monkeypatch.setattr(quality, "ChildProcess", no_child)
    updates = []
    again = prepare_reference(tiny["F16"], text, n_ctx=N_CTX, threads=2, progress=lambda d, t, m: updates.append(m))
    assert again.path == first.path and again.meta == first.meta
    assert "cached" in updates[-1]
    with pytest.raises(AssertionError, match="computed again"):
        prepare_reference(tiny["F16"], text, n_ctx=32, threads=2)  # another context: another reference


def test_a_damaged_cache_file_is_computed_again(tiny, text):
    first = prepare_reference(tiny["F16"], text, n_ctx=N_CTX, threads=2)
    first.path.write_bytes(first.path.read_bytes()[:-10])
    again = prepare_reference(tiny["F16"], text, n_ctx=N_CTX, threads=2)
    assert again.path == first.path and again.meta.n_scored == first.meta.n_scored
    assert cache_files() == [first.path.name]


# --- bad input -----------------------------------------------------------------------------------------

def test_a_text_too_short_says_how_long_it_must_be(tiny, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("The river bends twice before it reaches the sea. " * 2, encoding="utf-8")
    n_tokens = len(_tokenize(tiny["F16"], short.read_bytes().removesuffix(b"\n")))
    with pytest.raises(BenchError) as caught:
        prepare_reference(tiny["F16"], short, n_ctx=N_CTX, threads=2)
    error = caught.value
    assert f"has {n_tokens} tokens" in error.message
    assert f"a context of {N_CTX} needs at least {2 * N_CTX}" in error.message
    assert f"longest context this text allows is {n_tokens // 2} tokens" in error.message
    assert error.facts["n_tokens"] == n_tokens and error.facts["needed_tokens"] == 2 * N_CTX
    assert error.facts["max_n_ctx"] == n_tokens // 2
    assert "longer text" in error.hint
    assert cache_files() == []


def test_a_context_of_2048_on_the_shipped_text_has_several_windows(starter_model, monkeypatch):
    tokens = _tokenize(Path(starter_model), quality.default_text_path().read_bytes().removesuffix(b"\n"))
    assert len(tokens) >= ref.min_tokens(2048) and len(tokens) // 512 >= 10


def test_different_vocabularies_are_refused(tiny_reference, starter_model):
    with pytest.raises(BenchError) as caught:
        score_against(starter_model, tiny_reference, threads=2)
    message = caught.value.message
    assert Path(starter_model).name in message and "tiny-llama" in message
    assert "vocabularies differ" in message and "49,152 tokens" in message
    assert caught.value.facts["n_vocab"] == 49152


def test_a_damaged_model_fails_with_a_model_file_error(tiny, text, tiny_reference, tmp_path):
    truncated = write_truncated_copy(tiny["Q8_0"], tmp_path, 0.6)
    with pytest.raises(ModelFileError, match="truncated"):
        score_against(truncated, tiny_reference, threads=2)
    with pytest.raises(ModelFileError):
        prepare_reference(truncated, text, n_ctx=N_CTX, threads=2)
    with pytest.raises(ModelFileError):
        score_against(write_not_gguf(tmp_path), tiny_reference, threads=2)
    with pytest.raises(UnsupportedArchitectureError, match="flibbertigibbet"):  # refused by llama.cpp, in the child
        prepare_reference(write_unknown_arch_gguf(tmp_path), text, n_ctx=N_CTX, threads=2)
    assert cache_files() == []


def test_a_model_computing_nan_fails_with_a_model_file_error(starter_pair, starter_model, tmp_path):
    full, _ = starter_pair
    broken = write_starter_variant(Path(starter_model), tmp_path, "nan.gguf", nan_tensor="output_norm.weight")
    with pytest.raises(ModelFileError, match="invalid numbers"):
        score_against(broken, full, threads=2)


def test_cancel_kills_the_child_and_leaves_no_cache_file(tiny, text, monkeypatch):
    children = []

    class Recorded(quality.ChildProcess):
        def start(self):
            children.append(self)
            super().start()

    monkeypatch.setattr(quality, "ChildProcess", Recorded)
    cancel = CancelToken()

    def progress(done, total, message):
        if "window 1/" in message:
            assert cache_files() and cache_files()[0].endswith(ref.PARTIAL_SUFFIX)  # written as it goes
            cancel.cancel()

    with pytest.raises(Cancelled):
        prepare_reference(tiny["F16"], text, n_ctx=N_CTX, threads=2, progress=progress, cancel=cancel)
    assert children and not children[0].alive
    assert cache_files() == []
