"""Tiny random Hugging Face checkpoints for the converter's tests, written with transformers' own
classes (``LlamaForCausalLM.save_pretrained`` ...), so they look like what people download.

Every model has 2 layers, hidden size 64, 4 attention heads over 2 KV heads (GQA) and a few hundred
tokens. Weights are random but *not* small: norms are drawn around 1 and matrices with a wide spread,
so a wrong permutation or a swapped tensor changes the logits a lot (the default init of 0.02 leaves
attention nearly uniform and would hide such mistakes).

Tokenizers are trained here on a few hundred generated lines (unicode, emoji, digits):

- ``llama``, ``mistral``, ``phi3``: a SentencePiece BPE ``tokenizer.model`` (byte fallback, as
  Llama 2 / Mistral / Phi-3 ship it) with ``<|im_start|>``/``<|im_end|>`` (Phi-3: its own
  ``<|endoftext|>``, ``<|user|>``, ``<|assistant|>``, ``<|end|>`` ...) added after its vocabulary,
  a ``tokenizer.json`` made from it by transformers, and a ``tokenizer_config.json`` in the layout of
  most checkpoints on the hub (``added_tokens_decoder``, ``chat_template`` inside).
- ``qwen2``, ``qwen3``: a byte-level BPE ``tokenizer.json`` (Qwen2's pre-tokenizer regex, NFC) trained
  with the ``tokenizers`` package, special tokens after the vocabulary plus one non-special added token,
  saved through ``Qwen2TokenizerFast.save_pretrained`` (transformers 5 layout: the template in
  ``chat_template.jinja``).

``weights``: "safetensors" (one file), "sharded" (several safetensors files and their index) or "bin"
(``pytorch_model.bin``, a plain ``torch.save`` of the state dict). ``dtype``: "float32" or "bfloat16".
``build_checkpoint(kind, folder)`` writes one; ``cached_checkpoint(kind, root)`` builds it once under
``root`` and reuses it (tests pass a session temp folder). Builders import torch and transformers
lazily, so importing this module is cheap.
"""
from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

KINDS = ("llama", "mistral", "qwen2", "qwen3", "phi3")
SPM_KINDS = ("llama", "mistral", "phi3")

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, CONTEXT = 64, 2, 4, 2, 128, 512

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# The llama-style template starts with the BOS token, as Llama 2 chat templates do.
LLAMA_TEMPLATE = "{{ bos_token }}" + CHATML_TEMPLATE

# Qwen2's pre-tokenizer (tokenizer.json of Qwen2/Qwen2.5): letters, single digits, punctuation runs.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

_WORDS = ("the quick brown fox jumps over a lazy dog while the model converts every tensor of each "
          "layer into a file that people can chat with on small laptops and large servers alike "
          "hello world python code river mountain night day time number token weight convert "
          "café naïve über straße façade 東京 日本語 中文 测试 привет мир добро γειά σου").split()
_SYMBOLS = ("🙂", "🚀", "🦙", "✅", "👍🏽", "...", "!", "?", ",", "(x)", "--", "==", "'s", "'ll", "3.14")


def corpus(n_lines: int = 600, seed: int = 0) -> list[str]:
    """Deterministic training text: words in several scripts, numbers, emoji, punctuation."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 14))]
        if i % 3 == 0:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 10**rng.randint(1, 6))))
        if i % 4 == 0:
            words.insert(rng.randrange(len(words)), rng.choice(_SYMBOLS))
        sep = "  " if i % 9 == 0 else " "
        lines.append(sep.join(words).capitalize() + rng.choice((".", "", "!", "?")))
    return lines


# --- tokenizers ---------------------------------------------------------------------------------

SPM_VOCAB = 500
SPM_ADDED = ("<|im_start|>", "<|im_end|>")
# Phi-3's own added tokens (llama.cpp looks <|endoftext|> up in every model named phi3).
PHI3_ADDED = ("<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>", "<|system|>")
PHI3_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)


def train_sentencepiece(path: Path, vocab_size: int = SPM_VOCAB) -> Path:
    """A Llama-style SentencePiece BPE model: <unk>=0, <s>=1, </s>=2, <pad>=3, byte fallback."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=buffer, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, pad_piece="<pad>", character_coverage=1.0,
        num_threads=1, minloglevel=2)
    path.write_bytes(buffer.getvalue())
    return path


def _write_spm_tokenizer(folder: Path, phi3: bool = False) -> int:
    """tokenizer.model, tokenizer.json and hub-style tokenizer_config.json; returns the vocab size."""
    added = PHI3_ADDED if phi3 else SPM_ADDED
    eos = "<|endoftext|>" if phi3 else "</s>"
    from transformers import AutoTokenizer

    staging = folder / "_spm_staging"
    staging.mkdir()
    train_sentencepiece(staging / "tokenizer.model")
    (staging / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}))
    from tokenizers import AddedToken

    tokenizer = AutoTokenizer.from_pretrained(staging)
    # Phi-3 strips the whitespace after its chat tokens (llama.cpp does the same for every model named phi3).
    tokenizer.add_special_tokens({"additional_special_tokens": [
        AddedToken(t, special=True, normalized=False, rstrip=phi3 and t != "<|endoftext|>") for t in added]})
    tokenizer.save_pretrained(folder)
    shutil.copy(staging / "tokenizer.model", folder / "tokenizer.model")
    shutil.rmtree(staging)
    for leftover in ("chat_template.jinja",):
        (folder / leftover).unlink(missing_ok=True)
    # The layout of most checkpoints on the hub (transformers 4): added tokens and template inside.
    decoder = {}
    for item in json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]:
        decoder[str(item["id"])] = {k: item[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                        "single_word", "special")}
    config = {
        "add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": decoder,
        "additional_special_tokens": list(added), "bos_token": "<s>", "eos_token": eos,
        "unk_token": "<unk>", "pad_token": "<pad>", "chat_template": PHI3_TEMPLATE if phi3 else LLAMA_TEMPLATE,
        "clean_up_tokenization_spaces": False, "legacy": True, "model_max_length": CONTEXT,
        "sp_model_kwargs": {}, "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer", "use_default_system_prompt": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "additional_special_tokens": list(added), "bos_token": "<s>", "eos_token": eos,
        "pad_token": "<pad>", "unk_token": "<unk>"}, indent=2))
    return SPM_VOCAB + len(added)


BPE_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
BPE_USER_DEFINED = ("<tool_call>",)


def train_byte_bpe(vocab_size: int = 600):
    """A Qwen2-style byte-level BPE ``tokenizers.Tokenizer``; special tokens come after its vocabulary."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(byte_fallback=False, ignore_merges=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False),
    ])
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(corpus(), trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in BPE_SPECIAL])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in BPE_USER_DEFINED])
    return tokenizer


def _write_bpe_tokenizer(folder: Path) -> tuple[int, dict]:
    """tokenizer.json + tokenizer_config.json + chat_template.jinja; returns (vocab size, token ids)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_byte_bpe(), bos_token=None, eos_token="<|im_end|>",
        pad_token="<|endoftext|>", unk_token=None, additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=CONTEXT, clean_up_tokenization_spaces=False)
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["tokenizer_class"] = "Qwen2Tokenizer"
    config["add_bos_token"] = False
    config.setdefault("errors", "replace")
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in BPE_SPECIAL}
    return len(tokenizer), ids


# --- models -------------------------------------------------------------------------------------

def _config(kind: str, vocab_size: int, special_ids: dict, hidden: int = HIDDEN, layers: int = LAYERS,
            ffn: int = FFN, heads: int = HEADS, kv_heads: int = KV_HEADS, tie: bool | None = None):
    from transformers import LlamaConfig, MistralConfig, Phi3Config, Qwen2Config, Qwen3Config

    common = dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                  num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=CONTEXT,
                  **special_ids)
    if kind == "llama":
        return LlamaConfig(**common, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=bool(tie))
    if kind == "mistral":
        return MistralConfig(**common, rms_norm_eps=1e-5, rope_theta=100000.0, sliding_window=None,
                             tie_word_embeddings=False)
    if kind == "phi3":
        return Phi3Config(**common, rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=None,
                          original_max_position_embeddings=CONTEXT, tie_word_embeddings=False)
    if kind == "qwen2":
        return Qwen2Config(**common, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
                           use_sliding_window=False)
    if kind == "qwen3":
        return Qwen3Config(**common, head_dim=hidden // heads, rms_norm_eps=1e-6, rope_theta=1000000.0,
                           tie_word_embeddings=True, use_sliding_window=False)
    raise ValueError(f"unknown tiny checkpoint kind {kind!r}; one of {KINDS}")


def _model_class(kind: str):
    import transformers

    return getattr(transformers, {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                                  "phi3": "Phi3ForCausalLM", "qwen2": "Qwen2ForCausalLM",
                                  "qwen3": "Qwen3ForCausalLM"}[kind])


def _randomize(model, seed: int) -> None:
    """Weights with a wide spread; norm weights around 1 (not all 1, so a swapped norm shows)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "norm" in name:
                param.copy_(1.0 + 0.2 * noise)
            elif name.endswith(".bias"):
                param.copy_(0.2 * noise)
            elif "embed" in name or "lm_head" in name:
                param.copy_(0.5 * noise)
            else:
                param.copy_(noise / param.shape[-1] ** 0.5 * 1.5)


def build_checkpoint(kind: str, folder: Path, *, weights: str = "safetensors", dtype: str = "float32",
                     seed: int = 0, hidden: int = HIDDEN, layers: int = LAYERS, ffn: int = FFN,
                     heads: int = HEADS, kv_heads: int = KV_HEADS, vocab_size: int | None = None,
                     tie: bool | None = None) -> Path:
    """Write a tiny ``kind`` checkpoint into ``folder`` (created; must not exist yet) and return it.

    ``hidden``, ``layers``, ``ffn``, ``heads``, ``kv_heads`` and ``vocab_size`` (padding the tokenizer's
    vocabulary with unused ids, as many real models do) make bigger models of the same kind, e.g. for
    benchmarks; ``tie`` ties the llama output to the embedding (the others' default is kept)."""
    import torch

    if weights not in ("safetensors", "sharded", "bin"):
        raise ValueError(f"weights must be safetensors, sharded or bin, not {weights!r}")
    folder = Path(folder)
    folder.mkdir(parents=True)
    requested_vocab = vocab_size
    if kind in SPM_KINDS:
        vocab_size = _write_spm_tokenizer(folder, phi3=kind == "phi3")
        special = dict(bos_token_id=1, eos_token_id=SPM_VOCAB if kind == "phi3" else 2, pad_token_id=3)
    else:
        vocab_size, ids = _write_bpe_tokenizer(folder)
        special = dict(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                       pad_token_id=ids["<|endoftext|>"])
    config = _config(kind, max(vocab_size, requested_vocab or 0), special, hidden, layers, ffn, heads, kv_heads, tie)
    torch.manual_seed(seed)
    model = _model_class(kind)(config)
    _randomize(model, seed)
    model = model.to(getattr(torch, dtype))
    if weights == "bin":
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(folder)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        torch.save(state, folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder, max_shard_size="64KB" if weights == "sharded" else "50GB")
    if kind == "llama":
        _to_transformers4_config(folder)
    return folder


def _to_transformers4_config(folder: Path) -> None:
    """Rewrite config.json as transformers 4 saved it (top-level rope_theta, rope_scaling), as most
    checkpoints on the hub still are; transformers 5 reads both."""
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    rope = config.pop("rope_parameters", None) or {}
    config["rope_theta"] = rope.get("rope_theta", 10000.0)
    scaling = {k: v for k, v in rope.items() if k not in ("rope_theta",)}
    config["rope_scaling"] = scaling if scaling.get("rope_type", "default") != "default" else None
    if "dtype" in config:
        config["torch_dtype"] = config.pop("dtype")
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def cached_checkpoint(kind: str, root: Path, *, weights: str = "safetensors", dtype: str = "float32") -> Path:
    """``build_checkpoint`` once per (kind, weights, dtype) under ``root``; later calls reuse it."""
    folder = Path(root) / f"{kind}-{weights}-{dtype}"
    marker = Path(root) / f"{folder.name}.complete"
    if marker.is_file():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    build_checkpoint(kind, folder, weights=weights, dtype=dtype)
    marker.write_text("")
    return folder
