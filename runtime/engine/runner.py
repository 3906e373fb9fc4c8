"""A lean generation loop on llama.cpp's C API (through llama-cpp-python's ctypes layer).

Runs inside the engine process. Compared with ``Llama.create_chat_completion`` it decodes one token,
samples with llama.cpp's own sampler chain and detokenizes only the new piece: no per-token copies
of the logits or re-detokenizing of the whole reply. It keeps the tokens that sit in the KV cache
so the next request only evaluates what changed (the new turn), not the whole conversation.
"""
from __future__ import annotations

import codecs
import ctypes
import math
import os
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from runtime.engine.templates import RenderLimits, RenderStopped, message_text, render_chat
from runtime.engine.types import LoadOptions, SamplingParams
from runtime.errors import ContextOverflow, EngineError, ModelFileError, UnsupportedArchitectureError

PENALTY_LAST_N = 64
MAX_PIECE_BYTES = 256
# No token stands for more than this many bytes of text (llama.cpp's longest are ~160), so a prompt
# of more than n_ctx * MAX_TOKEN_BYTES bytes cannot fit the context: it is refused before tokenizing.
MAX_TOKEN_BYTES = 256
TEMPLATE_SECONDS = 5.0
STOP_POLL_S = 0.01  # how often a running prompt batch asks whether the client hung up
_INSTALLED_LOG_CALLBACK = None  # the log callback llama.cpp holds (see _LogCapture)
BROKEN_MODEL_HINT = "The file is damaged or was converted wrongly: download or convert the model again."


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    completion_tokens: int = 0      # tokens generated; counted before their text is yielded
    finish_reason: str = ""
    prompt_s: float = 0.0           # time spent evaluating the prompt (its uncached part)


class _LogCapture:
    """Keeps llama.cpp's recent log lines so a failed load can be explained, and, while ``recording``,
    all of them: the load's log is where llama.cpp states where it put the layers and how big its
    buffers are (see ``runtime.engine.placement``; never GGUF metadata, which comes from the file)."""

    MAX_RECORDED = 100_000  # log pieces kept while recording (a big model's load logs a few thousand)

    def __init__(self, llama_cpp) -> None:
        self.lines: deque[str] = deque(maxlen=200)
        self._recorded: list[str] | None = None

        @llama_cpp.llama_log_callback
        def _callback(level, text, _user_data):
            piece = text.decode("utf-8", "replace")
            self.lines.append(piece)
            recorded = self._recorded
            if recorded is not None and len(recorded) < self.MAX_RECORDED:
                recorded.append(piece)

        self._callback = _callback
        global _INSTALLED_LOG_CALLBACK
        # llama.cpp keeps calling the callback installed last, also after this runner is gone
        # (another in-process user may load models later): it must never be freed while installed.
        _INSTALLED_LOG_CALLBACK = _callback
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    def text(self) -> str:
        return "".join(self.lines)

    def start_recording(self) -> None:
        self._recorded = []

    def stop_recording(self) -> str:
        """Everything logged since ``start_recording``, as one text."""
        recorded, self._recorded = self._recorded or [], None
        return "".join(recorded)


class LlamaRunner:
    """One loaded model with one context. Not thread-safe: the engine serialises requests."""

    def __init__(self, model_path: str | Path, options: LoadOptions) -> None:
        import llama_cpp

        self._ll = llama_cpp
        self.model_path = Path(model_path)
        self.options = options
        self._logs = _LogCapture(llama_cpp)
        llama_cpp.llama_backend_init()

        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = options.n_gpu_layers
        self._logs.start_recording()
        try:
            self.model = llama_cpp.llama_model_load_from_file(os.fsencode(self.model_path), model_params)
            if not self.model:
                raise self._load_error()
            self._create_context(options)
        finally:
            load_log = self._logs.stop_recording()
        self.placement_report = self._placement_from(load_log)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self._one = (llama_cpp.llama_token * 1)()
        self._piece = ctypes.create_string_buffer(MAX_PIECE_BYTES)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        # The context one sequence may fill: with parallel sequences, each has its own KV stream.
        self.n_seq_max = max(1, options.n_parallel)
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx) if self.n_seq_max == 1 else llama_cpp.llama_n_ctx_seq(self.ctx)
        self.n_batch = self._ctx_params.n_batch
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.chat_template = self._meta_string("tokenizer.chat_template")
        self.bos_text = self._token_text(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos_text = self._token_text(llama_cpp.llama_vocab_eos(self.vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.cached: list[int] = []  # tokens whose keys/values are in the KV cache, in order
        self.control_tokens = self._control_tokens()
        self._control_re = _literal_pattern(self.control_tokens.values())
        self._marker = f"\uE000{secrets.token_hex(4)}:"  # marks a control text lifted out of a message
        self._stop_check: Callable[[], bool] = lambda: False
        self._stopping, self._next_poll = False, 0.0
        self._abort_callback = llama_cpp.ggml_abort_callback(self._should_abort)  # kept alive here
        self._no_abort_callback = llama_cpp.ggml_abort_callback()

    # --- loading -----------------------------------------------------------------------------

    def _create_context(self, options: LoadOptions) -> None:
        ll = self._ll
        ctx_params = self._ctx_params = ll.llama_context_default_params()
        n_seq = max(1, options.n_parallel)
        ctx_params.n_ctx = options.n_ctx * n_seq
        ctx_params.n_batch = min(512, options.n_ctx)
        if n_seq > 1:
            # As llama-server with --parallel N and no --kv-unified: one KV stream per sequence, each
            # of n_ctx tokens (so a sequence never takes another's room, and attends only its own
            # cells), and a batch that holds at least one token of every sequence.
            ctx_params.n_seq_max = n_seq
            ctx_params.kv_unified = False
            ctx_params.n_batch = max(ctx_params.n_batch, n_seq)
            if options.n_gpu_layers == 0 or not ll.llama_supports_gpu_offload():
                # On the CPU, llama.cpp's flash-attention kernel is chosen by how many tokens of a
                # sequence a batch holds (tiled from GGML_FA_TILE_Q queries, split over the KV cache
                # for one query), and each computes slightly different numbers: a sequence's reply
                # would depend on what else shared its batches. Without it, every sequence's logits
                # are bit-identical to decoding it alone (see tests/runtime/engine/test_batch_engine.py).
                ctx_params.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx_params.n_threads = options.n_threads
        ctx_params.n_threads_batch = options.n_threads
        ctx_params.no_perf = True
        self.ctx = ll.llama_init_from_model(self.model, ctx_params)
        if not self.ctx:
            sequences = f" for each of {n_seq} parallel sequences" if n_seq > 1 else ""
            raise EngineError(
                f"llama.cpp could not create a context of {options.n_ctx} tokens{sequences} for "
                f"{self.model_path.name}.",
                hint="Try a smaller context length, fewer parallel sequences or fewer GPU layers.",
                path=str(self.model_path),
            )

    def _placement_from(self, load_log: str):
        """What llama.cpp did with the model (``PlacementReport``): read from its load log, else, when
        the log says nothing usable, asked of the API (see ``runtime.engine.placement``)."""
        from runtime.engine.placement import parse_load_log, report_from_api

        ll = self._ll
        requested = -1 if self.options.n_gpu_layers is None else self.options.n_gpu_layers
        try:
            report = parse_load_log(load_log, n_layer=int(ll.llama_model_n_layer(self.model)),
                                    gpu_backend=bool(ll.llama_supports_gpu_offload()))
        except Exception:  # noqa: BLE001 - an unexpected wording must never fail a load
            report = None
        if report is None or not report.model_bytes:
            report = report_from_api(ll, self.model, requested)
        return report

    def _load_error(self) -> Exception:
        """Turn a failed load into the most specific error the facts support."""
        path = str(self.model_path)
        arch = _architecture_of(self.model_path)
        log = self._logs.text()
        if arch and "unknown model architecture" in log:
            return UnsupportedArchitectureError(
                f"This llama.cpp (llama-cpp-python {self._ll.__version__}) does not know the "
                f"architecture '{arch}' of {self.model_path.name}.",
                hint="Update Model Workbench (a newer llama.cpp may support it) or choose another model.",
                path=path, architecture=arch,
            )
        last = [line.strip() for line in log.splitlines() if line.strip()][-3:]
        return ModelFileError(
            f"llama.cpp could not load {self.model_path.name}" + (f": {' / '.join(last)}" if last else "."),
            path=path,
        )

    def _meta_string(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 20)
        n = self._ll.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        n = self._ll.llama_token_to_piece(self.vocab, token, self._piece, MAX_PIECE_BYTES, 0, True)
        return self._piece.raw[: max(n, 0)].decode("utf-8", "replace")

    def _control_tokens(self) -> dict[int, str]:
        """The tokens that only the chat template may write ({id: text}): the ones llama.cpp's
        tokenizer makes from text only when asked to parse special tokens (~35 ms for 49k tokens)."""
        ll, vocab = self._ll, self.vocab
        special = ll.LLAMA_TOKEN_ATTR_CONTROL | ll.LLAMA_TOKEN_ATTR_UNKNOWN
        get_attr = ll.llama_vocab_get_attr
        found = {t: self._token_text(t) for t in range(self.n_vocab) if get_attr(vocab, t) & special}
        return {t: text for t, text in found.items() if text}

    # --- prompts -----------------------------------------------------------------------------

    @property
    def max_prompt_bytes(self) -> int:
        """Prompt text longer than this cannot fit the loaded context (see MAX_TOKEN_BYTES)."""
        return self.n_ctx * MAX_TOKEN_BYTES

    def render(self, messages: list[dict], stop: Callable[[], bool] = lambda: False) -> str:
        """The prompt text for ``messages``; control-token text inside a message is replaced by a
        marker (see ``prompt_tokens``). Raises ContextOverflow when the messages alone are too long."""
        size = 0
        lifted = []
        for m in messages:
            content = message_text(m.get("content"))  # text parts joined first, so they are lifted too
            size += len(content)
            if self._control_re is not None and self._control_re.search(content):
                content = self._control_re.sub(self._lift, content)
            lifted.append({**m, "content": content})
        if size > self.max_prompt_bytes:
            raise self._too_long(size)
        limits = RenderLimits(seconds=TEMPLATE_SECONDS, max_chars=2 * self.max_prompt_bytes + (1 << 16), stop=stop)
        return render_chat(self.chat_template, lifted, bos_token=self.bos_text, eos_token=self.eos_text,
                           limits=limits)

    def _lift(self, match: re.Match) -> str:
        return f"{self._marker}{match.group().encode('utf-8').hex()}\uE001"

    def prompt_tokens(self, messages: list[dict], stop: Callable[[], bool] = lambda: False) -> list[int]:
        """The tokens of the prompt for ``messages``. Only the template's own markup can become control
        tokens (``<|im_start|>``...): such text inside a message is tokenized as plain text."""
        text = self.render(messages, stop)
        if len(text.encode("utf-8", "replace")) > self.max_prompt_bytes:
            raise self._too_long(len(text))
        if self._marker not in text:
            return self.tokenize(text)
        tokens: list[int] = []
        for i, part in enumerate(re.split(f"{re.escape(self._marker)}([0-9a-f]*)\uE001", text)):
            if i % 2:  # a lifted control text: tokenize it as plain text
                tokens += self.tokenize(bytes.fromhex(part).decode("utf-8"), add_bos=False, special=False)
            else:  # template markup and message text (the first part gets the BOS, even when empty)
                tokens += self.tokenize(part, add_bos=i == 0) if part or i == 0 else []
        return tokens

    def _too_long(self, size: int) -> ContextOverflow:
        return ContextOverflow(
            f"The conversation is about {size:,} characters long, more than the model's loaded context of "
            f"{self.n_ctx} tokens can hold.")

    def count_prompt_tokens(self, messages: list[dict]) -> int:
        """How many tokens the prompt for ``messages`` takes; for a prompt that cannot fit, a number
        above the context length (a lower bound), without tokenizing it all."""
        try:
            return max(len(self.prompt_tokens(messages)), 1)
        except ContextOverflow:
            size = sum(len(str(m.get("content") or "")) for m in messages)
            return max(self.n_ctx + 1, size // MAX_TOKEN_BYTES)

    def tokenize(self, text: str, add_bos: bool | None = None, special: bool = True) -> list[int]:
        """Tokens of ``text``; ``special``: control-token text becomes control tokens (template markup)."""
        ll = self._ll
        add_bos = self.add_bos if add_bos is None else (add_bos and self.add_bos)
        data = text.encode("utf-8", "replace")  # a lone surrogate (from JSON's "\udce9") becomes "?"
        capacity = len(data) + 8
        tokens = (ll.llama_token * capacity)()
        n = ll.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_bos, special)
        if n < 0:  # buffer too small: -n is the size needed
            capacity = -n
            tokens = (ll.llama_token * capacity)()
            n = ll.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_bos, special)
        result = list(tokens[:n])
        bos = ll.llama_vocab_bos(self.vocab)
        if len(result) >= 2 and result[0] == bos and result[1] == bos:
            result = result[1:]  # template wrote BOS and the tokenizer added another
        return result

    # --- generation --------------------------------------------------------------------------

    def _make_sampler(self, params: SamplingParams, prompt: list[int], prefilter: bool = True):
        """llama.cpp's sampler chain for ``params``, primed with the prompt's last tokens.

        ``prefilter=False`` builds the plain chain (penalty over the whole vocabulary), for tests.
        """
        ll = self._ll
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if _penalized(params):
            kept = 1 if params.temperature <= 0 else params.top_k
            if prefilter and kept > 0:
                # The penalty scans every candidate (~0.15 ms per token over a 49k vocabulary, 2-3% of
                # a small model's speed). At most PENALTY_LAST_N distinct tokens are penalized, so the
                # `kept` best after the penalty are always among the PENALTY_LAST_N + kept best before
                # it: keeping only those first gives exactly the same choice, much faster.
                ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(PENALTY_LAST_N + kept))
            ll.llama_sampler_chain_add(
                chain, ll.llama_sampler_init_penalties(self.n_vocab, PENALTY_LAST_N, params.repeat_penalty, 0.0, 0.0)
            )
        if params.temperature <= 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
        else:
            if params.top_k > 0:
                ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(params.top_k))
            if 0 < params.top_p < 1:
                ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(params.top_p, 1))
            if params.min_p > 0:
                ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(params.min_p, 1))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(params.temperature))
            seed = params.seed if params.seed is not None and params.seed >= 0 else 0xFFFFFFFF
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed))
        for token in prompt[-PENALTY_LAST_N:]:  # the penalty looks back into the prompt too
            ll.llama_sampler_accept(chain, token)
        return chain

    def _argmax_picker(self) -> Callable[[], int]:
        """Greedy choice straight from the logits: the same token as llama.cpp's greedy sampler (the
        first highest logit) in ~20 us instead of ~60-150 us, as no 49k-entry candidate array is built."""
        import numpy as np

        get_logits, ctx, shape, as_array = self._ll.llama_get_logits_ith, self.ctx, (self.n_vocab,), np.ctypeslib.as_array
        return lambda: int(as_array(get_logits(ctx, -1), shape=shape).argmax())

    def _decode(self, tokens: list[int]) -> None:
        arr = (self._ll.llama_token * len(tokens))(*tokens)
        rc = self._ll.llama_decode(self.ctx, self._ll.llama_batch_get_one(arr, len(tokens)))
        if rc == 2 and self._stopping:
            raise _Stopped()  # aborted: llama.cpp removed this batch's entries from the KV cache
        if rc != 0:
            self.reset_cache()
            raise EngineError(f"llama.cpp failed to evaluate the prompt (llama_decode returned {rc}).")

    def _should_abort(self, _data) -> bool:
        """llama.cpp's abort callback while a prompt batch is computed: asks ``stop`` every STOP_POLL_S."""
        now = time.monotonic()
        if not self._stopping and now >= self._next_poll:
            self._next_poll = now + STOP_POLL_S
            self._stopping = bool(self._stop_check())
        return self._stopping

    def reset_cache(self) -> None:
        self._ll.llama_memory_clear(self.memory, True)
        self.cached = []

    def _evaluate_prompt(self, prompt: list[int], stop_requested: Callable[[], bool]) -> int:
        """Bring the KV cache to ``prompt``, reusing the common prefix; return tokens evaluated.

        ``stop_requested`` is asked every STOP_POLL_S, also in the middle of a batch (through
        llama.cpp's abort callback, which is set only here: it would cost ~1 ms a token while
        generating, where the loop asks between tokens anyway). Raises _Stopped.
        """
        keep = 0
        for cached_tok, tok in zip(self.cached, prompt):
            if cached_tok != tok:
                break
            keep += 1
        keep = min(keep, len(prompt) - 1)  # the last prompt token must be evaluated to get logits
        if keep < len(self.cached):
            if not self._ll.llama_memory_seq_rm(self.memory, 0, keep, -1):
                self.reset_cache()
                keep = 0
            del self.cached[keep:]
        todo = prompt[keep:]
        self._stop_check, self._stopping, self._next_poll = stop_requested, False, 0.0
        self._ll.llama_set_abort_callback(self.ctx, self._abort_callback, None)
        try:
            for start in range(0, len(todo), self.n_batch):
                if stop_requested():
                    raise _Stopped()
                chunk = todo[start:start + self.n_batch]
                self._decode(chunk)
                self.cached.extend(chunk)
        finally:
            self._ll.llama_set_abort_callback(self.ctx, self._no_abort_callback, None)
            self._stopping = False
        return len(todo)

    def generate(self, messages: list[dict], params: SamplingParams,
                 stop_requested: Callable[[], bool] = lambda: False, ignore_eos: bool = False) -> Iterator[str]:
        """Yield text pieces of the reply; ``self.last_stats`` holds the figures afterwards.

        ``stop_requested`` is polled between prompt batches and tokens; when it turns true the reply
        ends with finish_reason "cancelled". ``ignore_eos`` (benchmarks) generates all max_tokens.
        """
        ll = self._ll
        stats = self.last_stats = GenerationStats(finish_reason="cancelled")
        try:
            prompt = self.prompt_tokens(messages, stop_requested)
        except RenderStopped:
            return
        stats.prompt_tokens = len(prompt)
        if not prompt:
            prompt = [ll.llama_vocab_bos(self.vocab)]
        if len(prompt) >= self.n_ctx:
            raise ContextOverflow(
                f"The conversation is {len(prompt)} tokens long, more than the model's loaded "
                f"context of {self.n_ctx} tokens."
            )
        started = time.perf_counter()
        try:
            stats.prompt_tokens_evaluated = self._evaluate_prompt(prompt, stop_requested)
        except _Stopped:
            return
        finally:
            stats.prompt_s = time.perf_counter() - started
        self._check_logits()
        sampler = self._make_sampler(params, prompt)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        one, piece, vocab, ctx = self._one, self._piece, self.vocab, self.ctx
        get_logits, isfinite = ll.llama_get_logits_ith, math.isfinite
        pick = self._argmax_picker() if _plain_greedy(params) else (lambda: ll.llama_sampler_sample(sampler, ctx, -1))
        budget = min(params.max_tokens if params.max_tokens > 0 else self.n_ctx, self.n_ctx - len(prompt))
        stats.finish_reason = "length"
        try:
            for remaining in range(budget - 1, -1, -1):
                token = pick()
                if not isfinite(get_logits(ctx, -1)[token]):
                    self._check_logits()  # raises: the model computed NaN or infinity
                if ll.llama_vocab_is_eog(vocab, token) and not ignore_eos:
                    stats.finish_reason = "stop"
                    break
                stats.completion_tokens += 1
                n = ll.llama_token_to_piece(vocab, token, piece, MAX_PIECE_BYTES, 0, False)
                text = decoder.decode(piece.raw[:n]) if n > 0 else ""
                if text:
                    yield text
                if stop_requested():
                    stats.finish_reason = "cancelled"
                    # the sampled token is not in the KV cache yet; the cache stays consistent
                    break
                if not remaining:
                    break  # the budget's last token: nothing will be sampled after it, so skip its decode
                one[0] = token
                if ll.llama_decode(ctx, ll.llama_batch_get_one(one, 1)) != 0:
                    self.reset_cache()
                    raise EngineError("llama.cpp failed while generating (llama_decode returned an error).")
                self.cached.append(token)
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
        finally:
            ll.llama_sampler_free(sampler)

    def _check_logits(self) -> None:
        """Raise ModelFileError when the last logits hold NaN or infinity (a broken model's garbage)."""
        import numpy as np

        logits = np.ctypeslib.as_array(self._ll.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))
        if not np.isfinite(logits).all():
            self.reset_cache()
            raise ModelFileError(
                f"{self.model_path.name} computes invalid numbers (NaN or infinity) instead of token "
                "scores, so its replies would be garbage.", hint=BROKEN_MODEL_HINT, path=str(self.model_path))

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self._ll.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            self._ll.llama_model_free(self.model)
            self.model = None


def _literal_pattern(texts) -> re.Pattern | None:
    """A regex matching any of ``texts``, longest first (None when there are none)."""
    ordered = sorted(set(texts), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


def _plain_greedy(params: SamplingParams) -> bool:
    """Greedy with no repeat penalty: the choice is the highest logit, nothing else."""
    return params.temperature <= 0 and not _penalized(params)


def _penalized(params: SamplingParams) -> bool:
    """A repeat penalty is in effect (1 means none; SamplingParams.validate refuses 0 and below)."""
    return params.repeat_penalty != 1.0


class _Stopped(Exception):
    pass


def _architecture_of(path: Path) -> str | None:
    """The architecture named in the file's header, or None if the header cannot be read."""
    try:
        from runtime.models.gguf_info import read_gguf_info

        return read_gguf_info(path).architecture
    except Exception:  # the header is damaged: the caller reports the load failure itself
        return None

