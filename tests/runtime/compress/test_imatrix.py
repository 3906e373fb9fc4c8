"""Importance matrices: the file format, computing them from a GGUF (llama.cpp's cb_eval) and from a
checkpoint (PyTorch hooks), quantizing with them, and what they do to quality.

The model for quality is a tiny llama checkpoint (tests/tiny_checkpoints.py) made a little more like
a real one: rows of 256 and 512 values (every K-quant fits), norm weights spread over a wide range
(a few input columns carry much larger activations than the rest, as in trained models) and an
output matrix scaled down so the logits are not absurdly sharp. KLD is scored with the app's own
quality measure against the F32 model on the evaluation text, which is not the calibration text.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from runtime.compress import imatrix as im
from runtime.compress.imatrix_run import compute_imatrix, default_imatrix_path, source_kind
from runtime.compress.quantize import default_out_path, quantize_gguf
from runtime.compress.sizes import read_source
from runtime.errors import Cancelled, ModelFileError, QuantizeError
from runtime.jobs import CancelToken

BUILD = Path(__file__).resolve().parents[3] / "benchmarks" / "_build"
LLAMA_QUANTIZE, LLAMA_IMATRIX = BUILD / "llama-quantize", BUILD / "llama-imatrix"
CTX = 128
MATRICES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def make_realistic(folder: Path) -> Path:
    """A 2-layer llama checkpoint of hidden size 256 with uneven input columns (see the module doc)."""
    import torch
    from safetensors.torch import load_file, save_file

    from tiny_checkpoints import build_checkpoint

    build_checkpoint("llama", folder, hidden=256, ffn=512, layers=2)
    path = folder / "model.safetensors"
    state = load_file(path)
    generator = torch.Generator().manual_seed(1)
    for name in state:
        if name == "lm_head.weight":
            state[name] = state[name] * 0.1
        elif "layernorm" in name:
            state[name] = state[name] * torch.exp(torch.randn(state[name].shape, generator=generator))
    save_file(state, path, metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="session")
def realistic(tmp_path_factory):
    """(checkpoint folder, its F32 GGUF, the GGUF's importance matrix on the calibration text)."""
    from runtime.compress.convert import convert_checkpoint

    root = tmp_path_factory.mktemp("imatrix-model")
    folder = make_realistic(root / "realistic-llama")
    gguf = convert_checkpoint(folder, root / "realistic-F32.gguf", out_type="f32")
    matrix = compute_imatrix(gguf, None, root / "realistic.imatrix.gguf", ctx=CTX).path
    return folder, Path(gguf), matrix


@pytest.fixture(scope="session")
def reference(realistic):
    from runtime.bench.quality import prepare_reference

    return prepare_reference(realistic[1], None, n_ctx=CTX, max_windows=20, use_cache=False)


def _kld(path: Path, reference) -> float:
    from runtime.bench.quality import score_against

    return score_against(path, reference).kld_mean


# --- the file ------------------------------------------------------------------------------------

def test_imatrix_from_a_gguf_has_the_shape_llama_cpp_expects(realistic):
    _, gguf, path = realistic
    matrix = im.load(path)
    dims = {t.name: t.dims for t in read_source(gguf).tensors}
    expected = {f"blk.{b}.{m}.weight" for b in range(2) for m in MATRICES}
    assert set(matrix.entries) == expected  # blk.* matrices only: no token_embd, no output
    assert matrix.chunk_size == CTX and matrix.chunk_count >= 6  # the whole calibration text
    for name, entry in matrix.entries.items():
        assert entry.n_mat == 1 and entry.ne0 == dims[name][0]
        assert entry.counts.tolist() == [matrix.chunk_count * CTX]  # every token of every chunk
        assert (entry.sums > 0).all()
    assert matrix.datasets == [im.CALIBRATION_FILE]
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    assert "general.architecture" not in reader.fields  # llama-imatrix writes none either
    assert bytes(reader.fields["general.type"].parts[-1]).decode() == "imatrix"
    names = [t.name for t in reader.tensors]
    assert names[:2] == ["blk.0.attn_k.weight.in_sum2", "blk.0.attn_k.weight.counts"]
    assert all(t.tensor_type.name == "F32" for t in reader.tensors)


def test_save_and_load_round_trip_with_experts(tmp_path):
    matrix = im.ImportanceMatrix(chunk_count=3, chunk_size=64, datasets=["mine.txt"])
    matrix.accumulate("blk.0.ffn_up_exps.weight", np.full(8, 2.0), 4, n_mat=3, mat=0)
    matrix.accumulate("blk.0.ffn_up_exps.weight", np.full(8, 9.0), 3, n_mat=3, mat=2)
    matrix.accumulate("blk.0.attn_q.weight", np.arange(8.0), 10)
    back = im.load(matrix.save(tmp_path / "m.gguf"))
    assert back.chunk_count == 3 and back.chunk_size == 64 and back.datasets == ["mine.txt"]
    experts = back.entries["blk.0.ffn_up_exps.weight"]
    assert experts.counts.tolist() == [4, 0, 3]
    means = experts.mean_squares().reshape(3, 8)
    assert np.allclose(means[0], 0.5) and np.allclose(means[1], 1.0) and np.allclose(means[2], 3.0)
    assert np.allclose(back.entries["blk.0.attn_q.weight"].mean_squares(), np.arange(8.0) / 10)
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


def test_files_that_are_not_an_imatrix_are_refused(tmp_path, tiny_variants):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    for path, words in ((junk, "not an importance matrix"), (tiny_variants["F16"], "not an importance matrix"),
                        (tmp_path / "missing.gguf", "does not exist")):
        with pytest.raises(ModelFileError, match=words) as caught:
            im.load(path)
        assert "llama-imatrix" in caught.value.hint


def test_an_imatrix_of_another_model_is_refused(realistic, tmp_path):
    _, gguf, _ = realistic
    other = im.ImportanceMatrix(chunk_count=1, chunk_size=16, datasets=["x"])
    other.accumulate("blk.0.attn_q.weight", np.ones(64), 16)
    path = other.save(tmp_path / "other.gguf")
    with pytest.raises(QuantizeError, match="does not belong to"):
        quantize_gguf(gguf, tmp_path / "out.gguf", "Q4_0", imatrix=path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.gguf"]


# --- computing it --------------------------------------------------------------------------------

def test_the_torch_and_gguf_paths_agree(realistic, tmp_path):
    folder, _, from_gguf = realistic
    assert source_kind(folder) == "checkpoint"
    run = compute_imatrix(folder, None, tmp_path / "torch.imatrix.gguf", ctx=CTX)
    assert run.engine == "pytorch" and run.entries == 14
    torch_matrix, gguf_matrix = im.load(run.path), im.load(from_gguf)
    assert set(torch_matrix.entries) == set(gguf_matrix.entries)
    assert torch_matrix.chunk_count == gguf_matrix.chunk_count
    for name, entry in gguf_matrix.entries.items():
        other = torch_matrix.entries[name]
        assert other.counts.tolist() == entry.counts.tolist()  # the same tokens, the same chunks
        np.testing.assert_allclose(other.sums, entry.sums, rtol=2e-3, err_msg=name)


def test_progress_chunks_and_default_name(realistic, tmp_path):
    _, gguf, _ = realistic
    src = tmp_path / "model-F32.gguf"
    src.symlink_to(gguf)
    seen = []
    run = compute_imatrix(src, None, default_imatrix_path(src), ctx=CTX, chunks=3,
                          progress=lambda d, t, m: seen.append((d, t, m)))
    assert run.path == tmp_path / "model-F32.imatrix.gguf" and run.chunks == 3
    assert [d for d, t, m in seen if "chunk" in m and "chunks" not in m] == [1, 2, 3]
    assert im.load(run.path).entries["blk.1.ffn_down.weight"].counts.tolist() == [3 * CTX]
    assert run.seconds > 0 and run.peak_rss_bytes > 0


def test_a_text_too_short_is_refused_with_numbers(realistic, tmp_path):
    _, gguf, _ = realistic
    text = tmp_path / "short.txt"
    text.write_text("Only a few words here.", encoding="utf-8")
    with pytest.raises(QuantizeError, match=r"tokens; a context of 128 needs at least 256") as caught:
        compute_imatrix(gguf, text, tmp_path / "out.gguf", ctx=CTX)
    assert caught.value.facts["needed_tokens"] == 256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.txt"]


def test_bad_arguments_are_refused_before_any_child(realistic, tmp_path):
    folder, gguf, matrix = realistic
    with pytest.raises(QuantizeError, match="too small"):
        compute_imatrix(gguf, None, tmp_path / "a.gguf", ctx=8)
    with pytest.raises(QuantizeError, match="already exists"):
        compute_imatrix(gguf, None, matrix, ctx=CTX)
    with pytest.raises(QuantizeError, match="does not exist"):
        compute_imatrix(gguf, tmp_path / "nothing.txt", tmp_path / "a.gguf", ctx=CTX)
    with pytest.raises(ModelFileError, match="neither a .gguf file nor"):
        compute_imatrix(tmp_path, None, tmp_path / "a.gguf", ctx=CTX)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"\0" * 100)
    with pytest.raises(ModelFileError):
        compute_imatrix(junk, None, tmp_path / "a.gguf", ctx=CTX)


@pytest.mark.parametrize("which", ["gguf", "checkpoint"])
def test_cancel_leaves_no_file(realistic, tmp_path, which):
    folder, gguf, _ = realistic
    cancel = CancelToken()

    def progress(done, total, message):
        if "chunk 1/" in message:
            cancel.cancel()

    with pytest.raises(Cancelled):
        compute_imatrix(gguf if which == "gguf" else folder, None, tmp_path / "out.gguf", ctx=CTX,
                        progress=progress, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


# --- quantizing with it --------------------------------------------------------------------------

@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_K_M"])
def test_the_imatrix_lowers_kld(realistic, reference, tmp_path, qtype):
    """With the matrix the quantized model is closer to F32; a matrix with its columns shuffled (the
    right numbers in the wrong places) does not help as much: it is the content that matters."""
    _, gguf, matrix = realistic
    plain = quantize_gguf(gguf, default_out_path(gguf, qtype, tmp_path), qtype)
    with_matrix = quantize_gguf(gguf, default_out_path(gguf, qtype, tmp_path, imatrix=True), qtype, imatrix=matrix)
    shuffled = im.load(matrix)
    rng = np.random.default_rng(0)
    for entry in shuffled.entries.values():
        entry.sums = entry.sums[:, rng.permutation(entry.ne0)]
    wrong = quantize_gguf(gguf, tmp_path / f"wrong-{qtype}.gguf", qtype, imatrix=shuffled.save(tmp_path / "s.gguf"))
    kld_plain, kld_matrix, kld_wrong = (_kld(p, reference) for p in (plain, with_matrix, wrong))
    assert kld_matrix < 0.97 * kld_plain, (kld_plain, kld_matrix)
    assert kld_matrix < kld_wrong, (kld_matrix, kld_wrong)


def test_the_output_records_the_imatrix_like_llama_quantize(realistic, tmp_path):
    _, gguf, matrix = realistic
    out = quantize_gguf(gguf, default_out_path(gguf, "Q4_K_M", tmp_path, imatrix=True), "Q4_K_M", imatrix=matrix)
    assert out.name == "realistic-imat-Q4_K_M.gguf"
    meta = read_source(out).metadata
    loaded = im.load(matrix)
    assert meta["quantize.imatrix.file"] == matrix.name
    assert meta["quantize.imatrix.dataset"] == im.CALIBRATION_FILE
    assert meta["quantize.imatrix.entries_count"] == 14
    assert meta["quantize.imatrix.chunks_count"] == loaded.chunk_count


def test_same_type_with_and_without_an_imatrix_share_a_group(tmp_path):
    from runtime.models.grouping import group_key, quant_from_name

    src = tmp_path / "Model-F16.gguf"
    plain, imat = default_out_path(src, "Q4_K_M"), default_out_path(src, "Q4_K_M", imatrix=True)
    assert plain.name == "Model-Q4_K_M.gguf" and imat.name == "Model-imat-Q4_K_M.gguf"
    assert quant_from_name(imat.name) == "Q4_K_M"
    assert group_key(plain.name) == group_key(imat.name)


@pytest.mark.parametrize("qtype", ["IQ2_XXS", "IQ1_S"])
def test_iq_types_need_an_imatrix_and_work_with_one(realistic, tmp_path, qtype):
    _, gguf, matrix = realistic
    with pytest.raises(QuantizeError, match="needs an importance matrix") as caught:
        quantize_gguf(gguf, tmp_path / "no.gguf", qtype)
    assert "importance matrix" in caught.value.hint and caught.value.facts["needs_imatrix"]
    out = quantize_gguf(gguf, tmp_path / "yes.gguf", qtype, imatrix=matrix)
    from runtime.models.gguf_info import read_gguf_info

    assert read_gguf_info(out).file_type == qtype
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yes.gguf"]


# --- llama.cpp's own tools -----------------------------------------------------------------------

def _tool(path: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "LD_LIBRARY_PATH": f"{BUILD}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    return subprocess.run([str(path), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not LLAMA_QUANTIZE.exists(), reason="llama-quantize not built (benchmarks/build_llama_bench.sh)")
def test_llama_quantize_takes_our_file_and_makes_the_same_bytes(realistic, tmp_path):
    import hashlib

    _, gguf, matrix = realistic
    shutil.copy(matrix, tmp_path / matrix.name)
    done = _tool(LLAMA_QUANTIZE, "--imatrix", matrix.name, str(gguf), "tool.gguf", "Q4_K_M", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded 14 importance matrix entries" in done.stdout + done.stderr
    ours = quantize_gguf(gguf, tmp_path / "ours.gguf", "Q4_K_M", imatrix=tmp_path / matrix.name, threads=2)
    digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()  # noqa: E731
    assert digest(ours) == digest(tmp_path / "tool.gguf")


@pytest.mark.skipif(not LLAMA_IMATRIX.exists(), reason="llama-imatrix not built (benchmarks/build_llama_bench.sh)")
def test_llama_imatrix_file_loads_agrees_and_quantizes(realistic, tmp_path):
    _, gguf, ours = realistic
    done = _tool(LLAMA_IMATRIX, "-m", str(gguf), "-f", str(im.default_calibration_path()), "-o", "theirs.gguf",
                 "-c", str(CTX), "--no-ppl", "-t", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs, mine = im.load(tmp_path / "theirs.gguf"), im.load(ours)
    assert set(theirs.entries) == set(mine.entries) and theirs.chunk_count == mine.chunk_count
    for name, entry in mine.entries.items():
        assert theirs.entries[name].counts.tolist() == entry.counts.tolist()
        np.testing.assert_allclose(theirs.entries[name].sums, entry.sums, rtol=1e-3, err_msg=name)
    out = quantize_gguf(gguf, tmp_path / "q.gguf", "IQ2_XXS", imatrix=tmp_path / "theirs.gguf")
    assert read_source(out).metadata["quantize.imatrix.entries_count"] == 14


def test_a_checkpoint_without_pytorch_installed_says_what_to_do(realistic, tmp_path, monkeypatch):
    import importlib.util

    folder = realistic[0]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(QuantizeError, match="needs torch") as caught:
        compute_imatrix(folder, None, tmp_path / "x.gguf", ctx=CTX)
    assert "Convert the checkpoint to GGUF first" in caught.value.hint
    assert list(tmp_path.iterdir()) == []
