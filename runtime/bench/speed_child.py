"""The speed runner process: one model, measured the way llama-bench measures it.

Started by ``runtime.bench.speed.measure_speed`` through ``runtime.procs.ChildProcess`` as
``python -m runtime.bench.speed_child MODEL --threads N --ctx N --batch N --ubatch N --gpu-layers N
--prompt-tokens N --gen-tokens N --reps N [--no-warmup] [--parallel 1,2,4,8]``; ``--machine`` alone
reports what this llama.cpp build offers instead (see ``runtime.bench.machine``), so the window's
process never loads a GPU backend.

The tests, as llama-bench defines them (tools/llama-bench in the vendored llama.cpp):

- pp: ``prompt_tokens`` random tokens (the first one BOS where the vocabulary adds it) from an empty
  KV cache, decoded in batches of n_batch, then a synchronize; tokens / time;
- tg: ``gen_tokens`` single-token decodes from an empty cache, the first one included, random tokens,
  no sampling, a synchronize after each; tokens / time;
- ttft: a short chat prompt through the model's own template, tokenized, decoded from an empty cache
  and its first token picked greedily: time from the messages to that token.

A warm-up of each (pp in full, one tg token, one chat prompt) runs first, then ``reps`` repetitions
of pp, then of tg, then of ttft.

With ``--parallel 1,2,4,8`` the batched test follows, as llama-batched-bench defines it
(tools/batched-bench, its defaults: prompts not shared, generation not separated, KV cache not
unified, no full-size sliding-window cache): the single-sequence context is freed and a second one
made with n_seq_max = the largest N and N x (prompt_tokens + gen_tokens) cells (llama.cpp gives each
sequence its own n_ctx / n_seq_max cells). For each N, from an empty cache: one batch of N prompts
of ``prompt_tokens`` random tokens (sequence j at seq_id j, positions 0.., only each prompt's last
token outputs logits), decoded in pieces of n_batch, then a synchronize: the pp time; then
``gen_tokens`` steps, each a batch of one random token for every sequence (all with logits), decoded
and synchronized: the tg time. Aggregate tg tokens/s = N x gen_tokens / tg time (batched-bench's
S_TG), per sequence = that / N; aggregate pp tokens/s = N x prompt_tokens / pp time (S_PP). A short
warm-up at the largest N (16 prompt tokens a sequence and two steps) runs first, then ``reps``
repetitions of each N; each figure is the median. The single-sequence tests' figures (and the peak
memory reported) are taken before it starts.

Events on stdout, one JSON object a line:

- ``{"event": "started", "llama_cpp": "0.3.36", "pid": 123}`` once llama.cpp is imported;
- ``{"event": "loaded", "load_s": 0.31, "threads": 2, "threads_batch": 2, "n_ctx": 2048,
  "n_batch": 2048, "n_ubatch": 512, "vram_bytes": null}`` once model and context exist;
- ``{"event": "progress", "step": "pp", "label": "pp512", "rep": 2, "reps": 3, "done": 3, "total": 10,
  "message": "pp512 rep 2/3"}`` as each step starts (``done``: steps finished; the warm-up is one step);
- ``{"event": "done", "load_s": ..., "pp_tokens_per_s": [...], "tg_tokens_per_s": [...], "ttft_s": [...],
  "peak_rss_bytes": ..., "vram_bytes": ..., "threads": ..., "batched": [...] | null}``: one value per
  repetition; ``batched`` (with --parallel) one object per N: ``{"n", "tg_tokens_per_s_aggregate",
  "tg_tokens_per_s_per_sequence", "pp_tokens_per_s_aggregate", "tg_values", "pp_values", "n_ctx"}``;
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
import statistics
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
        self.args = args
        self.ctx = ll.llama_init_from_model(self.model, self._context_params(args.ctx))
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

    def _context_params(self, n_ctx: int, n_seq_max: int = 0):
        """llama.cpp's defaults with this run's sizes and threads; ``n_seq_max`` > 0: the batched test's
        context, with what llama-batched-bench's common parameters change (each sequence its own
        cells, not a unified KV cache; a sliding-window cache only as large as the window needs)."""
        args = self.args
        cparams = self.ll.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = args.batch
        cparams.n_ubatch = args.ubatch
        cparams.n_threads = cparams.n_threads_batch = args.threads
        cparams.no_perf = True
        if n_seq_max:
            cparams.n_seq_max = n_seq_max
            cparams.kv_unified = False
            cparams.swa_full = False
        return cparams

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

    # --- the batched test (llama-batched-bench) -----------------------------------------------

    def open_batched_context(self, n_seq: int, n_ctx: int) -> None:
        """Free the single-sequence context; make the batched test's: ``n_seq`` sequences, ``n_ctx`` cells."""
        ll = self.ll
        ll.llama_free(self.ctx)
        self.ctx = ll.llama_init_from_model(self.model, self._context_params(n_ctx, n_seq))
        if not self.ctx:
            raise BenchError(f"llama.cpp could not create a context of {n_ctx} tokens for {n_seq} sequences "
                             f"for {os.path.basename(self.path)}.",
                             hint="Measure fewer parallel sequences, or use fewer prompt or generated tokens.",
                             path=self.path, details=self.log.text()[-4000:])
        self.memory = ll.llama_get_memory(self.ctx)
        self.n_batch = ll.llama_n_batch(self.ctx)

    def _prompt_batches(self, n_seq: int, n_tokens: int) -> list:
        """``n_seq`` prompts of ``n_tokens`` random tokens in llama_batch pieces of at most n_batch:
        sequence j at seq_id j, positions from 0, logits for each prompt's last token only."""
        ll, total = self.ll, n_seq * n_tokens
        batches = []
        for start in range(0, total, self.n_batch):
            size = min(self.n_batch, total - start)
            batch = ll.llama_batch_init(size, 0, 1)
            batches.append(batch)
            for i in range(size):
                seq, pos = divmod(start + i, n_tokens)
                batch.token[i] = self.rng.randrange(self.n_vocab)
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = pos == n_tokens - 1
            batch.n_tokens = size
        return batches

    def batched_run(self, n_seq: int, prompt_tokens: int, gen_tokens: int) -> tuple[float, float]:
        """(prompt, generation) tokens per second of all ``n_seq`` sequences together, from an empty
        cache: their prompts in one batch, then ``gen_tokens`` steps of one token for each sequence."""
        ll, ctx = self.ll, self.ctx
        prompts = self._prompt_batches(n_seq, prompt_tokens)
        step = ll.llama_batch_init(n_seq, 0, 1)
        try:
            for j in range(n_seq):
                step.n_seq_id[j], step.logits[j] = 1, 1
                step.seq_id[j][0] = j
            step.n_tokens = n_seq
            draws = [[self.rng.randrange(self.n_vocab) for _ in range(n_seq)] for _ in range(gen_tokens)]
            token, pos, seqs = step.token, step.pos, range(n_seq)
            decode, sync = ll.llama_decode, ll.llama_synchronize
            ll.llama_memory_clear(self.memory, False)
            t0 = time.perf_counter()
            for batch in prompts:
                if decode(ctx, batch) != 0:
                    raise self._batched_error(n_seq, "the prompts")
            sync(ctx)
            t1 = time.perf_counter()
            for i, tokens in enumerate(draws):
                at = prompt_tokens + i
                for j in seqs:
                    token[j] = tokens[j]
                    pos[j] = at
                if decode(ctx, step) != 0:
                    raise self._batched_error(n_seq, "a generation step")
                sync(ctx)
            t2 = time.perf_counter()
        finally:
            for batch in (*prompts, step):
                ll.llama_batch_free(batch)
        return n_seq * prompt_tokens / (t1 - t0), n_seq * gen_tokens / (t2 - t1)

    def _batched_error(self, n_seq: int, what: str) -> BenchError:
        return BenchError(f"llama.cpp failed to evaluate {what} of {n_seq} sequences together "
                          "(llama_decode returned an error).",
                          hint="The context may be too small for that many sequences.", path=self.path,
                          details=self.log.text()[-4000:])

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
    total = runner_steps(reps, not args.no_warmup, len(args.parallel))
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

    peak = peak_rss_bytes()  # the single-sequence tests' peak, before the batched context exists
    batched = None
    if args.parallel:
        batched = []
        n_ctx = max(args.parallel) * (args.prompt_tokens + args.gen_tokens)
        bench.open_batched_context(max(args.parallel), n_ctx)
        if not args.no_warmup:
            step("batched", "batched warm-up")
            bench.batched_run(max(args.parallel), min(16, args.prompt_tokens), 2)
            done += 1
        for n in args.parallel:
            label = f"{n} sequence{'s' if n != 1 else ''}"
            pp_values, tg_values = [], []
            for rep in range(1, reps + 1):
                step("batched", label, rep)
                pp_rate, tg_rate = bench.batched_run(n, args.prompt_tokens, args.gen_tokens)
                pp_values.append(pp_rate)
                tg_values.append(tg_rate)
                done += 1
            tg = statistics.median(tg_values)
            batched.append({"n": n, "tg_tokens_per_s_aggregate": round(tg, 6),
                            "tg_tokens_per_s_per_sequence": round(tg / n, 6),
                            "pp_tokens_per_s_aggregate": round(statistics.median(pp_values), 6),
                            "tg_values": [round(v, 6) for v in tg_values],
                            "pp_values": [round(v, 6) for v in pp_values],
                            "n_ctx": bench.ll.llama_n_ctx(bench.ctx)})
    emit("done", load_s=round(bench.load_s, 6), **{k: [round(v, 6) for v in vs] for k, vs in figures.items()},
         peak_rss_bytes=peak, vram_bytes=bench.vram_bytes, threads=threads, batched=batched)


def runner_steps(reps: int, warmup: bool, n_parallel: int) -> int:
    """The progress steps of a run: the warm-up, each repetition of pp, tg and ttft, and with the
    batched test its warm-up and each repetition at each N (``n_parallel`` of them)."""
    single = 3 * reps + (1 if warmup else 0)
    return single + (n_parallel * reps + (1 if warmup else 0) if n_parallel else 0)


def parallel_list(text: str) -> list[int]:
    """``"1,2,4,8"`` as [1, 2, 4, 8] (argparse type of --parallel)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


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
    parser.add_argument("--parallel", type=parallel_list, default=[],
                        help="the batched test: numbers of sequences decoded together, e.g. 1,2,4,8")
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
