"""Helpers that write model files, good and bad, into a folder for tests."""
from __future__ import annotations

import struct
from pathlib import Path


def write_not_gguf(folder: Path, name: str = "notes.gguf") -> Path:
    """A text file with a .gguf name."""
    path = Path(folder) / name
    path.write_text("This is not a model, just some text that was renamed.\n")
    return path


def write_truncated_copy(src: Path, folder: Path, fraction: float = 0.6, name: str | None = None) -> Path:
    """The first ``fraction`` of a real GGUF, as an interrupted download leaves it."""
    src = Path(src)
    path = Path(folder) / (name or f"{src.stem}-truncated.gguf")
    keep = int(src.stat().st_size * fraction)
    with open(src, "rb") as fin, open(path, "wb") as fout:
        while keep > 0:
            chunk = fin.read(min(keep, 1 << 22))
            if not chunk:
                break
            fout.write(chunk)
            keep -= len(chunk)
    return path


TINY_PARAMS = 16 * 8 + 8 + 16 * 8  # parameters in write_unknown_arch_gguf's tensors


def write_unknown_arch_gguf(folder: Path, arch: str = "flibbertigibbet", name: str = "tiny-unknown",
                            filename: str | None = None, n_vocab: int = 16) -> Path:
    """A small, structurally valid GGUF (F16 matrices, an F32 norm) for an architecture llama.cpp lacks.

    It sets no general.file_type, so readers must infer the quant type from the tensors. ``n_vocab``
    sizes the tokenizer arrays only (the tensors stay tiny).
    """
    import gguf
    import numpy as np

    path = Path(folder) / (filename or f"{name}.gguf")
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(name)
    writer.add_context_length(256)
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"<t{i}>" for i in range(n_vocab)])
    writer.add_token_scores([float(-i) for i in range(n_vocab)])
    writer.add_token_types([1] * n_vocab)
    writer.add_token_merges([f"<t{i}> <t{i + 1}>" for i in range(n_vocab - 1)])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    writer.add_tensor("token_embd.weight", rng.standard_normal((16, 8)).astype(np.float16))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(8, dtype=np.float32))
    writer.add_tensor("output.weight", rng.standard_normal((16, 8)).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _header(tensor_count: int, kv_count: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensor_count, kv_count)


def write_garbage_header(folder: Path, name: str = "garbage.gguf") -> Path:
    """Valid magic and version, then an absurd tensor count."""
    path = Path(folder) / name
    path.write_bytes(_header(2**62, 1) + bytes(range(256)) * 16)
    return path


def write_huge_array_gguf(folder: Path, name: str = "huge-array.gguf") -> Path:
    """One metadata array claiming 2**60 bytes: the kind of header that makes naive readers spin."""
    path = Path(folder) / name
    key = b"tokenizer.ggml.scores"
    body = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 0, 2**60)  # ARRAY of UINT8
    path.write_bytes(_header(0, 1) + body + b"\0" * 64)
    return path
