"""Reading checkpoint folders: what inspect_checkpoint reports, the tensor reader, and bad folders."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from runtime.compress.checkpoint import SUPPORTED_ARCHITECTURES, TensorReader, inspect_checkpoint
from runtime.errors import ConversionError


@pytest.mark.parametrize("kind, hf_arch, gguf_arch, tokenizer", [
    ("llama", "LlamaForCausalLM", "llama", "sentencepiece"),
    ("mistral", "MistralForCausalLM", "llama", "sentencepiece"),
    ("qwen2", "Qwen2ForCausalLM", "qwen2", "bpe"),
    ("qwen3", "Qwen3ForCausalLM", "qwen3", "bpe"),
    ("phi3", "Phi3ForCausalLM", "phi3", "sentencepiece"),
])
def test_inspect_describes_each_architecture(tiny_checkpoint, kind, hf_arch, gguf_arch, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    folder = tiny_checkpoint(kind)
    info = inspect_checkpoint(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert (info.hf_architecture, info.gguf_architecture, info.tokenizer_kind) == (hf_arch, gguf_arch, tokenizer)
    assert info.supported and info.problem is None
    assert info.parameter_count == sum(p.numel() for p in model.parameters())  # tied weights counted once
    assert info.dtype == "float32" and info.weight_format == "safetensors"
    assert info.weight_files == ["model.safetensors"]
    assert info.size_bytes == (folder / "model.safetensors").stat().st_size
    assert info.has_chat_template
    assert (info.context_length, info.block_count, info.embedding_length) == (512, 2, 64)
    assert (info.head_count, info.head_count_kv) == (4, 2)
    assert info.vocab_size == model.config.vocab_size
    assert info.tensor_count == len(info.tensors) == len(model.state_dict()) - info.tie_word_embeddings
    assert json.dumps(info.to_dict())  # the CLI and the GUI pass it on as JSON


def test_sharded_and_bin_checkpoints_list_the_same_tensors(tiny_checkpoint):
    single = inspect_checkpoint(tiny_checkpoint("llama"))
    sharded = inspect_checkpoint(tiny_checkpoint("llama", "sharded"))
    binary = inspect_checkpoint(tiny_checkpoint("llama", "bin"))
    assert len(sharded.weight_files) > 2 and sharded.weight_format == "safetensors"
    assert binary.weight_files == ["pytorch_model.bin"] and binary.weight_format == "pytorch"
    shapes = {t.name: t.shape for t in single.tensors}
    assert {t.name: t.shape for t in sharded.tensors} == shapes
    assert {t.name: t.shape for t in binary.tensors} == shapes
    assert sharded.parameter_count == binary.parameter_count == single.parameter_count


def test_bfloat16_checkpoint_reports_its_dtype(tiny_checkpoint):
    info = inspect_checkpoint(tiny_checkpoint("qwen2", dtype="bfloat16"))
    assert info.dtype == "bfloat16"
    assert info.size_bytes < inspect_checkpoint(tiny_checkpoint("qwen2")).size_bytes * 0.6


@pytest.mark.parametrize("weights, dtype", [("safetensors", "bfloat16"), ("sharded", "float32"),
                                            ("bin", "bfloat16")])
def test_reader_gives_the_values_safetensors_and_torch_give(tiny_checkpoint, weights, dtype):
    import torch
    from safetensors import safe_open

    folder = tiny_checkpoint("llama", weights, dtype)
    expected = {}
    if weights == "bin":
        expected = torch.load(folder / "pytorch_model.bin", weights_only=True)
    else:
        for path in sorted(folder.glob("*.safetensors")):
            with safe_open(path, framework="pt") as f:
                expected.update({k: f.get_tensor(k) for k in f.keys()})
    seen = []
    with TensorReader(folder) as reader:
        for source in reader.sources():
            want = expected[source.name].float().numpy()
            assert source.shape == tuple(want.shape)
            assert np.array_equal(source.array(), want), source.name
            if len(source.shape) == 2:  # a slice of rows reads the same rows
                assert np.array_equal(source.rows(3, 7), want[3:7])
            seen.append(source.name)
    assert sorted(seen) == sorted(expected)
    assert seen == [t.name for t in inspect_checkpoint(folder).tensors]  # one order for planning and reading


# --- bad folders --------------------------------------------------------------------------------

def _error(folder) -> ConversionError:
    with pytest.raises(ConversionError) as caught:
        inspect_checkpoint(folder)
    return caught.value


def test_missing_folder_and_a_file_instead_of_a_folder(tmp_path, starter_model):
    assert "does not exist" in _error(tmp_path / "nope").message
    err = _error(starter_model)
    assert "already a GGUF" in err.message and "Quantize" in err.hint


def test_a_folder_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    err = _error(tmp_path)
    assert "not a Hugging Face checkpoint" in err.message and "config.json" in err.message
    assert "model.safetensors" in err.hint
    (tmp_path / "model-Q4_K_M.gguf").write_bytes(b"GGUF")
    assert "GGUF" in _error(tmp_path).hint


def test_missing_config(copy_checkpoint):
    folder = copy_checkpoint("llama")
    (folder / "config.json").unlink()
    assert "no config.json" in _error(folder).message


def test_damaged_config(copy_checkpoint):
    folder = copy_checkpoint("llama")
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], ')
    err = _error(folder)
    assert "config.json is damaged" in err.message and "again" in err.hint


def test_missing_weights(copy_checkpoint):
    folder = copy_checkpoint("llama")
    (folder / "model.safetensors").rename(folder / "weights.safetensors")
    err = _error(folder)
    assert "no model weights" in err.message and "weights.safetensors" in err.hint


def test_unsupported_architecture_names_the_supported_ones(copy_checkpoint):
    folder = copy_checkpoint("llama")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["GPTNeoXForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    info = inspect_checkpoint(folder)  # readable, just not convertible
    assert not info.supported and info.gguf_architecture is None
    assert "GPTNeoXForCausalLM" in info.problem
    for name in ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM"):
        assert name in info.problem and name in SUPPORTED_ARCHITECTURES


def test_truncated_shard(copy_checkpoint):
    folder = copy_checkpoint("llama", "sharded")
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    err = _error(folder)
    assert shard.name in err.message and "truncated" in err.message
    assert err.path == str(shard) and "download" in err.hint.lower()
    shard.write_bytes(data[:5])
    assert "truncated" in _error(folder).message


def test_safetensors_header_claiming_too_much(copy_checkpoint):
    folder = copy_checkpoint("llama")
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[:8] = (2**40).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    assert "not a safetensors file" in _error(folder).message
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    assert "Git LFS pointer" in _error(folder).message


def test_index_naming_a_missing_shard(copy_checkpoint):
    folder = copy_checkpoint("llama", "sharded")
    victim = sorted(folder.glob("model-*.safetensors"))[-1]
    victim.unlink()
    err = _error(folder)
    assert victim.name in err.message and "missing" in err.message and "incomplete" in err.hint


def test_index_that_does_not_match_the_shards(copy_checkpoint):
    folder = copy_checkpoint("llama", "sharded")
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    files = sorted(set(index["weight_map"].values()))
    name = next(n for n, f in index["weight_map"].items() if f == files[0])
    index["weight_map"][name] = files[1]
    index_path.write_text(json.dumps(index))
    err = _error(folder)
    assert "does not match" in err.message and name in err.message


def test_index_with_a_tensor_no_shard_has(copy_checkpoint):
    folder = copy_checkpoint("llama", "sharded")
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = sorted(index["weight_map"].values())[0]
    index_path.write_text(json.dumps(index))
    assert "no weight file has it" in _error(folder).message


@pytest.mark.parametrize("index", ['{"weight_map": ', '{"metadata": {}}', '{"weight_map": {"a": 3}}',
                                   '{"weight_map": {"a": "../model.safetensors"}}'])
def test_bad_index_file(copy_checkpoint, index):
    folder = copy_checkpoint("llama", "sharded")
    (folder / "model.safetensors.index.json").write_text(index)
    err = _error(folder)
    assert "model.safetensors.index.json" in err.message


def test_shards_without_their_index_must_all_be_there(copy_checkpoint):
    folder = copy_checkpoint("llama", "sharded")
    (folder / "model.safetensors.index.json").unlink()
    assert inspect_checkpoint(folder).tensor_count == 21  # all shards: usable without the index
    sorted(folder.glob("model-*.safetensors"))[2].unlink()
    assert "Only" in _error(folder).message


def test_damaged_bin(copy_checkpoint):
    folder = copy_checkpoint("qwen2", "bin")
    path = folder / "pytorch_model.bin"
    path.write_bytes(path.read_bytes()[:2000])
    err = _error(folder)
    assert "pytorch_model.bin" in err.message and "damaged or truncated" in err.message


def test_bin_with_pickled_code_is_refused(copy_checkpoint):
    import torch

    folder = copy_checkpoint("qwen2", "bin")
    torch.save({"model": shutil.copytree}, folder / "pytorch_model.bin")  # any object that is not a tensor
    err = _error(folder)
    assert "could run code" in err.message and "safetensors" in err.hint


@pytest.mark.parametrize("quantization, words", [
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "bitsandbytes (4-bit)"),
    ({"load_in_8bit": True}, "bitsandbytes (8-bit)"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "GPTQ"),
    ({"quant_method": "awq", "bits": 4, "version": "gemm"}, "AWQ"),
    ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "FP8"),
])
def test_quantized_checkpoint_says_what_to_download(copy_checkpoint, quantization, words):
    folder = copy_checkpoint("llama")
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = quantization
    (folder / "config.json").write_text(json.dumps(config))
    err = _error(folder)
    assert "already quantized" in err.message and words in err.message
    assert "original" in err.hint and "GGUF" in err.hint


def test_quantized_weights_are_refused_even_when_config_is_silent(copy_checkpoint):
    import torch
    from safetensors.torch import load_file, save_file

    folder = copy_checkpoint("llama")
    tensors = load_file(folder / "model.safetensors")
    weight = tensors.pop("model.layers.0.mlp.up_proj.weight")
    tensors["model.layers.0.mlp.up_proj.qweight"] = torch.zeros(weight.shape[1] // 8, weight.shape[0],
                                                                 dtype=torch.int32)
    tensors["model.layers.0.mlp.up_proj.scales"] = torch.ones(1, weight.shape[0], dtype=torch.float16)
    save_file(tensors, folder / "model.safetensors")
    err = _error(folder)
    assert "quantized weights" in err.message and "qweight" in err.message
