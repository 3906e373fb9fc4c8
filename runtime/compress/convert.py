"""Convert a Hugging Face checkpoint folder to one GGUF file (F32, F16, BF16 or Q8_0).

``plan_conversion`` reads and checks everything first (config, architecture, tokenizer, every
tensor's name and shape, the output's size) and raises ``ConversionError`` before a byte is written.
``convert_checkpoint`` then streams the tensors through one at a time, in slices of a few MiB: the
output's header is written first (every tensor's name, shape and type are known from the plan), then
each tensor is read, fixed (Q/K permutation), converted and appended. Memory stays near one slice of
one tensor, plus the whole of the few tensors that must be permuted (Q and K projections).

Tensor types follow llama.cpp's converter: 1-D tensors, norms and biases stay F32; weight matrices
take the chosen type; a matrix whose rows do not split into 32-element blocks falls back from Q8_0 to
F16. The output is written under a hidden temporary name in the destination folder, its header read
back (``read_gguf_info``), then renamed; on cancel or error the temporary file is removed. Free disk
space is checked before starting.
"""
from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.compress import checkpoint as ckpt
from runtime.compress.checkpoint import SUPPORTED_ARCHITECTURES, CheckpointInfo
from runtime.compress.convert_arch import ARCHITECTURES, IGNORED_SUFFIXES, Hyper, permute_rows, qk_heads, read_hyper
from runtime.errors import ConversionError
from runtime.jobs import CancelToken, ProgressCallback, no_progress

OUT_TYPES = ("f32", "f16", "bf16", "q8_0")
CHUNK_BYTES = 16 << 20           # float32 bytes converted per slice of a big tensor
DISK_MARGIN_BYTES = 32 << 20     # free space asked for beyond the file itself
SOURCE_CHECKPOINT_KEY = "workbench.source_checkpoint"  # the checkpoint folder a GGUF was converted from
__all__ = ["OUT_TYPES", "SUPPORTED_ARCHITECTURES", "ConversionPlan", "PlannedTensor", "convert_checkpoint",
           "default_out_name", "expected_size", "plan_conversion"]


@dataclass
class PlannedTensor:
    """One tensor of the output: GGUF name, shape (outermost first, as numpy), type and byte size."""

    name: str
    shape: tuple[int, ...]
    ggml_type: str                 # "F32", "F16", "BF16", "Q8_0"
    nbytes: int
    source: str | None = None      # the checkpoint tensor it comes from; None when generated
    permute_heads: int | None = None
    data: np.ndarray | None = None  # a generated tensor's values


@dataclass
class ConversionPlan:
    """Everything ``convert_checkpoint`` will write, decided before writing starts."""

    info: CheckpointInfo
    config: dict
    out_type: str
    gguf_arch: str
    file_type: int
    hyper: Hyper
    tensors: list[PlannedTensor]
    vocab: object                  # runtime.compress.vocab.GGUFVocab
    weights: ckpt.WeightFiles

    @property
    def tensor_bytes(self) -> int:
        return sum(_pad(t.nbytes) for t in self.tensors)

    @property
    def expected_bytes(self) -> int:
        """The output file's size, give or take the header (counted from the tokens and names)."""
        header = 4096 + sum(len(t) + 24 for t in self.vocab.tokens) + sum(len(m) + 8 for m in self.vocab.special.merges)
        header += sum(len(t.name) + 64 for t in self.tensors)
        return header + self.tensor_bytes



PARTIAL_SUFFIX = ".partial"


def partial_files(out_path: Path) -> list[Path]:
    """The temporary files a conversion to ``out_path`` writes before its rename (hidden, beside it)."""
    out_path = Path(out_path)
    return sorted(out_path.parent.glob(f".{out_path.name}.*{PARTIAL_SUFFIX}"))

def _pad(n: int, align: int = 32) -> int:
    return (n + align - 1) // align * align


def _types():
    from gguf import GGMLQuantizationType, LlamaFileType

    return {
        "f32": (LlamaFileType.ALL_F32, GGMLQuantizationType.F32),
        "f16": (LlamaFileType.MOSTLY_F16, GGMLQuantizationType.F16),
        "bf16": (LlamaFileType.MOSTLY_BF16, GGMLQuantizationType.BF16),
        "q8_0": (LlamaFileType.MOSTLY_Q8_0, GGMLQuantizationType.Q8_0),
    }


def _nbytes(shape: tuple[int, ...], ggml_type: str) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[ggml_type]]
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return n // block * size


def _tensor_type(name: str, shape: tuple[int, ...], out: str) -> str:
    """llama.cpp's rule: 1-D tensors, norms and non-weights in F32; Q8_0 only in whole 32-blocks."""
    if len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return "F32"
    if out == "Q8_0" and shape[-1] % 32:
        return "F16"
    return out


# --- planning ----------------------------------------------------------------------------------

def plan_conversion(folder, out_type: str = "f16") -> ConversionPlan:
    """Read and check the checkpoint and decide every output tensor; raise ConversionError if it cannot be done."""
    import gguf

    from runtime.compress.vocab import load_vocab

    out_type = str(out_type).lower()
    if out_type not in OUT_TYPES:
        raise ConversionError(f"{out_type!r} is not an output type of the converter",
                              hint=f"Choose one of {', '.join(OUT_TYPES)} (quantize to smaller types afterwards).")
    folder = ckpt._check_folder(folder)
    config = ckpt.read_config(folder)
    ckpt.check_not_quantized(folder, config)
    weights = ckpt.find_weights(folder)
    tensors = ckpt.list_tensors(folder, weights)
    ckpt.check_tensors_not_quantized(folder, tensors)
    info = ckpt._describe(folder, config, weights, tensors)
    if not info.supported:
        hint = ("Look for a GGUF of this model on Hugging Face, or convert it with llama.cpp's "
                "convert_hf_to_gguf.py." if info.gguf_architecture is None else None)
        raise ConversionError(info.problem[0].upper() + info.problem[1:], path=folder, hint=hint,
                              architecture=info.hf_architecture)
    arch = ARCHITECTURES[info.gguf_architecture]
    hp = read_hyper(config)
    file_type, ggml_out = _types()[out_type]
    vocab = load_vocab(folder, config, arch.gguf_arch)

    planned: list[PlannedTensor] = []
    for name, data in arch.extra_tensors(hp):
        planned.append(PlannedTensor(name, tuple(data.shape), "F32", data.nbytes, data=data))
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.gguf_arch.upper()], hp.block_count)
    for t in tensors:
        if t.name.endswith(IGNORED_SUFFIXES):
            continue
        if t.dtype not in ckpt.FLOAT_DTYPES:
            raise ConversionError(f"{t.name} has dtype {t.dtype}, not a float type; this checkpoint cannot be "
                                  "converted", path=folder / t.file)
        new_name = name_map.get_name(t.name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ConversionError(
                f"{t.name} is a tensor a {info.hf_architecture} in llama.cpp has no place for; this checkpoint "
                "is a variant this converter does not handle", path=folder / t.file,
                hint="Convert it with llama.cpp's own convert_hf_to_gguf.py, or look for a GGUF of it.")
        heads = qk_heads(t.name, hp) if arch.permute_qk else None
        if heads is not None and (not t.shape or t.shape[0] % (2 * heads)):
            raise ConversionError(f"{t.name} has shape {list(t.shape)}, which does not split into {heads} heads "
                                  "as config.json says", path=folder / t.file,
                                  hint="config.json and the weights do not belong together: download both again.")
        kind = _tensor_type(new_name, t.shape, ggml_out.name)
        planned.append(PlannedTensor(new_name, t.shape, kind, _nbytes(t.shape, kind), source=t.name,
                                     permute_heads=heads))
    _check_complete(planned, hp, len(vocab.tokens), folder)
    return ConversionPlan(info, config, out_type, arch.gguf_arch, int(file_type), hp, planned, vocab, weights)


def _check_complete(planned: list[PlannedTensor], hp: Hyper, n_vocab: int, folder: Path) -> None:
    by_name = {t.name: t for t in planned}
    embd = by_name.get("token_embd.weight")
    if embd is None:
        raise ConversionError("The checkpoint has no token embedding (model.embed_tokens.weight)", path=folder,
                              hint="The weight files are incomplete: download them again.")
    if len(embd.shape) != 2 or embd.shape[0] != n_vocab:
        raise ConversionError(f"The token embedding has {embd.shape[0]} rows but the tokenizer has {n_vocab} "
                              "tokens", path=folder,
                              hint="The tokenizer and the weights do not belong together: download both again.")
    for block in range(hp.block_count):
        if not any(name.startswith(f"blk.{block}.") for name in by_name):
            raise ConversionError(f"Layer {block} of {hp.block_count} is missing from the weights", path=folder,
                                  hint="The weight files are incomplete: download them again.")


def expected_size(folder, out_type: str = "f16") -> int:
    """The size in bytes the GGUF of ``folder`` at ``out_type`` will have (within a few KiB)."""
    return plan_conversion(folder, out_type).expected_bytes


def default_out_name(folder, out_type: str = "f16") -> str:
    """``<folder name>-<TYPE>.gguf``, e.g. SmolLM2-135M-Instruct-F16.gguf."""
    return f"{Path(folder).name}-{out_type.upper()}.gguf"


# --- writing -----------------------------------------------------------------------------------

def convert_checkpoint(folder, out_path, *, out_type: str = "f16", progress: ProgressCallback = no_progress,
                       cancel: CancelToken | None = None) -> Path:
    """Convert the checkpoint in ``folder`` to a GGUF at ``out_path`` and return that path.

    ``out_path`` may be a folder (the file is then named ``default_out_name``); an existing file there
    is replaced only once the new one is complete. ``progress(done, total, message)`` is called per
    tensor; ``cancel.check()`` is polled between slices and raises Cancelled. Raises ConversionError
    (with nothing written) for a checkpoint that cannot be converted, a missing destination folder or
    too little free disk; a failure while writing removes the partial file.
    """
    cancel = cancel or CancelToken()
    progress(0, 0, "Reading the checkpoint")
    plan = plan_conversion(folder, out_type)
    out_path = Path(out_path).expanduser()
    if out_path.is_dir():
        out_path = out_path / default_out_name(folder, plan.out_type)
    if not out_path.parent.is_dir():
        raise ConversionError(f"The destination folder {out_path.parent} does not exist", path=out_path.parent,
                              hint="Create the folder first, or choose another one.")
    _check_disk(out_path, plan.expected_bytes)
    cancel.check()
    tmp = out_path.with_name(f".{out_path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
    try:
        _write(plan, tmp, progress, cancel)
        _verify(tmp, plan)
        os.replace(tmp, out_path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, ConversionError):
            raise _write_error(exc, out_path) from exc
        raise
    progress(len(plan.tensors), len(plan.tensors), f"Wrote {out_path.name}")
    return out_path


def _check_disk(out_path: Path, needed: int) -> None:
    free = shutil.disk_usage(out_path.parent).free
    if free < needed + DISK_MARGIN_BYTES:
        from runtime.models.gguf_info import format_size

        raise ConversionError(
            f"Not enough free disk space in {out_path.parent}: the GGUF needs about {format_size(needed)}, "
            f"and {format_size(free)} is free", path=out_path.parent,
            hint=f"Free at least {format_size(needed + DISK_MARGIN_BYTES - free)} or choose another folder.",
            needed_bytes=needed, free_bytes=free)


def _write_error(exc: OSError, out_path: Path) -> ConversionError:
    import errno

    if exc.errno == errno.ENOSPC:
        return ConversionError(f"The disk filled up while writing {out_path.name}; the partial file was removed",
                               path=out_path, hint="Free some disk space or choose another folder, then try again.")
    return ConversionError(f"Could not write {out_path.name}: {exc.strerror or exc}", path=out_path,
                           hint="Check that the folder is writable and the disk is working.")


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _write(plan: ConversionPlan, tmp: Path, progress: ProgressCallback, cancel: CancelToken) -> None:
    import gguf

    writer = gguf.GGUFWriter(tmp, plan.gguf_arch)
    try:
        for t in plan.tensors:
            raw_dtype = gguf.GGMLQuantizationType[t.ggml_type]
            writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=raw_dtype)
        _write_metadata(writer, plan)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        fout = writer.fout[0]
        total = len(plan.tensors)
        order = iter(plan.tensors)
        done = 0
        for t in (t for t in plan.tensors if t.data is not None):
            next(order)
            _append(writer, fout, t, lambda t=t: [t.data], cancel)
            done += 1
            progress(done, total, f"{t.name} ({t.ggml_type})")
        with ckpt.TensorReader(plan.info.path, plan.weights) as reader:
            for source in reader.sources():
                if source.name.endswith(IGNORED_SUFFIXES):
                    continue
                t = next(order)
                if t.source != source.name or tuple(source.shape) != t.shape:
                    raise ConversionError(f"The weights changed while being converted ({source.name})",
                                          path=plan.info.path, hint="Leave the checkpoint folder alone while it "
                                                                    "converts, then try again.")
                _append(writer, fout, t, lambda s=source, t=t: _slices(s, t), cancel)
                done += 1
                progress(done, total, f"{t.name} ({t.ggml_type})")
        if next(order, None) is not None:
            raise ConversionError("The weights changed while being converted (tensors are missing)",
                                  path=plan.info.path, hint="Try again.")
        fout.flush()
        os.fsync(fout.fileno())
    finally:
        writer.close()


def _write_metadata(writer, plan: ConversionPlan) -> None:
    import gguf

    writer.add_type(gguf.GGUFType.MODEL)
    total, shared, expert, experts = writer.get_total_parameter_count()
    try:
        meta = gguf.Metadata.load(None, Path(plan.info.path), None, total)
    except Exception:  # noqa: BLE001 - a model card the heuristics cannot parse costs only the nice name
        meta = gguf.Metadata()
    if meta.name is None:
        meta.name = plan.info.name
    if meta.size_label is None and total > 0:
        meta.size_label = gguf.size_label(total, shared, expert, experts)
    meta.set_gguf_meta_model(writer)
    ARCHITECTURES[plan.gguf_arch].write_params(writer, plan.hyper, plan.file_type)
    if plan.gguf_arch == "phi3":
        ARCHITECTURES["phi3"].extra_tensors(plan.hyper, writer)  # adds the rope attention factor key
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # Where it came from, so the Benchmark tab can offer the original checkpoint as PyTorch rows
    # (runtime.bench.torch_rows.source_checkpoint_of; llama.cpp's quantizer copies the key to every variant).
    writer.add_string(SOURCE_CHECKPOINT_KEY, str(Path(plan.info.path).resolve()))
    if plan.vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(plan.vocab.add_space_prefix)
    plan.vocab.add_to(writer)


def _slices(source: ckpt.TensorSource, t: PlannedTensor):
    """The tensor's data in slices of rows (whole when it must be permuted), raw or as float32."""
    raw_ok = (t.permute_heads is None and
              (source.dtype, t.ggml_type) in (("F32", "F32"), ("F16", "F16"), ("BF16", "BF16")))
    if t.permute_heads is not None or not source.shape:
        data = source.array()
        yield permute_rows(data, t.permute_heads) if t.permute_heads is not None else data
        return
    step = max(1, CHUNK_BYTES // (4 * max(1, source.row_elements)))
    for start in range(0, source.n_rows, step):
        stop = min(source.n_rows, start + step)
        yield ("raw", source.raw_rows(start, stop)) if raw_ok else source.rows(start, stop)


def _encode(data, ggml_type: str) -> np.ndarray:
    import gguf

    if isinstance(data, tuple):  # ("raw", stored elements already in the output type)
        return data[1]
    if ggml_type == "F32":
        return data.astype(np.float32, copy=False)
    if ggml_type == "F16":
        return data.astype(np.float16)
    return gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32),
                                gguf.GGMLQuantizationType[ggml_type])


def _append(writer, fout, t: PlannedTensor, slices, cancel: CancelToken) -> None:
    writer.write_padding(fout, fout.tell())
    written = 0
    for data in slices():
        cancel.check()
        out = np.ascontiguousarray(_encode(data, t.ggml_type))
        fout.write(out.reshape(-1).view(np.uint8).data)
        written += out.nbytes
    if written != t.nbytes:
        raise ConversionError(f"{t.name}: wrote {written:,} bytes where {t.nbytes:,} were planned",
                              hint="This is a bug in the converter; please report it.")
    writer.write_padding(fout, t.nbytes)


def _verify(tmp: Path, plan: ConversionPlan) -> None:
    from runtime.errors import ModelFileError
    from runtime.models.gguf_info import read_gguf_info

    try:
        info = read_gguf_info(tmp)
    except ModelFileError as exc:
        raise ConversionError(f"The converted file does not read back: {exc.message}",
                              hint="Check the disk, then try again.") from None
    if info.tensor_count != len(plan.tensors) or info.architecture != plan.gguf_arch:
        raise ConversionError("The converted file does not read back as written",
                              hint="Check the disk, then try again.")
