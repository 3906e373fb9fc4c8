"""Read a Hugging Face checkpoint folder: its config, its weight files, its tensors, one at a time.

``inspect_checkpoint(folder)`` says what the folder holds (architecture, parameters, dtype, size,
tokenizer, chat template) from headers only, and raises ``ConversionError`` for anything that cannot be
read: no config.json, no weights, a truncated or damaged safetensors shard, an index that names files
or tensors that are not there, an already-quantized checkpoint (bitsandbytes, GPTQ, AWQ, ...).

``open_tensors(folder)`` gives a ``TensorSource`` per tensor, in the order llama.cpp's converter
visits them (weight files sorted by name, tensors sorted by name in each safetensors file). A source
reads rows of its tensor on demand, so a converter holds one slice of one tensor at a time.

Safetensors files are read here, not through the ``safetensors`` package: its numpy API cannot return
bfloat16 (the usual dtype of checkpoints) and its torch API would bring PyTorch (about 210 MiB resident)
into the converter. The format is small and documented (an 8-byte length, a JSON header, raw
little-endian data); every offset is checked against the file size before anything trusts it, and each
read is a plain ``readinto`` (no memory map, so pages of the input never count against the converter's
memory). ``pytorch_model*.bin`` files go through ``torch.load(weights_only=True, mmap=True)``, which
refuses pickled code and maps the data lazily.
"""
from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from runtime.errors import ConversionError

MAX_HEADER_BYTES = 100 << 20          # the safetensors format's own limit for the JSON header
MAX_JSON_BYTES = 64 << 20             # config.json, index files, tokenizer.json
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
SHARD_NAME = re.compile(r"^(model|pytorch_model)-\d{5}-of-\d{5}\.(safetensors|bin)$")

# safetensors dtype -> (bytes per element, numpy dtype used to read it raw)
DTYPES = {
    "F64": (8, np.float64), "F32": (4, np.float32), "F16": (2, np.float16), "BF16": (2, np.uint16),
    "I64": (8, np.int64), "I32": (4, np.int32), "I16": (2, np.int16), "I8": (1, np.int8),
    "U64": (8, np.uint64), "U32": (4, np.uint32), "U16": (2, np.uint16), "U8": (1, np.uint8),
    "BOOL": (1, np.bool_), "F8_E4M3": (1, np.uint8), "F8_E5M2": (1, np.uint8),
    "F8_E8M0": (1, np.uint8), "F4": (1, np.uint8), "F6_E2M3": (1, np.uint8), "F6_E3M2": (1, np.uint8),
}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
DTYPE_WORDS = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}

# Architectures the converter handles: Hugging Face class name -> GGUF architecture (llama.cpp's name).
SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "LLaMAForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Phi3ForCausalLM": "phi3",
}
FAMILY_WORDS = "Llama (Llama 2/3, SmolLM, TinyLlama, Mistral), Qwen2 / Qwen2.5 / DeepSeek-R1-Distill-Qwen, Qwen3, Phi-3"

_DOWNLOAD_ORIGINAL = ("Download the original (unquantized) model instead: usually the same name without "
                      "-GPTQ, -AWQ, -bnb-4bit or -8bit. Or download a ready-made GGUF of it and quantize that "
                      "here.")
_QUANT_WORDS = {
    "bitsandbytes": "bitsandbytes ({bits})", "gptq": "GPTQ", "awq": "AWQ", "aqlm": "AQLM", "exl2": "EXL2",
    "hqq": "HQQ", "fp8": "FP8", "compressed-tensors": "compressed-tensors", "eetq": "EETQ",
    "quanto": "Quanto", "torchao": "torchao", "bitnet": "BitNet", "mxfp4": "MXFP4", "modelopt": "ModelOpt",
    "vptq": "VPTQ", "higgs": "HIGGS", "spqr": "SpQR", "fbgemm_fp8": "FP8 (fbgemm)",
}
# Tensor-name endings that only quantized checkpoints have (GPTQ/AWQ packing, bitsandbytes state).
_QUANT_TENSOR_SUFFIXES = (".qweight", ".qzeros", ".g_idx", ".absmax", ".quant_map", ".quant_state",
                          ".SCB", ".weight_format", ".weight_scale_inv", ".weight_packed")


@dataclass
class TensorEntry:
    """One tensor as the checkpoint stores it: Hugging Face name, safetensors dtype name, shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


@dataclass
class CheckpointInfo:
    """What a checkpoint folder holds, read from its headers.

    ``hf_architecture`` is the class config.json names ("LlamaForCausalLM"); ``gguf_architecture``
    the llama.cpp architecture it converts to ("llama"), None when unsupported. ``supported`` is False
    with ``problem`` (a sentence) when the folder is readable but cannot be converted (an architecture
    this converter does not handle, no tokenizer). ``dtype`` is the dtype holding most weights
    ("bfloat16"); ``size_bytes`` the weight files' size. ``tokenizer_kind``: "sentencepiece" (a
    tokenizer.model), "bpe" (a tokenizer.json) or None. ``tensors`` lists every tensor's shape.
    """

    path: str
    name: str
    hf_architecture: str | None
    model_type: str | None
    gguf_architecture: str | None
    parameter_count: int
    dtype: str
    size_bytes: int
    weight_format: str                   # "safetensors" or "pytorch"
    weight_files: list[str]
    tensor_count: int
    tokenizer_kind: str | None
    has_chat_template: bool
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    head_count: int | None
    head_count_kv: int | None
    vocab_size: int | None
    tie_word_embeddings: bool
    supported: bool
    problem: str | None = None
    tensors: list[TensorEntry] = field(default_factory=list, repr=False)

    def to_dict(self, include_tensors: bool = False) -> dict:
        data = asdict(self)
        if include_tensors:
            data["tensors"] = [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in self.tensors]
        else:
            data.pop("tensors")
        return data


# --- the folder -----------------------------------------------------------------------------------

def inspect_checkpoint(folder) -> CheckpointInfo:
    """Describe the checkpoint in ``folder`` (headers only); raise ConversionError if it cannot be read."""
    folder = _check_folder(folder)
    config = read_config(folder)
    check_not_quantized(folder, config)
    weights = find_weights(folder)
    tensors = list_tensors(folder, weights)
    check_tensors_not_quantized(folder, tensors)
    return _describe(folder, config, weights, tensors)


def _check_folder(folder) -> Path:
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise ConversionError(f"{folder} does not exist", path=folder,
                              hint="Choose the folder of a downloaded Hugging Face model (it holds config.json).")
    if not folder.is_dir():
        if folder.suffix.lower() == ".gguf":
            raise ConversionError(f"{folder.name} is already a GGUF file: there is nothing to convert",
                                  path=folder, hint="Quantize it instead (Compress tab or `workbench quantize`).")
        raise ConversionError(f"{folder} is a file, not a checkpoint folder", path=folder,
                              hint="Choose the folder that holds config.json and the model's weights.")
    return folder


def read_json(path: Path, what: str) -> object:
    """A JSON file's content; ConversionError (naming ``what``) when it is missing or not JSON."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ConversionError(f"{path.name} is {size:,} bytes: too big for {what}", path=path)
        with open(path, "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))
    except ConversionError:
        raise
    except FileNotFoundError:
        raise ConversionError(f"{path.name} is missing from {path.parent}", path=path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path.name} is damaged: it is not valid JSON ({exc})", path=path,
                              hint="Download this file of the model again.") from None
    except OSError as exc:
        raise ConversionError(f"{path.name} cannot be read: {exc.strerror or exc}", path=path) from None


def read_config(folder: Path) -> dict:
    """config.json as a dict, with a ``text_config`` of a multimodal wrapper merged in like llama.cpp does."""
    path = folder / "config.json"
    if not path.is_file():
        raise ConversionError(f"{folder.name} is not a Hugging Face checkpoint: it has no config.json",
                              path=folder, hint=_not_a_checkpoint_hint(folder))
    config = read_json(path, "a model config")
    if not isinstance(config, dict):
        raise ConversionError("config.json does not describe a model (it is not a JSON object)", path=path,
                              hint="Download config.json of the model again.")
    if isinstance(config.get("text_config"), dict):
        config = {**config, **config["text_config"]}
    return config


def _not_a_checkpoint_hint(folder: Path) -> str:
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        names = []
    ggufs = sorted(n for n in names if n.lower().endswith(".gguf"))
    if ggufs:
        return f"It holds GGUF files ({ggufs[0]}, ...): those need no converting; quantize one instead."
    if "params.json" in names or any(n.startswith("consolidated.") for n in names):
        return ("This looks like a checkpoint in Mistral's original format; download the Hugging Face "
                "version of the model (with config.json) instead.")
    return ("Choose the folder of a Hugging Face model: it holds config.json, the weights "
            "(model.safetensors or model-0000N-of-0000M.safetensors, or pytorch_model.bin) and the tokenizer.")


def check_not_quantized(folder: Path, config: dict) -> None:
    """Raise ConversionError when config.json says the weights are already quantized."""
    qc = config.get("quantization_config")
    if not isinstance(qc, dict) or not qc:
        return
    method = str(qc.get("quant_method") or ("bitsandbytes" if any(
        k in qc for k in ("load_in_4bit", "load_in_8bit")) else "unknown")).lower()
    bits = "4-bit" if qc.get("load_in_4bit") or qc.get("bits") == 4 else (
        "8-bit" if qc.get("load_in_8bit") or qc.get("bits") == 8 else "quantized")
    words = _QUANT_WORDS.get(method, method).format(bits=bits)
    raise ConversionError(
        f"{folder.name} is already quantized with {words}: its weights are packed integers and scales, "
        "not the original numbers llama.cpp's formats are made from",
        path=folder, hint=_DOWNLOAD_ORIGINAL, quant_method=method)


def check_tensors_not_quantized(folder: Path, tensors: list[TensorEntry]) -> None:
    """The same refusal for a quantized checkpoint whose config.json does not say so."""
    for t in tensors:
        if t.name.endswith(_QUANT_TENSOR_SUFFIXES) or (
                t.name.endswith(".weight") and len(t.shape) >= 2 and t.dtype not in FLOAT_DTYPES):
            raise ConversionError(
                f"{folder.name} holds quantized weights ({t.name} is {t.dtype}), not the original numbers "
                "llama.cpp's formats are made from", path=folder, hint=_DOWNLOAD_ORIGINAL, tensor=t.name)


# --- weight files ---------------------------------------------------------------------------------

@dataclass
class WeightFiles:
    """The weight files of a checkpoint, in the order they are read, and the index (if any)."""

    format: str                        # "safetensors" or "pytorch"
    files: list[Path]
    weight_map: dict[str, str] | None  # tensor name -> file name, from the index


def find_weights(folder: Path) -> WeightFiles:
    """Locate the weights: an index and its shards, model.safetensors, or pytorch_model*.bin."""
    names = {p.name for p in folder.iterdir() if p.is_file()}
    for fmt, index_name, single in (("safetensors", SAFETENSORS_INDEX, "model.safetensors"),
                                    ("pytorch", BIN_INDEX, "pytorch_model.bin")):
        if index_name in names:
            weight_map = _read_index(folder / index_name)
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if f not in names]
            if missing:
                raise ConversionError(
                    f"{len(missing)} weight file(s) named in {index_name} are missing: {', '.join(missing[:3])}"
                    + (" ..." if len(missing) > 3 else ""), path=folder / missing[0],
                    hint="The download is incomplete: download the missing file(s) of the model again.")
            return WeightFiles(fmt, [folder / f for f in files], weight_map)
        suffix = "." + single.rsplit(".", 1)[1]
        shards = sorted(n for n in names if SHARD_NAME.match(n) and n.endswith(suffix))
        if single in names or shards:
            if shards:
                expected = int(shards[0].rsplit("-of-", 1)[1].split(".")[0])
                if len(shards) != expected:
                    raise ConversionError(
                        f"Only {len(shards)} of the {expected} weight files are here ({shards[0]} ...) and there "
                        f"is no {index_name}", path=folder,
                        hint="The download is incomplete: download all the model's weight files again.")
            files = ([single] if single in names else []) + shards
            return WeightFiles(fmt, [folder / f for f in files], None)
    hint = ("This folder has a config.json but no weights (model.safetensors, model-0000N-of-0000M.safetensors "
            "with model.safetensors.index.json, or pytorch_model.bin). Download the weight files too.")
    others = sorted(n for n in names if n.endswith((".safetensors", ".bin", ".pt", ".pth", ".gguf")))
    if others:
        hint += f" (Found {', '.join(others[:3])}, which is not a Hugging Face weight file name.)"
    raise ConversionError(f"{folder.name} has no model weights", path=folder, hint=hint)


def _read_index(path: Path) -> dict[str, str]:
    index = read_json(path, "a weight index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ConversionError(f"{path.name} is damaged: it has no weight_map naming the files of the tensors",
                              path=path, hint="Download this file of the model again.")
    for name, file in weight_map.items():
        if not isinstance(name, str) or not isinstance(file, str) or not file:
            raise ConversionError(f"{path.name} is damaged: its weight_map entry {name!r} is not a file name",
                                  path=path, hint="Download this file of the model again.")
        if "/" in file or "\\" in file or file in (".", "..") or file.startswith("."):
            raise ConversionError(f"{path.name} names a weight file outside the folder ({file!r}); refused",
                                  path=path, hint="Download this file of the model again from its real source.")
    return weight_map


def list_tensors(folder: Path, weights: WeightFiles) -> list[TensorEntry]:
    """Every tensor of the checkpoint (headers only), checked against the index when there is one."""
    tensors: list[TensorEntry] = []
    for path in weights.files:
        if weights.format == "safetensors":
            header = read_safetensors_header(path)
            tensors.extend(TensorEntry(n, h.dtype, h.shape, path.name) for n, h in sorted(header.items()))
        else:
            for name, (dtype, shape) in _bin_shapes(path).items():
                tensors.append(TensorEntry(name, dtype, shape, path.name))
    if weights.weight_map is not None:
        _check_against_index(folder, weights, tensors)
    seen: set[str] = set()
    for t in tensors:
        if t.name in seen:
            raise ConversionError(f"The tensor {t.name} is stored twice (in {t.file} and another file)",
                                  path=folder / t.file, hint="Download the model's weight files again.")
        seen.add(t.name)
    return tensors


def _check_against_index(folder: Path, weights: WeightFiles, tensors: list[TensorEntry]) -> None:
    where = {t.name: t.file for t in tensors}
    index_name = SAFETENSORS_INDEX if weights.format == "safetensors" else BIN_INDEX
    wrong = [(n, f) for n, f in weights.weight_map.items() if where.get(n) != f]
    if wrong:
        name, file = wrong[0]
        found = where.get(name)
        detail = f"it is in {found}" if found else "no weight file has it"
        raise ConversionError(
            f"{index_name} does not match the weight files: it puts {name} in {file}, but {detail}"
            + (f" ({len(wrong)} tensors differ)" if len(wrong) > 1 else ""), path=folder / file,
            hint="The index or a weight file is from another version of the model: download both again.")
    extra = sorted(set(where) - set(weights.weight_map))
    if extra:
        raise ConversionError(f"{where[extra[0]]} holds tensors {index_name} does not list ({extra[0]} ...)",
                              path=folder / where[extra[0]],
                              hint="The index or a weight file is from another version of the model: "
                                   "download both again.")


# --- safetensors ----------------------------------------------------------------------------------

@dataclass
class SafetensorsEntry:
    dtype: str
    shape: tuple[int, ...]
    offset: int        # absolute offset of the first byte in the file
    nbytes: int


def read_safetensors_header(path: Path) -> dict[str, SafetensorsEntry]:
    """The tensors of one safetensors file, every offset checked against the file's size."""
    def damaged(why: str, hint: str = "Download this weight file again.") -> ConversionError:
        return ConversionError(f"{path.name} is {why}", path=path, hint=hint)

    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise damaged(f"truncated: only {size} bytes, too short for a safetensors file")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > MAX_HEADER_BYTES or header_len < 2:
                if head.startswith(b"version https://git-lfs"[:8]):
                    raise damaged("a Git LFS pointer, not the weights",
                                  "Download the real file (git lfs pull, or the Models tab).")
                raise damaged("not a safetensors file (its header length makes no sense)")
            if 8 + header_len > size:
                raise damaged(f"truncated: its header needs {8 + header_len:,} bytes but the file has {size:,}",
                              "The download stopped early: download this weight file again.")
            raw = fh.read(header_len)
    except ConversionError:
        raise
    except OSError as exc:
        raise ConversionError(f"{path.name} cannot be read: {exc.strerror or exc}", path=path) from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise damaged("damaged: its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise damaged("damaged: its header is not a JSON object")
    data_start = 8 + header_len
    entries: dict[str, SafetensorsEntry] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = meta["dtype"], meta["shape"], meta["data_offsets"]
            shape = tuple(int(d) for d in shape)
            begin, end = int(begin), int(end)
        except (TypeError, KeyError, ValueError):
            raise damaged(f"damaged: the header entry of {name!r} is malformed") from None
        if dtype not in DTYPES:
            raise damaged(f"in a format this converter does not know: {name} has dtype {dtype!r}")
        if any(d < 0 for d in shape) or not 0 <= begin <= end:
            raise damaged(f"damaged: {name} has an impossible shape or position")
        nbytes = math.prod(shape) * DTYPES[dtype][0]
        if end - begin != nbytes:
            raise damaged(f"damaged: {name} claims {end - begin:,} bytes but its shape {list(shape)} needs {nbytes:,}")
        if data_start + end > size:
            raise damaged(f"truncated: {name} ends at byte {data_start + end:,} but the file has {size:,}",
                          "The download stopped early: download this weight file again.")
        entries[name] = SafetensorsEntry(dtype, shape, data_start + begin, nbytes)
    return entries


# --- pytorch_model.bin ------------------------------------------------------------------------------

_TORCH_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int64": "I64",
                 "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
                 "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2"}


def load_bin(path: Path) -> dict:
    """A pytorch_model*.bin state dict, loaded with weights_only=True (no pickled code) and mmap."""
    try:
        import torch
    except ImportError:
        raise ConversionError(f"{path.name} is a PyTorch file, and reading it needs PyTorch, which is not "
                              "installed", path=path,
                              hint="Install PyTorch (pip install torch), or use a checkpoint with .safetensors "
                                   "weights.") from None
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # the legacy (non-zip) format
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise ConversionError(f"{path.name} holds Python objects besides tensors; it is not loaded, since "
                                  "unpickling them could run code", path=path,
                                  hint="Use the model's .safetensors weights instead.") from None
        raise ConversionError(f"{path.name} is damaged or truncated: {text}", path=path,
                              hint="Download this weight file again.") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConversionError(f"{path.name} does not hold a state dict of tensors", path=path,
                              hint="Use the model's .safetensors weights instead.")
    return {k: v for k, v in state.items() if hasattr(v, "shape") and hasattr(v, "dtype")}


def _bin_shapes(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    result = {}
    for name, tensor in load_bin(path).items():
        dtype = _TORCH_DTYPES.get(str(tensor.dtype).removeprefix("torch."))
        if dtype is None:
            raise ConversionError(f"{path.name}: {name} has dtype {tensor.dtype}, which this converter does not "
                                  "know", path=path)
        result[name] = (dtype, tuple(int(d) for d in tensor.shape))
    return result


# --- reading tensors ------------------------------------------------------------------------------

class TensorSource:
    """One tensor of the checkpoint, read on demand: ``rows(start, stop)`` or ``array()``.

    Float data comes back as float32 (bfloat16 widened exactly); ``raw_rows`` gives the stored
    elements unchanged (bfloat16 as uint16) for copies without conversion.
    """

    def __init__(self, name: str, dtype: str, shape: tuple[int, ...]):
        self.name, self.dtype, self.shape = name, dtype, shape

    @property
    def n_rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_elements(self) -> int:
        return math.prod(self.shape[1:]) if self.shape else 1

    def raw_rows(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the first dimension as float32 (shape kept)."""
        return to_float32(self.raw_rows(start, stop), self.dtype)

    def array(self) -> np.ndarray:
        return self.rows(0, self.n_rows)


def to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        out = np.empty(raw.shape, dtype=np.uint32)
        np.left_shift(raw, 16, out=out, dtype=np.uint32)
        return out.view(np.float32)
    if dtype in FLOAT_DTYPES:
        return raw.astype(np.float32, copy=False)
    raise ConversionError(f"The tensor has dtype {dtype}, not a float type; it cannot be converted")


class _SafetensorsSource(TensorSource):
    def __init__(self, name: str, entry: SafetensorsEntry, path: Path, opener):
        super().__init__(name, entry.dtype, entry.shape)
        self._entry, self._path, self._open = entry, path, opener

    def raw_rows(self, start: int, stop: int) -> np.ndarray:
        itemsize, np_dtype = DTYPES[self.dtype]
        row_bytes = self.row_elements * itemsize
        out = np.empty((stop - start, *self.shape[1:]) if self.shape else (), dtype=np_dtype)
        fh = self._open(self._path)
        fh.seek(self._entry.offset + start * row_bytes)
        view = memoryview(out.reshape(-1).view(np.uint8))
        got = fh.readinto(view) if view.nbytes else 0
        if got != view.nbytes:
            raise ConversionError(f"{self._path.name} ended while reading {self.name}: it is truncated",
                                  path=self._path, hint="Download this weight file again.")
        return out


class _TorchSource(TensorSource):
    def __init__(self, name: str, tensor, dtype: str):
        super().__init__(name, dtype, tuple(int(d) for d in tensor.shape))
        self._tensor = tensor

    def raw_rows(self, start: int, stop: int) -> np.ndarray:
        import torch

        part = self._tensor[start:stop] if self.shape else self._tensor
        part = part.contiguous()
        if part.dtype == torch.bfloat16:
            return part.view(torch.int16).numpy().view(np.uint16)
        if str(part.dtype).startswith("torch.float8"):
            return part.view(torch.uint8).numpy()
        return part.numpy()


class TensorReader:
    """The tensors of a checkpoint, opened for reading; use as a context manager (closes its files)."""

    def __init__(self, folder, weights: WeightFiles | None = None):
        self.folder = Path(folder)
        self.weights = weights or find_weights(self.folder)
        self._files: dict[Path, object] = {}

    def _open(self, path: Path):
        fh = self._files.get(path)
        if fh is None:
            try:
                fh = self._files[path] = open(path, "rb")
            except OSError as exc:
                raise ConversionError(f"{path.name} cannot be read: {exc.strerror or exc}", path=path) from None
        return fh

    def sources(self) -> Iterator[TensorSource]:
        """A source per tensor, in llama.cpp's order; a .bin file is loaded (mapped) when reached."""
        for path in self.weights.files:
            if self.weights.format == "safetensors":
                for name, entry in sorted(read_safetensors_header(path).items()):
                    yield _SafetensorsSource(name, entry, path, self._open)
            else:
                for name, tensor in load_bin(path).items():
                    yield _TorchSource(name, tensor, _TORCH_DTYPES[str(tensor.dtype).removeprefix("torch.")])

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()

    def __enter__(self) -> "TensorReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- description ----------------------------------------------------------------------------------

def _int(config: dict, *keys) -> int | None:
    for key in keys:
        v = config.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def hf_architecture(config: dict) -> str | None:
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return archs[0]
    return None


def tokenizer_kind(folder: Path) -> str | None:
    if (folder / "tokenizer.model").is_file():
        return "sentencepiece"
    if (folder / "tokenizer.json").is_file():
        return "bpe"
    return None


def has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    path = folder / "tokenizer_config.json"
    if path.is_file():
        try:
            config = read_json(path, "a tokenizer config")
        except ConversionError:
            return False
        return isinstance(config, dict) and bool(config.get("chat_template"))
    return False


def _describe(folder: Path, config: dict, weights: WeightFiles, tensors: list[TensorEntry]) -> CheckpointInfo:
    arch = hf_architecture(config)
    gguf_arch = SUPPORTED_ARCHITECTURES.get(arch or "")
    kind = tokenizer_kind(folder)
    problem = None
    if arch is None:
        problem = ("config.json does not name the model's architecture (no \"architectures\" entry); "
                   f"this converter handles {FAMILY_WORDS}")
    elif gguf_arch is None:
        problem = (f"{arch} is not an architecture this converter handles; it converts {FAMILY_WORDS} "
                   f"({', '.join(sorted(set(SUPPORTED_ARCHITECTURES) - {'LLaMAForCausalLM'}))})")
    elif kind is None:
        problem = "the checkpoint has no tokenizer (tokenizer.model or tokenizer.json); download those files too"
    by_dtype: dict[str, int] = {}
    for t in tensors:
        if len(t.shape) >= 2:
            by_dtype[t.dtype] = by_dtype.get(t.dtype, 0) + t.n_elements
    dtype = max(by_dtype, key=by_dtype.get) if by_dtype else "unknown"
    return CheckpointInfo(
        path=str(folder), name=folder.name, hf_architecture=arch, model_type=config.get("model_type"),
        gguf_architecture=gguf_arch, parameter_count=sum(t.n_elements for t in tensors),
        dtype=DTYPE_WORDS.get(dtype, dtype.lower()),
        size_bytes=sum(p.stat().st_size for p in weights.files), weight_format=weights.format,
        weight_files=[p.name for p in weights.files], tensor_count=len(tensors), tokenizer_kind=kind,
        has_chat_template=has_chat_template(folder),
        context_length=_int(config, "max_position_embeddings", "n_ctx", "n_positions", "max_sequence_length"),
        block_count=_int(config, "num_hidden_layers", "n_layers", "n_layer"),
        embedding_length=_int(config, "hidden_size", "n_embd", "dim"),
        head_count=_int(config, "num_attention_heads", "n_head", "n_heads"),
        head_count_kv=_int(config, "num_key_value_heads", "n_kv_heads") or _int(config, "num_attention_heads"),
        vocab_size=_int(config, "vocab_size"),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        supported=problem is None, problem=problem, tensors=tensors)
