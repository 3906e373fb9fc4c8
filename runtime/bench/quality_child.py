"""The quality process: one GGUF, its logits over the evaluation windows, in llama-perplexity's way.

Started by ``runtime.bench.quality`` through ``runtime.procs.ChildProcess``, in one of two modes:

    python -m runtime.bench.quality_child reference MODEL --text FILE --n-ctx N --k K --out PATH
        [--meta JSON] [--max-windows M] [--threads T] [--gpu-layers G]
    python -m runtime.bench.quality_child score MODEL --reference FILE [--compare-k 32,64]
        [--threads T] [--gpu-layers G]

``reference`` tokenizes the text (BOS added only where the vocabulary asks for it, no special-token
parsing, one trailing newline dropped: as llama-perplexity reads ``-f``), cuts it into windows of
``n_ctx`` tokens, replaces each window's first token by BOS where the vocabulary adds one, evaluates
each window from an empty cache and writes the second half's log-probabilities to OUT
(``runtime.bench.reference.ReferenceWriter``). ``score`` evaluates the reference's own windows and
compares: KL divergence per position, top-1 agreement, negative log-likelihood.

Events on stdout, one JSON object a line: ``started``; ``loaded`` (n_vocab, vocab_fingerprint,
load_s); ``windows`` (n_tokens, n_windows); ``window`` (index, total, seconds) after each;
``done`` with the figures; ``error`` with a ``WorkbenchError.to_payload()`` (then exit 3): a
damaged file is a ModelFileError, a text too short or another vocabulary a BenchError. When stdin
closes (the parent is gone or asks it to stop) the process removes OUT, unless finished, and exits.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import sys
import threading
import time
from collections import deque

import numpy as np

from runtime.bench import reference as ref
from runtime.errors import BenchError, ModelFileError, UnsupportedArchitectureError, WorkbenchError
from runtime.procs import emit, run_main, watch_parent

DEBUG_LEVEL = 1  # GGML_LOG_LEVEL_DEBUG
BROKEN_HINT = "The file is damaged or was converted wrongly: download or convert the model again."


_FINISHED = threading.Event()  # set once the output is complete: from then on it is the parent's


class Model:
    """One GGUF loaded for evaluation: a context of ``n_ctx`` tokens, all logits of a batch."""

    def __init__(self, path: str, n_ctx: int, threads: int, gpu_layers: int) -> None:
        ll = self.ll = _bindings()
        self.path = path
        self.name = os.path.basename(path)
        self.log: deque[str] = deque(maxlen=200)

        @ll.llama_log_callback
        def _log(level, text, _data):
            piece = text.decode("utf-8", "replace")
            self.log.append(piece)
            if level != DEBUG_LEVEL:  # llama.cpp logs every graph input at debug level, per window
                sys.stderr.write(piece)

        self._log = _log  # kept referenced: ctypes must not free it
        ll.llama_log_set(self._log, ctypes.c_void_p(0))
        ll.llama_backend_init()
        emit("started", llama_cpp=_bindings_version())
        t0 = time.perf_counter()
        mparams = ll.llama_model_default_params()
        mparams.n_gpu_layers = gpu_layers
        self.model = ll.llama_model_load_from_file(os.fsencode(path), mparams)
        if not self.model:
            raise self._load_error()
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_ctx          # one decode per window, split into ubatches by llama.cpp
        cparams.n_ubatch = min(512, n_ctx)
        cparams.n_seq_max = 1
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.no_perf = True
        self.ctx = ll.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise BenchError(f"llama.cpp could not create a context of {n_ctx} tokens for {self.name}.",
                             hint="Try a smaller context length or fewer GPU layers.", path=path)
        self.n_ctx = n_ctx
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab))
        self.bos = ll.llama_vocab_bos(self.vocab)
        self.memory = ll.llama_get_memory(self.ctx)
        self.batch = self._window_batch(n_ctx)
        self.load_s = time.perf_counter() - t0

    def _window_batch(self, n_ctx: int):
        """A batch for one window: positions 0..n_ctx-1 of sequence 0, logits for the scored ones.
        Only the tokens change from window to window."""
        ll = self.ll
        batch = ll.llama_batch_init(n_ctx, 0, 1)
        first, per = n_ctx // 2, ref.scored_per_window(n_ctx)
        np.ctypeslib.as_array(batch.pos, shape=(n_ctx,))[:] = np.arange(n_ctx, dtype=np.int32)
        np.ctypeslib.as_array(batch.n_seq_id, shape=(n_ctx,))[:] = 1
        for i in range(n_ctx):
            batch.seq_id[i][0] = 0
        wanted = np.zeros(n_ctx, dtype=np.int8)
        wanted[first:first + per] = 1
        np.ctypeslib.as_array(batch.logits, shape=(n_ctx,))[:] = wanted
        batch.n_tokens = n_ctx
        return batch

    def _load_error(self) -> WorkbenchError:
        log = "".join(self.log)
        arch = None
        try:
            from runtime.models.gguf_info import read_gguf_info

            arch = read_gguf_info(self.path).architecture
        except Exception:  # noqa: BLE001 - the header itself is damaged: the plain message below says so
            pass
        if arch and "unknown model architecture" in log:
            return UnsupportedArchitectureError(
                f"This llama.cpp does not know the architecture '{arch}' of {self.name}.",
                hint="Update Model Workbench (a newer llama.cpp may support it) or leave this file out.",
                path=self.path, architecture=arch)
        last = [line.strip() for line in log.splitlines() if line.strip()][-3:]
        return ModelFileError(f"llama.cpp could not load {self.name}" + (f": {' / '.join(last)}" if last else "."),
                              hint=BROKEN_HINT, path=self.path)

    def fingerprint(self) -> str:
        return vocab_fingerprint(self.ll, self.vocab)

    def tokenize(self, data: bytes) -> list[int]:
        return tokenize(self.ll, self.vocab, data)

    def window_logits(self, window: np.ndarray) -> np.ndarray:
        """The logits of the scored positions of one window (a view into llama.cpp's buffer: use it
        before the next call), evaluated from an empty cache."""
        ll, batch, n_ctx = self.ll, self.batch, self.n_ctx
        per = ref.scored_per_window(n_ctx)
        ll.llama_memory_clear(self.memory, True)
        np.ctypeslib.as_array(batch.token, shape=(n_ctx,))[:] = window
        rc = ll.llama_decode(self.ctx, batch)
        if rc != 0:
            raise BenchError(f"llama.cpp failed to evaluate a window of {self.name} (llama_decode returned {rc}).",
                             path=self.path)
        logits = np.ctypeslib.as_array(ll.llama_get_logits(self.ctx), shape=(per, self.n_vocab))
        if not np.isfinite(logits).all():
            raise ModelFileError(f"{self.name} computes invalid numbers (NaN or infinity) instead of token scores.",
                                 hint=BROKEN_HINT, path=self.path)
        return logits


def vocab_fingerprint(ll, vocab) -> str:
    """sha256 of the vocabulary size and every token's text: equal only for the same vocabulary."""
    n_vocab = ll.llama_vocab_n_tokens(vocab)
    digest = hashlib.sha256(f"{n_vocab}\n".encode())
    for token in range(n_vocab):
        digest.update((ll.llama_vocab_get_text(vocab, token) or b"") + b"\x00")
    return digest.hexdigest()


def tokenize(ll, vocab, data: bytes) -> list[int]:
    """The text's tokens as llama-perplexity makes them: BOS where the vocabulary adds one, no
    special-token parsing."""
    capacity = len(data) + 8
    tokens = (ll.llama_token * capacity)()
    n = ll.llama_tokenize(vocab, data, len(data), tokens, capacity, True, False)
    if n < 0:
        capacity = -n
        tokens = (ll.llama_token * capacity)()
        n = ll.llama_tokenize(vocab, data, len(data), tokens, capacity, True, False)
    return list(tokens[:n])


def read_text_bytes(path: str) -> bytes:
    """The evaluation text as llama-perplexity reads ``-f``: one trailing newline dropped."""
    with open(path, "rb") as fh:
        data = fh.read()
    return data[:-1] if data.endswith(b"\n") else data


_BINDINGS = []


def _bindings():
    """llama-cpp-python's ctypes layer, loaded once (``load_bindings`` cannot be called twice)."""
    if not _BINDINGS:
        from runtime.compress.quantize_child import load_bindings

        _BINDINGS.append(load_bindings())
    return _BINDINGS[0]


def _bindings_version() -> str:
    try:
        from importlib.metadata import version

        return version("llama_cpp_python")
    except Exception:  # noqa: BLE001 - a frozen app may carry no package metadata; only shown
        return "?"


def _loaded(model: Model) -> str:
    fingerprint = model.fingerprint()
    emit("loaded", n_vocab=model.n_vocab, vocab_fingerprint=fingerprint, add_bos=model.add_bos,
         load_s=round(model.load_s, 4))
    return fingerprint


def too_short(n_tokens: int, n_ctx: int, text_name: str) -> BenchError:
    """The error for a text of ``n_tokens`` tokens and a context of ``n_ctx``: what it needs, what works."""
    needed = ref.min_tokens(n_ctx)
    longest = n_tokens // 2
    usable = 1 << (longest.bit_length() - 1) if longest >= 16 else 0
    works = (f"The longest context this text allows is {longest} tokens (e.g. {usable})."
             if usable else "It is too short for any context: choose a longer text.")
    return BenchError(
        f"The text {text_name} has {n_tokens:,} tokens; a context of {n_ctx} needs at least {needed:,} "
        f"(two windows of {n_ctx}). {works}",
        hint=f"Choose a longer text (about {needed - n_tokens:,} tokens more) or a smaller context.",
        n_tokens=n_tokens, needed_tokens=needed, n_ctx=n_ctx, max_n_ctx=longest)


def make_reference(args) -> dict:
    meta_in = json.loads(args.meta) if args.meta else {}
    model = Model(args.model, args.n_ctx, args.threads, args.gpu_layers)
    fingerprint = _loaded(model)
    tokens = model.tokenize(read_text_bytes(args.text))
    text_name = meta_in.get("text_name") or os.path.basename(args.text)
    if len(tokens) < ref.min_tokens(args.n_ctx):
        raise too_short(len(tokens), args.n_ctx, text_name)
    windows = ref.windows_from_tokens(tokens, args.n_ctx, model.bos if model.add_bos else None, args.max_windows)
    total = len(windows)
    emit("windows", n_tokens=len(tokens), n_windows=total)
    meta = ref.ReferenceMeta(
        n_ctx=args.n_ctx, n_windows=total, k=min(args.k, model.n_vocab), n_vocab=model.n_vocab,
        vocab_fingerprint=fingerprint, text_sha256=meta_in.get("text_sha256") or ref.text_sha256(args.text),
        source={"name": model.name, **meta_in.get("source", {})}, key=meta_in.get("key", ""), text_name=text_name,
        bos_replaced=model.add_bos, producer=f"llama.cpp (llama-cpp-python {_bindings_version()})")
    _check_disk(args.out, meta)
    t0 = time.perf_counter()
    with ref.ReferenceWriter(args.out, meta, windows) as writer:
        for index, window in enumerate(windows):
            start = time.perf_counter()
            writer.add(model.window_logits(window))
            emit("window", index=index + 1, total=total, seconds=round(time.perf_counter() - start, 4))
    _FINISHED.set()
    return {"n_tokens": len(tokens), "n_windows": total, "tokens_scored": meta.n_scored,
            "seconds": round(time.perf_counter() - t0, 4), "load_s": round(model.load_s, 4)}


def _check_disk(out: str, meta: ref.ReferenceMeta) -> None:
    import shutil

    needed = meta.layout()["_end"][0] + (1 << 20)
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(out))).free
    if free < needed:
        raise BenchError(f"Not enough free disk space for the reference: it needs {needed / 2**20:,.0f} MiB and "
                         f"{os.path.dirname(os.path.abspath(out))} has {free / 2**20:,.0f} MiB free.",
                         hint="Free some disk space, or use a smaller context or fewer windows.",
                         needed_bytes=needed, free_bytes=free)


def _check_vocab(model: Model, fingerprint: str, reference: ref.Reference) -> None:
    meta = reference.meta
    if fingerprint == meta.vocab_fingerprint:
        return
    if model.n_vocab != meta.n_vocab:
        why = f"{model.name} has {model.n_vocab:,} tokens, {meta.source_name} has {meta.n_vocab:,}"
    else:
        why = f"both have {model.n_vocab:,} tokens, but the tokens themselves differ"
    raise BenchError(
        f"{model.name} cannot be compared with the reference {meta.source_name}: their vocabularies differ "
        f"({why}), so their next-token probabilities are over different things.",
        hint="Compare only variants of the same model (quantizations of one base), or choose another reference.",
        path=model.path, reference=meta.source_name, n_vocab=model.n_vocab, reference_n_vocab=meta.n_vocab)


def score(args) -> dict:
    reference = ref.Reference.open(args.reference)
    meta = reference.meta
    model = Model(args.model, meta.n_ctx, args.threads, args.gpu_layers)
    _check_vocab(model, _loaded(model), reference)
    scorer = ref.WindowScorer(reference, args.compare_k)
    t0 = time.perf_counter()
    for index in range(meta.n_windows):
        start = time.perf_counter()
        scorer.add(index, model.window_logits(np.asarray(reference.windows[index])))
        emit("window", index=index + 1, total=meta.n_windows, seconds=round(time.perf_counter() - start, 4))
    return {**scorer.figures(), "seconds": round(time.perf_counter() - t0, 4), "load_s": round(model.load_s, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quality_child")
    parser.add_argument("mode", choices=("reference", "score"))
    parser.add_argument("model")
    parser.add_argument("--text")
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--k", type=int, default=ref.DEFAULT_K)
    parser.add_argument("--out")
    parser.add_argument("--meta", default="")
    parser.add_argument("--max-windows", type=int, default=0)
    parser.add_argument("--reference")
    parser.add_argument("--compare-k", type=lambda s: [int(v) for v in s.split(",") if v], default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu-layers", type=int, default=-1)
    args = parser.parse_args(argv)
    watch_parent([args.out], _FINISHED)
    figures = make_reference(args) if args.mode == "reference" else score(args)
    emit("done", **figures)
    return 0


if __name__ == "__main__":
    run_main(main, BenchError, "The quality run")
