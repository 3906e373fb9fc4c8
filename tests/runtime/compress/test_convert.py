"""The converter's output is right: llama.cpp's logits match transformers on the same weights, its
tokenizer gives the Hugging Face tokenizer's ids, the metadata and chat template survive, and the model
chats through the app's engine."""
from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.compress.convert import convert_checkpoint, default_out_name
from runtime.models.gguf_info import read_gguf_info

TOKENS = list(range(5, 45)) + [7, 7, 7, 300, 2, 11]   # a fixed sequence, some repeats, an EOS in the middle


@pytest.fixture(scope="module")
def converted(tiny_checkpoint, tmp_path_factory):
    """``converted(kind, out_type="f32", weights=..., dtype=...) -> Path``: each GGUF made once."""
    root = tmp_path_factory.mktemp("converted")
    cache = {}

    def get(kind, out_type="f32", weights="safetensors", dtype="float32"):
        key = (kind, out_type, weights, dtype)
        if key not in cache:
            cache[key] = convert_checkpoint(tiny_checkpoint(kind, weights, dtype),
                                            root / f"{kind}-{weights}-{dtype}-{out_type}.gguf", out_type=out_type)
        return cache[key]

    return get


@pytest.fixture(scope="module")
def reference_logits(tiny_checkpoint):
    """transformers' logits for TOKENS, from the checkpoint on disk, widened to float32."""
    import torch
    from transformers import AutoModelForCausalLM

    cache = {}

    def get(kind, weights="safetensors", dtype="float32", model_edit=None):
        key = (kind, weights, dtype, model_edit)
        if key not in cache:
            model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint(kind, weights, dtype), dtype=torch.float32,
                                                         attn_implementation="eager")
            if model_edit is not None:
                model_edit(model)
            with torch.no_grad():
                cache[key] = model(torch.tensor([TOKENS])).logits[0].numpy()
        return cache[key]

    return get


def llama_cpp_logits(path) -> np.ndarray:
    """llama.cpp's logits for every position of TOKENS (float32 KV cache, so F32 stays F32 throughout)."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=128, n_threads=2, logits_all=True, verbose=False,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    try:
        llm.eval(TOKENS)
        return np.array(llm.scores[:len(TOKENS)], dtype=np.float32)
    finally:
        llm.close()


@pytest.mark.parametrize("kind, weights, dtype", [
    ("llama", "safetensors", "float32"), ("mistral", "safetensors", "float32"), ("phi3", "safetensors", "float32"),
    ("qwen2", "safetensors", "float32"), ("qwen3", "safetensors", "float32"),
    ("llama", "sharded", "float32"), ("qwen2", "bin", "float32"), ("qwen2", "safetensors", "bfloat16"),
])
def test_f32_logits_match_transformers(converted, reference_logits, kind, weights, dtype):
    expected = reference_logits(kind, weights, dtype)
    got = llama_cpp_logits(converted(kind, "f32", weights, dtype))
    assert got.shape == expected.shape
    assert expected.std() > 2  # logits that vary: a wrong tensor would show
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)


def test_the_llama_qk_permutation_is_what_makes_it_match(converted, reference_logits):
    """The tiny weights are sensitive enough: the same model in the other Q/K row layout is far off."""
    from runtime.compress.convert_arch import permute_rows

    def unpermute(model):
        import torch

        with torch.no_grad():
            for layer in model.model.layers:
                for proj, heads in ((layer.self_attn.q_proj, 4), (layer.self_attn.k_proj, 2)):
                    proj.weight.copy_(torch.from_numpy(permute_rows(proj.weight.numpy(), heads)))

    got = llama_cpp_logits(converted("llama"))
    assert np.abs(got - reference_logits("llama")).max() < 1e-3
    assert np.abs(got - reference_logits("llama", model_edit=unpermute)).max() > 0.5


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("out_type, max_mean, max_top1_miss", [("f16", 0.005, 0.05), ("bf16", 0.03, 0.1),
                                                               ("q8_0", 0.08, 0.15)])
def test_smaller_types_stay_close(converted, reference_logits, kind, out_type, max_mean, max_top1_miss):
    expected = reference_logits(kind)
    got = llama_cpp_logits(converted(kind, out_type))
    mean_error = np.abs(got - expected).mean() / expected.std()
    top1_miss = (got.argmax(-1) != expected.argmax(-1)).mean()
    assert mean_error < max_mean, mean_error
    assert top1_miss <= max_top1_miss, top1_miss
    assert np.abs(got - expected).max() > 1e-4  # it really is another precision


@pytest.mark.parametrize("out_type, matrix_type", [("f32", "F32"), ("f16", "F16"), ("bf16", "BF16"),
                                                   ("q8_0", "Q8_0")])
def test_tensor_types_follow_the_output_type(converted, out_type, matrix_type):
    import gguf

    path = converted("qwen2", out_type)
    reader = gguf.GGUFReader(path)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == types["token_embd.weight"] == matrix_type
    assert types["blk.0.attn_norm.weight"] == types["output_norm.weight"] == "F32"
    assert types["blk.0.attn_q.bias"] == "F32"  # biases stay F32, as llama.cpp's converter keeps them
    assert "output.weight" not in types         # tied embeddings: llama.cpp reuses token_embd
    assert read_gguf_info(path).file_type == {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}[out_type]


# --- tokenizer --------------------------------------------------------------------------------

STRINGS = [
    "Hello world", "The quick brown fox jumps over the lazy dog.", "café naïve über straße façade",
    "東京 日本語 中文 测试", "привет мир, γειά σου!", "emoji 🙂🚀 and 🦙 ✅ 👍🏽 mixed",
    "digits 1234567890 3.14159 and 42", "whitespace  runs   of    spaces\tand\ttabs\nnew\n\nlines",
    "trailing spaces   ", "it's they'll we've I'M", "code: def f(x):\n    return x ** 2  # comment",
    "unknown chars ☃ ✈ ♞ ∑ ∫", "", "\n\n",
]
SPECIAL_STRINGS = {
    "llama": ["<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", "text<|im_end|>more<|im_start|>",
              "<s>hello</s>"],
    "qwen2": ["<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", "text<|im_end|>more<|im_start|>",
              "<tool_call>{\"a\": 1}</tool_call>", "<|endoftext|>", "  leading spaces", " "],
    "phi3": ["<|user|>\nhi<|end|>\n<|assistant|>", "<s>hello<|endoftext|>"],
}


def _llama_cpp_tokenizer(path):
    import llama_cpp

    return llama_cpp.Llama(str(path), vocab_only=True, verbose=False)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "phi3"])
def test_tokenizer_gives_the_hugging_face_ids(converted, tiny_checkpoint, kind):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_checkpoint(kind))
    llm = _llama_cpp_tokenizer(converted(kind))
    try:
        for text in STRINGS + SPECIAL_STRINGS[kind]:
            assert llm.tokenize(text.encode(), add_bos=True, special=True) == hf(text).input_ids, text
            # and back: the GGUF's pieces spell the text again (special tokens included; SentencePiece
            # keeps the space it puts before the first word, which transformers drops)
            ids = hf(text, add_special_tokens=False).input_ids
            text_back = llm.detokenize(ids, special=True).decode("utf-8")
            assert (text_back[1:] if kind != "qwen2" and text_back.startswith(" ") else text_back) == hf.decode(ids)
    finally:
        llm.close()


def test_sentencepiece_tokenizer_matches_sentencepiece_itself(converted, tiny_checkpoint):
    """Also where transformers' fast tokenizer differs from the model file (leading whitespace)."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(tiny_checkpoint("llama") / "tokenizer.model"))
    llm = _llama_cpp_tokenizer(converted("llama"))
    try:
        for text in STRINGS + ["  leading spaces", " ", "   x"]:
            assert llm.tokenize(text.encode(), add_bos=False, special=False) == sp.encode(text), text
    finally:
        llm.close()


def test_bos_flags_follow_the_tokenizer_config(converted):
    import gguf

    llama = gguf.GGUFReader(converted("llama"))
    qwen = gguf.GGUFReader(converted("qwen2"))
    assert llama.fields["tokenizer.ggml.add_bos_token"].contents() is True
    assert qwen.fields["tokenizer.ggml.add_bos_token"].contents() is False
    assert llama.fields["tokenizer.ggml.model"].contents() == "llama"
    assert qwen.fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert qwen.fields["tokenizer.ggml.pre"].contents() == "qwen2"
    assert len(qwen.fields["tokenizer.ggml.merges"].contents()) > 100
    types = qwen.fields["tokenizer.ggml.token_type"].contents()
    tokens = qwen.fields["tokenizer.ggml.tokens"].contents()
    assert types[tokens.index("<|im_end|>")] == 3     # CONTROL (special)
    assert types[tokens.index("<tool_call>")] == 4    # USER_DEFINED (added, not special)


# --- metadata ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3", "phi3"])
def test_metadata_and_chat_template_read_back(converted, tiny_checkpoint, kind):
    folder = tiny_checkpoint(kind)
    config = json.loads((folder / "config.json").read_text())
    info = read_gguf_info(converted(kind))
    assert info.architecture == {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "phi3": "phi3"}[kind]
    assert (info.context_length, info.block_count, info.embedding_length) == (512, 2, 64)
    assert (info.head_count, info.head_count_kv) == (4, 2)
    assert info.vocab_size == config["vocab_size"]
    assert (info.bos_token_id, info.eos_token_id) == (config["bos_token_id"], config["eos_token_id"])
    template_file = folder / "chat_template.jinja"
    expected = (template_file.read_text() if template_file.is_file() else
                json.loads((folder / "tokenizer_config.json").read_text())["chat_template"])
    assert info.chat_template == expected


def test_rope_and_norm_settings_are_written(converted, tiny_checkpoint):
    import gguf

    reader = gguf.GGUFReader(converted("qwen2"))
    assert reader.fields["qwen2.rope.freq_base"].contents() == 1e6
    assert reader.fields["qwen2.attention.layer_norm_rms_epsilon"].contents() == pytest.approx(1e-6)
    reader = gguf.GGUFReader(converted("llama"))
    assert reader.fields["llama.rope.dimension_count"].contents() == 16
    assert reader.fields["general.file_type"].contents() == 0


def test_llama3_rope_scaling_becomes_rope_freqs(copy_checkpoint, tmp_path):
    import gguf

    folder = copy_checkpoint("llama")
    config = json.loads((folder / "config.json").read_text())
    config["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    (folder / "config.json").write_text(json.dumps(config))
    reader = gguf.GGUFReader(convert_checkpoint(folder, tmp_path / "l3.gguf", out_type="f16"))
    freqs = next(t for t in reader.tensors if t.name == "rope_freqs.weight")
    assert freqs.tensor_type.name == "F32" and list(freqs.shape) == [8]
    factors = np.asarray(freqs.data)
    assert factors[0] == 1.0 and factors[-1] == 8.0  # high frequencies kept, low ones stretched


def test_output_into_a_folder_takes_the_default_name(tiny_checkpoint, tmp_path):
    folder = tiny_checkpoint("qwen3")
    path = convert_checkpoint(folder, tmp_path, out_type="bf16")
    assert path == tmp_path / default_out_name(folder, "bf16") == tmp_path / f"{folder.name}-BF16.gguf"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left


def test_converted_model_chats_through_the_engine(converted):
    from runtime.engine.local import LocalEngine
    from runtime.engine.types import LoadOptions, SamplingParams

    with LocalEngine(converted("qwen2", "f16"), LoadOptions(n_ctx=256, n_threads=2)) as engine:
        client = engine.client()
        assert client.count_tokens([{"role": "user", "content": "hello"}]) > 3  # its own template renders
        reply = client.stream_chat([{"role": "user", "content": "Say hello to the world."}],
                                   SamplingParams(temperature=0, max_tokens=12, seed=1))
    assert reply.stats.completion_tokens >= 1 and reply.stats.finish_reason in ("stop", "length")
    assert reply.stats.prompt_tokens > 5


def test_memory_follows_one_tensor_not_the_model(tmp_path):
    """Tensors stream through: the converter's own allocations stay far below the model's size."""
    import tracemalloc

    from runtime.compress.checkpoint import inspect_checkpoint
    from tiny_checkpoints import build_checkpoint

    folder = build_checkpoint("llama", tmp_path / "deep", hidden=256, layers=16, ffn=512)
    info = inspect_checkpoint(folder)
    largest = max(t.n_elements for t in info.tensors) * 4
    convert_checkpoint(folder, tmp_path / "warm-up.gguf", out_type="f16")  # imports and caches out of the way
    for out_type in ("f16", "q8_0"):
        tracemalloc.start()
        try:
            convert_checkpoint(folder, tmp_path / f"deep-{out_type}.gguf", out_type=out_type)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < info.size_bytes / 10, (out_type, peak, info.size_bytes)
        assert peak < 4 * largest + (2 << 20), (out_type, peak, largest)
