"""The importance-matrix process for a GGUF: llama.cpp evaluates the text, its ``cb_eval`` hands us
every matrix multiplication's input.

Started by ``runtime.compress.imatrix_run.compute_imatrix`` as
``python -m runtime.compress.imatrix_child MODEL TEXT OUT --ctx N [--chunks N] [--dataset NAME]
[--threads N] [--gpu-layers N]``. As llama-imatrix does: the text is tokenized whole (with BOS where the
vocabulary adds one), cut into chunks of ``--ctx`` tokens whose first token becomes BOS where the
vocabulary adds one, each chunk evaluated from an empty cache with every position's output asked for
(so the last layer sees every row). The scheduler asks the callback about each graph node
(``ask``=True): MUL_MAT nodes whose weight is a ``blk.*`` tensor and whose F32 input has at least 16
rows, and every MUL_MAT_ID (experts), are wanted; then it calls again with the computed node and the
input activations are read (``ggml_backend_tensor_get``, so GPU buffers work too) and their squares
summed per column.

Events: ``started``; ``loaded`` {n_tokens, n_chunks, add_bos}; ``chunk`` {done, total} after each chunk;
``done`` {entries, chunks, seconds, peak_rss_bytes} once OUT is written (the parent checks and renames
it); ``error`` (a WorkbenchError payload). When stdin closes, OUT is removed and the process exits.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from runtime.errors import ModelFileError, QuantizeError
from runtime.procs import emit, run_main, watch_parent

_FINISHED = threading.Event()
GGML_TYPE_F32 = 0
DEBUG_LEVEL = 1  # GGML_LOG_LEVEL_DEBUG: llama.cpp logs every graph input at this level
MIN_ROWS = 16  # llama-imatrix leaves smaller batches out


class GgmlTensor(ctypes.Structure):
    """``struct ggml_tensor`` of ggml.h (GGML_MAX_DIMS 4, GGML_MAX_SRC 10, GGML_MAX_OP_PARAMS 64,
    GGML_MAX_NAME 64)."""


GgmlTensor._fields_ = [
    ("type", ctypes.c_int), ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * 4), ("nb", ctypes.c_size_t * 4),
    ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16), ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(GgmlTensor) * 10), ("view_src", ctypes.c_void_p), ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64), ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]


def weight_name(raw: bytes) -> str:
    """``CUDA0#blk.0.attn_k.weight#0`` -> ``blk.0.attn_k.weight`` (the scheduler's copies), as llama-imatrix."""
    name = raw.decode("utf-8", "replace")
    if "#" in name:
        name = name.split("#", 2)[1]
    return name


def load_ggml():
    """libggml's functions this module calls, from llama-cpp-python's own library folder."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    folder = Path(spec.origin).parent / "lib" if spec and spec.origin else None
    lib = None
    for stem in ("ggml-base", "ggml"):
        for candidate in sorted(folder.glob(f"*{stem}.*")) if folder and folder.is_dir() else []:
            if candidate.suffix in (".so", ".dylib", ".dll") or ".so." in candidate.name:
                try:
                    lib = ctypes.CDLL(str(candidate))
                    lib.ggml_backend_tensor_get
                    break
                except (OSError, AttributeError):
                    lib = None
        if lib is not None:
            break
    if lib is None:
        raise QuantizeError("This llama-cpp-python has no ggml library to read activations from.",
                            hint="Reinstall llama-cpp-python, or compute the matrix from the checkpoint.")
    lib.ggml_nbytes.argtypes, lib.ggml_nbytes.restype = [ctypes.c_void_p], ctypes.c_size_t
    lib.ggml_op_name.argtypes, lib.ggml_op_name.restype = [ctypes.c_int], ctypes.c_char_p
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    lib.ggml_backend_tensor_get.restype = None
    return lib


class Collector:
    """The ``cb_eval`` callback: sums of squared inputs per column of each ``blk.*`` weight."""

    def __init__(self, ggml) -> None:
        from runtime.compress.imatrix import ImportanceMatrix

        self.ggml = ggml
        self.matrix = ImportanceMatrix()
        self._ops: dict[int, str] = {}
        self.error: BaseException | None = None

    def op_name(self, op: int) -> str:
        if op not in self._ops:
            self._ops[op] = (self.ggml.ggml_op_name(op) or b"").decode()
        return self._ops[op]

    def __call__(self, t_ptr, ask, _user_data) -> bool:
        try:
            t = ctypes.cast(t_ptr, ctypes.POINTER(GgmlTensor)).contents
            op = self.op_name(t.op)
            if op not in ("MUL_MAT", "MUL_MAT_ID"):
                return False
            src0, src1 = t.src[0].contents, t.src[1].contents
            if ask:
                if op == "MUL_MAT_ID":
                    return True
                return (src1.ne[1] >= MIN_ROWS and src1.type == GGML_TYPE_F32
                        and weight_name(src0.name).startswith("blk."))
            if op == "MUL_MAT_ID":
                self._collect_experts(t, src0, src1)
            else:
                self._collect(src0, src1)
        except BaseException as exc:  # noqa: BLE001 - never let an exception cross into C
            self.error = self.error or exc
        return True

    def _read(self, tensor, dtype) -> np.ndarray:
        """A tensor's elements as an array of shape (ne3, ne2, ne1, ne0), its strides honoured."""
        address = ctypes.addressof(tensor)
        nbytes = self.ggml.ggml_nbytes(address)
        buffer = np.empty(nbytes, dtype=np.uint8)
        self.ggml.ggml_backend_tensor_get(address, buffer.ctypes.data, 0, nbytes)
        shape = tuple(int(tensor.ne[i]) for i in (3, 2, 1, 0))
        strides = tuple(int(tensor.nb[i]) for i in (3, 2, 1, 0))
        return np.lib.stride_tricks.as_strided(buffer.view(dtype), shape=shape, strides=strides)

    def _collect(self, src0, src1) -> None:
        name = weight_name(src0.name)
        if src1.type != GGML_TYPE_F32:
            return
        x = self._read(src1, np.float32).astype(np.float64)
        n_mat = int(src0.ne[2] * src0.ne[3])
        if n_mat == 1:
            squares = np.einsum("abcd,abcd->d", x, x)
            self.matrix.accumulate(name, squares, x.shape[0] * x.shape[1] * x.shape[2])
            return
        for i3 in range(x.shape[0]):
            for i2 in range(x.shape[1]):
                mat = (i3 % int(src0.ne[3])) * int(src0.ne[2]) + (i2 % int(src0.ne[2]))
                rows = x[i3, i2]
                self.matrix.accumulate(name, np.einsum("cd,cd->d", rows, rows), 0, n_mat, mat)
        entry = self.matrix.entries[name]
        entry.counts += x.shape[0] * x.shape[1] * x.shape[2] / n_mat

    def _collect_experts(self, t, src0, src1) -> None:
        """MUL_MAT_ID: src1 [ne0, n_used or 1, n_tokens], ids [n_used, n_tokens] (the chosen experts)."""
        name = weight_name(src0.name)
        n_as = int(src0.ne[2])
        ids = self._read(t.src[2].contents, np.int32)[0, 0]      # (n_tokens, n_ids)
        x = self._read(src1, np.float32)[0].astype(np.float64)   # (n_tokens, ne1, ne0)
        if name not in self.matrix.entries:
            self.matrix.accumulate(name, np.zeros(x.shape[-1]), 0, n_as)
        entry = self.matrix.entries[name]
        for idx in range(ids.shape[1]):
            experts = ids[:, idx]
            rows = x[:, idx % x.shape[1], :]
            np.add.at(entry.sums, experts, rows * rows)
            entry.counts += np.bincount(experts, minlength=n_as)


def _bindings():
    from runtime.compress.quantize_child import load_bindings

    return load_bindings()


class Evaluator:
    """A GGUF loaded with the collector as its eval callback; one chunk of ``n_ctx`` tokens per decode."""

    def __init__(self, path: str, n_ctx: int, threads: int, gpu_layers: int, collector: Collector) -> None:
        ll = self.ll = _bindings()
        self.path, self.name = path, os.path.basename(path)
        self.log: list[str] = []

        @ll.llama_log_callback
        def _log(level, text, _data):
            piece = text.decode("utf-8", "replace")
            self.log = (self.log + [piece])[-200:]
            if level != DEBUG_LEVEL:
                sys.stderr.write(piece)

        self._log = _log
        ll.llama_log_set(self._log, ctypes.c_void_p(0))
        ll.llama_backend_init()
        emit("started")
        mparams = ll.llama_model_default_params()
        mparams.n_gpu_layers = gpu_layers
        self.model = ll.llama_model_load_from_file(os.fsencode(path), mparams)
        if not self.model:
            last = [line.strip() for line in "".join(self.log).splitlines() if line.strip()][-3:]
            raise ModelFileError(f"llama.cpp could not load {self.name}" + (f": {' / '.join(last)}" if last else "."),
                                 hint="The file is damaged: download or convert the model again.", path=path)
        self._callback = ll.ggml_backend_sched_eval_callback(collector)  # kept referenced
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = cparams.n_batch = n_ctx
        cparams.n_ubatch = min(512, n_ctx)
        cparams.n_seq_max = 1
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.no_perf = True
        cparams.cb_eval = self._callback
        cparams.cb_eval_user_data = None
        self.ctx = ll.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise QuantizeError(f"llama.cpp could not create a context of {n_ctx} tokens for {self.name}.",
                                hint="Try a smaller context length.", path=path)
        self.n_ctx = n_ctx
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab))
        self.bos = ll.llama_vocab_bos(self.vocab)
        self.memory = ll.llama_get_memory(self.ctx)
        self.batch = ll.llama_batch_init(n_ctx, 0, 1)
        b = self.batch
        np.ctypeslib.as_array(b.pos, shape=(n_ctx,))[:] = np.arange(n_ctx, dtype=np.int32)
        np.ctypeslib.as_array(b.n_seq_id, shape=(n_ctx,))[:] = 1
        for i in range(n_ctx):
            b.seq_id[i][0] = 0
        np.ctypeslib.as_array(b.logits, shape=(n_ctx,))[:] = 1  # every row reaches the last layer
        b.n_tokens = n_ctx

    def tokenize(self, data: bytes) -> list[int]:
        """The whole text with the vocabulary's special tokens (BOS where it adds one), as llama-imatrix."""
        ll = self.ll
        capacity = len(data) + 8
        tokens = (ll.llama_token * capacity)()
        n = ll.llama_tokenize(self.vocab, data, len(data), tokens, capacity, True, False)
        if n < 0:
            capacity = -n
            tokens = (ll.llama_token * capacity)()
            n = ll.llama_tokenize(self.vocab, data, len(data), tokens, capacity, True, False)
        return list(tokens[:n])

    def evaluate(self, chunk: np.ndarray) -> None:
        ll = self.ll
        ll.llama_memory_clear(self.memory, True)
        np.ctypeslib.as_array(self.batch.token, shape=(self.n_ctx,))[:] = chunk
        rc = ll.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise QuantizeError(f"llama.cpp failed to evaluate a chunk of {self.name} (llama_decode returned {rc}).",
                                path=self.path)


def chunks_of(tokens: list[int], n_ctx: int, max_chunks: int | None, bos: int | None) -> list[np.ndarray]:
    """llama-imatrix's chunks: whole chunks of ``n_ctx`` tokens, the first of each set to ``bos`` when given."""
    n = len(tokens) // n_ctx
    if max_chunks:
        n = min(n, max_chunks)
    out = []
    for i in range(n):
        chunk = np.asarray(tokens[i * n_ctx:(i + 1) * n_ctx], dtype=np.int32)
        if bos is not None:
            chunk[0] = bos
        out.append(chunk)
    return out


def too_short(n_tokens: int, n_ctx: int, text_name: str) -> QuantizeError:
    """llama-imatrix's rule: at least two chunks' worth of tokens."""
    return QuantizeError(
        f"The calibration text {text_name} has {n_tokens:,} tokens; a context of {n_ctx} needs at least "
        f"{2 * n_ctx:,} (two chunks).",
        hint=f"Choose a longer text or a smaller context (at most {max(n_tokens // 2, 0)} tokens).",
        n_tokens=n_tokens, needed_tokens=2 * n_ctx, n_ctx=n_ctx)


def default_threads() -> int:
    """The physical cores (llama.cpp's own tools' choice), else all logical CPUs."""
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def peak_rss() -> int:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(usage if sys.platform == "darwin" else usage * 1024)


def run(args) -> None:
    t0 = time.perf_counter()
    collector = Collector(load_ggml())
    model = Evaluator(args.model, args.ctx, args.threads, args.gpu_layers, collector)
    text = Path(args.text).read_bytes()
    tokens = model.tokenize(text)
    if len(tokens) < 2 * args.ctx:
        raise too_short(len(tokens), args.ctx, Path(args.text).name)
    chunks = chunks_of(tokens, args.ctx, args.chunks, model.bos if model.add_bos else None)
    emit("loaded", n_tokens=len(tokens), n_chunks=len(chunks), add_bos=model.add_bos)
    for i, chunk in enumerate(chunks, 1):
        model.evaluate(chunk)
        if collector.error is not None:
            raise QuantizeError(f"Reading the activations failed: {collector.error}")
        emit("chunk", done=i, total=len(chunks))
    matrix = collector.matrix
    if not matrix.entries:
        raise QuantizeError(f"llama.cpp evaluated {model.name} but no weight matrix of its blocks was seen.",
                            hint="This model's layout is not one the importance matrix knows.")
    matrix.chunk_count, matrix.chunk_size = len(chunks), args.ctx
    matrix.datasets = [args.dataset or Path(args.text).name]
    matrix.write(args.out)
    _FINISHED.set()
    emit("done", entries=len(matrix.entries), chunks=len(chunks), n_tokens=len(tokens),
         seconds=round(time.perf_counter() - t0, 3), peak_rss_bytes=peak_rss())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imatrix_child")
    parser.add_argument("model")
    parser.add_argument("text")
    parser.add_argument("out")
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--chunks", type=int, default=0)
    parser.add_argument("--dataset", default="")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--gpu-layers", type=int, default=-1)
    args = parser.parse_args(argv)
    if args.threads <= 0:
        args.threads = default_threads()
    watch_parent([args.out], _FINISHED)
    run(args)
    return 0


if __name__ == "__main__":
    run_main(main, QuantizeError, "Computing the importance matrix")
