"""How much memory this machine has, and whether a model will fit in it.

The estimate (CPU / unified memory, llama.cpp defaults: f16 KV cache, no flash attention):

    needed = file size                                        weights (memory-mapped, all pages touched)
           + 2 bytes * n_ctx * block_count * (k_dim + v_dim)         KV cache, K and V in f16
           + 4 bytes * UBATCH * max(vocab, head_count * n_ctx)      compute buffer: the larger of the
                                                                     f32 logits and attention scores
                                                                     of one micro-batch
           + 32 MiB                                                  graph, output and small buffers

with k_dim = key_length * head_count_kv, where key_length defaults to embedding_length / head_count
(v_dim likewise). For a single sequence the KV term is the familiar
2 * block_count * n_ctx * (embedding_length / head_count * head_count_kv) * 2 bytes.

Checked against llama.cpp (llama-cpp-python 0.3.x) with the starter model: KV cache 45.0 / 180.0 MiB
at n_ctx 2048 / 8192, exactly as computed; compute buffer reported 99.4 / 166.4 MiB, estimated
128 / 176 MiB. The estimate errs on the safe side by design, but only slightly.

The figures come from ``read_gguf_info``, which already drops impossible header values and prefers
what the tensors show (e.g. the vocabulary from the token list, not a stated ``vocab_size``). A model
whose context length is unknown is judged at ``DEFAULT_N_CTX``.

A model that is not on disk yet is judged the same way: its shape comes from the GGUF header read
over the network (``runtime.models.gguf_info.read_gguf_header_prefix``) or from a checkpoint's
config.json (``info_from_config``), and ``size_bytes`` is what its files will take.

Where llama.cpp has a GPU backend (``gpus``: what the engine's ``gpu_devices`` lists), the verdict is
taken against GPU memory when the whole estimate fits there (the engine then offloads every layer),
else against RAM, as the engine's ``--gpu-layers auto`` does.
"""
from __future__ import annotations

from dataclasses import dataclass

from runtime.models import gguf_info
from runtime.models.gguf_info import GGUFInfo, format_size

DEFAULT_N_CTX = 4096          # the context a model is loaded with unless the user picks another
UBATCH = 512                  # llama.cpp's default n_ubatch
OVERHEAD_BYTES = 32 * 1024**2
TIGHT_FRACTION = 0.8          # needing more than this share of free memory is "tight"


def total_ram() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def available_ram() -> int:
    """Memory that can be used without swapping (includes reclaimable file cache)."""
    import psutil

    return int(psutil.virtual_memory().available)


def kv_cache_bytes(info: GGUFInfo, n_ctx: int) -> int:
    """f16 K and V for ``n_ctx`` tokens in every layer; 0 when the file lacks the shape figures."""
    if not (info.block_count and info.head_count):
        return 0
    head_dim = (info.embedding_length or 0) // info.head_count
    kv_heads = info.head_count_kv or info.head_count
    k_dim = (info.key_length or head_dim) * kv_heads
    v_dim = (info.value_length or head_dim) * kv_heads
    return 2 * n_ctx * info.block_count * (k_dim + v_dim)


def compute_buffer_bytes(info: GGUFInfo, n_ctx: int) -> int:
    """Scratch memory llama.cpp reserves for evaluating one micro-batch (see module doc)."""
    return 4 * UBATCH * max(info.vocab_size or 0, (info.head_count or 0) * n_ctx) + OVERHEAD_BYTES


def _known(n: int | None) -> int | None:
    """``n`` when it is a positive whole number, else None."""
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def default_fit_context(info: GGUFInfo) -> int:
    """The context a fit badge assumes: the app's default load context, capped by the model's own."""
    trained = _known(info.context_length)
    return min(DEFAULT_N_CTX, trained) if trained else DEFAULT_N_CTX


def estimate_model_memory(info: GGUFInfo, n_ctx: int) -> int:
    """Bytes of memory needed to run the model with a context of ``n_ctx`` tokens (see module doc)."""
    return info.size_bytes + kv_cache_bytes(info, n_ctx) + compute_buffer_bytes(info, n_ctx)


@dataclass
class FitVerdict:
    """Whether a model runs here: the status, the figures behind it, and the words for a badge."""

    status: str             # "fits" | "tight" | "too_big"
    needed_bytes: int
    available_bytes: int
    detail: str             # the numbers: "needs about 1.2 GiB with a 4,096-token context; 0.8 GiB ..."
    n_ctx: int = 0          # the context length it was judged at
    weights_bytes: int = 0  # the parts of needed_bytes: weights, KV cache, llama.cpp's working memory
    kv_bytes: int = 0
    compute_bytes: int = 0
    memory: str = "RAM"     # what it was judged against: "RAM", or "GPU memory (CUDA0)" and the like

    @property
    def message(self) -> str:
        return f"{FIT_LABELS[self.status]}: {self.detail}"

    @property
    def tooltip(self) -> str:
        """The sum behind the badge, for a tooltip: weights + KV cache + working memory vs free memory."""
        lines = [f"{FIT_LABELS[self.status]}: {self.detail}."]
        if self.weights_bytes:
            lines.append(f"Weights {format_size(self.weights_bytes)} + KV cache {format_size(self.kv_bytes)} "
                         f"({self.n_ctx:,} tokens) + working memory {format_size(self.compute_bytes)} "
                         f"= {format_size(self.needed_bytes)}.")
        lines.append(f"{format_size(self.available_bytes)} of {self.memory} is free; up to "
                     f"{TIGHT_FRACTION:.0%} of it counts as fitting, more as tight.")
        return "\n".join(lines)


FIT_LABELS = {"fits": "Fits", "tight": "Tight", "too_big": "Too big"}


def _status(needed: int, available: int) -> str:
    if needed > available:
        return "too_big"
    return "tight" if needed > TIGHT_FRACTION * available else "fits"


def check_fit(info: GGUFInfo, n_ctx: int, available_bytes: int | None = None, *,
              gpus: "list[GpuDevice] | None" = None) -> FitVerdict:
    """Compare the estimate with free memory (``available_bytes`` defaults to what psutil reports).

    A non-positive ``n_ctx`` means the default (``default_fit_context``). ``gpus``: the GPUs llama.cpp
    would offload to (empty or None on a CPU-only build); when the estimate fits in their free memory
    together, the verdict is against that memory, else against RAM (the model then runs on the CPU).
    """
    n_ctx = _known(n_ctx) or default_fit_context(info)
    kv = kv_cache_bytes(info, n_ctx)
    compute = compute_buffer_bytes(info, n_ctx)
    needed = info.size_bytes + kv + compute
    ram = available_ram() if available_bytes is None else available_bytes
    gpu_free = sum(max(0, g.free_bytes) for g in gpus or [])
    note = ""
    if gpu_free and needed <= gpu_free:
        names = "+".join(g.name for g in gpus if g.free_bytes > 0)
        available, memory = gpu_free, f"GPU memory ({names})"
        free_text = f"{format_size(gpu_free)} of GPU memory is free ({names})"
    else:
        available, memory = ram, "RAM"
        free_text = f"{format_size(ram)} of RAM is free"
        if gpu_free:
            note = f" (more than the {format_size(gpu_free)} free on the GPU, so it would run on the CPU)"
    detail = f"needs about {format_size(needed)} with a {n_ctx:,}-token context; {free_text}{note}"
    trained = _known(info.context_length)
    if trained is None:
        detail += " (the model's context length is unknown)"
    elif n_ctx > trained:
        detail += f" (the model was trained for {trained:,} tokens)"
    return FitVerdict(status=_status(needed, available), needed_bytes=needed, available_bytes=available,
                      detail=detail, n_ctx=n_ctx, weights_bytes=info.size_bytes, kv_bytes=kv,
                      compute_bytes=compute, memory=memory)


def require_fit(path, n_ctx: int, *, hint: str, gpus: "list[GpuDevice] | None" = None) -> GGUFInfo:
    """Read ``path``'s header and refuse a model too big for free memory at ``n_ctx`` tokens.

    Returns the GGUFInfo. Raises ModelFileError for a damaged file and InsufficientMemoryError with
    the numbers in words and as facts (needed_bytes, available_bytes, n_ctx, memory), with ``hint``.
    """
    from pathlib import Path

    from runtime.errors import InsufficientMemoryError

    info = gguf_info.read_gguf_info(path)
    verdict = check_fit(info, n_ctx, gpus=gpus)
    if verdict.status == "too_big":
        raise InsufficientMemoryError(
            f"{Path(path).name} does not fit in memory: it {verdict.detail}.", hint=hint, path=str(path),
            needed_bytes=verdict.needed_bytes, available_bytes=verdict.available_bytes, n_ctx=verdict.n_ctx,
            memory=verdict.memory)
    return info


# --- shapes from a Hugging Face config.json ----------------------------------------------------

def _config_int(config: dict, keys: tuple[str, ...], limit: int) -> int | None:
    """The first of ``keys`` holding a whole number in 1..limit (None when none does)."""
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= limit:
            return value
    return None


def info_from_config(config: dict, size_bytes: int, *, name: str = "", file_type: str = "F16",
                     parameter_count: int = 0) -> GGUFInfo:
    """A GGUFInfo with the shape a Hugging Face config.json states, for memory estimates.

    ``size_bytes``: what the weights will take (e.g. the checkpoint converted to GGUF at F16).
    Reads the usual names (num_hidden_layers, num_attention_heads, num_key_value_heads, hidden_size,
    head_dim, vocab_size, max_position_embeddings) and their GPT-2 style aliases; a multimodal config's
    ``text_config`` is what runs in llama.cpp. Missing or impossible figures stay None (unknown).
    """
    if not isinstance(config, dict):
        config = {}
    text = config.get("text_config")
    if isinstance(text, dict):
        config = {**config, **text}
    embd = _config_int(config, ("hidden_size", "n_embd", "d_model"), gguf_info.MAX_EMBEDDING)
    heads = _config_int(config, ("num_attention_heads", "n_head", "num_heads"), embd or gguf_info.MAX_HEADS)
    kv_heads = _config_int(config, ("num_key_value_heads", "n_head_kv", "num_kv_heads"), heads or gguf_info.MAX_HEADS)
    if kv_heads is None and config.get("multi_query") is True:  # Falcon: one shared K/V head
        kv_heads = 1
    head_dim = _config_int(config, ("head_dim",), 4 * embd if embd else gguf_info.MAX_EMBEDDING)
    arch = config.get("model_type")
    return GGUFInfo(
        path=name, size_bytes=size_bytes, architecture=arch if isinstance(arch, str) else "unknown",
        name=name, parameter_count=parameter_count, file_type=file_type, tensor_count=0,
        context_length=_config_int(config, ("max_position_embeddings", "n_positions", "seq_length",
                                            "max_sequence_length"), gguf_info.MAX_CONTEXT),
        block_count=_config_int(config, ("num_hidden_layers", "n_layer", "num_layers"), gguf_info.MAX_BLOCKS),
        embedding_length=embd, head_count=heads, head_count_kv=kv_heads,
        key_length=head_dim, value_length=head_dim,
        vocab_size=_config_int(config, ("vocab_size", "padded_vocab_size"), gguf_info.MAX_VOCAB),
    )


# --- GPU offload: the pure part (the engine lists the devices; see runtime.engine.server) -------

@dataclass
class GpuDevice:
    """One GPU (or integrated GPU) that this llama.cpp build can offload to."""

    name: str               # llama.cpp's device name: "CUDA0", "Metal", "Vulkan0", ...
    description: str        # e.g. "NVIDIA GeForce RTX 4070"
    free_bytes: int
    total_bytes: int

