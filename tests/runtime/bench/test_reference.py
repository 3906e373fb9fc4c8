"""The reference file and its numerics (runtime/bench/reference.py), without llama.cpp: windows cut
as llama-perplexity cuts them, top-k + leftover KL divergence against the exact one, the file's
round trip, safe writing and the refusal of damaged files, the cache key."""
from __future__ import annotations

import os

import numpy as np
import pytest

from runtime.bench import reference as ref
from runtime.bench.reference import Reference, ReferenceMeta, ReferenceWriter
from runtime.errors import BenchError


def _meta(n_ctx=16, n_windows=3, k=8, n_vocab=50, **kw) -> ReferenceMeta:
    return ReferenceMeta(n_ctx=n_ctx, n_windows=n_windows, k=k, n_vocab=n_vocab, vocab_fingerprint="v" * 64,
                         text_sha256="t" * 64, source={"kind": "test", "id": "synthetic", "name": "synthetic"}, **kw)


def _logits(rng, rows, n_vocab, spread=3.0) -> np.ndarray:
    return (rng.standard_normal((rows, n_vocab)) * spread).astype(np.float32)


def _exact_kld(p_logits, q_logits) -> np.ndarray:
    lp = ref.log_softmax(p_logits).astype(np.float64)
    lq = ref.log_softmax(q_logits).astype(np.float64)
    return (np.exp(lp) * (lp - lq)).sum(axis=1)


# --- windows -------------------------------------------------------------------------------------

def test_windows_are_consecutive_runs_with_bos_first_and_the_tail_dropped():
    tokens = np.arange(100, 150)
    windows = ref.windows_from_tokens(tokens, 16, bos=1)
    assert windows.shape == (3, 16)  # 50 tokens: three windows, the last 2 tokens fill none
    assert list(windows[:, 0]) == [1, 1, 1]
    assert list(windows[1, 1:]) == list(range(117, 132))
    assert ref.windows_from_tokens(tokens, 16, bos=None)[2, 0] == 132
    assert len(ref.windows_from_tokens(tokens, 16, bos=None, max_windows=2)) == 2


def test_the_second_half_of_each_window_is_scored():
    assert ref.scored_per_window(512) == 255  # positions 256..510, each predicting the next token
    assert ref.scored_per_window(17) == 8
    windows = ref.windows_from_tokens(np.arange(32), 16, bos=None)
    assert list(ref.scored_targets(windows)) == list(range(9, 16)) + list(range(25, 32))
    assert ref.min_tokens(512) == 1024


# --- numerics ------------------------------------------------------------------------------------

def test_log_softmax_and_top_k():
    rng = np.random.default_rng(0)
    logits = _logits(rng, 5, 40)
    logp = ref.log_softmax(logits)
    assert np.allclose(np.exp(logp.astype(np.float64)).sum(axis=1), 1.0, atol=1e-6)
    ids = ref.top_k_rows(logp, 6)
    assert ids.shape == (5, 6)
    assert (ids[:, 0] == logits.argmax(axis=1)).all()
    values = np.take_along_axis(logp, ids.astype(np.int64), axis=1)
    assert (np.diff(values, axis=1) <= 0).all()
    assert set(ids[0]) == set(np.argsort(-logp[0])[:6])


def test_top_k_ties_at_the_top_keep_the_lower_id_first_as_argmax_does():
    logp = ref.log_softmax(np.array([[0.0, 2.0, 1.0, 2.0, 2.0], [2.0, 0.0, 2.0, 1.0, 2.0]] * 50, np.float32))
    for k in (3, 5):
        ids = ref.top_k_rows(logp, k)
        assert (ids[0::2, 0] == 1).all() and (ids[1::2, 0] == 0).all()
        assert all(set(row[:3]) == {1, 3, 4} for row in ids[0::2])
        assert all(list(row[3:]) == [2, 0][:k - 3] for row in ids[0::2])


def test_full_vocabulary_kld_is_the_exact_one_and_top_k_a_close_lower_bound():
    rng = np.random.default_rng(1)
    p_logits = _logits(rng, 64, 300)
    q_logits = p_logits + _logits(rng, 64, 300, spread=0.3)
    lp, lq = ref.log_softmax(p_logits), ref.log_softmax(q_logits)
    exact = _exact_kld(p_logits, q_logits)

    ids = ref.top_k_rows(lp, 300)
    full = ref.kld_rows(ids, np.take_along_axis(lp, ids.astype(np.int64), axis=1), np.full(64, -np.inf, np.float32), lq)
    assert np.allclose(full, exact, rtol=1e-4, atol=1e-7)

    ids = ref.top_k_rows(lp, 30)
    rest = np.log(ref.rest_mass(lp, ids)).astype(np.float32)
    top = ref.kld_rows(ids, np.take_along_axis(lp, ids.astype(np.int64), axis=1), rest, lq)
    assert (top <= exact + 1e-6).all()  # grouping the tail never raises a KL divergence
    assert top.mean() > 0.5 * exact.mean()


def test_truncating_a_stored_reference_equals_storing_fewer_tokens():
    rng = np.random.default_rng(2)
    lp = ref.log_softmax(_logits(rng, 20, 120))
    lq = ref.log_softmax(_logits(rng, 20, 120))
    ids = ref.top_k_rows(lp, 60)
    logp = np.take_along_axis(lp, ids.astype(np.int64), axis=1)
    rest = np.log(ref.rest_mass(lp, ids)).astype(np.float32)
    truncated = ref.truncated_kld_rows(ids, logp, rest, lq, ref.rest_mass(lq, ids), 15)
    ids15 = ref.top_k_rows(lp, 15)
    direct = ref.kld_rows(ids15, np.take_along_axis(lp, ids15.astype(np.int64), axis=1),
                          np.log(ref.rest_mass(lp, ids15)).astype(np.float32), lq)
    assert np.allclose(truncated, direct, rtol=1e-5, atol=1e-7)


def test_a_model_against_itself_has_zero_divergence():
    rng = np.random.default_rng(3)
    lp = ref.log_softmax(_logits(rng, 10, 100))
    ids = ref.top_k_rows(lp, 12)
    rest = np.log(ref.rest_mass(lp, ids)).astype(np.float32)
    kld = ref.kld_rows(ids, np.take_along_axis(lp, ids.astype(np.int64), axis=1), rest, lp)
    assert np.abs(kld).max() < 1e-7


# --- the file ------------------------------------------------------------------------------------

def _write(path, meta, windows, chunks):
    with ReferenceWriter(path, meta, windows) as writer:
        for logits in chunks:
            writer.add(logits)
    return Reference.open(path)


def test_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    meta = _meta()
    windows = rng.integers(0, meta.n_vocab, (meta.n_windows, meta.n_ctx)).astype(np.int32)
    chunks = [_logits(rng, meta.scored_per_window, meta.n_vocab) for _ in range(meta.n_windows)]
    loaded = _write(tmp_path / "r.wbref", meta, windows, chunks)

    assert loaded.meta == meta
    assert (np.asarray(loaded.windows) == windows).all()
    assert loaded.ids.dtype == np.uint16 and loaded.ids.shape == (meta.n_scored, meta.k)
    second = np.asarray(loaded.logp[loaded.window_rows(1)])
    lp = ref.log_softmax(chunks[1])
    assert np.allclose(second, np.sort(lp, axis=1)[:, ::-1][:, :meta.k])
    targets = ref.scored_targets(windows)[loaded.window_rows(1)]
    assert np.allclose(loaded.nll[loaded.window_rows(1)], -lp[np.arange(len(lp)), targets])
    assert np.allclose(np.exp(loaded.rest_logp[loaded.window_rows(1)].astype(np.float64)),
                       1 - np.exp(second.astype(np.float64)).sum(axis=1), atol=1e-6)
    assert loaded.perplexity == pytest.approx(np.exp(np.asarray(loaded.nll, np.float64).mean()))
    assert "synthetic, context 16, 3 windows (21 positions), top 8" == loaded.describe()


def test_big_vocabularies_keep_32_bit_ids(tmp_path):
    meta = _meta(n_ctx=8, n_windows=1, k=4, n_vocab=70_000)
    rng = np.random.default_rng(5)
    logits = _logits(rng, meta.scored_per_window, meta.n_vocab)
    logits[:, 69_999] = 50.0
    loaded = _write(tmp_path / "big.wbref", meta, np.zeros((1, 8), np.int32), [logits])
    assert loaded.ids.dtype == np.int32 and (np.asarray(loaded.ids[:, 0]) == 69_999).all()


def test_write_reference_is_safe_when_the_source_fails(tmp_path):
    meta = _meta()
    rng = np.random.default_rng(6)

    def source():
        yield _logits(rng, meta.scored_per_window, meta.n_vocab)
        raise RuntimeError("the source died")

    final = tmp_path / "cache" / "r.wbref"
    with pytest.raises(RuntimeError):
        ref.write_reference(final, meta, np.zeros((3, 16), np.int32), source())
    assert list(final.parent.iterdir()) == []
    chunks = [_logits(rng, meta.scored_per_window, meta.n_vocab) for _ in range(3)]
    assert ref.write_reference(final, meta, np.zeros((3, 16), np.int32), chunks) == final
    assert [p.name for p in final.parent.iterdir()] == ["r.wbref"]


def test_the_writer_checks_shapes_and_counts(tmp_path):
    meta = _meta()
    with pytest.raises(ValueError):
        ReferenceWriter(tmp_path / "a", meta, np.zeros((2, 16), np.int32))
    writer = ReferenceWriter(tmp_path / "b", meta, np.zeros((3, 16), np.int32))
    with pytest.raises(ValueError):
        writer.add(np.zeros((3, meta.n_vocab), np.float32))
    with pytest.raises(ValueError, match="only 0 of 3"):
        writer.close()


@pytest.mark.parametrize("damage", ["cut", "magic", "header", "empty"])
def test_damaged_files_are_refused(tmp_path, damage):
    rng = np.random.default_rng(7)
    meta = _meta()
    path = tmp_path / "r.wbref"
    _write(path, meta, np.zeros((3, 16), np.int32), [_logits(rng, 7, 50) for _ in range(3)])
    data = path.read_bytes()
    data = {"cut": data[:-100], "magic": b"XXXXXXXX" + data[8:], "header": data[:16] + b"{" * 40 + data[56:],
            "empty": b""}[damage]
    path.write_bytes(data)
    with pytest.raises(BenchError, match="not a usable quality reference"):
        Reference.open(path)


# --- identity -----------------------------------------------------------------------------------

def test_cache_key_follows_every_input(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x" * 10)
    source = ref.gguf_source(model)
    key = ref.cache_key(source, "t", 512, 4096)
    assert key == ref.cache_key(dict(source, name="shown name"), "t", 512, 4096)
    others = {ref.cache_key(source, "u", 512, 4096), ref.cache_key(source, "t", 256, 4096),
              ref.cache_key(source, "t", 512, 128), ref.cache_key(source, "t", 512, 4096, max_windows=3),
              ref.cache_key({"kind": "checkpoint", "id": "org/model@abc"}, "t", 512, 4096)}
    assert key not in others and len(others) == 5
    os.utime(model, ns=(source["mtime_ns"] + 10**9, source["mtime_ns"] + 10**9))
    assert ref.cache_key(ref.gguf_source(model), "t", 512, 4096) != key
    assert ref.cache_path(key).parent == ref.cache_dir()
    assert str(ref.cache_dir()).startswith(os.environ["WORKBENCH_HOME"])


def test_the_cache_keeps_the_most_recently_used_files(tmp_path):
    import os
    import time

    from runtime.bench.quality import prune_cache

    files = []
    for i in range(5):
        path = tmp_path / f"k{i}{ref.SUFFIX}"
        path.write_bytes(b"x")
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))
        files.append(path)
    (tmp_path / "other.txt").write_text("not a reference")
    removed = prune_cache(tmp_path, keep=files[0], limit=2)
    assert sorted(removed) == sorted(files[1:3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k0.wbref", "k3.wbref", "k4.wbref", "other.txt"]
