"""Batched decoding: several requests share each ``llama_decode`` (the engine's ``--parallel N``).

Runs inside the engine process, next to ``LlamaRunner`` (whose model, context, tokenizer and
sampler chains it uses). One scheduler thread owns the llama.cpp context. Each request gets a slot
(a llama.cpp sequence id, with its own KV stream); every step builds one ``llama_batch`` with the
next token of every generating sequence plus prompt chunks of new ones (up to ``n_batch`` tokens),
calls ``llama_decode`` once, samples each sequence from its own row of logits with its own sampler
chain, and hands the text pieces to the request's HTTP thread through a queue. Requests beyond N
wait for a free slot; a request that ends, or whose client hangs up, frees only its own slot
(``llama_memory_seq_rm`` of its sequence id). No KV prefix reuse across requests here: each
request evaluates its whole prompt (the single-sequence path keeps that for chat).

The figures in ``counters()`` (decode calls, tokens per batch, sequences per step) are exact
counts, for ``/health`` and for tests that must see requests share steps.
"""
from __future__ import annotations

import codecs
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from runtime.engine.runner import MAX_PIECE_BYTES, BROKEN_MODEL_HINT, GenerationStats, LlamaRunner, _plain_greedy
from runtime.engine.templates import RenderStopped
from runtime.engine.types import SamplingParams
from runtime.errors import ContextOverflow, EngineError, ModelFileError, WorkbenchError

WAIT_POLL_S = 0.02  # how often a request waiting for text asks whether its client hung up


@dataclass
class SchedulerCounters:
    decode_calls: int = 0         # llama_decode calls (steps)
    batch_tokens: int = 0         # tokens in all those batches (prompt and generated)
    sampled_tokens: int = 0       # tokens sampled, over all sequences
    sequence_steps: int = 0       # sum over steps of the sequences in each step
    max_sequences_in_step: int = 0
    requests: int = 0             # requests given a slot
    freed_by_cancel: int = 0      # slots freed because the client stopped or hung up


class _Request:
    """One request, as the scheduler and the HTTP thread see it (``items``: pieces and the end)."""

    def __init__(self, prompt: list[int], params: SamplingParams, ignore_eos: bool) -> None:
        self.prompt, self.params, self.ignore_eos = prompt, params, ignore_eos
        self.items: queue.SimpleQueue = queue.SimpleQueue()
        self.stats = GenerationStats(prompt_tokens=len(prompt))  # the scheduler's; read after an item
        self.cancelled = False  # set by the HTTP thread; the scheduler frees the slot at its next step


@dataclass
class _Sequence:
    """A request holding a slot."""

    request: _Request
    slot: int
    sampler: object
    pick: Callable[[int], int]
    budget: int
    admitted_at: float
    evaluated: int = 0            # prompt tokens decoded so far
    next_token: int | None = None  # sampled, to be decoded in the next step
    pos: int = 0                   # position of the next token to decode
    output_index: int = -1         # row of this sequence's logits in the last batch (-1: none)
    sampled: bool = False          # a token has been sampled (the prompt's logits were checked)
    decoder: object = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))


class BatchScheduler:
    """Decodes up to ``runner.n_seq_max`` requests at once (see the module text). Thread-safe:
    ``generate`` is called from HTTP threads; ``start()`` runs the scheduler thread."""

    def __init__(self, runner: LlamaRunner) -> None:
        import llama_cpp

        self._ll = llama_cpp
        self.runner = runner
        self.n_slots = runner.n_seq_max
        self.n_batch = max(runner.n_batch, self.n_slots)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._piece = (llama_cpp.ctypes.c_char * MAX_PIECE_BYTES)()
        self._cond = threading.Condition()
        self._waiting: list[_Request] = []
        self._active: list[_Sequence] = []   # in admission order: older prompts are evaluated first
        self._free = list(range(self.n_slots))
        self._counters = SchedulerCounters()
        self._thread: threading.Thread | None = None

    def start(self) -> "BatchScheduler":
        self._thread = threading.Thread(target=self._run, name="batch-scheduler", daemon=True)
        self._thread.start()
        return self

    def counters(self) -> dict:
        with self._cond:
            c = self._counters
            return {"parallel": self.n_slots, "active": len(self._active), "waiting": len(self._waiting),
                    **c.__dict__}

    # --- the HTTP threads' side --------------------------------------------------------------

    def generate(self, messages: list[dict], params: SamplingParams,
                 stop_requested: Callable[[], bool] = lambda: False, ignore_eos: bool = False) -> "SequenceStream":
        """The reply's pieces, as ``LlamaRunner.generate`` yields them (same errors, same stats):
        render and tokenize here, on the caller's thread, then wait for a slot and the text."""
        runner = self.runner
        stream = SequenceStream(self, stop_requested)
        try:
            prompt = runner.prompt_tokens(messages, stop_requested)
        except RenderStopped:
            return stream  # ends at once, "cancelled"
        if not prompt:
            prompt = [self._ll.llama_vocab_bos(runner.vocab)]
        if len(prompt) >= runner.n_ctx:
            raise ContextOverflow(
                f"The conversation is {len(prompt)} tokens long, more than the model's loaded "
                f"context of {runner.n_ctx} tokens.")
        request = stream.request = _Request(prompt, params, ignore_eos)
        stream.stats.prompt_tokens = len(prompt)
        with self._cond:
            self._waiting.append(request)
            self._cond.notify()
        return stream

    def cancel(self, request: _Request) -> None:
        with self._cond:
            request.cancelled = True
            if request in self._waiting:  # never got a slot: nothing to free
                self._waiting.remove(request)
            self._cond.notify()

    # --- the scheduler thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                with self._cond:
                    while not self._active and not self._waiting:
                        self._cond.wait()
                    self._drop_cancelled()
                    self._admit()
                    active = list(self._active)
                if active:
                    self._step(active)
            except Exception as exc:  # noqa: BLE001 - every running request learns why; the thread lives on
                self._fail_all(exc if isinstance(exc, WorkbenchError) else EngineError(
                    f"The engine failed while decoding: {type(exc).__name__}: {exc}"[:2000]))

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self._active if s.request.cancelled]:
            self._counters.freed_by_cancel += 1
            self._finish(seq, "cancelled")

    def _admit(self) -> None:
        """Give free slots to waiting requests, lowest slot first (llama.cpp decodes consecutive
        sequence ids of separate KV streams in one pass; gaps split a step into more passes)."""
        runner = self.runner
        while self._waiting and self._free:
            request = self._waiting.pop(0)
            self._free.sort()
            slot = self._free.pop(0)
            params = request.params
            n_prompt = len(request.prompt)
            budget = min(params.max_tokens if params.max_tokens > 0 else runner.n_ctx, runner.n_ctx - n_prompt)
            sampler = runner._make_sampler(params, request.prompt)
            self._active.append(_Sequence(request, slot, sampler, self._picker(params, sampler), budget,
                                          time.perf_counter()))
            self._counters.requests += 1

    def _picker(self, params: SamplingParams, sampler) -> Callable[[int], int]:
        """The token choice from row ``i`` of the last batch's logits (greedy: the first highest logit,
        as llama.cpp's greedy sampler picks, straight from the logits)."""
        ll, ctx = self._ll, self.runner.ctx
        if _plain_greedy(params):
            import numpy as np

            get_logits, shape, as_array = ll.llama_get_logits_ith, (self.runner.n_vocab,), np.ctypeslib.as_array
            return lambda i: int(as_array(get_logits(ctx, i), shape=shape).argmax())
        return lambda i: ll.llama_sampler_sample(sampler, ctx, i)

    def _step(self, active: list[_Sequence]) -> None:
        """One batch, one llama_decode, one sample per sequence whose logits it computed."""
        ll, batch = self._ll, self._batch
        n = 0

        def add(token: int, pos: int, slot: int, output: bool) -> None:
            nonlocal n
            batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
            batch.seq_id[n][0], batch.logits[n] = slot, output
            n += 1

        stepped: list[_Sequence] = []
        for seq in active:  # the generating sequences first: each gets its next token in
            seq.output_index = -1
            if seq.next_token is not None:
                seq.output_index = n
                add(seq.next_token, seq.pos, seq.slot, True)
                stepped.append(seq)
        for seq in active:  # then prompts, oldest first, in what room is left
            prompt = seq.request.prompt
            if seq.evaluated >= len(prompt) or n >= self.n_batch:
                continue
            chunk = prompt[seq.evaluated: seq.evaluated + self.n_batch - n]
            for offset, token in enumerate(chunk):
                last = seq.evaluated + offset == len(prompt) - 1
                if last:
                    seq.output_index = n
                add(token, seq.evaluated + offset, seq.slot, last)
            seq.evaluated += len(chunk)
            seq.pos = seq.evaluated
            stepped.append(seq)
        if not n:
            return
        batch.n_tokens = n
        rc = ll.llama_decode(self.runner.ctx, batch)
        with self._cond:
            c = self._counters
            c.decode_calls += 1
            c.batch_tokens += n
            c.sequence_steps += len(stepped)
            c.max_sequences_in_step = max(c.max_sequences_in_step, len(stepped))
        if rc != 0:
            raise EngineError(f"llama.cpp failed to evaluate a batch of {n} tokens for {len(stepped)} "
                              f"sequences (llama_decode returned {rc}).")
        now = time.perf_counter()
        for seq in stepped:
            if seq.next_token is not None:
                seq.pos += 1
                seq.next_token = None
            if seq.output_index < 0:
                continue  # a prompt chunk that is not the prompt's last
            if not seq.sampled:
                seq.sampled = True
                stats = seq.request.stats
                stats.prompt_tokens_evaluated, stats.prompt_s = len(seq.request.prompt), now - seq.admitted_at
                if not self._finite_row(seq.output_index):
                    self._fail(seq, self._broken_model())
                    continue
            self._sample(seq)

    def _sample(self, seq: _Sequence) -> None:
        ll, runner, request = self._ll, self.runner, seq.request
        stats = request.stats
        token = seq.pick(seq.output_index)
        if not math.isfinite(ll.llama_get_logits_ith(runner.ctx, seq.output_index)[token]):
            self._fail(seq, self._broken_model())
            return
        with self._cond:
            self._counters.sampled_tokens += 1
        if ll.llama_vocab_is_eog(runner.vocab, token) and not request.ignore_eos:
            self._finish(seq, "stop")
            return
        stats.completion_tokens += 1
        n = ll.llama_token_to_piece(runner.vocab, token, self._piece, MAX_PIECE_BYTES, 0, False)
        text = seq.decoder.decode(self._piece.raw[:n]) if n > 0 else ""
        if text:
            request.items.put(("piece", text, stats.completion_tokens))
        if stats.completion_tokens >= seq.budget:
            self._finish(seq, "length")
            return
        seq.next_token = token

    def _finite_row(self, index: int) -> bool:
        import numpy as np

        row = np.ctypeslib.as_array(self._ll.llama_get_logits_ith(self.runner.ctx, index), shape=(self.runner.n_vocab,))
        return bool(np.isfinite(row).all())

    def _broken_model(self) -> ModelFileError:
        runner = self.runner
        return ModelFileError(
            f"{runner.model_path.name} computes invalid numbers (NaN or infinity) instead of token "
            "scores, so its replies would be garbage.", hint=BROKEN_MODEL_HINT, path=str(runner.model_path))

    def _release(self, seq: _Sequence) -> None:
        """Free the sequence's slot: its KV cells, its sampler chain."""
        self._ll.llama_memory_seq_rm(self.runner.memory, seq.slot, -1, -1)
        self._ll.llama_sampler_free(seq.sampler)
        with self._cond:
            if seq in self._active:
                self._active.remove(seq)
                self._free.append(seq.slot)

    def _finish(self, seq: _Sequence, reason: str) -> None:
        tail = seq.decoder.decode(b"", final=True)
        stats = seq.request.stats
        if tail and reason != "cancelled":
            seq.request.items.put(("piece", tail, stats.completion_tokens))
        self._release(seq)
        seq.request.items.put(("end", reason, stats.completion_tokens))

    def _fail(self, seq: _Sequence, error: WorkbenchError) -> None:
        self._release(seq)
        seq.request.items.put(("error", error, seq.request.stats.completion_tokens))

    def _fail_all(self, error: WorkbenchError) -> None:
        with self._cond:
            active = list(self._active)
        for seq in active:
            self._fail(seq, error)
        self._ll.llama_memory_clear(self.runner.memory, True)


class SequenceStream:
    """The HTTP thread's view of one request: iterate for the text pieces; ``stats`` counts exactly
    the pieces taken so far (as ``LlamaRunner.last_stats`` does while its generator is paused).
    ``stop_requested`` is asked while waiting and after each piece; once true the reply ends,
    "cancelled", and the slot is freed. ``close()`` does the same (the client stopped listening)."""

    def __init__(self, scheduler: BatchScheduler, stop_requested: Callable[[], bool]) -> None:
        self.scheduler = scheduler
        self.stop_requested = stop_requested
        self.request: _Request | None = None
        self.stats = GenerationStats(finish_reason="cancelled")
        self.done = False
        self._pieces = 0

    def __iter__(self) -> "SequenceStream":
        return self

    def __next__(self) -> str:
        request = self.request
        if self.done or request is None:
            self.done = True
            raise StopIteration
        if self._pieces and self.stop_requested():  # as the single-sequence loop: asked after each piece
            self._stop()
        while True:
            try:
                kind, value, completion_tokens = request.items.get(timeout=WAIT_POLL_S)
            except queue.Empty:
                if self.stop_requested():
                    self._stop()
                continue
            self._copy_prompt_figures(request.stats)
            self.stats.completion_tokens = completion_tokens
            if kind == "piece":
                self._pieces += 1
                self.stats.finish_reason = "length"  # while running, as LlamaRunner's stats say
                return value
            self.done = True
            if kind == "error":
                raise value
            self.stats.finish_reason = value
            raise StopIteration

    def _copy_prompt_figures(self, source: GenerationStats) -> None:
        self.stats.prompt_tokens = source.prompt_tokens
        self.stats.prompt_tokens_evaluated = source.prompt_tokens_evaluated
        self.stats.prompt_s = source.prompt_s

    def _stop(self) -> None:
        """End here: the scheduler frees the slot at its next step; pieces after this are dropped."""
        self.done = True
        self.stats.finish_reason = "cancelled"
        if self.request is not None:
            self.scheduler.cancel(self.request)
        raise StopIteration

    def close(self) -> None:
        if not self.done:
            self.done = True
            self.stats.finish_reason = "cancelled"
            if self.request is not None:
                self.scheduler.cancel(self.request)
