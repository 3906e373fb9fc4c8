"""Importance matrices in llama.cpp's GGUF imatrix format: what they hold, reading and writing them.

An importance matrix says, per weight matrix of the model, how large each input column's activations
are on a calibration text: the sum of the squared inputs per column (``in_sum2``) and how many input
rows (tokens) were summed (``counts``); llama.cpp's quantizer uses their quotient, the mean square,
to spend precision where the activations are large. The file is what ``llama-imatrix`` writes:

- per weight ``W`` (its GGUF name, ``blk.0.attn_q.weight``): an F32 tensor ``W.in_sum2`` of ne[0]
  values per matrix (a mixture-of-experts tensor has one row per expert) and ``W.counts`` of one
  value per matrix;
- keys ``general.type`` = "imatrix", ``imatrix.datasets`` (names of the texts),
  ``imatrix.chunk_count`` and ``imatrix.chunk_size`` (chunks of that many tokens).

Only matrices inside the decoder blocks (``blk.*``) are collected, as llama-imatrix does by default.
``compute_imatrix`` (runtime.compress.imatrix_run) makes one from a GGUF or a checkpoint.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.compress.calibration import CALIBRATION_FILE, default_calibration_path  # noqa: F401 (re-exported)
from runtime.errors import ModelFileError, QuantizeError

SUM_SUFFIX, COUNT_SUFFIX = ".in_sum2", ".counts"
KEY_TYPE, KEY_DATASETS = "general.type", "imatrix.datasets"
KEY_CHUNK_COUNT, KEY_CHUNK_SIZE = "imatrix.chunk_count", "imatrix.chunk_size"
_NOT_IMATRIX_HINT = ("Choose a file made by `workbench imatrix` or llama.cpp's llama-imatrix "
                     "(an old .dat file converts with: llama-imatrix --in-file old.dat -o new.gguf).")


def usual_permissions(path: Path) -> None:
    """Give a file made with mkstemp (owner-only) the permissions a plain open would have given it."""
    mask = os.umask(0)
    os.umask(mask)
    try:
        os.chmod(path, 0o666 & ~mask)
    except OSError:
        pass


@dataclass
class ImatrixEntry:
    """One weight's statistics: ``sums`` (n_mat, ne0) of squared inputs, ``counts`` (n_mat,) rows summed."""

    sums: np.ndarray
    counts: np.ndarray

    @property
    def ne0(self) -> int:
        return int(self.sums.shape[1])

    @property
    def n_mat(self) -> int:
        return int(self.sums.shape[0])

    def mean_squares(self) -> np.ndarray:
        """What llama.cpp's quantizer is given (flat, ne0 x n_mat F32): sums / counts, 1 where nothing was
        counted (llama-quantize's rule for experts the text never reached)."""
        out = np.ones(self.sums.shape, dtype=np.float32)
        seen = self.counts > 0
        out[seen] = (self.sums[seen] / self.counts[seen, None]).astype(np.float32)
        return out.reshape(-1)


@dataclass
class ImportanceMatrix:
    """Per GGUF weight name, the statistics of its inputs over ``chunk_count`` chunks of ``chunk_size``
    tokens of the texts named in ``datasets``."""

    entries: dict[str, ImatrixEntry] = field(default_factory=dict)
    chunk_count: int = 0
    chunk_size: int = 0
    datasets: list[str] = field(default_factory=list)

    def accumulate(self, name: str, squares: np.ndarray, rows: int, n_mat: int = 1, mat: int = 0) -> None:
        """Add ``squares`` (ne0 sums of x^2 over ``rows`` input rows) to matrix ``mat`` of ``name``."""
        entry = self.entries.get(name)
        if entry is None:
            entry = self.entries[name] = ImatrixEntry(np.zeros((n_mat, squares.shape[-1]), dtype=np.float64),
                                                      np.zeros(n_mat, dtype=np.float64))
        entry.sums[mat] += squares
        entry.counts[mat] += rows

    def describe(self) -> str:
        names = ", ".join(self.datasets) or "an unnamed text"
        return f"{len(self.entries)} matrices, {self.chunk_count} chunks of {self.chunk_size} tokens from {names}"

    # --- the file ---------------------------------------------------------------------------

    def write(self, path: str | os.PathLike) -> Path:
        """Write the GGUF file at ``path`` as it is (no temporary name): callers that need safety use
        ``save``. Tensors in name order, as llama-imatrix writes them."""
        import gguf

        class _Writer(gguf.GGUFWriter):
            def add_architecture(self) -> None:  # an imatrix file names no architecture
                pass

        path = Path(path)
        writer = _Writer(str(path), "")
        writer.add_string(KEY_TYPE, "imatrix")
        writer.add_array(KEY_DATASETS, list(self.datasets) or ["unknown"])
        writer.add_uint32(KEY_CHUNK_COUNT, int(self.chunk_count))
        writer.add_uint32(KEY_CHUNK_SIZE, int(self.chunk_size))
        for name in sorted(self.entries):
            entry = self.entries[name]
            writer.add_tensor(name + SUM_SUFFIX, np.ascontiguousarray(entry.sums, dtype=np.float32))
            writer.add_tensor(name + COUNT_SUFFIX,
                              np.ascontiguousarray(entry.counts, dtype=np.float32).reshape(entry.n_mat, 1))
        try:
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
        return path

    def save(self, path: str | os.PathLike) -> Path:
        """Write to a temporary name beside ``path``, read it back, then rename: never a half file."""
        path = Path(path).absolute()
        if not path.parent.is_dir():
            raise QuantizeError(f"The folder {path.parent} does not exist.", hint="Create it or choose another.",
                                path=str(path.parent))
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(fd)
        temp = Path(temp_name)
        try:
            self.write(temp)
            load(temp)
            usual_permissions(temp)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ImportanceMatrix":
        return load(path)

    # --- for the quantizer ------------------------------------------------------------------

    def check_model(self, tensors: dict[str, tuple[int, ...]], model_name: str = "the model") -> int:
        """Check the matrix fits a model (``tensors``: GGUF name -> dims, row length first); return how
        many of its entries the model has. Raises QuantizeError when none match or a size differs
        (llama.cpp would stop half-way through with the same complaint)."""
        matched = 0
        for name, entry in self.entries.items():
            dims = tensors.get(name)
            if dims is None:
                continue
            n_mat = dims[2] if len(dims) > 2 else 1
            if entry.ne0 != dims[0] or entry.n_mat not in (1, n_mat):
                raise QuantizeError(
                    f"The importance matrix does not belong to {model_name}: {name} has rows of {dims[0]} values "
                    f"there, {entry.ne0} in the matrix.",
                    hint="Compute the importance matrix from this model (or its original checkpoint).",
                    tensor=name)
            matched += 1
        if not matched:
            raise QuantizeError(
                f"The importance matrix does not belong to {model_name}: none of its {len(self.entries)} "
                "weight names is in the model.",
                hint="Compute the importance matrix from this model (or its original checkpoint).")
        return matched


def load(path: str | os.PathLike) -> ImportanceMatrix:
    """Read a GGUF imatrix file (ours or llama-imatrix's). Raises ModelFileError for anything else."""
    from gguf import GGUFReader, GGUFValueType

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"The importance matrix {path} does not exist or is not a file.", path=str(path),
                             hint=_NOT_IMATRIX_HINT)
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # noqa: BLE001 - the gguf reader raises many kinds on a bad file
        raise ModelFileError(f"{path.name} is not an importance matrix (not a readable GGUF file: {exc}).",
                             path=str(path), hint=_NOT_IMATRIX_HINT) from None

    def value(key: str):
        f = reader.fields.get(key)
        if f is None or not f.data:
            return None
        if f.types and f.types[0] == GGUFValueType.ARRAY:
            return [bytes(f.parts[i]).decode("utf-8", "replace") for i in f.data]
        part = f.parts[f.data[0]]
        if f.types and f.types[0] == GGUFValueType.STRING:
            return bytes(part).decode("utf-8", "replace")
        return int(part[0])

    sums, counts = {}, {}
    try:
        for t in reader.tensors:
            if t.name.endswith(SUM_SUFFIX):
                sums[t.name[:-len(SUM_SUFFIX)]] = t
            elif t.name.endswith(COUNT_SUFFIX):
                counts[t.name[:-len(COUNT_SUFFIX)]] = t
        kind = value(KEY_TYPE)
        if not sums or (kind is not None and kind != "imatrix"):
            what = f"a GGUF of type {kind!r}" if kind else "a GGUF without importance data"
            raise ModelFileError(f"{path.name} is not an importance matrix: it is {what}.", path=str(path),
                                 hint=_NOT_IMATRIX_HINT)
        matrix = ImportanceMatrix(chunk_count=value(KEY_CHUNK_COUNT) or 0, chunk_size=value(KEY_CHUNK_SIZE) or 0,
                                  datasets=value(KEY_DATASETS) or [])
        for name, t in sums.items():
            c = counts.get(name)
            if c is None or t.tensor_type.name != "F32" or c.tensor_type.name != "F32":
                raise ModelFileError(f"{path.name} is damaged: {name} lacks its counts, or they are not F32.",
                                     path=str(path), hint=_NOT_IMATRIX_HINT, tensor=name)
            data = np.array(t.data, dtype=np.float64).reshape(-1, int(t.shape[0]))
            n = np.array(c.data, dtype=np.float64).reshape(-1)
            if n.size != data.shape[0] or not np.isfinite(data).all() or (n < 0).any():
                raise ModelFileError(f"{path.name} is damaged: the data of {name} is inconsistent.",
                                     path=str(path), hint=_NOT_IMATRIX_HINT, tensor=name)
            matrix.entries[name] = ImatrixEntry(data, n)
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated data, odd shapes
        raise ModelFileError(f"{path.name} is a damaged importance matrix ({exc}).", path=str(path),
                             hint=_NOT_IMATRIX_HINT) from None
    return matrix
