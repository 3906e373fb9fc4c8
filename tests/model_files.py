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
                            filename: str | None = None, n_vocab: int = 16,
                            header: dict[str, tuple] | None = None) -> Path:
    """A small, structurally valid GGUF (F16 matrices, an F32 norm) for an architecture llama.cpp lacks.

    It sets no general.file_type, so readers must infer the quant type from the tensors. ``n_vocab``
    sizes the tokenizer arrays only (the tensors stay tiny). ``header`` sets or replaces metadata:
    ``{key: (gguf.GGUFValueType, value)}``, ``{key: None}`` leaves a key out; ``{arch}`` in a key is
    the architecture (e.g. ``"{arch}.context_length"``).
    """
    import gguf
    import numpy as np

    path = Path(folder) / (filename or f"{name}.gguf")
    rng = np.random.default_rng(0)
    u32 = gguf.GGUFValueType.UINT32
    fields = {"{arch}.context_length": (u32, 256), "{arch}.block_count": (u32, 1),
              "{arch}.embedding_length": (u32, 8), "{arch}.attention.head_count": (u32, 2),
              "{arch}.attention.head_count_kv": (u32, 1), "tokenizer.ggml.bos_token_id": (u32, 1),
              "tokenizer.ggml.eos_token_id": (u32, 2), **(header or {})}
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(name)
    for key, typed in fields.items():
        if typed is not None:
            vtype, value = typed
            sub_type = None
            if vtype == gguf.GGUFValueType.ARRAY:  # value: (item type, items)
                sub_type, value = value
            writer.add_key_value(key.replace("{arch}", arch), value, vtype, sub_type=sub_type)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"<t{i}>" for i in range(n_vocab)])
    writer.add_token_scores([float(-i) for i in range(n_vocab)])
    writer.add_token_types([1] * n_vocab)
    writer.add_token_merges([f"<t{i}> <t{i + 1}>" for i in range(n_vocab - 1)])
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


def write_hf_cache_model(cache: Path, repo_id: str, filename: str, revisions=("abc123",)) -> list[Path]:
    """A tiny model laid out like huggingface_hub's cache: one blob, linked from each snapshot."""
    import os

    repo_dir = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True)
    blob = write_unknown_arch_gguf(repo_dir / "blobs", name=filename.removesuffix(".gguf"), filename="deadbeef")
    links = []
    for rev in revisions:
        snap = repo_dir / "snapshots" / rev
        snap.mkdir(parents=True)
        os.symlink(os.path.relpath(blob, snap), snap / filename)
        links.append(snap / filename)
    return links


def deny_folder(monkeypatch, folder: Path, can_list: bool) -> None:
    """Make ``folder`` behave as it does for a normal user without permission (root ignores the bits).

    ``can_list=False``: no read permission, the folder cannot be listed (``chmod 0``). ``can_list=True``:
    read but no execute permission (``chmod 644``), its names can be listed but nothing inside can be
    looked up or entered.
    """
    import errno
    import os

    folder = os.fspath(folder)

    def where(path) -> str:
        """'inside', 'self' or '' for a path (or an open folder's file descriptor)."""
        if isinstance(path, int):
            return ""
        name = os.fsdecode(os.fspath(path))
        return "inside" if name.startswith(folder + os.sep) else "self" if name == folder else ""

    def guard(real, refuse: tuple):
        def call(path=".", *args, **kwargs):
            if where(path) in refuse:
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real(path, *args, **kwargs)
        return call

    listing = ("inside",) if can_list else ("inside", "self")
    monkeypatch.setattr(os, "scandir", guard(os.scandir, listing))
    monkeypatch.setattr(os, "listdir", guard(os.listdir, listing))
    monkeypatch.setattr(os, "stat", guard(os.stat, ("inside",)))
    monkeypatch.setattr(os, "lstat", guard(os.lstat, ("inside",)))
