"""What each supported architecture writes into a GGUF: hyperparameters, tensor fixes, extra tensors.

The keys and tensors follow what llama.cpp's loader expects for ``llama``, ``qwen2``, ``qwen3`` and
``phi3`` (read from its converter, reimplemented here):

- **llama** (Llama, Mistral): Q and K projections are permuted from Hugging Face's "rotate half"
  layout to the interleaved pairs llama.cpp's rotary embedding uses; Llama 3.1's "llama3" rope scaling
  becomes a ``rope_freqs`` tensor of per-dimension factors.
- **qwen2**, **qwen3**: stored as is (llama.cpp applies NeoX-style rope to them); Qwen3 has Q/K norms.
- **phi3**: fused QKV and gate/up tensors as is; "longrope" scaling becomes ``rope_factors_long`` and
  ``rope_factors_short`` tensors and an attention factor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from runtime.errors import ConversionError


def find(config: dict, keys, default=None):
    """The first of ``keys`` that config.json has (llama.cpp's find_hparam)."""
    for key in keys:
        if key in config and config[key] is not None:
            return config[key]
    return default


def need_int(config: dict, keys, what: str) -> int:
    value = find(config, keys)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConversionError(f"config.json does not give the model's {what} ({' or '.join(keys)})",
                              hint="Download config.json of the model again.")
    return value


def rope_parameters(config: dict) -> dict:
    """Rope settings in one shape for transformers 4 (rope_theta, rope_scaling) and 5 (rope_parameters)."""
    rope = config.get("rope_parameters", config.get("rope_scaling")) or {}
    rope = dict(rope) if isinstance(rope, dict) else {}
    if "full_attention" in rope and isinstance(rope["full_attention"], dict):
        return dict(rope["full_attention"])
    theta = find(config, ("global_rope_theta", "rope_theta", "rotary_emb_base"))
    if "rope_theta" not in rope and theta is not None:
        rope["rope_theta"] = theta
    if "rope_type" not in rope and rope.get("type") is not None:
        rope["rope_type"] = rope["type"]
    for key in ("partial_rotary_factor", "original_max_position_embeddings"):
        if key not in rope and config.get(key) is not None:
            rope[key] = config[key]
    return rope


@dataclass
class Hyper:
    """The figures every architecture needs, read once from config.json."""

    config: dict
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    rope: dict = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        value = self.config.get("head_dim")
        return value if isinstance(value, int) and value > 0 else self.embedding_length // self.head_count


def read_hyper(config: dict) -> Hyper:
    heads = need_int(config, ("num_attention_heads", "n_head", "n_heads"), "number of attention heads")
    kv = find(config, ("num_key_value_heads", "n_kv_heads"), heads)
    return Hyper(config=config,
                 block_count=need_int(config, ("n_layers", "num_hidden_layers", "n_layer", "num_layers"),
                                      "number of layers"),
                 embedding_length=need_int(config, ("hidden_size", "n_embd", "dim"), "hidden size"),
                 head_count=heads, head_count_kv=kv if isinstance(kv, int) and kv > 0 else heads,
                 rope=rope_parameters(config))


# --- hyperparameters ----------------------------------------------------------------------------

def write_common(writer, hp: Hyper, file_type: int, head_dim_always: bool = False) -> None:
    """The keys llama.cpp's converter writes for every text model. ``head_dim_always``: write the
    per-head K/V length even where config.json leaves it implicit (transformers' Llama and Mistral
    configs always state it, and llama.cpp's converter reads the config through them)."""
    c = hp.config
    writer.add_block_count(hp.block_count)
    n_ctx = find(c, ("max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length",
                     "model_max_length"))
    if n_ctx is not None:
        writer.add_context_length(n_ctx)
    writer.add_embedding_length(hp.embedding_length)
    n_ff = find(c, ("prefix_dense_intermediate_size", "dense_intermediate_size", "intermediate_size", "n_inner",
                    "hidden_dim"))
    if n_ff is not None:
        writer.add_feed_forward_length(n_ff)
    writer.add_head_count(hp.head_count)
    writer.add_head_count_kv(hp.head_count_kv)
    write_rope_scaling(writer, hp.rope)
    if hp.rope.get("rope_theta") is not None:
        writer.add_rope_freq_base(hp.rope["rope_theta"])
    eps = find(c, ("rms_norm_eps", "norm_eps"))
    if eps is not None:
        writer.add_layer_norm_rms_eps(eps)
    eps = find(c, ("layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"))
    if eps is not None:
        writer.add_layer_norm_eps(eps)
    if isinstance(c.get("head_dim"), int) or head_dim_always:
        writer.add_key_length(hp.head_dim)
        writer.add_value_length(hp.head_dim)
    writer.add_file_type(file_type)


def write_rope_scaling(writer, rope: dict) -> None:
    import gguf

    kind = str(rope.get("rope_type") or "").lower()
    factor = rope.get("factor")
    if kind == "linear" and factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(factor)
    elif kind == "yarn" and factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(factor)
        if rope.get("original_max_position_embeddings") is None:
            raise ConversionError("config.json asks for YaRN rope scaling without original_max_position_embeddings",
                                  hint="Download config.json of the model again.")
        writer.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        for key, add in (("extrapolation_factor", writer.add_rope_scaling_yarn_ext_factor),
                         ("beta_fast", writer.add_rope_scaling_yarn_beta_fast),
                         ("beta_slow", writer.add_rope_scaling_yarn_beta_slow)):
            if rope.get(key) is not None:
                add(rope[key])
        attn = rope.get("attention_factor", rope.get("attn_factor"))
        if attn is not None:
            writer.add_rope_scaling_yarn_attn_factor(attn)
    elif kind in ("su", "longrope"):
        writer.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
    # "llama3" becomes a rope_freqs tensor; "default" and "dynamic" need no key.


def write_llama(writer, hp: Hyper, file_type: int) -> None:
    write_common(writer, hp, file_type, head_dim_always=True)
    writer.add_vocab_size(need_int(hp.config, ("vocab_size",), "vocabulary size"))
    writer.add_rope_dimension_count(hp.head_dim)


def write_phi3(writer, hp: Hyper, file_type: int) -> None:
    c = hp.config
    original = hp.rope.get("original_max_position_embeddings")
    if not isinstance(original, int):
        raise ConversionError("This Phi-3 config.json has no original_max_position_embeddings",
                              hint="Download config.json of the model again.")
    writer.add_context_length(need_int(c, ("n_positions", "max_position_embeddings"), "context length"))
    writer.add_rope_scaling_orig_ctx_len(original)
    writer.add_embedding_length(hp.embedding_length)
    writer.add_feed_forward_length(need_int(c, ("intermediate_size",), "feed-forward size"))
    writer.add_block_count(hp.block_count)
    writer.add_head_count(hp.head_count)
    writer.add_head_count_kv(hp.head_count_kv)
    writer.add_layer_norm_rms_eps(find(c, ("rms_norm_eps",), 1e-5))
    writer.add_rope_dimension_count(_phi3_rope_dims(hp))
    writer.add_rope_freq_base(hp.rope.get("rope_theta", 10000.0))
    writer.add_file_type(file_type)
    writer.add_sliding_window(c.get("sliding_window") or 0)


def _phi3_rope_dims(hp: Hyper) -> int:
    return int(hp.rope.get("partial_rotary_factor", 1.0) * hp.embedding_length) // hp.head_count


# --- generated tensors ----------------------------------------------------------------------------

def llama3_rope_freqs(hp: Hyper) -> list[tuple[str, np.ndarray]]:
    """Llama 3.1's "llama3" rope scaling as per-dimension factors (``rope_freqs.weight``)."""
    rope = hp.rope
    if str(rope.get("rope_type", "")).lower() != "llama3":
        return []
    base = np.float32(rope.get("rope_theta", 10000.0))
    dim = hp.head_dim
    freqs = np.float32(1.0) / (base ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_ctx = rope.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    factors = []
    for freq in freqs:
        wavelen = np.float32(2 * math.pi) / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (np.float32(old_ctx) / wavelen - np.float32(low)) / np.float32(high - low)
            factors.append(1 / ((1 - smooth) / np.float32(factor) + smooth))
    return [("rope_freqs.weight", np.asarray(factors, dtype=np.float32))]


def phi3_rope_factors(hp: Hyper, writer=None) -> list[tuple[str, np.ndarray]]:
    """Phi-3's long-context rope: ``rope_factors_long``/``_short`` and the attention factor key."""
    long_factors, short_factors = hp.rope.get("long_factor"), hp.rope.get("short_factor")
    if not long_factors:
        return []
    kind = str(hp.rope.get("rope_type", "")).lower()
    max_pos = find(hp.config, ("n_positions", "max_position_embeddings"))
    original = hp.rope["original_max_position_embeddings"]
    scale = max_pos / original
    if kind in ("su", "longrope"):
        attn = math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1.0 else 1.0
    elif kind == "yarn":
        attn = 0.1 * math.log(scale) + 1.0 if scale > 1.0 else 1.0
    else:
        raise ConversionError(f"This Phi-3 config.json asks for rope scaling {kind!r}, which this converter "
                              "does not handle", hint="Convert this model with llama.cpp's own convert script.")
    dims = _phi3_rope_dims(hp)
    if not short_factors or len(long_factors) != len(short_factors) or len(long_factors) != dims / 2:
        raise ConversionError(f"This Phi-3 config.json has rope factors of the wrong length (need {dims // 2})",
                              hint="Download config.json of the model again.")
    if writer is not None:
        writer.add_rope_scaling_attn_factors(attn)
    return [("rope_factors_long.weight", np.asarray(long_factors, dtype=np.float32)),
            ("rope_factors_short.weight", np.asarray(short_factors, dtype=np.float32))]


# --- tensor fixes ---------------------------------------------------------------------------------

def permute_rows(data: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder Q/K projection rows from Hugging Face's rotate-half layout to llama.cpp's pairs.

    Per head, HF keeps the first half of the rotary dimensions, then the second half; llama.cpp
    (the original Llama layout) interleaves them: rows (0, d/2, 1, d/2+1, ...).
    """
    rows = data.shape[0]
    return (data.reshape(n_head, 2, rows // n_head // 2, *data.shape[1:])
            .swapaxes(1, 2).reshape(data.shape))


@dataclass(frozen=True)
class Architecture:
    """One supported architecture: its GGUF name, its hyperparameter writer, its tensor fixes."""

    gguf_arch: str
    write_params: Callable
    permute_qk: bool = False
    extra_tensors: Callable = lambda hp, writer=None: []


ARCHITECTURES = {
    "llama": Architecture("llama", write_llama, permute_qk=True,
                          extra_tensors=lambda hp, writer=None: llama3_rope_freqs(hp)),
    "qwen2": Architecture("qwen2", write_common),
    "qwen3": Architecture("qwen3", write_common),
    "phi3": Architecture("phi3", write_phi3, extra_tensors=phi3_rope_factors),
}

# Tensors llama.cpp does not use (buffers some checkpoints save).
IGNORED_SUFFIXES = (".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")


def qk_heads(name: str, hp: Hyper) -> int | None:
    """For a llama Q or K projection (weight or bias), the head count its rows are permuted by."""
    if name.endswith(("q_proj.weight", "q_proj.bias")):
        return hp.head_count
    if name.endswith(("k_proj.weight", "k_proj.bias")):
        return hp.head_count_kv
    return None
