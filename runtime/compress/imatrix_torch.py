"""The importance-matrix process for a Hugging Face checkpoint: PyTorch forward hooks on the decoder
blocks' Linear layers.

Started by ``runtime.compress.imatrix_run.compute_imatrix`` as
``python -m runtime.compress.imatrix_torch FOLDER TEXT OUT --ctx N [--chunks N] [--dataset NAME]
[--threads N]``. Each ``nn.Linear`` inside the blocks gets a hook that adds its input's squares per
column (and the number of input rows) to the entry of the GGUF weight it becomes: the names come from
the converter's own plan (``runtime.compress.convert.plan_conversion``: Hugging Face tensor name ->
GGUF name), so the file fits the GGUF ``workbench convert`` writes. Q/K rows that the converter
permutes for llama do not matter here: the statistics are per input column.

The text is tokenized by the checkpoint's own tokenizer with its special tokens (BOS where it adds
one) and cut into the same chunks llama-imatrix uses (``imatrix_child.chunks_of``). Events as
``imatrix_child``.
"""
from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np

from runtime.compress.imatrix_child import chunks_of, default_threads, peak_rss, too_short
from runtime.errors import ConversionError, QuantizeError
from runtime.procs import emit, run_main, watch_parent

_FINISHED = threading.Event()


def gguf_names(folder: str) -> dict[str, str]:
    """Hugging Face weight name -> GGUF name for every ``blk.*`` matrix the converter writes."""
    from runtime.compress.convert import plan_conversion

    plan = plan_conversion(folder, "f32")
    return {t.source: t.name for t in plan.tensors
            if t.source and t.name.startswith("blk.") and t.name.endswith(".weight") and len(t.shape) == 2}


def hook_linears(model, names: dict[str, str], matrix) -> list:
    """A forward hook on each Linear whose weight the converter maps into a block; returns the handles."""
    import torch

    handles = []

    def hook_for(gguf_name: str):
        def hook(module, inputs, output):
            x = inputs[0].detach().reshape(-1, module.in_features).to(torch.float64)
            matrix.accumulate(gguf_name, (x * x).sum(dim=0).numpy(), int(x.shape[0]))
        return hook

    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and f"{module_name}.weight" in names:
            handles.append(module.register_forward_hook(hook_for(names[f"{module_name}.weight"])))
    return handles


def tokenize(folder: str, text: str) -> tuple[list[int], int | None]:
    """The text's tokens with the tokenizer's special tokens, and the BOS id when the tokenizer adds one."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tokens = tok(text, add_special_tokens=True)["input_ids"]
    bare = tok("a", add_special_tokens=False)["input_ids"]
    marked = tok("a", add_special_tokens=True)["input_ids"]
    adds_bos = tok.bos_token_id is not None and len(marked) > len(bare) and marked[0] == tok.bos_token_id
    return list(tokens), tok.bos_token_id if adds_bos else None


def run(args) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from runtime.compress.imatrix import ImportanceMatrix

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    emit("started")
    try:
        names = gguf_names(args.folder)
    except ConversionError as exc:
        raise QuantizeError(f"The importance matrix cannot be computed from this checkpoint: {exc.message}",
                            hint=exc.hint, path=args.folder) from None
    model = AutoModelForCausalLM.from_pretrained(args.folder, dtype=torch.float32)
    model.eval()
    matrix = ImportanceMatrix()
    handles = hook_linears(model, names, matrix)
    if not handles:
        raise QuantizeError("No Linear layer of this checkpoint's blocks matches the converter's tensor names.",
                            hint="This architecture's PyTorch layout is not one the importance matrix knows.",
                            path=args.folder)
    tokens, bos = tokenize(args.folder, Path(args.text).read_text(encoding="utf-8", errors="replace"))
    if len(tokens) < 2 * args.ctx:
        raise too_short(len(tokens), args.ctx, Path(args.text).name)
    chunks = chunks_of(tokens, args.ctx, args.chunks, bos)
    emit("loaded", n_tokens=len(tokens), n_chunks=len(chunks), add_bos=bos is not None)
    with torch.no_grad():
        for i, chunk in enumerate(chunks, 1):
            model(input_ids=torch.from_numpy(chunk.astype(np.int64))[None, :], use_cache=False)
            emit("chunk", done=i, total=len(chunks))
    for handle in handles:
        handle.remove()
    matrix.chunk_count, matrix.chunk_size = len(chunks), args.ctx
    matrix.datasets = [args.dataset or Path(args.text).name]
    matrix.write(args.out)
    _FINISHED.set()
    emit("done", entries=len(matrix.entries), chunks=len(chunks), n_tokens=len(tokens),
         seconds=round(time.perf_counter() - t0, 3), peak_rss_bytes=peak_rss())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imatrix_torch")
    parser.add_argument("folder")
    parser.add_argument("text")
    parser.add_argument("out")
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--chunks", type=int, default=0)
    parser.add_argument("--dataset", default="")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--gpu-layers", type=int, default=0)  # accepted for symmetry; runs on the CPU
    args = parser.parse_args(argv)
    if args.threads <= 0:
        args.threads = default_threads()
    watch_parent([args.out], _FINISHED)
    run(args)
    return 0


if __name__ == "__main__":
    run_main(main, QuantizeError, "Computing the importance matrix in PyTorch")
