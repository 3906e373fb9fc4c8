"""Expected sizes and per-tensor types against what llama.cpp's quantizer really writes.

The reference is ``llama_model_quantize`` itself, run in this process on the same input (the
quantizer's own tests compare the app's child against it and against llama-quantize).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from model_files import write_truncated_copy
from quantize_models import cached_tiny_llama, reference_quantize
from runtime.compress import sizes
from runtime.errors import ModelFileError, QuantizeError

MAIN = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"]
OTHERS = ["Q5_K_S", "Q5_1", "Q5_0", "Q4_K_S", "Q4_1", "IQ4_NL", "IQ4_XS", "Q3_K_L", "Q3_K_M", "IQ3_M", "IQ3_S",
          "Q3_K_S", "Q2_K", "F16", "BF16", "F32"]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "quantize-models"
    folder.mkdir(exist_ok=True)
    return folder


def assert_plan_matches(src: Path, qtype: str, tmp_path: Path) -> sizes.TargetPlan:
    plan = sizes.plan_quantization(src, qtype)
    out = reference_quantize(src, tmp_path / f"ref-{qtype}.gguf", qtype)
    real = {t.name: t.type_name for t in sizes.read_source(out).tensors}
    predicted = {t.name: t.target_type for t in plan.tensors}
    assert predicted == real
    real_size = out.stat().st_size
    assert 0 <= plan.expected_bytes - real_size <= sizes.ALIGNMENT  # exact but for the header's padding
    out.unlink()
    return plan


@pytest.mark.parametrize("qtype", MAIN + OTHERS)
def test_f16_source_every_offered_type(models, tmp_path, qtype):
    src = cached_tiny_llama(models)
    plan = assert_plan_matches(src, qtype, tmp_path)
    assert plan.problem is None and not plan.fallbacks
    norms = [t for t in plan.tensors if t.name.endswith("_norm.weight")]
    assert norms and all(t.target_type == "F32" and not t.quantized for t in norms)  # 1-D tensors stay F32


def test_k_quant_mixes_keep_some_tensors_at_more_bits(models):
    """Q4_K_M: attn_v and ffn_down of layers 0, 3, 6, 7 (of 8) at Q6_K, the output matrix at Q6_K."""
    plan = sizes.plan_quantization(cached_tiny_llama(models), "Q4_K_M")
    types = {t.name: t.target_type for t in plan.tensors}
    assert types["output.weight"] == "Q6_K" and types["token_embd.weight"] == "Q4_K"
    more = [i for i in range(8) if types[f"blk.{i}.ffn_down.weight"] == "Q6_K"]
    assert more == [0, 3, 6, 7]
    assert [i for i in range(8) if types[f"blk.{i}.attn_v.weight"] == "Q6_K"] == more
    assert {types[f"blk.{i}.attn_q.weight"] for i in range(8)} == {"Q4_K"}
    pure = sizes.plan_quantization(cached_tiny_llama(models), "Q4_0")
    assert {t.target_type for t in pure.tensors if t.quantized} == {"Q4_0", "Q6_K"}  # output.weight: Q6_K


@pytest.mark.parametrize("kind", ["f32", "bf16", "tied", "gqa4"])
@pytest.mark.parametrize("qtype", ["Q8_0", "Q6_K", "Q4_K_M", "Q3_K_M"])
def test_other_sources_and_shapes(models, tmp_path, kind, qtype):
    shape = {"f32": {"dtype": "f32"}, "bf16": {"dtype": "bf16"}, "tied": {"tied": True},
             "gqa4": {"n_head": 8, "n_head_kv": 2, "n_layer": 16}}[kind]
    assert_plan_matches(cached_tiny_llama(models, **shape), qtype, tmp_path)


def test_tied_embeddings_follow_the_output_rule(models):
    plan = sizes.plan_quantization(cached_tiny_llama(models, tied=True), "Q4_K_M")
    assert {t.name: t.target_type for t in plan.tensors}["token_embd.weight"] == "Q6_K"


@pytest.mark.parametrize("qtype", ["Q4_K_M", "Q4_0"])
def test_starter_model_requantized(starter_model, tmp_path, qtype):
    plan = assert_plan_matches(Path(starter_model), qtype, tmp_path)
    embd = next(t for t in plan.tensors if t.name == "token_embd.weight")
    assert embd.target_type == "Q8_0"  # tied to the output: Q6_K wanted, 576-value rows take Q8_0
    if qtype == "Q4_K_M":
        # rows of 576 values: not whole 256-value blocks, so llama.cpp falls back tensor by tensor
        assert plan.notable_fallbacks and not plan.refused
        assert "576" in plan.problem and "256" in plan.problem
    else:
        assert plan.fallbacks == [embd] and plan.problem is None


def test_starter_problems_in_words(starter_model):
    problems = sizes.target_problems(starter_model, MAIN)
    assert set(problems) == {"Q6_K", "Q5_K_M", "Q4_K_M"}
    text = problems["Q4_K_M"]
    assert text.startswith("180 of 210 weight matrices (75% of the weights)") and "Q5_0" in text
    assert "larger than the name suggests" in text


def test_shapes_no_k_quant_fits_are_refused(models, tmp_path):
    src = cached_tiny_llama(models, n_embd=64, n_ff=128)
    plan = assert_plan_matches(src, "Q4_K_M", tmp_path)  # llama.cpp would write it: every matrix falls back
    assert plan.refused
    assert plan.problem.startswith("Q4_K_M cannot be made from")
    assert "64, 128" in plan.problem and "256" in plan.problem and "Q5_0" in plan.problem
    assert "Choose Q8_0 or Q5_0 or Q4_0 instead" in plan.problem
    assert "Q4_0" not in sizes.target_problems(src, ["Q4_0", "Q8_0"])


def test_rows_not_a_multiple_of_32_fall_back_to_f16(models, tmp_path):
    src = cached_tiny_llama(models, n_embd=48, n_ff=96, n_head=4, n_head_kv=4)
    plan = assert_plan_matches(src, "Q8_0", tmp_path)
    assert {t.target_type for t in plan.fallbacks} == {"F16"} and not plan.refused  # ffn_down (96) is Q8_0
    assert sizes.plan_quantization(src, "Q4_K_M").refused


def test_expected_sizes_order_and_names(models):
    found = sizes.expected_sizes(cached_tiny_llama(models), ["q8_0", "Q6_K", "Q5_K_M", "Q4_K", "Q4_0"])
    assert list(found) == ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"]
    values = list(found.values())
    assert values == sorted(values, reverse=True)
    source_size = cached_tiny_llama(models).stat().st_size
    assert 0.30 < found["Q8_0"] / source_size < 0.56  # 8.5 bits a weight against 16


def test_fit_for_chat(models):
    src = cached_tiny_llama(models)
    fits = sizes.target_fits(src, ["Q8_0", "Q4_0"], available_bytes=8 * 1024**3)
    assert {v.status for v in fits.values()} == {"fits"}
    assert fits["Q8_0"].weights_bytes == sizes.expected_sizes(src, ["Q8_0"])["Q8_0"]
    tight = sizes.target_fits(src, ["Q8_0"], available_bytes=1024**2)
    assert tight["Q8_0"].status == "too_big"


def test_quality_notes_state_llama_cpp_figures():
    for qtype in MAIN:
        note = sizes.QUALITY_NOTES[qtype]
        assert "Llama-3-8B" in note and "KL divergence" in note and "published" in note
    assert "+2.8%" in sizes.QUALITY_NOTES["Q4_K_M"] and "0.0313" in sizes.QUALITY_NOTES["Q4_K_M"]
    assert "6.70" in sizes.QUALITY_NOTES["Q4_0"]
    klds = [sizes.QUALITY_FIGURES[t].kld for t in MAIN]
    assert klds == sorted(klds)
    assert "importance matrix" in sizes.QUALITY_NOTES["IQ4_XS"]
    assert "tools/perplexity/README.md" in sizes.QUALITY_SOURCE


def test_type_names():
    assert sizes.normalize_type("q4_k") == "Q4_K_M" and sizes.normalize_type(" q8_0 ") == "Q8_0"
    assert sizes.ftype_number("Q4_K_M") == 15
    with pytest.raises(QuantizeError) as err:
        sizes.normalize_type("Q9_9")
    assert "Q4_K_M" in err.value.hint


def test_damaged_source(models, tmp_path):
    cut = write_truncated_copy(cached_tiny_llama(models), tmp_path)
    with pytest.raises(ModelFileError, match="truncated"):
        sizes.expected_sizes(cut, ["Q8_0"])
    with pytest.raises(ModelFileError, match="does not exist"):
        sizes.expected_sizes(tmp_path / "missing.gguf", ["Q8_0"])


def test_split_source_is_refused(models, tmp_path):
    import gguf

    part = tmp_path / "model-00001-of-00002.gguf"
    shutil.copy(cached_tiny_llama(models), part)
    info = sizes.read_source(part)  # a plain file reads; now write one that says it is a shard
    assert info.info.split_count == 1
    writer = gguf.GGUFWriter(str(part), "llama")
    writer.add_uint16("split.count", 2)
    writer.add_uint16("split.no", 0)
    writer.add_tensor("token_embd.weight", __import__("numpy").zeros((4, 32), dtype="float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.utime(part)
    with pytest.raises(QuantizeError, match="split into 2 files"):
        sizes.expected_sizes(part, ["Q8_0"])


@pytest.fixture(scope="session")
def checkpoint_256(tmp_path_factory):
    """A tiny Hugging Face llama checkpoint (tests/tiny_checkpoints.py) with rows K-quants fit."""
    from tiny_checkpoints import build_checkpoint

    folder = tmp_path_factory.getbasetemp() / "quantize-checkpoints" / "llama-256"
    if not folder.exists():
        build_checkpoint("llama", folder, hidden=256, ffn=512, layers=4)
    return folder


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K_M", "Q4_0"])
def test_checkpoint_before_conversion(checkpoint_256, tmp_path, qtype):
    from runtime.compress.convert import convert_checkpoint

    expected = sizes.expected_sizes_for_checkpoint(checkpoint_256, [qtype])[qtype]
    plan = sizes.plan_from_source(sizes.checkpoint_source(checkpoint_256), qtype)
    converted = convert_checkpoint(checkpoint_256, tmp_path / "model-F16.gguf", out_type="f16")
    out = reference_quantize(converted, tmp_path / f"model-{qtype}.gguf", qtype)
    assert {t.name: t.target_type for t in plan.tensors} == {t.name: t.type_name for t in sizes.read_source(out).tensors}
    # the conversion's header is the converter's estimate: a few KiB
    assert abs(expected - out.stat().st_size) < 16 * 1024
    assert sizes.checkpoint_problems(checkpoint_256, [qtype]) == {}


def test_checkpoint_too_narrow_for_k_quants(tmp_path):
    from tiny_checkpoints import build_checkpoint

    folder = build_checkpoint("llama", tmp_path / "llama-64")  # hidden 64, ffn 128
    problems = sizes.checkpoint_problems(folder, ["Q4_K_M", "Q8_0"])
    assert list(problems) == ["Q4_K_M"] and problems["Q4_K_M"].startswith("Q4_K_M cannot be made from")
