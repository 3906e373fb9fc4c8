"""The PyTorch process: the original Hugging Face checkpoint, in one precision, measured like a GGUF.

Started by ``runtime.bench.torch_rows`` through ``runtime.procs.ChildProcess``, in one of three modes:

    python -m runtime.bench.torch_child speed CHECKPOINT --precision P --threads T
        [--prompt-tokens 512] [--gen-tokens 128] [--reps 3] [--no-warmup] [--seed 0]
    python -m runtime.bench.torch_child reference CHECKPOINT --text FILE --n-ctx N --k K --out PATH
        [--vocab-gguf FILE] [--meta JSON] [--max-windows M] --threads T
    python -m runtime.bench.torch_child score CHECKPOINT --precision P --reference FILE
        [--text FILE --vocab-gguf FILE] --threads T

The checkpoint is loaded with transformers (``AutoModelForCausalLM``, ``AutoTokenizer``, local files
only) on the CPU in one precision: "fp32"; "bf16" or "fp16" (the weights and the arithmetic in half
precision); "int8": ``torch.ao.quantization.quantize_dynamic`` of every ``nn.Linear`` of the FP32 model
(weights stored as int8, activations quantized on the fly). Threads: ``torch.set_num_threads``.

``speed`` measures what ``speed_child`` measures for a GGUF, the same way: pp = ``prompt_tokens``
random tokens (the first BOS where the tokenizer adds one) in one forward from an empty cache; tg =
``gen_tokens`` single-token forwards with the KV cache on (``past_key_values``), from an empty cache,
the first included; ttft = ``speed_child.TTFT_MESSAGES`` through the tokenizer's chat template,
tokenized, one forward, the first token picked greedily. A warm-up of each, then ``reps`` of each.
Only the last position's logits are computed in pp and ttft (llama.cpp's batches ask for no more).

``reference`` writes the FP32 logits over the evaluation windows as a ``.wbref``
(``runtime.bench.reference.ReferenceWriter``), so every GGUF is scored against the real original by
``quality_child score``. The windows are quality_child's own: the text tokenized by llama.cpp with
the vocabulary of ``--vocab-gguf`` (a GGUF of the same model; only its vocabulary is loaded), BOS
where that vocabulary adds one, and the vocabulary fingerprint is llama.cpp's, so the GGUFs' vocabulary
check passes. The checkpoint's own tokenizer must split the text the same way: when the two
tokenizations disagree the run is refused (BenchError naming the first differing token). Without
``--vocab-gguf`` the tokenizer's own tokens are used (a reference only PyTorch rows can be scored on).

``score`` scores this precision on a reference's windows (``runtime.bench.reference.WindowScorer``,
the same figures as a GGUF gets).

Events, one JSON object a line: ``started``; ``loaded`` (load_s, threads, precision, memory_bytes,
n_vocab); ``progress`` (speed, as speed_child's); ``windows``/``window`` (quality, as quality_child's);
``done``; ``error`` with a ``WorkbenchError.to_payload()`` (then exit 3). The process exits when stdin
closes, removing a partial ``--out``.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import random
import sys
import threading
import time

import numpy as np

from runtime.bench import reference as ref
from runtime.errors import BenchError
from runtime.procs import emit, run_main, watch_parent

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
_FINISHED = threading.Event()
CHECKPOINT_HINT = ("Choose the folder of a Hugging Face model this transformers version can load (config.json, "
                   "tokenizer files and *.safetensors).")


# --- loading -----------------------------------------------------------------------------------

class TorchModel:
    """One checkpoint in one precision on the CPU, with its tokenizer."""

    def __init__(self, folder: str, precision: str, threads: int) -> None:
        import torch
        import transformers

        if precision not in PRECISIONS:
            raise BenchError(f"Unknown PyTorch precision {precision!r}: use one of {', '.join(PRECISIONS)}.")
        self.torch, self.folder, self.precision = torch, folder, precision
        transformers.logging.set_verbosity_error()      # its advice goes to stderr, not its progress bars
        transformers.utils.logging.disable_progress_bar()
        torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        emit("started", torch=torch.__version__, transformers=transformers.__version__, pid=os.getpid())
        dtype = {"fp32": torch.float32, "int8": torch.float32, "bf16": torch.bfloat16,
                 "fp16": torch.float16}[precision]
        t0 = time.perf_counter()
        self.tokenizer = load_tokenizer(folder)
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; all mean "cannot load"
            raise BenchError(f"PyTorch (transformers {transformers.__version__}) could not load the checkpoint "
                             f"{os.path.basename(folder)}: {type(exc).__name__}: {exc}"[:1500],
                             hint=CHECKPOINT_HINT, path=folder) from None
        model.eval()
        self.n_logits = int(model.get_output_embeddings().weight.shape[0])  # the scores a forward gives
        if precision == "int8":
            model = quantize_dynamic_int8(model)
        self.model = model
        self.load_s = time.perf_counter() - t0
        self.memory_bytes = memory_bytes(model)
        self.add_bos, self.bos = adds_bos(self.tokenizer)
        # The KV cache argument: ``cache`` since transformers 5.2x, ``past_key_values`` before.
        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def forward(self, tokens, past=None, last: int | None = None):
        """Logits (float32 numpy, [positions, vocab]) of ``tokens`` after ``past``, and the new cache.
        ``last``: only the last ``last`` positions' logits are computed."""
        torch = self.torch
        ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64)).reshape(1, -1)
        kwargs = {"logits_to_keep": last} if last else {}
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, **{self._cache_arg: past}, **kwargs)
        return out.logits[0].float().numpy(), getattr(out, self._cache_arg)


def load_tokenizer(folder: str):
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - a missing or broken tokenizer, in any of its forms
        raise BenchError(f"The checkpoint {os.path.basename(folder)} has no tokenizer transformers can load: "
                         f"{type(exc).__name__}: {exc}"[:1500], hint=CHECKPOINT_HINT, path=folder) from None


def quantize_dynamic_int8(model):
    """PyTorch's dynamic INT8 recipe: every ``nn.Linear`` with int8 weights (per tensor), int8 activations."""
    import warnings

    import torch

    engines = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm", "qnnpack"):   # x86 / fbgemm on Intel and AMD, qnnpack on ARM
        if engine in engines:
            torch.backends.quantized.engine = engine
            break
    with warnings.catch_warnings():   # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def memory_bytes(model) -> int:
    """Bytes the model's weights take in memory: every parameter and buffer once (tied weights once),
    and the packed weights of dynamically quantized Linear layers (int8: one byte a weight) with their
    biases, which ``parameters()`` does not list."""
    import torch

    seen: set = set()
    total = 0

    def add(value) -> None:
        nonlocal total
        if isinstance(value, (tuple, list)):
            for item in value:
                add(item)
        elif isinstance(value, torch.Tensor):
            key = (value.data_ptr(), value.numel(), value.dtype)
            if key not in seen:
                seen.add(key)
                total += value.numel() * value.element_size()

    for value in model.state_dict(keep_vars=True).values():
        add(value)
    return total


def adds_bos(tokenizer) -> tuple[bool, int | None]:
    """Whether the tokenizer puts BOS before a text, and the BOS id."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False, None
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos, bos


# --- speed -------------------------------------------------------------------------------------

class Speed:
    """speed_child's three tests, in PyTorch."""

    def __init__(self, model: TorchModel, seed: int) -> None:
        self.m = model
        self.rng = random.Random(seed)
        self.n_vocab = model.n_logits

    def _random(self, n: int) -> list[int]:
        tokens = [self.rng.randrange(self.n_vocab) for _ in range(n)]
        if self.m.add_bos:
            tokens[0] = self.m.bos
        return tokens

    def prompt_run(self, n_tokens: int) -> float:
        tokens = self._random(n_tokens)
        t0 = time.perf_counter()
        self.m.forward(tokens, last=1)
        return n_tokens / (time.perf_counter() - t0)

    def gen_run(self, n_tokens: int) -> float:
        tokens = self._random(n_tokens)
        past = None
        t0 = time.perf_counter()
        for token in tokens:
            _logits, past = self.m.forward([token], past)
        return n_tokens / (time.perf_counter() - t0)

    def ttft_run(self) -> float:
        t0 = time.perf_counter()
        tokens = chat_tokens(self.m.tokenizer)
        logits, _past = self.m.forward(tokens, last=1)
        int(logits[-1].argmax())
        return time.perf_counter() - t0


def chat_tokens(tokenizer) -> list[int]:
    """speed_child's TTFT prompt through the tokenizer's own chat template (ChatML when it has none)."""
    from runtime.bench.speed_child import TTFT_MESSAGES
    from runtime.engine.templates import render_chat

    text = None
    if getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(TTFT_MESSAGES, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - a broken template: time the common ChatML form, as speed_child does
            text = None
    if text is None:
        text = render_chat(None, TTFT_MESSAGES)
    tokens = tokenizer(text, add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    if len(tokens) >= 2 and bos is not None and tokens[0] == tokens[1] == bos:
        tokens = tokens[1:]  # the template wrote BOS and the tokenizer added another
    return tokens or ([bos] if bos is not None else [0])


def run_speed(args) -> dict:
    model = TorchModel(args.checkpoint, args.precision, args.threads)
    emit("loaded", load_s=round(model.load_s, 6), threads=model.threads, precision=model.precision,
         memory_bytes=model.memory_bytes, n_vocab=model.n_logits)
    bench = Speed(model, args.seed)
    reps = args.reps
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
    tests = (("pp", f"pp{args.prompt_tokens}", "pp_tokens_per_s", lambda: bench.prompt_run(args.prompt_tokens)),
             ("tg", f"tg{args.gen_tokens}", "tg_tokens_per_s", lambda: bench.gen_run(args.gen_tokens)),
             ("ttft", "TTFT", "ttft_s", bench.ttft_run))
    for name, label, key, test in tests:
        for rep in range(1, reps + 1):
            step(name, label, rep)
            figures[key].append(test())
            done += 1
    from runtime.procs import peak_rss_bytes

    return {"load_s": round(model.load_s, 6), **{k: [round(v, 6) for v in vs] for k, vs in figures.items()},
            "peak_rss_bytes": peak_rss_bytes(), "vram_bytes": None, "threads": model.threads,
            "precision": model.precision, "memory_bytes": model.memory_bytes}


# --- the vocabulary and the windows --------------------------------------------------------------

class LlamaVocab:
    """Only the vocabulary of a GGUF, loaded by llama.cpp (``vocab_only``): how it tokenizes the text."""

    def __init__(self, path: str) -> None:
        import ctypes

        from runtime.bench.quality_child import _bindings

        ll = self.ll = _bindings()
        self._log = ll.llama_log_callback(lambda level, text, data: None)  # kept: ctypes must not free it
        ll.llama_log_set(self._log, ctypes.c_void_p(0))
        ll.llama_backend_init()
        params = ll.llama_model_default_params()
        params.vocab_only = True
        self.path, self.name = path, os.path.basename(path)
        self.model = ll.llama_model_load_from_file(os.fsencode(path), params)
        if not self.model:
            from runtime.errors import ModelFileError

            raise ModelFileError(f"llama.cpp could not read the vocabulary of {self.name}.", path=path)
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab))
        self.bos = ll.llama_vocab_bos(self.vocab)

    def fingerprint(self) -> str:
        from runtime.bench.quality_child import vocab_fingerprint

        return vocab_fingerprint(self.ll, self.vocab)

    def tokenize(self, data: bytes) -> list[int]:
        from runtime.bench.quality_child import tokenize

        return tokenize(self.ll, self.vocab, data)

    def piece(self, token: int) -> str:
        text = self.ll.llama_vocab_get_text(self.vocab, token)
        return (text or b"").decode("utf-8", "replace")


def hf_fingerprint(tokenizer, n_vocab: int) -> str:
    """A fingerprint of the checkpoint's own vocabulary (only used without a GGUF: it never equals
    llama.cpp's, so no GGUF is scored against such a reference by mistake)."""
    digest = hashlib.sha256(f"hf\n{n_vocab}\n".encode())
    for piece in tokenizer.convert_ids_to_tokens(list(range(min(n_vocab, len(tokenizer))))):
        digest.update(str(piece).encode("utf-8", "replace") + b"\x00")
    return "hf-" + digest.hexdigest()


def check_same_tokens(tokenizer, vocab: LlamaVocab, data: bytes, folder: str) -> list[int]:
    """llama.cpp's tokens of the text (as quality_child makes them), once the checkpoint's tokenizer
    is known to split it the same way; BenchError naming the first difference otherwise."""
    ours = vocab.tokenize(data)
    body = ours[1:] if vocab.add_bos and ours and ours[0] == vocab.bos else ours
    theirs = tokenizer(data.decode("utf-8", "replace"), add_special_tokens=False)["input_ids"]
    if body == theirs:
        return ours
    at = next((i for i, (a, b) in enumerate(zip(body, theirs)) if a != b), min(len(body), len(theirs)))

    def shown(tokens, piece, i):
        return ", ".join(f"{t} {piece(t)!r}" for t in tokens[i:i + 3]) or "the end of the text"

    hf_piece = lambda t: str(tokenizer.convert_ids_to_tokens(int(t)))  # noqa: E731
    before = tokenizer.decode(theirs[max(0, at - 8):at]) if at else ""
    raise BenchError(
        f"The checkpoint's tokenizer and the GGUF {vocab.name} split the evaluation text differently, so their "
        f"scores would be for different tokens: they agree on the first {at:,} tokens "
        f"(of {len(body):,} and {len(theirs):,}); after {before[-40:]!r} llama.cpp has "
        f"[{shown(body, vocab.piece, at)}] and transformers has [{shown(theirs, hf_piece, at)}].",
        hint="Compare the original with GGUF files converted from this very checkpoint (Compress tab: convert it "
             "again), or choose the checkpoint folder this GGUF was made from.",
        path=folder, gguf=vocab.path, position=at, llama_cpp_tokens=body[at:at + 3],
        transformers_tokens=theirs[at:at + 3])


def text_tokens(args, model: TorchModel) -> tuple[list[int], int, str, bool, int | None, str]:
    """(tokens, n_vocab, fingerprint, add_bos, bos, tokenized by) of the evaluation text."""
    from runtime.bench.quality_child import read_text_bytes

    data = read_text_bytes(args.text)
    if args.vocab_gguf:
        vocab = LlamaVocab(args.vocab_gguf)
        if vocab.n_vocab != model.n_logits:
            raise BenchError(
                f"The checkpoint scores {model.n_logits:,} tokens, the vocabulary of {vocab.name} has "
                f"{vocab.n_vocab:,}: they are not the same model.",
                hint="Choose the checkpoint the GGUF files were converted from.", path=args.checkpoint,
                n_vocab=vocab.n_vocab, checkpoint_n_vocab=model.n_logits)
        tokens = check_same_tokens(model.tokenizer, vocab, data, args.checkpoint)
        return tokens, vocab.n_vocab, vocab.fingerprint(), vocab.add_bos, vocab.bos, f"llama.cpp ({vocab.name})"
    tokens = model.tokenizer(data.decode("utf-8", "replace"), add_special_tokens=True)["input_ids"]
    n_vocab = model.n_logits
    return tokens, n_vocab, hf_fingerprint(model.tokenizer, n_vocab), model.add_bos, model.bos, "transformers"


def window_logits(model: TorchModel, window: np.ndarray) -> np.ndarray:
    """The logits of one window's scored positions, from an empty cache (float32)."""
    n_ctx = len(window)
    first, per = n_ctx // 2, ref.scored_per_window(n_ctx)
    logits, _past = model.forward(window, last=n_ctx - first)
    logits = logits[:per]
    if not np.isfinite(logits).all():
        raise BenchError(f"{os.path.basename(model.folder)} in {model.precision.upper()} computes invalid numbers "
                         "(NaN or infinity) instead of token scores.", path=model.folder,
                         hint="Try FP32, or check the checkpoint's weights.")
    return logits


def make_reference(args) -> dict:
    from runtime.bench.quality_child import too_short

    meta_in = json.loads(args.meta) if args.meta else {}
    model = TorchModel(args.checkpoint, "fp32", args.threads)
    tokens, n_vocab, fingerprint, add_bos, bos, tokenized_by = text_tokens(args, model)
    emit("loaded", load_s=round(model.load_s, 4), threads=model.threads, precision="fp32",
         memory_bytes=model.memory_bytes, n_vocab=n_vocab, vocab_fingerprint=fingerprint, tokenized_by=tokenized_by)
    text_name = meta_in.get("text_name") or os.path.basename(args.text)
    if len(tokens) < ref.min_tokens(args.n_ctx):
        raise too_short(len(tokens), args.n_ctx, text_name)
    windows = ref.windows_from_tokens(tokens, args.n_ctx, bos if add_bos else None, args.max_windows)
    total = len(windows)
    emit("windows", n_tokens=len(tokens), n_windows=total)
    import torch
    import transformers

    meta = ref.ReferenceMeta(
        n_ctx=args.n_ctx, n_windows=total, k=min(args.k, n_vocab), n_vocab=n_vocab,
        vocab_fingerprint=fingerprint, text_sha256=meta_in.get("text_sha256") or ref.text_sha256(args.text),
        source={"name": os.path.basename(args.checkpoint), **meta_in.get("source", {})}, key=meta_in.get("key", ""),
        text_name=text_name, bos_replaced=add_bos,
        producer=f"PyTorch {torch.__version__} (transformers {transformers.__version__}), FP32; "
                 f"tokens by {tokenized_by}")
    t0 = time.perf_counter()
    with ref.ReferenceWriter(args.out, meta, windows) as writer:
        for index, window in enumerate(windows):
            start = time.perf_counter()
            writer.add(window_logits(model, window))
            emit("window", index=index + 1, total=total, seconds=round(time.perf_counter() - start, 4))
    _FINISHED.set()
    return {"n_tokens": len(tokens), "n_windows": total, "tokens_scored": meta.n_scored,
            "seconds": round(time.perf_counter() - t0, 4), "load_s": round(model.load_s, 4)}


def score(args) -> dict:
    reference = ref.Reference.open(args.reference)
    meta = reference.meta
    model = TorchModel(args.checkpoint, args.precision, args.threads)
    emit("loaded", load_s=round(model.load_s, 4), threads=model.threads, precision=model.precision,
         memory_bytes=model.memory_bytes, n_vocab=model.n_logits)
    if model.n_logits != meta.n_vocab:
        raise BenchError(f"The checkpoint scores {model.n_logits:,} tokens, the reference {meta.source_name} "
                         f"{meta.n_vocab:,}: they are not the same model.", path=args.checkpoint,
                         hint="Compare the original only with variants of the same model.")
    if args.vocab_gguf or meta.vocab_fingerprint.startswith("hf-"):
        if args.text:   # the same vocabulary, and the checkpoint's tokenizer splits the text as llama.cpp does
            fingerprint = text_tokens(args, model)[2]
        else:
            fingerprint = LlamaVocab(args.vocab_gguf).fingerprint() if args.vocab_gguf else \
                hf_fingerprint(model.tokenizer, model.n_logits)
        if fingerprint != meta.vocab_fingerprint:
            raise BenchError(f"The checkpoint cannot be compared with the reference {meta.source_name}: their "
                             "vocabularies differ.", path=args.checkpoint,
                             hint="Compare the original only with variants of the same model.")
    scorer = ref.WindowScorer(reference)
    t0 = time.perf_counter()
    for index in range(meta.n_windows):
        start = time.perf_counter()
        scorer.add(index, window_logits(model, np.asarray(reference.windows[index])))
        emit("window", index=index + 1, total=meta.n_windows, seconds=round(time.perf_counter() - start, 4))
    return {**scorer.figures(), "seconds": round(time.perf_counter() - t0, 4), "load_s": round(model.load_s, 4),
            "precision": model.precision, "memory_bytes": model.memory_bytes}


# --- the command line ----------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="torch_child")
    parser.add_argument("mode", choices=("speed", "reference", "score"))
    parser.add_argument("checkpoint")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text")
    parser.add_argument("--vocab-gguf")
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--k", type=int, default=ref.DEFAULT_K)
    parser.add_argument("--out")
    parser.add_argument("--meta", default="")
    parser.add_argument("--max-windows", type=int, default=0)
    parser.add_argument("--reference")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    watch_parent([args.out], _FINISHED)
    run = {"speed": run_speed, "reference": make_reference, "score": score}[args.mode]
    emit("done", **run(args))
    return 0


if __name__ == "__main__":
    run_main(main, BenchError, "The PyTorch run")
