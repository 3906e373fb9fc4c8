"""The speed runner process: one model, measured the way llama-bench measures it.

Started by ``runtime.bench.speed.measure_speed`` through ``runtime.procs.ChildProcess`` as
``python -m runtime.bench.speed_child MODEL --threads N --ctx N --batch N --ubatch N --gpu-layers N
--prompt-tokens N --gen-tokens N --reps N [--no-warmup]``; ``--machine`` alone reports what this
llama.cpp build offers instead (see ``runtime.bench.machine``), so the window's process never loads
a GPU backend.

The tests, as llama-bench defines them (tools/llama-bench in the vendored llama.cpp):

- pp: ``prompt_tokens`` random tokens (the first one BOS where the vocabulary adds it) from an empty
  KV cache, decoded in batches of n_batch, then a synchronize; tokens / time;
- tg: ``gen_tokens`` single-token decodes from an empty cache, the first one included, random tokens,
  no sampling, a synchronize after each; tokens / time;
- ttft: a short chat prompt through the model's own template, tokenized, decoded from an empty cache
  and its first token picked greedily: time from the messages to that token.

A warm-up of each (pp in full, one tg token, one chat prompt) runs first, then ``reps`` repetitions
of pp, then of tg, then of ttft.

Events on stdout, one JSON object a line:

- ``{"event": "started", "llama_cpp": "0.3.36", "pid": 123}`` once llama.cpp is imported;
- ``{"event": "loaded", "load_s": 0.31, "threads": 2, "threads_batch": 2, "n_ctx": 2048,
  "n_batch": 2048, "n_ubatch": 512, "vram_bytes": null}`` once model and context exist;
- ``{"event": "progress", "step": "pp", "label": "pp512", "rep": 2, "reps": 3, "done": 3, "total": 10,
  "message": "pp512 rep 2/3"}`` as each step starts (``done``: steps finished; the warm-up is one step);
- ``{"event": "done", "load_s": ..., "pp_tokens_per_s": [...], "tg_tokens_per_s": [...], "ttft_s": [...],
  "peak_rss_bytes": ..., "vram_bytes": ..., "threads": ...}``: one value per repetition;
- ``{"event": "error", **WorkbenchError.to_payload()}`` (then exit 3): ModelFileError for a file
  llama.cpp cannot load, UnsupportedArchitectureError when it does not know the architecture,
  BenchError when a context cannot be made or a decode fails.

llama.cpp's log goes to stderr (the parent keeps its tail). The process exits when stdin closes.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import random
import sys
import time
from collections import deque

from runtime.errors import BenchError, ModelFileError, UnsupportedArchitectureError, WorkbenchError
from runtime.procs import emit, run_main, watch_parent

MAX_PIECE_BYTES = 256
# The chat prompt timed for TTFT: short, like a first question (a user message only: some templates
# refuse a system message).
TTFT_MESSAGES = [{"role": "user", "content": "In one sentence, what does a language model do?"}]


class _Log:
    """llama.cpp's log callback: copies the text to stderr and keeps the recent lines."""

    def __init__(self, llama_cpp) -> None:
        self.lines: deque[str] = deque(maxlen=200)

        def callback(level, text, user_data):
            piece = text.decode("utf-8", "replace")
            self.lines.append(piece)
            sys.stderr.write(piece)

        self._callback = llama_cpp.llama_log_callback(callback)  # referenced for the process's life
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    def text(self) -> str:
        return "".join(self.lines)


class Bench:
    """One model and one context, and the three timed tests."""

    def __init__(self, path: str, args: argparse.Namespace) -> None:
        import llama_cpp

        from runtime.engine.server import gpu_devices

        self.ll = ll = llama_cpp
        self.path = path
        self.log = _Log(llama_cpp)
        ll.llama_backend_init()
        free_before = [d.free_bytes for d in gpu_devices()]

        t0 = time.perf_counter()
        mparams = ll.llama_model_default_params()
        mparams.n_gpu_layers = args.gpu_layers
        self.model = ll.llama_model_load_from_file(os.fsencode(path), mparams)
        if not self.model:
            raise self._load_error()
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = args.ctx
        cparams.n_batch = args.batch
        cparams.n_ubatch = args.ubatch
        cparams.n_threads = cparams.n_threads_batch = args.threads
        cparams.no_perf = True
        self.ctx = ll.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise BenchError(f"llama.cpp could not create a context of {args.ctx} tokens (batch {args.batch}, "
                             f"micro-batch {args.ubatch}) for {os.path.basename(path)}.",
                             hint="Try a smaller context, batch size or fewer GPU layers.", path=path,
                             details=self.log.text()[-4000:])
        self.load_s = time.perf_counter() - t0

        free_after = [d.free_bytes for d in gpu_devices()] if free_before else []
        # GPU memory the model and context took, as the backend reports free memory before and after.
        self.vram_bytes = (sum(max(0, b - a) for b, a in zip(free_before, free_after))
                           if free_before and len(free_after) == len(free_before) else None)
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab))
        self.bos = ll.llama_vocab_bos(self.vocab)
        self.memory = ll.llama_get_memory(self.ctx)
        self.n_batch = ll.llama_n_batch(self.ctx)
        self.rng = random.Random(args.seed)
        self.greedy = ll.llama_sampler_init_greedy()
        self.template = self._meta_string("tokenizer.chat_template")
        self.bos_text = self._piece_text(self.bos)
        self.eos_text = self._piece_text(ll.llama_vocab_eos(self.vocab))

    # --- loading -----------------------------------------------------------------------------

    def _load_error(self) -> WorkbenchError:
        name = os.path.basename(self.path)
        log = self.log.text()
        if "unknown model architecture" in log:
            arch = _architecture_of(self.path)
            return UnsupportedArchitectureError(
                f"This llama.cpp (llama-cpp-python {_bindings_version()}) does not know the architecture "
                f"'{arch or '?'}' of {name}.",
                hint="Update Model Workbench (a newer llama.cpp may support it) or leave this model out.",
                path=self.path, architecture=arch)
        last = [line.strip() for line in log.splitlines() if line.strip()][-3:]
        return ModelFileError(f"llama.cpp could not load {name}" + (f": {' / '.join(last)}" if last else "."),
                              path=self.path, details=log[-4000:])

    def _meta_string(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 20)
        n = self.ll.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def _piece_text(self, token: int) -> str:
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(MAX_PIECE_BYTES)
        n = self.ll.llama_token_to_piece(self.vocab, token, buf, MAX_PIECE_BYTES, 0, True)
        return buf.raw[:max(n, 0)].decode("utf-8", "replace")

    # --- the tests ---------------------------------------------------------------------------

    def _decode(self, tokens, n: int, what: str) -> None:
        ll = self.ll
        rc = ll.llama_decode(self.ctx, ll.llama_batch_get_one(tokens, n))
        if rc != 0:
            raise BenchError(f"llama.cpp failed to evaluate {what} (llama_decode returned {rc}).",
                             hint="The context may be too small, or the model damaged.", path=self.path)

    def _random_batches(self, n_tokens: int) -> list:
        """``n_tokens`` random tokens in ctypes arrays of at most n_batch, the first one BOS where the
        vocabulary adds it (as llama-bench's prompt test)."""
        batches, done = [], 0
        while done < n_tokens:
            size = min(n_tokens - done, self.n_batch)
            tokens = [self.rng.randrange(self.n_vocab) for _ in range(size)]
            if done == 0 and self.add_bos:
                tokens[0] = self.bos
            batches.append((self.ll.llama_token * size)(*tokens))
            done += size
        return batches

    def prompt_run(self, n_tokens: int) -> float:
        """Tokens per second evaluating ``n_tokens`` random prompt tokens from an empty cache."""
        ll = self.ll
        batches = self._random_batches(n_tokens)
        ll.llama_memory_clear(self.memory, False)
        t0 = time.perf_counter()
        for batch in batches:
            self._decode(batch, len(batch), "the prompt")
        ll.llama_synchronize(self.ctx)
        return n_tokens / (time.perf_counter() - t0)

    def gen_run(self, n_tokens: int) -> float:
        """Tokens per second of ``n_tokens`` single-token decodes from an empty cache (first included)."""
        ll, ctx = self.ll, self.ctx
        first = self.bos if self.add_bos else self.rng.randrange(self.n_vocab)
        tokens = [first] + [self.rng.randrange(self.n_vocab) for _ in range(n_tokens - 1)]
        one = (ll.llama_token * 1)()
        decode, get_one, sync = ll.llama_decode, ll.llama_batch_get_one, ll.llama_synchronize
        ll.llama_memory_clear(self.memory, False)
        t0 = time.perf_counter()
        for token in tokens:
            one[0] = token
            if decode(ctx, get_one(one, 1)) != 0:
                raise BenchError("llama.cpp failed while generating (llama_decode returned an error).",
                                 path=self.path)
            sync(ctx)
        return n_tokens / (time.perf_counter() - t0)

    def ttft_run(self) -> float:
        """Seconds from the chat messages to the first token picked (template, tokens, decode, sample)."""
        ll = self.ll
        ll.llama_memory_clear(self.memory, False)
        t0 = time.perf_counter()
        tokens = self._chat_tokens()
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start:start + self.n_batch]
            self._decode((ll.llama_token * len(chunk))(*chunk), len(chunk), "the chat prompt")
        ll.llama_sampler_sample(self.greedy, self.ctx, -1)
        return time.perf_counter() - t0

    def _chat_tokens(self) -> list[int]:
        from runtime.engine.templates import render_chat
        from runtime.errors import TemplateError

        try:
            text = render_chat(self.template, TTFT_MESSAGES, bos_token=self.bos_text, eos_token=self.eos_text)
        except TemplateError:  # a broken template: time the prompt in the common ChatML form instead
            text = render_chat(None, TTFT_MESSAGES)
        ll = self.ll
        data = text.encode("utf-8", "replace")
        capacity = len(data) + 8
        tokens = (ll.llama_token * capacity)()
        n = ll.llama_tokenize(self.vocab, data, len(data), tokens, capacity, self.add_bos, True)
        result = list(tokens[:max(n, 0)])
        if len(result) >= 2 and result[0] == result[1] == self.bos:
            result = result[1:]  # the template wrote BOS and the tokenizer added another
        return result or [self.bos]


def _architecture_of(path: str) -> str | None:
    try:
        from runtime.models.gguf_info import read_gguf_info

        return read_gguf_info(path).architecture
    except Exception:  # noqa: BLE001 - the header is damaged too: the load error says enough
        return None


def _bindings_version() -> str:
    try:
        import llama_cpp

        return llama_cpp.__version__
    except Exception:  # noqa: BLE001 - only shown in words
        return "?"


def run(args: argparse.Namespace) -> None:
    import llama_cpp

    emit("started", llama_cpp=llama_cpp.__version__, pid=os.getpid())
    bench = Bench(args.model, args)
    threads = bench.ll.llama_n_threads(bench.ctx)
    emit("loaded", load_s=round(bench.load_s, 6), threads=threads,
         threads_batch=bench.ll.llama_n_threads_batch(bench.ctx), n_ctx=bench.ll.llama_n_ctx(bench.ctx),
         n_batch=bench.n_batch, n_ubatch=bench.ll.llama_n_ubatch(bench.ctx), vram_bytes=bench.vram_bytes)
    reps, pp_label, tg_label = args.reps, f"pp{args.prompt_tokens}", f"tg{args.gen_tokens}"
    total = 3 * reps + (0 if args.no_warmup else 1)
    done = 0

    def step(name: str, label: str, rep: int = 0) -> None:
        message = f"{label} rep {rep}/{reps}" if rep else label
        emit("progress", step=name, label=label, rep=rep, reps=reps, done=done, total=total, message=message)

    if not args.no_warmup:
        step("warmup", "warm-up")
        bench.prompt_run(args.prompt_tokens)
        bench.gen_run(1)
        bench.ttft_run()
        done += 1
    figures: dict[str, list[float]] = {"pp_tokens_per_s": [], "tg_tokens_per_s": [], "ttft_s": []}
    tests = (("pp", pp_label, "pp_tokens_per_s", lambda: bench.prompt_run(args.prompt_tokens)),
             ("tg", tg_label, "tg_tokens_per_s", lambda: bench.gen_run(args.gen_tokens)),
             ("ttft", "TTFT", "ttft_s", bench.ttft_run))
    for name, label, key, test in tests:
        for rep in range(1, reps + 1):
            step(name, label, rep)
            figures[key].append(test())
            done += 1
    from runtime.procs import peak_rss_bytes

    emit("done", load_s=round(bench.load_s, 6), **{k: [round(v, 6) for v in vs] for k, vs in figures.items()},
         peak_rss_bytes=peak_rss_bytes(), vram_bytes=bench.vram_bytes, threads=threads)


def machine() -> None:
    """What this llama.cpp build offers: its GPUs (``gpu_devices``), CPU features, version, commit."""
    import llama_cpp

    from runtime.engine.server import gpu_devices

    devices = gpu_devices()
    commit = version = None
    try:
        from llama_cpp._ggml import libggml

        for fn in (libggml.ggml_commit, libggml.ggml_version):
            fn.argtypes, fn.restype = [], ctypes.c_char_p
        commit = libggml.ggml_commit().decode("utf-8", "replace")
        version = libggml.ggml_version().decode("utf-8", "replace")
    except (ImportError, AttributeError, OSError):  # an older or other layout: the version is unknown
        pass
    system_info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    emit("machine", llama_cpp=llama_cpp.__version__, gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()),
         gpus=[d.__dict__ for d in devices], ggml_commit=commit, ggml_version=version, system_info=system_info)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="speed_child")
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--ubatch", type=int, default=512)
    parser.add_argument("--gpu-layers", type=int, default=-1)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    watch_parent()
    if argv == ["--machine"]:
        machine()
    else:
        run(parse_args(argv))
    return 0


if __name__ == "__main__":
    run_main(main, BenchError, "The speed runner")
