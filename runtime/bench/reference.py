"""Reference log-probabilities for quality scoring: computed once per (model, text, context, k), kept on disk.

A reference holds, for every scored position of the token windows (llama-perplexity's: windows of
``n_ctx`` tokens, the second half of each scored, see ``windows_from_tokens``), the reference model's
``k`` most likely next tokens with their log-probabilities, the log of the probability left over for
all other tokens, and its own negative log-likelihood of the true next token.

The KL divergence scores the tokens outside the top ``k`` as one bucket, which can only lower it
(grouping never raises a KL divergence): by the leftover mass times how differently the two models
spread it, about 1.4 x the leftover mass in relative terms. Small models spread their probability
thinly (SmolLM2-135M leaves 9% outside its top 128 and 0.4% outside its top 4096), so
``DEFAULT_K`` is 4096: measured on the starter model (context 512, 1,020 positions), the mean KLD
of its Q8_0 and Q4_0 variants against F16 is 0.5% below the full-vocabulary figure (top 2048: 1.4%,
top 512: 5%, top 128: 12%; benchmarks/bench_quality.py, asserted in
tests/runtime/bench/test_quality.py). With 2-byte token ids
that is 24 KiB a position, a quarter of llama-perplexity's full-vocabulary uint16 rows for a
49k vocabulary (a tenth for a 150k one), and exact where it keeps a value.

The source is anything that yields logits: ``ReferenceWriter`` takes the windows and then one logit
array per window, whether they come from llama.cpp (``runtime.bench.quality_child``) or from
the original checkpoint in PyTorch (``runtime.bench.torch_child``); ``WindowScorer`` scores any source
against it the same way. ``source`` in the header says which, and is part of the cache key.

File layout (``.wbref``, little-endian): the 8-byte magic, a u64 header length, a JSON header, then,
each starting on a 64-byte boundary, the arrays: ``windows`` int32 [n_windows, n_ctx] (the tokens
as evaluated, the first already replaced by BOS where the vocabulary adds one); and per scored
position, in window order, ``ids`` [N, k] (uint16 for vocabularies up to 65,536 tokens, else int32;
most likely first), ``logp`` float32 [N, k], ``rest_logp`` float32 [N] (log of the leftover mass,
-inf when k covers the vocabulary) and ``nll`` float32 [N]. The arrays are read through a memory
map, so a large reference costs little memory.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from runtime import paths
from runtime.errors import BenchError

MAGIC = b"WBREF\x00\x01\x00"
FORMAT_VERSION = 1
SUFFIX = ".wbref"
PARTIAL_SUFFIX = ".partial"
ALIGN = 64
DEFAULT_K = 4096
ROW_BLOCK = 64  # rows converted at a time: bounds the temporaries for big vocabularies
_TINY = 1e-30   # probability floor where a model gives a bucket exactly zero


# --- the windows -------------------------------------------------------------------------------

def scored_per_window(n_ctx: int) -> int:
    """Positions scored in a window: from the middle to the second-last (each predicts the next)."""
    return n_ctx - 1 - n_ctx // 2


def min_tokens(n_ctx: int) -> int:
    """Tokens a text needs for a context of ``n_ctx``: two windows, as llama-perplexity asks."""
    return 2 * n_ctx


def windows_from_tokens(tokens, n_ctx: int, bos: int | None, max_windows: int | None = None) -> np.ndarray:
    """The windows llama-perplexity evaluates: consecutive runs of ``n_ctx`` tokens (the tail that
    fills no window is dropped), each one's first token replaced by ``bos`` when it is not None."""
    tokens = np.asarray(tokens, dtype=np.int32)
    count = len(tokens) // n_ctx
    if max_windows is not None and max_windows > 0:
        count = min(count, max_windows)
    windows = tokens[: count * n_ctx].reshape(count, n_ctx).copy()
    if bos is not None and count:
        windows[:, 0] = bos
    return windows


def scored_targets(windows: np.ndarray) -> np.ndarray:
    """The true next token of every scored position, in file order."""
    n_ctx = windows.shape[1]
    first = n_ctx // 2
    return np.ascontiguousarray(windows[:, first + 1:]).reshape(-1)


# --- numerics shared by the writer and the scorer -------------------------------------------------

def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities (float32; the normalising sum is taken in float64)."""
    logits = np.asarray(logits, dtype=np.float32)
    shifted = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1, dtype=np.float64)).astype(np.float32)
    return shifted - lse[:, None]


def top_k_rows(logp: np.ndarray, k: int) -> np.ndarray:
    """Per row, the ids of the ``k`` highest log-probabilities, highest first (ties: lower id first,
    so the first is the id llama.cpp's argmax picks)."""
    n_vocab = logp.shape[1]
    if k >= n_vocab:
        part = np.broadcast_to(np.arange(n_vocab, dtype=np.int64), logp.shape)
    else:
        part = np.argpartition(-logp, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(logp, part, axis=1)
    ids = np.take_along_axis(part, np.argsort(-values, axis=1), axis=1).astype(np.int32)
    # Ties below the top do not matter; at the top, put the lowest id of the highest value first.
    best = logp.argmax(axis=1)
    where = (ids == best[:, None]).argmax(axis=1)
    rows = np.arange(len(ids))
    ids[rows, where] = ids[rows, 0]
    ids[rows, 0] = best
    return ids


def rest_mass(logp: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per row, the probability of every token not in ``ids`` (float64, summed directly rather than
    as 1 - top, which would lose the small leftovers to rounding)."""
    probs = np.exp(logp)
    np.put_along_axis(probs, ids.astype(np.int64), 0.0, axis=1)
    return probs.sum(axis=1, dtype=np.float64)


def kld_rows(ref_ids: np.ndarray, ref_logp: np.ndarray, ref_rest_logp: np.ndarray,
             test_logp: np.ndarray, test_rest: np.ndarray | None = None) -> np.ndarray:
    """KL(reference || test) per row from the reference's top-k and leftover mass.

    ``test_logp`` is the test model's full log-softmax; ``test_rest`` its mass outside ``ref_ids``
    (``rest_mass``), computed here when not given. The leftover bucket adds R * log(R / Q_rest).
    """
    ids = ref_ids.astype(np.int64)
    lq = np.take_along_axis(test_logp, ids, axis=1).astype(np.float64)
    lp = ref_logp.astype(np.float64)
    kld = (np.exp(lp) * (lp - lq)).sum(axis=1)
    rest_p = np.exp(ref_rest_logp.astype(np.float64))
    if np.any(rest_p > 0):
        rest_q = rest_mass(test_logp, ref_ids) if test_rest is None else test_rest
        with np.errstate(divide="ignore", invalid="ignore"):
            bucket = rest_p * (np.log(np.maximum(rest_p, _TINY)) - np.log(np.maximum(rest_q, _TINY)))
        kld += np.where(rest_p > 0, bucket, 0.0)
    return kld


def truncated_kld_rows(ref_ids, ref_logp, ref_rest_logp, test_logp, test_rest, k: int) -> np.ndarray:
    """``kld_rows`` as if the reference had kept only its ``k`` most likely tokens (``k`` <= stored k):
    the tokens dropped join the leftover bucket on both sides."""
    if k >= ref_ids.shape[1]:
        return kld_rows(ref_ids, ref_logp, ref_rest_logp, test_logp, test_rest)
    dropped_p = np.exp(ref_logp[:, k:].astype(np.float64)).sum(axis=1)
    dropped_q = np.exp(np.take_along_axis(test_logp, ref_ids[:, k:].astype(np.int64), axis=1)
                       .astype(np.float64)).sum(axis=1)
    rest_p = np.exp(ref_rest_logp.astype(np.float64)) + dropped_p
    with np.errstate(divide="ignore"):
        rest_logp = np.log(rest_p).astype(np.float32)
    return kld_rows(ref_ids[:, :k], ref_logp[:, :k], rest_logp, test_logp, test_rest + dropped_q)


class WindowScorer:
    """Scores a test model on a reference's windows, one window's logits at a time, whatever the
    source of the logits (llama.cpp in ``quality_child``, PyTorch in ``torch_child``).

    ``add(index, logits)`` takes window ``index``'s logits at its scored positions (shape
    (scored_per_window, n_vocab)); ``figures()`` gives the figures of every window added: KL
    divergence against the reference (mean, median, p99, max, and as if it kept only each of
    ``compare_k`` tokens), top-1 agreement, the test model's and the reference's mean NLL and perplexity.
    """

    def __init__(self, reference: "Reference", compare_k=()) -> None:
        meta = reference.meta
        self.reference, self.meta = reference, meta
        self.compare = sorted({int(k) for k in compare_k if 0 < int(k) < meta.k})
        self.targets = reference.targets()
        n = meta.n_scored
        self.kld = np.zeros(n, np.float64)
        self.nll = np.zeros(n, np.float64)
        self.same_top = np.zeros(n, bool)
        self.by_k = {k: np.zeros(n, np.float64) for k in self.compare}
        self.done = np.zeros(meta.n_windows, bool)

    def add(self, index: int, logits: np.ndarray) -> None:
        meta, ref = self.meta, self.reference
        per = meta.scored_per_window
        if logits.shape != (per, meta.n_vocab):
            raise ValueError(f"logits have shape {logits.shape}, expected ({per}, {meta.n_vocab})")
        base = index * per
        for offset in range(0, per, ROW_BLOCK):
            rows = slice(base + offset, base + min(offset + ROW_BLOCK, per))
            block = logits[offset:offset + ROW_BLOCK]
            logq = log_softmax(block)
            ids, logp = np.asarray(ref.ids[rows]), np.asarray(ref.logp[rows])
            rest_logp = np.asarray(ref.rest_logp[rows])
            test_rest = rest_mass(logq, ids) if meta.k < meta.n_vocab else np.zeros(len(block))
            self.kld[rows] = kld_rows(ids, logp, rest_logp, logq, test_rest)
            for k in self.compare:
                self.by_k[k][rows] = truncated_kld_rows(ids, logp, rest_logp, logq, test_rest, k)
            self.nll[rows] = -logq[np.arange(len(block)), self.targets[rows]]
            self.same_top[rows] = np.asarray(block).argmax(axis=1) == ids[:, 0]
        self.done[index] = True

    def figures(self) -> dict:
        if not self.done.all():
            raise ValueError(f"only {int(self.done.sum())} of {len(self.done)} windows were scored")
        kld, nll = self.kld, self.nll
        ref_nll = float(np.asarray(self.reference.nll, dtype=np.float64).mean())
        return {
            "tokens_scored": int(self.meta.n_scored), "n_windows": int(self.meta.n_windows),
            "nll_mean": float(nll.mean()), "perplexity": math.exp(float(nll.mean())),
            "reference_nll_mean": ref_nll, "reference_perplexity": math.exp(ref_nll),
            "kld_mean": float(kld.mean()), "kld_p99": float(np.percentile(kld, 99)),
            "kld_median": float(np.median(kld)), "kld_max": float(kld.max()),
            "top1_agreement": float(self.same_top.mean()),
            "kld_mean_by_k": {str(k): float(v.mean()) for k, v in self.by_k.items()},
        }


# --- identity and cache ------------------------------------------------------------------------------

def text_sha256(text_path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(text_path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_source(path: str | os.PathLike) -> dict:
    """A GGUF file's identity for the cache: its absolute path, size and modification time."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"kind": "gguf", "path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_key(source: dict, text_hash: str, n_ctx: int, k: int, max_windows: int | None = None) -> str:
    """The reference's cache key: which model (``source``: ``gguf_source`` or, for other producers,
    ``{"kind": ..., "id": ...}``), which text, context length, k and window limit."""
    identity = {key: source[key] for key in sorted(source) if key in ("kind", "path", "size", "mtime_ns", "id")}
    blob = json.dumps({"format": FORMAT_VERSION, "source": identity, "text": text_hash, "n_ctx": n_ctx, "k": k,
                       "max_windows": max_windows or 0}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def cache_dir() -> Path:
    """Where references are cached: ``<app home>/cache/quality``."""
    return paths.app_home() / "cache" / "quality"


def cache_path(key: str) -> Path:
    return cache_dir() / f"{key}{SUFFIX}"


# --- the file -----------------------------------------------------------------------------------------

@dataclass
class ReferenceMeta:
    """The header of a reference file (everything but the arrays)."""

    n_ctx: int
    n_windows: int
    k: int
    n_vocab: int
    vocab_fingerprint: str
    text_sha256: str
    source: dict                     # gguf_source(...) or {"kind": "checkpoint", "id": ...}; "name" for people
    key: str = ""                    # cache_key(...)
    text_name: str = ""
    bos_replaced: bool = False       # each window's first token was replaced by BOS
    producer: str = ""               # "llama.cpp (llama-cpp-python 0.3.36)", ...
    created: float = field(default_factory=time.time)
    format: int = FORMAT_VERSION

    @property
    def scored_per_window(self) -> int:
        return scored_per_window(self.n_ctx)

    @property
    def n_scored(self) -> int:
        return self.n_windows * self.scored_per_window

    @property
    def source_name(self) -> str:
        return str(self.source.get("name") or Path(str(self.source.get("path") or self.source.get("id") or "?")).name)

    def layout(self) -> dict[str, tuple[int, tuple[int, ...], np.dtype]]:
        """Each array's (offset from the data start, shape, dtype)."""
        shapes = {"windows": ((self.n_windows, self.n_ctx), np.int32),
                  "ids": ((self.n_scored, self.k), ids_dtype(self.n_vocab)),
                  "logp": ((self.n_scored, self.k), np.float32),
                  "rest_logp": ((self.n_scored,), np.float32), "nll": ((self.n_scored,), np.float32)}
        out, offset = {}, 0
        for name, (shape, dtype) in shapes.items():
            out[name] = (offset, shape, np.dtype(dtype))
            offset = _aligned(offset + int(np.prod(shape)) * np.dtype(dtype).itemsize)
        out["_end"] = (offset, (), np.dtype(np.uint8))
        return out


def ids_dtype(n_vocab: int) -> np.dtype:
    """Token ids take 2 bytes where the vocabulary allows (most have fewer than 65,536 tokens)."""
    return np.dtype(np.uint16 if n_vocab <= 1 << 16 else np.int32)


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _header_bytes(meta: ReferenceMeta) -> bytes:
    blob = json.dumps(asdict(meta), sort_keys=True).encode()
    start = len(MAGIC) + 8 + len(blob)
    return blob + b" " * (_aligned(start) - start)


class ReferenceWriter:
    """Writes a reference to ``path`` as the logits arrive, one window at a time.

    ``add(logits)`` takes the source's logits for one window's scored positions, in order: shape
    (scored_per_window, n_vocab); any float dtype, unnormalised. ``close()`` checks every window came.
    Used as a context manager, the file is removed when the block fails. The caller picks the name
    (a temporary one: see ``write_reference`` for the whole safe write).
    """

    def __init__(self, path: str | os.PathLike, meta: ReferenceMeta, windows: np.ndarray) -> None:
        windows = np.ascontiguousarray(windows, dtype=np.int32)
        if windows.shape != (meta.n_windows, meta.n_ctx):
            raise ValueError(f"windows have shape {windows.shape}, the header says ({meta.n_windows}, {meta.n_ctx})")
        if not 1 <= meta.k <= meta.n_vocab:
            raise ValueError(f"k={meta.k} must be between 1 and the vocabulary size {meta.n_vocab}")
        self.path = Path(path)
        self.meta = meta
        self._targets = scored_targets(windows)
        self._layout = meta.layout()
        header = _header_bytes(meta)
        self._data_start = len(MAGIC) + 8 + len(header)
        self._fh = open(self.path, "wb")
        self._fh.write(MAGIC + struct.pack("<Q", len(header)) + header)
        self._fh.truncate(self._data_start + self._layout["_end"][0])
        self._put("windows", 0, windows)
        self.windows_done = 0

    def _put(self, name: str, row: int, values: np.ndarray) -> None:
        offset, shape, dtype = self._layout[name]
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._fh.seek(self._data_start + offset + row * row_bytes)
        self._fh.write(np.ascontiguousarray(values, dtype=dtype).tobytes())

    def add(self, logits: np.ndarray) -> None:
        """Store one window's positions (``scored_per_window`` rows of ``n_vocab`` logits)."""
        meta, per = self.meta, self.meta.scored_per_window
        if self.windows_done >= meta.n_windows:
            raise ValueError("more windows than the header announced")
        if logits.shape != (per, meta.n_vocab):
            raise ValueError(f"logits have shape {logits.shape}, expected ({per}, {meta.n_vocab})")
        base = self.windows_done * per
        for start in range(0, per, ROW_BLOCK):
            block = log_softmax(logits[start:start + ROW_BLOCK])
            ids = top_k_rows(block, meta.k)
            rows = np.arange(len(block))
            targets = self._targets[base + start: base + start + len(block)]
            with np.errstate(divide="ignore"):
                rest = np.log(rest_mass(block, ids)).astype(np.float32) if meta.k < meta.n_vocab \
                    else np.full(len(block), -np.inf, np.float32)
            self._put("ids", base + start, ids)
            self._put("logp", base + start, np.take_along_axis(block, ids.astype(np.int64), axis=1))
            self._put("rest_logp", base + start, rest)
            self._put("nll", base + start, -block[rows, targets])
        self.windows_done += 1

    def close(self) -> None:
        if self._fh.closed:
            return
        self._fh.close()
        if self.windows_done != self.meta.n_windows:
            raise ValueError(f"only {self.windows_done} of {self.meta.n_windows} windows were written")

    def __enter__(self) -> "ReferenceWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        self._fh.close()
        try:
            self.path.unlink()
        except OSError:
            pass


def write_reference(path: str | os.PathLike, meta: ReferenceMeta, windows: np.ndarray,
                    window_logits: Iterable[np.ndarray]) -> Path:
    """Write a whole reference safely: under a temporary name beside ``path``, read back, then renamed.

    ``window_logits`` yields each window's logits in order (any source). Nothing is left at ``path``
    or beside it when this fails or is interrupted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        with ReferenceWriter(temp, meta, windows) as writer:
            for logits in window_logits:
                writer.add(logits)
        Reference.open(temp)  # reads back: header, size
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    return path


class Reference:
    """A reference file, open for reading (arrays memory-mapped). ``Reference.open(path)``."""

    def __init__(self, path: Path, meta: ReferenceMeta, arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.meta = meta
        self.windows = arrays["windows"]
        self.ids = arrays["ids"]
        self.logp = arrays["logp"]
        self.rest_logp = arrays["rest_logp"]
        self.nll = arrays["nll"]

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Reference":
        """Read a reference; BenchError when the file is not one, is damaged or is cut short."""
        path = Path(path)
        bad = f"{path.name} is not a usable quality reference"
        try:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                head = fh.read(len(MAGIC) + 8)
                if len(head) < len(MAGIC) + 8 or head[:len(MAGIC)] != MAGIC:
                    raise BenchError(f"{bad}: it does not start like one.", path=str(path))
                (length,) = struct.unpack("<Q", head[len(MAGIC):])
                if length > min(size, 1 << 24):
                    raise BenchError(f"{bad}: its header is damaged.", path=str(path))
                header = json.loads(fh.read(length).decode("utf-8"))
            if header.get("format") != FORMAT_VERSION:
                raise BenchError(f"{bad}: it was written in format {header.get('format')}, this app reads "
                                 f"format {FORMAT_VERSION}.", path=str(path))
            meta = ReferenceMeta(**header)
            layout = meta.layout()
            data_start = len(MAGIC) + 8 + length
            expected = data_start + layout["_end"][0]
            if size != expected:
                raise BenchError(f"{bad}: it holds {size:,} bytes, its header promises {expected:,}.",
                                 path=str(path))
            arrays = {}
            if meta.n_scored:
                mapped = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start, shape=(layout["_end"][0],))
            for name, (offset, shape, dtype) in layout.items():
                if name == "_end":
                    continue
                count = int(np.prod(shape))
                arrays[name] = (mapped[offset: offset + count * dtype.itemsize].view(dtype).reshape(shape)
                                if count else np.zeros(shape, dtype))
        except BenchError:
            raise
        except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise BenchError(f"{bad}: {exc}", path=str(path)) from None
        return cls(path, meta, arrays)

    @property
    def n_ctx(self) -> int:
        return self.meta.n_ctx

    @property
    def n_windows(self) -> int:
        return self.meta.n_windows

    @property
    def k(self) -> int:
        return self.meta.k

    def window_rows(self, index: int) -> slice:
        """The rows of window ``index`` in the per-position arrays."""
        per = self.meta.scored_per_window
        return slice(index * per, (index + 1) * per)

    def targets(self) -> np.ndarray:
        return scored_targets(np.asarray(self.windows))

    @property
    def nll_mean(self) -> float:
        return float(np.asarray(self.nll, dtype=np.float64).mean()) if self.meta.n_scored else float("nan")

    @property
    def perplexity(self) -> float:
        """The reference model's own perplexity on these windows."""
        return math.exp(self.nll_mean)

    def describe(self) -> str:
        """"SmolLM2-F16.gguf, context 512, 20 windows (5,100 positions), top 128"."""
        m = self.meta
        return (f"{m.source_name}, context {m.n_ctx}, {m.n_windows} windows ({m.n_scored:,} positions), "
                f"top {m.k}")
