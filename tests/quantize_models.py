"""Tiny unquantized GGUF models for the quantizer's tests, written with the gguf package.

A llama-architecture model with random weights (F32, F16 or BF16 matrices, F32 norms) and a small
byte-level BPE tokenizer (the 256 GPT-2 byte symbols, a few merges, ChatML control tokens and a chat
template), so llama.cpp loads it, quantizes it and generates from it through the app's engine. The
default shape (rows of 256 and 512 values, 8 layers) takes every K-quant; ``n_embd=64`` gives a model
no K-quant fits, ``n_embd=48`` one that not even the 32-value blocks fit.
"""
from __future__ import annotations

from pathlib import Path

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s", "r e", "a t"]
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte value, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    symbols, extra = {}, 0
    for b in range(256):
        if b in printable:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def tiny_vocab() -> list[str]:
    """Special tokens, the byte symbols, then one token per merge."""
    return SPECIALS + _byte_symbols() + [m.replace(" ", "") for m in MERGES]


def write_tiny_llama(path: Path, *, dtype: str = "f16", n_embd: int = 256, n_ff: int = 512, n_layer: int = 8,
                     n_head: int = 4, n_head_kv: int = 2, tied: bool = False, seed: int = 0,
                     name: str = "Tiny Llama") -> Path:
    """Write a tiny llama GGUF at ``path`` (``dtype``: "f32", "f16" or "bf16" for the matrices)."""
    import gguf
    import numpy as np

    path = Path(path)
    rng = np.random.default_rng(seed)
    vocab = tiny_vocab()
    head_dim = n_embd // n_head
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "bf16": gguf.LlamaFileType.MOSTLY_BF16}[dtype]

    def matrix(rows: int, cols: int):
        data = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
        if dtype == "f16":
            return data.astype(np.float16), None
        if dtype == "bf16":
            return gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16), gguf.GGMLQuantizationType.BF16
        return data, None

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(512)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(vocab))
    writer.add_file_type(int(file_type))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab)
    writer.add_token_types([gguf.TokenType.CONTROL] * len(SPECIALS)
                           + [gguf.TokenType.NORMAL] * (len(vocab) - len(SPECIALS)))
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    def add(name_: str, rows: int, cols: int) -> None:
        data, raw_type = matrix(rows, cols)
        if raw_type is None:
            writer.add_tensor(name_, data)
        else:
            writer.add_tensor(name_, data, raw_shape=data.shape, raw_dtype=raw_type)

    def norm(name_: str) -> None:
        writer.add_tensor(name_, (1.0 + 0.01 * rng.standard_normal(n_embd)).astype(np.float32))

    add("token_embd.weight", len(vocab), n_embd)
    for i in range(n_layer):
        norm(f"blk.{i}.attn_norm.weight")
        add(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        add(f"blk.{i}.attn_k.weight", n_head_kv * head_dim, n_embd)
        add(f"blk.{i}.attn_v.weight", n_head_kv * head_dim, n_embd)
        add(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        norm(f"blk.{i}.ffn_norm.weight")
        add(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        add(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        add(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    norm("output_norm.weight")
    if not tied:
        add("output.weight", len(vocab), n_embd)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def cached_tiny_llama(folder: Path, **kwargs) -> Path:
    """``write_tiny_llama`` into ``folder`` once per set of arguments (a session's cache)."""
    label = "-".join(f"{k}{v}" for k, v in sorted(kwargs.items())) or "default"
    path = Path(folder) / f"tiny-llama-{label}.gguf"
    if not path.exists():
        partial = path.with_suffix(".writing")
        write_tiny_llama(partial, **kwargs)
        partial.replace(path)
    return path


def reference_quantize(src: Path, out: Path, qtype: str) -> Path:
    """llama.cpp's quantizer called directly in this process (no child, no checks): the reference.

    Requantizing is allowed, llama.cpp's log is silenced. Asserts that llama.cpp succeeded.
    """
    import ctypes

    import llama_cpp

    from runtime.compress.sizes import ftype_number

    global _QUIET
    if _QUIET is None:
        _QUIET = llama_cpp.llama_log_callback(lambda level, text, data: None)
    # Set it every time: an in-process LlamaRunner of another test installs its own callback (kept
    # alive by runtime.engine.runner), which would otherwise collect this quantizer's log.
    llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype_number(qtype)
    params.allow_requantize = True
    status = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))
    assert status == 0, f"llama.cpp failed to quantize {Path(src).name} to {qtype}"
    return Path(out)


_QUIET = None  # the log callback must outlive every call into llama.cpp


def tiny_variants(folder: Path, qtypes=("Q8_0", "Q4_0")) -> dict[str, Path]:
    """{"F16": path, "Q8_0": path, ...}: one tiny random F16 llama and its quantizations by llama.cpp."""
    f16 = cached_tiny_llama(folder)
    variants = {"F16": f16}
    for qtype in qtypes:
        out = Path(folder) / f"tiny-{qtype}.gguf"
        variants[qtype] = out if out.exists() else reference_quantize(f16, out, qtype)
    return variants
