"""Read what a GGUF file says about its model, without loading it.

The header (metadata and tensor infos) is read here with every length checked against the file size,
so a damaged or hostile file fails fast with a ``ModelFileError`` that says what is wrong, and a
truncated download is caught before anything trusts it. The ``gguf`` package supplies the type
tables (quant block sizes, llama.cpp file-type names). Its ``GGUFReader`` is not used for this: it
builds numpy views for every token of the vocabulary (about 5 s for the 135M starter model on this
machine, against 0.07 s here) and can spin on a header that claims a huge array.
"""
from __future__ import annotations

import mmap
import os
import re
import stat
import struct
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_COUNT = 1_000_000          # tensors or metadata keys; real models have a few thousand at most
MAX_DIMS = 4                   # GGML_MAX_DIMS in llama.cpp
DEFAULT_ALIGNMENT = 32

# The largest figure a header may state before it counts as unknown (real models stay far below).
MAX_CONTEXT = 1 << 27         # tokens (the longest real claims are about 10M)
MAX_BLOCKS = 1024             # layers (the deepest real models have about 160)
MAX_EMBEDDING = 1 << 20
MAX_HEADS = 1 << 14
MAX_VOCAB = 1 << 24
MAX_SPLITS = 99_999           # the split file-name pattern has five digits

# GGUF metadata value types: struct formats of the scalars; 8 is a string, 9 an array.
_SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_SCALAR_SIZES = {vtype: struct.calcsize("<" + fmt) for vtype, fmt in _SCALAR_FORMATS.items()}
_STRING, _ARRAY = 8, 9

_REDOWNLOAD_HINT = "Download or convert the model again; this copy is damaged."


@dataclass
class GGUFInfo:
    """The facts the app shows about a model file.

    Counts are None when the file does not say, or says something impossible (zero, negative, absurd,
    the wrong type). Where the tensors show a figure (vocabulary and embedding length from
    ``token_embd``, layers from ``blk.N``), that wins over a header that contradicts it.
    """

    path: str
    size_bytes: int
    architecture: str
    name: str
    parameter_count: int
    file_type: str                 # "Q4_K_M", "Q8_0", "F16", ...
    tensor_count: int
    context_length: int | None = None
    block_count: int | None = None
    embedding_length: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    key_length: int | None = None  # per-head K size when the file states it (else embedding/heads)
    value_length: int | None = None
    vocab_size: int | None = None
    has_chat_template: bool = False
    chat_template: str | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    split_count: int = 1           # > 1: this is one shard of a split model; counts cover this shard

    def to_dict(self, include_template: bool = False) -> dict:
        data = asdict(self)
        if not include_template:
            data.pop("chat_template")
        return data


def param_label(n: int | None) -> str:
    """135_000_000 -> '135M', 1_240_000_000 -> '1.2B'."""
    if n is None:
        return "?"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            value = n / scale
            text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
            return text.removesuffix(".0") + suffix
    return str(n)


def format_size(n_bytes: int | float | None) -> str:
    """Binary units, one decimal: 98_654_720 -> '94.1 MiB'."""
    if n_bytes is None:
        return "?"
    if n_bytes < 1024:
        return f"{int(n_bytes)} B"
    value = float(n_bytes)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def read_gguf_info(path: str | os.PathLike) -> GGUFInfo:
    """Read a GGUF file's metadata and tensor list; raise ModelFileError if it is not a usable GGUF."""
    return read_gguf_header(path)[0]


def read_gguf_header(path: str | os.PathLike) -> tuple[GGUFInfo, "GGUFHeader"]:
    """``read_gguf_info`` plus the checked header it reads on the way (metadata, the tensor list with
    name, dims, ggml_type, offset and bytes of each, where the data starts), for code that plans per
    tensor (the quantizer's size estimates)."""
    path = Path(path)
    size = _check_is_file(path)
    header = _read_header(path, size)
    if header.data_end > size:
        raise ModelFileError(
            f"{path.name} is truncated: tensor data needs {header.data_end:,} bytes but the file has {size:,}",
            path=path,
            hint="The download or copy stopped early. Download the file again "
                 "(or resume the download) and check its size.",
        )
    return _info_from_header(path, size, header), header


def read_gguf_header_prefix(data: bytes, file_size: int, name: str) -> GGUFInfo:
    """Read a GGUF header from the first bytes of a file of ``file_size`` bytes that is not on disk.

    For a file on a server: fetch its start with an HTTP Range request and pass those bytes. Every
    length is checked against ``file_size`` as ``read_gguf_info`` does. Raises ``HeaderIncomplete``
    (with the number of bytes needed so far) when ``data`` ends inside the header, and
    ``ModelFileError`` when the bytes are not a usable GGUF. ``name`` names the file in messages and
    is the info's ``path``; ``size_bytes`` is ``file_size``.
    """
    path = Path(name)
    if len(data) < 24 and file_size > len(data):
        raise HeaderIncomplete(min(24, file_size))
    if data[:4] != GGUF_MAGIC:
        raise _not_gguf(path, bytes(data[:24]))
    if file_size < 24:
        raise ModelFileError(f"{path.name} is truncated: only {file_size} bytes, too short for a GGUF header",
                             path=path, hint=_REDOWNLOAD_HINT)
    header = _HeaderReader(data, file_size, path, available=min(len(data), file_size)).read()
    if header.data_end > file_size:
        raise ModelFileError(
            f"{path.name} is truncated: tensor data needs {header.data_end:,} bytes but the file has {file_size:,}",
            path=path, hint=_REDOWNLOAD_HINT)
    return _info_from_header(path, file_size, header)


# --- checks before and while reading the header ------------------------------------------------

def _check_is_file(path: Path) -> int:
    """Return the file size, or explain why this path is not a model file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelFileError(f"{path} does not exist", path=path,
                             hint="Check the path, or run `workbench models` to list the models found.") from None
    except OSError as exc:
        raise ModelFileError(f"{path} cannot be opened: {exc.strerror or exc}", path=path,
                             hint="Check that the file is readable by you.") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(f"{path} is a folder, not a model file", path=path, hint=_folder_hint(path))
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{path} is not a regular file", path=path,
                             hint="Pass a .gguf model file.")
    if st.st_size == 0:
        raise ModelFileError(f"{path.name} is empty (0 bytes)", path=path, hint=_REDOWNLOAD_HINT)
    return st.st_size


def _folder_hint(path: Path) -> str:
    try:
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        names = {p.name for p in path.iterdir()}
    except OSError:
        return "Pass a .gguf model file."
    if ggufs:
        return f"Pass one of the .gguf files inside it, e.g. {path / ggufs[0]}"
    if "config.json" in names and any(n.endswith((".safetensors", ".bin")) for n in names):
        return "This looks like a Hugging Face checkpoint: convert it to GGUF first (Compress tab or `workbench convert`)."
    return "Pass a .gguf model file."


def _not_gguf(path: Path, head: bytes) -> ModelFileError:
    """The error for a file that does not start like a GGUF, in words; its first bytes go in the details."""
    what, hint = _describe_non_gguf(head)
    if what:
        message = f"{path.name} is not a GGUF file (the model format Model Workbench runs): it looks like {what}."
    elif path.suffix.lower() == ".gguf":
        message = f"{path.name} is named like a model, but it is not a GGUF file: its contents are something else."
        hint = "It may be damaged or an unfinished download: download or convert the model again."
    else:
        message = f"{path.name} is not a GGUF file (the model format Model Workbench runs)."
    shown = head[:8].decode("latin-1").translate(_PRINTABLE)
    return ModelFileError(message, path=path, hint=hint,
                          details=f"The file starts with the bytes {head[:8].hex(' ')} ('{shown}'), "
                                  "not with the GGUF signature 47 47 55 46 ('GGUF').")


_PRINTABLE = {i: "." for i in range(256) if not 32 <= i < 127}


# Formats people mistake for GGUF, recognised by their first bytes: (what it is, what to do).
def _describe_non_gguf(head: bytes) -> tuple[str, str]:
    if head[:4] in (b"lmgg", b"fmgg", b"tjgg"):
        return "an old GGML/GGJT model", "llama.cpp no longer reads this format: get a GGUF version of the model."
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a PyTorch checkpoint?)", "Convert the Hugging Face model to GGUF first."
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer", "This is a placeholder, not the model: download the real file."
    if head.lstrip()[:1] == b"<":
        return "an HTML/XML page", "The download probably saved an error page: download the file again."
    if len(head) >= 9 and head[8:9] == b"{":
        return "a safetensors checkpoint", "Convert it to GGUF first (Compress tab or `workbench convert`)."
    return "", "Choose a .gguf model file."


def _read_header(path: Path, size: int) -> "GGUFHeader":
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            if head[:4] != GGUF_MAGIC:
                raise _not_gguf(path, head)
            if len(head) < 24:
                raise ModelFileError(f"{path.name} is truncated: only {size} bytes, too short for a GGUF header",
                                     path=path, hint=_REDOWNLOAD_HINT)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _HeaderReader(buf, size, path).read()
    except ModelFileError:
        raise
    except OSError as exc:
        raise ModelFileError(f"{path.name} cannot be read: {exc.strerror or exc}", path=path,
                             hint="Check that the file is readable by you.") from exc


class _Damaged(Exception):
    """Internal: the header contradicts itself or the file size."""


class HeaderIncomplete(Exception):
    """The bytes given to ``read_gguf_header_prefix`` end inside the header.

    ``needed``: the header needs at least this many bytes from the start of the file (fetch more and
    try again; the header may need more still).
    """

    def __init__(self, needed: int):
        super().__init__(f"the GGUF header needs at least {needed:,} bytes")
        self.needed = needed


class _ArrayInfo:
    """A metadata array too long to keep (token lists): only its length and item type."""

    def __init__(self, item_type: int, length: int):
        self.item_type, self.length = item_type, length


@dataclass
class TensorInfo:
    name: str
    dims: list[int]
    ggml_type: int
    offset: int            # from the start of the tensor data section
    n_elements: int
    n_bytes: int


@dataclass
class GGUFHeader:
    version: int
    metadata: dict
    tensors: list[TensorInfo]
    data_start: int
    data_end: int          # where the last tensor's data ends; > file size means truncated


class _HeaderReader:
    """Reads GGUF metadata and tensor infos, checking every length against the file size."""

    SMALL_ARRAY = 4096     # arrays up to this length are kept (per-layer figures); longer: length only
    MAX_KEPT_STRING = 64 * 1024**2  # longer strings are skipped (read as None), not copied into memory

    def __init__(self, buf, size: int, path: Path, available: int | None = None):
        # ``size``: the whole file's size (every length is checked against it); ``available``: how many
        # of its first bytes ``buf`` holds (a prefix, e.g. fetched with an HTTP Range request).
        self.buf, self.size, self.path, self.pos = buf, size, path, 4
        self.available = size if available is None else available
        version_le = struct.unpack_from("<I", buf, 4)[0]
        # A big-endian GGUF reads as a huge little-endian version number (low 16 bits zero).
        self.order = ">" if version_le & 0xFFFF == 0 else "<"

    def _read(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise _Damaged(f"{what} at byte {self.pos:,} runs past the end of the file")
        if self.pos + n > self.available:
            raise HeaderIncomplete(self.pos + n)
        value = struct.unpack_from(self.order + fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def _skip(self, n: int, what: str) -> None:
        if self.pos + n > self.size:
            raise _Damaged(f"{what} at byte {self.pos:,} claims {n:,} bytes, past the end of the file")
        self.pos += n

    def _string(self, what: str) -> str | None:
        n = self._read("Q", what)
        start = self.pos
        self._skip(n, what)
        if n > self.MAX_KEPT_STRING:
            return None
        if self.pos > self.available:
            raise HeaderIncomplete(self.pos)
        return self.buf[start:self.pos].decode("utf-8", "replace")

    def _skip_strings(self, count: int, what: str) -> None:
        """Step over ``count`` strings (a vocabulary: 50k-250k of them) in one tight loop; the general
        path costs a few microseconds a string, a tenth of a second for each list of a big vocab."""
        unpack = struct.Struct(self.order + "Q").unpack_from
        buf, pos, limit = self.buf, self.pos, min(self.size, self.available)
        for _ in range(count):
            if pos + 8 > limit:
                self.pos = pos
                self._read("Q", what)  # raises the right error: past the end, or header incomplete
            pos += 8 + unpack(buf, pos)[0]
        if pos > self.size:
            raise _Damaged(f"{what} at byte {self.pos:,} runs past the end of the file")
        self.pos = pos

    def _name(self, what: str) -> str:
        name = self._string(what)
        if name is None:
            raise _Damaged(f"{what} is absurdly long")
        return name

    def _value(self, vtype: int, what: str, keep: bool = True, depth: int = 0):
        if vtype in _SCALAR_FORMATS:
            if keep:
                return self._read(_SCALAR_FORMATS[vtype], what)
            self._skip(_SCALAR_SIZES[vtype], what)
        elif vtype == _STRING:
            if keep:
                return self._string(what)
            self._skip(self._read("Q", what), what)
        elif vtype == _ARRAY and depth < 2:
            item_type = self._read("I", what)
            count = self._read("Q", what)
            if item_type in _SCALAR_SIZES and not (keep and count <= self.SMALL_ARRAY):
                self._skip(count * _SCALAR_SIZES[item_type], what)
                return _ArrayInfo(item_type, count)
            # Each string or array item takes at least 8 bytes: refuse counts the file cannot hold.
            if count * min(8, _SCALAR_SIZES.get(item_type, 8)) > self.size - self.pos:
                raise _Damaged(f"{what} claims {count:,} items, more than the file can hold")
            keep_items = keep and count <= self.SMALL_ARRAY
            if item_type == _STRING and not keep_items:
                self._skip_strings(count, what)
                return _ArrayInfo(item_type, count)
            items = [self._value(item_type, what, keep_items, depth + 1) for _ in range(count)]
            return items if keep_items else _ArrayInfo(item_type, count)
        elif vtype == _ARRAY:
            raise _Damaged(f"{what} nests arrays too deeply")
        else:
            raise _Damaged(f"{what} has unknown value type {vtype}")
        return None

    def read(self) -> GGUFHeader:
        try:
            return self._read_all()
        except _Damaged as exc:
            raise ModelFileError(f"{self.path.name} has a damaged header: {exc}", path=self.path,
                                 hint=_REDOWNLOAD_HINT) from None

    def _read_all(self) -> GGUFHeader:
        version = self._read("I", "version")
        if version not in SUPPORTED_VERSIONS:
            raise ModelFileError(
                f"{self.path.name} uses GGUF version {version}; this app reads versions 2 and 3",
                path=self.path,
                hint="Version 1 files are from 2023: download a newer conversion of this model."
                if version == 1 else _REDOWNLOAD_HINT,
            )
        tensor_count = self._read("Q", "tensor count")
        kv_count = self._read("Q", "metadata count")
        # A tensor info takes at least 24 bytes, a metadata entry at least 13.
        room = self.size - self.pos
        if tensor_count > MAX_COUNT or tensor_count * 24 > room:
            raise _Damaged(f"it claims {tensor_count:,} tensors, more than a {self.size:,}-byte file can hold")
        if kv_count > MAX_COUNT or kv_count * 13 > room:
            raise _Damaged(f"it claims {kv_count:,} metadata entries, more than a {self.size:,}-byte file can hold")

        metadata: dict = {}
        for i in range(kv_count):
            key = self._name(f"metadata key #{i}")
            if key in metadata:
                raise _Damaged(f"metadata key {key!r} appears twice")
            vtype = self._read("I", f"type of {key!r}")
            metadata[key] = self._value(vtype, f"metadata {key!r}")

        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise _Damaged(f"alignment {alignment!r} is not a power of two")

        tensors = [self._tensor_info(i) for i in range(tensor_count)]
        data_start = -(-self.pos // alignment) * alignment
        data_end = max((data_start + t.offset + t.n_bytes for t in tensors), default=data_start)
        return GGUFHeader(version, metadata, tensors, data_start, data_end)

    def _tensor_info(self, i: int) -> TensorInfo:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        name = self._name(f"name of tensor #{i}")
        n_dims = self._read("I", f"tensor {name!r}")
        if n_dims > MAX_DIMS:
            raise _Damaged(f"tensor {name!r} claims {n_dims} dimensions")
        dims = [self._read("Q", f"tensor {name!r}") for _ in range(n_dims)]
        ggml_type = self._read("I", f"tensor {name!r}")
        offset = self._read("Q", f"tensor {name!r}")
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise ModelFileError(
                f"{self.path.name}: tensor {name!r} has type {ggml_type}, unknown to this app",
                path=self.path,
                hint="The file may be damaged, or use a quantization newer than this app; update the app.",
            ) from None
        n_elements = 1
        for d in dims:
            n_elements *= d
        return TensorInfo(name, dims, ggml_type, offset, n_elements, n_elements * type_size // block)


# --- from header to GGUFInfo -----------------------------------------------------------------------

def _file_type_label(metadata: dict, tensors: list[TensorInfo]) -> str:
    """general.file_type by its llama.cpp name, else the type holding most weight-matrix elements."""
    from gguf.constants import GGMLQuantizationType, LlamaFileType

    ftype = metadata.get("general.file_type")
    if isinstance(ftype, int) and not isinstance(ftype, bool):
        try:
            ft = LlamaFileType(ftype)
        except ValueError:
            ft = None
        if ft is not None and ft != LlamaFileType.GUESSED:
            return ft.name.removeprefix("MOSTLY_").removeprefix("ALL_")
    elements: Counter = Counter()
    for t in [t for t in tensors if len(t.dims) >= 2] or tensors:
        elements[t.ggml_type] += t.n_elements
    if not elements:
        return "unknown"
    return GGMLQuantizationType(elements.most_common(1)[0][0]).name


def _tensor_figures(tensors: list[TensorInfo], split: bool) -> tuple[int | None, int | None, int | None]:
    """(embedding length, vocabulary, layers) as the tensors show them; None where they do not."""
    embd = vocab = blocks = None
    by_name = {t.name: t for t in tensors}
    for name in ("token_embd.weight", "output.weight"):
        t = by_name.get(name)
        if t is not None and len(t.dims) == 2 and min(t.dims) > 0:
            embd, vocab = t.dims  # GGUF lists dimensions innermost first: [n_embd, n_vocab]
            break
    if not split:  # a shard holds only some of the layers
        indexes = [int(m[1]) for t in tensors if (m := re.match(r"blk\.(\d+)\.", t.name))]
        blocks = max(indexes) + 1 if indexes else None
    return embd, vocab, blocks


def _info_from_header(path: Path, size: int, header: GGUFHeader) -> GGUFInfo:
    meta = header.metadata

    def int_value(key: str) -> int | None:
        v = meta.get(key)
        if isinstance(v, list):  # per-layer figures (e.g. head_count_kv): the largest is what memory needs
            v = max((x for x in v if isinstance(x, int) and not isinstance(x, bool)), default=None)
        return int(v) if isinstance(v, int) and not isinstance(v, bool) else None

    def count(key: str, limit: int) -> int | None:
        """A positive whole number up to ``limit``, else None (unknown)."""
        v = int_value(key)
        return v if v is not None and 0 < v <= limit else None

    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(f"{path.name} does not say which model architecture it is",
                             path=path, hint=_REDOWNLOAD_HINT)
    split_count = count("split.count", MAX_SPLITS) or 1
    tensor_embd, tensor_vocab, tensor_blocks = _tensor_figures(header.tensors, split_count > 1)
    # The tokenizer's list is what llama.cpp uses; a stated vocab_size only when nothing real says.
    tokens = meta.get("tokenizer.ggml.tokens")
    n_tokens = tokens.length if isinstance(tokens, _ArrayInfo) else len(tokens) if isinstance(tokens, list) else 0
    vocab = n_tokens or tensor_vocab or count(f"{arch}.vocab_size", MAX_VOCAB)
    embd = tensor_embd or count(f"{arch}.embedding_length", MAX_EMBEDDING)
    heads = count(f"{arch}.attention.head_count", embd or MAX_HEADS)  # at least one channel per head
    head_limit = 4 * embd if embd else MAX_EMBEDDING

    def token_id(key: str) -> int | None:
        v = int_value(key)
        return v if v is not None and 0 <= v < (vocab or 2**31) else None

    template = meta.get("tokenizer.chat_template")
    template = template if isinstance(template, str) and template.strip() else None
    name = meta.get("general.name")

    return GGUFInfo(
        path=str(path),
        size_bytes=size,
        architecture=arch,
        name=name.strip() if isinstance(name, str) and name.strip() else path.stem,
        parameter_count=sum(t.n_elements for t in header.tensors),
        file_type=_file_type_label(meta, header.tensors),
        tensor_count=len(header.tensors),
        context_length=count(f"{arch}.context_length", MAX_CONTEXT),
        block_count=tensor_blocks or count(f"{arch}.block_count", MAX_BLOCKS),
        embedding_length=embd,
        head_count=heads,
        head_count_kv=count(f"{arch}.attention.head_count_kv", heads or MAX_HEADS),
        key_length=count(f"{arch}.attention.key_length", head_limit),
        value_length=count(f"{arch}.attention.value_length", head_limit),
        vocab_size=vocab,
        has_chat_template=template is not None,
        chat_template=template,
        bos_token_id=token_id("tokenizer.ggml.bos_token_id"),
        eos_token_id=token_id("tokenizer.ggml.eos_token_id"),
        split_count=split_count,
    )
