"""How big each quantization of a GGUF will be, which targets its shapes can take, and what each costs.

Before anything runs, the Compress tab and ``workbench quantize`` show, per target type, the size of
the file llama.cpp will write and whether it will fit this machine for chat. The size comes from the
source's tensor shapes (its GGUF header) and each ggml type's block size and bytes per block
(``gguf.GGML_QUANT_SIZES``), with the type llama.cpp's quantizer (``src/llama-quant.cpp`` of the
llama.cpp that llama-cpp-python 0.3.36 vendors) picks for each tensor:

- only weight matrices are quantized (2-D and 3-D tensors named ``*weight``, except norms, expert
  routers and a few small special tensors); 1-D tensors (norms, biases) keep their type, usually F32;
- the K-quant mixes keep some tensors at more bits: ``Q4_K_M`` and ``Q5_K_M`` put ``attn_v`` and
  ``ffn_down`` of about half the layers (the first and last eighth, and every third in between) at
  Q6_K; the output matrix (or the token embeddings when the model ties them to the output) becomes
  Q6_K for every quantized target but Q8_0; and so on (``_mix_type``);
- a tensor whose rows are not a multiple of the type's block (256 values for K-quants, 32 for the
  others) falls back to a smaller block: Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, the 2- and
  3-bit K-quants to Q4_0, the IQ types to IQ4_NL, and anything to F16 when even 32 does not divide
  the rows. SmolLM2-135M (576 values a row) is such a model: its "Q4_K_M" is mostly Q5_0.

The output file is the source's header (with ``general.file_type`` set) followed by each tensor's
data padded to 32 bytes, so the estimate is exact but for the header's own padding (it may be up to
32 bytes over); the tests compare it with what llama.cpp really writes, and each tensor's predicted
type with the type in llama.cpp's output.

A checkpoint not yet converted is planned the same way from the conversion
``runtime.compress.convert.plan_conversion`` would write (``expected_sizes_for_checkpoint``,
``checkpoint_problems``); its header size is the converter's estimate.

``QUALITY_NOTES`` says in words what each type costs, with llama.cpp's published figures for
Llama-3-8B (until the Benchmark tab has measured the model at hand).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import QuantizeError
from runtime.models import gguf_info
from runtime.models.gguf_info import GGUFInfo, format_size

ALIGNMENT = 32  # llama.cpp pads each tensor's data in its output to GGUF_DEFAULT_ALIGNMENT

# Target name -> (llama_ftype number of llama.h, the ggml type most tensors get). The numbers are
# llama.h's LLAMA_FTYPE_* enum (stable across versions: removed types keep their gaps).
FTYPES: dict[str, tuple[int, str]] = {
    "F32": (0, "F32"), "F16": (1, "F16"), "BF16": (32, "BF16"),
    "Q8_0": (7, "Q8_0"), "Q6_K": (18, "Q6_K"),
    "Q5_K_M": (17, "Q5_K"), "Q5_K_S": (16, "Q5_K"), "Q5_1": (9, "Q5_1"), "Q5_0": (8, "Q5_0"),
    "Q4_K_M": (15, "Q4_K"), "Q4_K_S": (14, "Q4_K"), "Q4_1": (3, "Q4_1"), "Q4_0": (2, "Q4_0"),
    "IQ4_NL": (25, "IQ4_NL"), "IQ4_XS": (30, "IQ4_XS"),
    "Q3_K_L": (13, "Q3_K"), "Q3_K_M": (12, "Q3_K"), "Q3_K_S": (11, "Q3_K"),
    "IQ3_M": (27, "IQ3_S"), "IQ3_S": (26, "IQ3_S"), "IQ3_XS": (22, "IQ3_S"), "IQ3_XXS": (23, "IQ3_XXS"),
    "Q2_K": (10, "Q2_K"), "Q2_K_S": (21, "Q2_K"),
    "IQ2_M": (29, "IQ2_S"), "IQ2_S": (28, "IQ2_XS"), "IQ2_XS": (20, "IQ2_XS"), "IQ2_XXS": (19, "IQ2_XXS"),
    "IQ1_M": (31, "IQ1_M"), "IQ1_S": (24, "IQ1_S"),
    "TQ2_0": (37, "TQ2_0"), "TQ1_0": (36, "TQ1_0"), "MXFP4_MOE": (38, "MXFP4"),
}
# The names llama-quantize also accepts for a mix.
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "FP16": "F16", "FP32": "F32"}

UNQUANTIZED_TYPES = ("F32", "F16", "BF16")
# Where llama.cpp's quantizer stops without an importance matrix (some of their tensors get IQ1/IQ2/
# IQ3_XXS, or Q2_K inside Q2_K_S). A later issue adds importance matrices.
IMATRIX_TYPES = ("IQ3_XXS", "IQ3_XS", "Q2_K_S", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S")

# Fallbacks for rows that a type's block does not divide (see the module doc).
_FALLBACK = {
    **dict.fromkeys(("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS"), "IQ4_NL"),
    **dict.fromkeys(("Q2_K", "Q3_K", "TQ1_0", "TQ2_0"), "Q4_0"),
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}
# Architectures whose 80-layer (68 for jais2) grouped-query models llama.cpp calls "70B".
_70B_LAYERS = {"llama": 80, "deci": 80, "olmo": 80, "qwen2": 80, "jais2": 68}

# Parts of names that llama.cpp never quantizes (norms, routers, small special tensors).
_KEEP_SUBSTRINGS = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.",
    "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
    "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
    "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
)
_KEEP_NAMES = ("position_embd.weight", "token_types.weight")
_GLM5_NEXT_KEEP = ("hc_", "indexer.attn_q_b", "indexer.attn_k", "indexer.proj", "indexer_compressor_gate",
                   "indexer_compressor_ape", "ssm_f_a.weight", "ssm_f_b.weight", "ssm_g_a.weight",
                   "ssm_g_b.weight", "ssm_beta.weight", "attn_kv_a_mqa.weight", "attn_k_b.weight",
                   "attn_v_b.weight")


def normalize_type(name: str) -> str:
    """The canonical name of a target type ("q4_k_m" -> "Q4_K_M", "Q4_K" -> "Q4_K_M").

    Raises QuantizeError naming the known types when ``name`` is none of them.
    """
    key = str(name).strip().upper().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in FTYPES:
        raise QuantizeError(f"Unknown quantization type {name!r}.",
                            hint="Choose one of: " + ", ".join(FTYPES) + ".", qtype=str(name))
    return key


def ftype_number(qtype: str) -> int:
    """llama.cpp's LLAMA_FTYPE_* number for a target type."""
    return FTYPES[normalize_type(qtype)][0]


# --- quality ------------------------------------------------------------------------------------

QUALITY_SOURCE = ("llama.cpp's published figures for Llama-3-8B on wikitext-2, without an importance "
                  "matrix (tools/perplexity/README.md, \"LLaMA 3 8b Scoreboard\"; F16 perplexity 6.233)")
_BASE_PPL = 6.233160


@dataclass(frozen=True)
class QualityFigure:
    """llama.cpp's measurement of one type on Llama-3-8B against F16 (see ``QUALITY_SOURCE``)."""

    size_gib: float         # the 8B model's file size at this type
    delta_ppl: float        # perplexity increase over F16 (6.233)
    kld: float              # mean Kullback-Leibler divergence of the token distributions from F16's
    imatrix: bool = False   # measured with an importance matrix (no figure without one was published)

    @property
    def ppl_increase_pct(self) -> float:
        return 100.0 * self.delta_ppl / _BASE_PPL


# From the scoreboard's rows without an importance matrix, except where marked (only measured with
# one, "WT 10m"). BF16 is not in the scoreboard; F16's row measures only the 16-bit storage of the
# reference logits.
QUALITY_FIGURES: dict[str, QualityFigure] = {
    "F16": QualityFigure(14.97, 0.001524, 0.000551),
    "Q8_0": QualityFigure(7.96, 0.002650, 0.001355),
    "Q6_K": QualityFigure(6.14, 0.021748, 0.005452),
    "Q5_K_M": QualityFigure(5.33, 0.056974, 0.010762),
    "Q5_K_S": QualityFigure(5.21, 0.104964, 0.016595),
    "Q5_1": QualityFigure(5.65, 0.106223, 0.018045),
    "Q5_0": QualityFigure(5.21, 0.131591, 0.022239),
    "Q4_K_M": QualityFigure(4.58, 0.175482, 0.031273),
    "Q4_K_S": QualityFigure(4.37, 0.268895, 0.043136),
    "IQ4_NL": QualityFigure(4.35, 0.223959, 0.035742, imatrix=True),
    "IQ4_XS": QualityFigure(4.14, 0.228071, 0.036334, imatrix=True),
    "Q4_1": QualityFigure(4.78, 0.451103, 0.071683),
    "Q4_0": QualityFigure(4.34, 0.468514, 0.071940),
    "Q3_K_L": QualityFigure(4.03, 0.556242, 0.087176),
    "Q3_K_M": QualityFigure(3.74, 0.656864, 0.101913),
    "IQ3_M": QualityFigure(3.53, 0.666694, 0.102534, imatrix=True),
    "IQ3_S": QualityFigure(3.42, 0.733867, 0.111278, imatrix=True),
    "Q3_K_S": QualityFigure(3.41, 1.632152, 0.228217),
    "Q2_K": QualityFigure(2.96, 3.519934, 0.445132),
}

_VERDICTS = (  # (largest KLD, what it means for a person)
    (0.002, "practically the same as the original"),
    (0.012, "very close to the original"),
    (0.035, "a small loss"),
    (0.08, "a noticeable loss, fine for casual chat"),
    (0.15, "a clear loss: answers get sloppier"),
    (1e9, "a large loss: only when nothing bigger fits"),
)


_EXTRA_WORDS = {"Q8_0": ", at half the size of F16", "Q4_K_M": ": the usual choice for laptops",
                "Q4_0": "; Q4_K_M is better at about the same size"}


def _note(qtype: str, fig: QualityFigure) -> str:
    verdict = next(words for limit, words in _VERDICTS if fig.kld <= limit) + _EXTRA_WORDS.get(qtype, "")
    measured = " (measured with an importance matrix; expect somewhat worse without one)" if fig.imatrix else ""
    pct = fig.ppl_increase_pct
    pct_text = f"+{pct:.2f}%" if pct < 1 else f"+{pct:.1f}%"
    return (f"{qtype}: {verdict}. On Llama-3-8B, llama.cpp measured perplexity {_BASE_PPL + fig.delta_ppl:.2f} "
            f"against 6.23 for F16 ({pct_text}) and a mean KL divergence of {fig.kld:.4f}{measured}; the 8B "
            f"file is {fig.size_gib:.2f} GiB. This is llama.cpp's published figure, not a measurement of this model.")


QUALITY_NOTES: dict[str, str] = {t: _note(t, f) for t, f in QUALITY_FIGURES.items()}
QUALITY_NOTES["F16"] = ("F16: the same as the original for chat (half-precision storage of the weights). "
                        "On Llama-3-8B, llama.cpp measured a perplexity change of +0.0015 (6.23) and a mean "
                        "KL divergence of 0.0006 against its F16 reference.")
QUALITY_NOTES["BF16"] = ("BF16: the same as the original for chat (the format most checkpoints are trained in). "
                         "llama.cpp lists -0.0050 perplexity against F32 on Mistral-7B "
                         "(tools/quantize/quantize.cpp); no Llama-3-8B figure is published.")
QUALITY_NOTES["F32"] = "F32: the original precision; twice the size of F16 for no gain in chat."


def quality_note(qtype: str) -> str:
    """The plain-language note for a type ("" when llama.cpp published no figure for it)."""
    return QUALITY_NOTES.get(normalize_type(qtype), "")


# --- the source's tensors -------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceTensor:
    name: str
    dims: tuple[int, ...]      # GGUF order: innermost (the row length) first
    type_name: str             # ggml type, e.g. "F16", "Q4_1"
    n_bytes: int


@dataclass(frozen=True)
class SourceModel:
    """What planning needs from a GGUF: its header facts and tensors, in llama.cpp's order."""

    path: str
    info: GGUFInfo
    metadata: dict
    tensors: tuple[SourceTensor, ...]
    header_bytes: int          # where the tensor data starts

    @functools.cached_property
    def tied_embeddings(self) -> bool:
        """No output matrix: llama.cpp then treats the token embeddings as the output."""
        return not any(t.name == "output.weight" for t in self.tensors)

    @property
    def quantized_types(self) -> list[str]:
        """The quantized types its weight matrices hold (empty for an F32/F16/BF16 model)."""
        found = {t.type_name for t in self.tensors if _n_dims(t.dims) >= 2}
        return sorted(found - set(UNQUANTIZED_TYPES))


def _n_dims(dims: tuple[int, ...]) -> int:
    """Dimensions as ggml counts them: trailing 1s do not count."""
    n = len(dims)
    while n > 1 and dims[n - 1] == 1:
        n -= 1
    return max(n, 1)


def _layer_of(name: str) -> int:
    m = re.match(r"blk\.(\d+)\.", name)
    return int(m[1]) if m else -1


def read_source(path: str | os.PathLike) -> SourceModel:
    """Read a GGUF's header for planning; raises ModelFileError for a damaged file and QuantizeError
    for a split model (quantize its merged file)."""
    path = Path(os.path.abspath(path))  # not resolved: a Hugging Face cache link keeps its own name
    try:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        key = (str(path), -1, -1)  # read_gguf_info explains what is wrong with it
    return _read_source_cached(*key)


@functools.lru_cache(maxsize=16)
def _read_source_cached(path_text: str, size: int, mtime_ns: int) -> SourceModel:
    from gguf.constants import GGMLQuantizationType

    path = Path(path_text)
    # The header and its tensor list in one read (for the starter model the header takes 0.1 s to
    # read: twice would be a tenth of its quantization time).
    info, header = gguf_info.read_gguf_header(path)
    if info.split_count > 1:
        raise QuantizeError(
            f"{path.name} is one part of a model split into {info.split_count} files.",
            hint="Merge the parts into one file first (llama.cpp's `llama-gguf-split --merge`), then quantize that.",
            path=path)
    tensors = [SourceTensor(t.name, tuple(t.dims), GGMLQuantizationType(t.ggml_type).name, t.n_bytes)
               for t in header.tensors]
    tensors.sort(key=lambda t: (_layer_of(t.name), t.name))  # llama.cpp's order (its weights map)
    return SourceModel(str(path), info, header.metadata, tuple(tensors), header.data_start)


# --- llama.cpp's choice per tensor ---------------------------------------------------------------

def _block(type_name: str) -> tuple[int, int]:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    return GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]


def tensor_bytes(type_name: str, dims: tuple[int, ...]) -> int:
    """Bytes of a tensor of this shape stored as ``type_name`` (rows must be whole blocks)."""
    block, size = _block(type_name)
    n = 1
    for d in dims:
        n *= d
    return n // block * size


def _allows_quantization(name: str, dims: tuple[int, ...], arch: str) -> bool:
    if _n_dims(dims) < 2 or not name.endswith("weight"):
        return False
    if name in _KEEP_NAMES or any(part in name for part in _KEEP_SUBSTRINGS):
        return False
    if arch == "glm5-next" and any(part in name for part in _GLM5_NEXT_KEEP):
        return False
    return True


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for part, cat in (("attn_qkv.weight", "attn_v"), ("attn_kv_b.weight", "attn_v"), ("attn_v.weight", "attn_v"),
                      ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"),
                      ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"),
                      ("ffn_down", "ffn_down")):
        if part in name:
            return cat  # attn_qkv and attn_kv_b are treated like attn_v by the mixes
    return "other"


def _more_bits(i: int, n: int) -> bool:
    """The layers the K-quant mixes give more bits: the first and last eighth and every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@dataclass
class _MixState:
    """Counters llama.cpp keeps while it walks the tensors in order."""

    arch: str
    n_layer: int
    n_gqa: int
    n_expert: int
    is_70b: bool
    tied_embeddings: bool
    n_attn_v: int
    i_attn_v: int = 0
    i_ffn_down: int = 0
    i_ffn_gate: int = 0
    i_ffn_up: int = 0

    def layer(self, counter: int, name: str) -> int:
        if self.n_expert > 1:  # experts' tensors are not in layer order: the name says the layer
            return _layer_of(name)
        return counter


def _first_int(value) -> int:
    if isinstance(value, list):
        value = value[0] if value else 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _mix_state(src: SourceModel) -> _MixState:
    meta, arch = src.metadata, src.info.architecture
    n_layer = _first_int(meta.get(f"{arch}.block_count")) or (src.info.block_count or 0)
    n_head = _first_int(meta.get(f"{arch}.attention.head_count"))
    n_head_kv = _first_int(meta.get(f"{arch}.attention.head_count_kv")) or n_head
    names = [t.name for t in src.tensors]
    return _MixState(
        arch=arch, n_layer=n_layer, n_gqa=n_head // n_head_kv if n_head_kv else 0,
        n_expert=_first_int(meta.get(f"{arch}.expert_count")),
        is_70b=_70B_LAYERS.get(arch) == n_layer and (arch != "llama" or n_head != n_head_kv),
        tied_embeddings=src.tied_embeddings,
        n_attn_v=sum(1 for n in names if _category(n) == "attn_v"),
    )


def _mix_type(s: _MixState, qtype: str, new: str, name: str, dims: tuple[int, ...], cat: str) -> str:
    """The type the mix ``qtype`` gives this tensor before any shape fallback."""
    iq_low = qtype in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")
    iq2s = qtype in ("IQ2_S", "IQ2_M")
    if cat == "output" or (s.tied_embeddings and cat == "token_embd"):
        if qtype == "MXFP4_MOE" or s.arch == "falcon" or dims[0] % _block(new)[0]:
            return "Q8_0"
        if iq_low or qtype == "IQ3_XXS":
            return "Q5_K"
        return new if new == "Q8_0" else "Q6_K"
    if qtype == "MXFP4_MOE":
        experts = len(dims) > 2 and dims[2] > 1
        if s.arch == "bailingmoe3":
            experts = experts and cat in ("ffn_up", "ffn_gate", "ffn_down")
        return "MXFP4" if experts else "Q8_0"
    if cat == "token_embd":
        if qtype in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if qtype in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        if qtype in ("TQ1_0", "TQ2_0"):
            return "Q4_K"
        return new
    if iq_low:
        if cat == "attn_v":
            s.i_attn_v += 1
            if s.n_gqa >= 4 or s.n_expert >= 4:
                return "Q4_K"
            return "IQ3_S" if iq2s else "Q2_K"
        if s.n_expert == 8 and cat == "attn_k":
            return "Q4_K"
        if cat == "ffn_down":
            i, s.i_ffn_down = s.i_ffn_down, s.i_ffn_down + 1
            if i < s.n_layer // 8:
                return "IQ3_S" if iq2s else "Q2_K"
            return new
        if cat == "attn_output":
            if s.n_expert == 8:
                return "Q5_K"
            if qtype in ("IQ1_S", "IQ1_M"):
                return "IQ2_XXS"
            return "IQ3_S" if iq2s else new
        return new
    if cat == "attn_v":
        i, n = s.i_attn_v, s.n_attn_v
        s.i_attn_v += 1
        gqa4 = s.n_gqa >= 4
        if qtype == "Q2_K":
            new = "Q4_K" if gqa4 else "Q3_K"
        elif qtype == "Q2_K_S" and gqa4:
            new = "Q4_K"
        elif qtype == "IQ3_XXS":
            new = "Q4_K" if gqa4 else "IQ3_S"  # IQ3_XXS itself only with an importance matrix
        elif qtype in ("IQ3_XS", "IQ3_S") and gqa4:
            new = "Q4_K"
        elif qtype == "IQ3_M":
            new = "Q4_K"
        elif qtype == "Q3_K_M":
            new = "Q5_K" if i < 2 else "Q4_K"
        elif qtype == "Q3_K_L":
            new = "Q5_K"
        elif qtype in ("IQ4_NL", "IQ4_XS") and gqa4:
            new = "Q5_K"
        elif qtype in ("Q4_K_M", "Q5_K_M") and _more_bits(i, n):
            new = "Q6_K"
        elif qtype == "Q4_K_S" and i < 4:
            new = "Q5_K"
        if s.is_70b and new in ("Q3_K", "Q4_K"):
            new = "Q5_K"
        if s.n_expert == 8:
            new = "Q8_0"
        return new
    if cat == "attn_k":
        if s.n_expert == 8:
            return "Q8_0"
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(qtype, new)
    if cat == "attn_q":
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(qtype, new)
    if cat == "ffn_down":
        i, n = s.layer(s.i_ffn_down, name), s.n_layer
        s.i_ffn_down += 1
        falcon = s.arch == "falcon"
        if qtype == "Q2_K":
            return "Q3_K"
        if qtype == "Q2_K_S":
            return "Q4_K" if i < n // 8 else new
        if qtype == "IQ3_XXS":
            return "Q4_K" if i < n // 8 else "Q3_K"
        if qtype == "Q3_K_M":
            if i < n // 16:
                return "Q5_K"
            return "Q4_K" if not falcon or _more_bits(i, n) else "Q3_K"
        if qtype == "IQ3_M" and (i < n // 8 or (s.n_expert == 8 and _more_bits(i, n))):
            return "Q4_K"
        if qtype == "Q3_K_L":
            return "Q4_K" if falcon else "Q5_K"
        if qtype == "Q4_K_M":
            if falcon:
                return "Q6_K" if i < n // 16 else "Q5_K" if _more_bits(i, n) else "Q4_K"
            return "Q6_K" if _more_bits(i, n) else new
        if i < n // 8 and qtype in ("IQ4_NL", "IQ4_XS"):
            return "Q5_K"
        if qtype == "Q5_K_M" and _more_bits(i, n):
            return "Q6_K"
        if qtype == "Q4_K_S" and not falcon and i < n // 8:
            return "Q5_K"
        return new
    if cat == "attn_output":
        if s.arch == "falcon":
            return "Q4_K" if qtype == "Q3_K_L" else new
        if s.n_expert == 8:
            bumped = ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M",
                      "IQ3_S", "IQ3_M", "IQ4_XS")
            return "Q5_K" if qtype in bumped else new
        return {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K",
                "IQ3_M": "Q4_K"}.get(qtype, new)
    if cat in ("ffn_gate", "ffn_up"):
        attr = f"i_{cat}"
        i = s.layer(getattr(s, attr), name)
        setattr(s, attr, getattr(s, attr) + 1)
        if qtype == "IQ3_XS" and s.n_layer // 8 <= i < 7 * s.n_layer // 8:
            return "IQ3_XXS"
        return new
    return new


def _fallback(wanted: str, row: int) -> str:
    """The type llama.cpp stores a tensor in when ``wanted``'s block does not divide its rows."""
    if row % _block(wanted)[0] == 0:
        return wanted
    if wanted in _FALLBACK:
        other = _FALLBACK[wanted]
    elif _block(wanted)[0] <= 32:
        other = wanted
    else:
        raise QuantizeError(f"llama.cpp has no replacement for {wanted} on rows of {row} values.")
    return other if row % _block(other)[0] == 0 else "F16"


# --- plans -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorPlan:
    """One tensor of the output: its type, and the type the mix wanted when the shape forced another."""

    name: str
    dims: tuple[int, ...]
    source_type: str
    target_type: str
    n_bytes: int
    quantized: bool            # a weight matrix llama.cpp quantizes (else copied as it is)
    wanted_type: str | None    # set when the rows did not fit the wanted type's block


@dataclass
class TargetPlan:
    """What quantizing ``source`` to ``qtype`` will write."""

    qtype: str
    source: SourceModel
    tensors: list[TensorPlan]
    header_bytes: int

    @property
    def expected_bytes(self) -> int:
        """The output file's size: header, then each tensor padded to 32 bytes."""
        pad = lambda n: -(-n // ALIGNMENT) * ALIGNMENT  # noqa: E731
        return self.header_bytes + sum(pad(t.n_bytes) for t in self.tensors)

    @property
    def fallbacks(self) -> list[TensorPlan]:
        """Every tensor the shapes forced off the type llama.cpp wanted for it."""
        return [t for t in self.tensors if t.wanted_type is not None]

    @property
    def notable_fallbacks(self) -> list[TensorPlan]:
        """The fallbacks that change what the target is. Not counted: the output matrix (or tied token
        embeddings) that llama.cpp had already moved to more bits than the target (Q6_K for Q4_0,
        say) and that then lands on Q8_0: it is never worse than the target there."""
        return [t for t in self.fallbacks if not _output_rule(self.source, t.name)]

    def type_counts(self) -> dict[str, int]:
        """How many tensors of each type the output holds."""
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.target_type] = counts.get(t.target_type, 0) + 1
        return counts

    def _body(self) -> list[TensorPlan]:
        """The quantized tensors other than the output matrix (and tied token embeddings)."""
        return [t for t in self.tensors if t.quantized and not _output_rule(self.source, t.name)]

    @property
    def refused(self) -> bool:
        """True when every weight matrix falls back: the result would not be this type at all."""
        body = self._body()
        return bool(body) and all(t.wanted_type is not None for t in body)

    @property
    def problem(self) -> str | None:
        """In words: what the shapes do to this target (None when every tensor takes its type)."""
        fallbacks = self.notable_fallbacks
        if not fallbacks:
            return None
        rows = sorted({t.dims[0] for t in fallbacks})
        rows_text = ", ".join(str(r) for r in rows[:4]) + (" ..." if len(rows) > 4 else "")
        wanted = sorted({t.wanted_type for t in fallbacks})
        blocks = sorted({_block(w)[0] for w in wanted})
        became = sorted({t.target_type for t in fallbacks})
        model = Path(self.source.path).name
        if self.refused:
            better = [t for t in ("Q8_0", "Q5_0", "Q4_0") if t != self.qtype
                      and not plan_from_source(self.source, t).notable_fallbacks]
            hint = f" Choose {' or '.join(better)} instead." if better else ""
            return (f"{self.qtype} cannot be made from {model}: its weight matrices have rows of "
                    f"{rows_text} values, not a multiple of {'/'.join(map(str, blocks))} as "
                    f"{'/'.join(wanted)} needs, so llama.cpp would store every one of them as "
                    f"{'/'.join(became)} instead.{hint}")
        quantized = self._body()
        elements = lambda ts: sum(_count(t.dims) for t in ts)  # noqa: E731
        share = elements(fallbacks) / max(1, elements(quantized))
        return (f"{len(fallbacks)} of {len(quantized)} weight matrices ({share:.0%} of the weights) have rows "
                f"of {rows_text} values, not a multiple of {'/'.join(map(str, blocks))} as "
                f"{'/'.join(wanted)} needs: llama.cpp stores them as {'/'.join(became)} instead, so this "
                f"{self.qtype} file will be {format_size(self.expected_bytes)}, larger than the name suggests.")


def _output_rule(src: SourceModel, name: str) -> bool:
    """Whether llama.cpp treats this tensor as the output matrix (its own type rule applies)."""
    return name == "output.weight" or (name in ("token_embd.weight", "per_layer_token_embd.weight")
                                       and src.tied_embeddings)


def _count(dims: tuple[int, ...]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def plan_from_source(src: SourceModel, qtype: str) -> TargetPlan:
    """The output of quantizing ``src`` to ``qtype``, tensor by tensor (see the module doc)."""
    qtype = normalize_type(qtype)
    default = FTYPES[qtype][1]
    quantizing = default not in UNQUANTIZED_TYPES
    state = _mix_state(src)
    arch = src.info.architecture
    out: list[TensorPlan] = []
    for t in src.tensors:
        if not _allows_quantization(t.name, t.dims, arch):
            out.append(TensorPlan(t.name, t.dims, t.type_name, t.type_name, t.n_bytes, False, None))
            continue
        wanted = _mix_type(state, qtype, default, t.name, t.dims, _category(t.name)) if quantizing else default
        stored = _fallback(wanted, t.dims[0]) if quantizing else wanted
        n_bytes = t.n_bytes if stored == t.type_name else tensor_bytes(stored, t.dims)
        out.append(TensorPlan(t.name, t.dims, t.type_name, stored, n_bytes, True,
                              wanted if stored != wanted else None))
    return TargetPlan(qtype, src, out, _header_bytes(src))


def _header_bytes(src: SourceModel) -> int:
    """The output header: the source's, plus the two keys llama.cpp adds when they are missing.

    The source's header ends somewhere in its last 32 bytes before the data, so this may be up to 32
    bytes more than llama.cpp's header, never less.
    """
    extra = 0
    for key in ("general.file_type", "general.quantization_version"):
        if key not in src.metadata:
            extra += 8 + len(key) + 4 + 4  # key length, key, value type, u32 value
    for key in ("split.no", "split.count", "split.tensors.count"):
        if key in src.metadata:
            extra -= 8 + len(key) + 4 + 4
    raw = src.header_bytes + extra
    return -(-raw // ALIGNMENT) * ALIGNMENT


def plan_quantization(gguf_path: str | os.PathLike, qtype: str) -> TargetPlan:
    """The output of quantizing the GGUF at ``gguf_path`` to ``qtype``, tensor by tensor."""
    return plan_from_source(read_source(gguf_path), qtype)


def expected_sizes(gguf_path: str | os.PathLike, types) -> dict[str, int]:
    """Expected output size in bytes for each target type (keys as given, normalized: "Q4_K_M")."""
    src = read_source(gguf_path)
    return {normalize_type(t): plan_from_source(src, t).expected_bytes for t in types}


def target_problems(gguf_path: str | os.PathLike, types) -> dict[str, str]:
    """For each target whose shapes do not all fit its blocks: what llama.cpp will do, in words.

    A target missing from the result takes its type everywhere. ``TargetPlan.refused`` (the message
    then starts "... cannot be made") is a target that would not be that type at all: quantize_gguf
    refuses it.
    """
    src = read_source(gguf_path)
    found = {}
    for t in types:
        plan = plan_from_source(src, t)
        if plan.problem:
            found[plan.qtype] = plan.problem
    return found


def target_fits(gguf_path: str | os.PathLike, types, n_ctx: int = 0, *, available_bytes: int | None = None,
                gpus=None) -> dict:
    """Whether each target's result will fit this machine for chat: ``{type: FitVerdict}``.

    Judged as ``runtime.models.hardware.check_fit`` judges a model on disk, with the expected size;
    ``n_ctx`` 0 means the app's default context.
    """
    from runtime.models.hardware import check_fit

    src = read_source(gguf_path)
    verdicts = {}
    for t in types:
        plan = plan_from_source(src, t)
        info = dataclasses.replace(src.info, size_bytes=plan.expected_bytes, file_type=plan.qtype)
        verdicts[plan.qtype] = check_fit(info, n_ctx, available_bytes, gpus=gpus)
    return verdicts


# --- a checkpoint not converted yet ------------------------------------------------------------

def source_from_tensors(path: str, info: GGUFInfo, metadata: dict, tensors, header_bytes: int) -> SourceModel:
    """A SourceModel for a GGUF that does not exist yet (e.g. a planned conversion); ``tensors``
    (SourceTensor, GGUF dimension order) are put in llama.cpp's order. ``metadata`` needs at least
    ``{arch}.block_count``, ``{arch}.attention.head_count`` and ``head_count_kv``."""
    ordered = sorted(tensors, key=lambda t: (_layer_of(t.name), t.name))
    return SourceModel(str(path), info, dict(metadata), tuple(ordered), int(header_bytes))


def checkpoint_source(folder: str | os.PathLike, via: str | None = None) -> SourceModel:
    """The GGUF that ``runtime.compress.convert`` would write from a Hugging Face checkpoint, as a
    SourceModel to plan quantizations of (no file is written).

    ``via``: the conversion's type ("f16", "bf16", "f32"); default BF16 for a bfloat16 checkpoint,
    else F16. Raises ConversionError when the checkpoint cannot be converted.
    """
    from runtime.compress.convert import plan_conversion
    from runtime.compress.checkpoint import inspect_checkpoint
    from runtime.models.hardware import info_from_config

    if via is None:
        dtype = str(inspect_checkpoint(folder).dtype).lower()
        via = "bf16" if dtype in ("bf16", "bfloat16") else "f16"
    plan = plan_conversion(folder, via)
    arch, hp = plan.gguf_arch, plan.hyper
    tensors = [SourceTensor(t.name, tuple(reversed(t.shape)), t.ggml_type, t.nbytes) for t in plan.tensors]
    info = info_from_config(plan.config, plan.expected_bytes, name=Path(folder).name, file_type=via.upper(),
                            parameter_count=sum(_count(t.dims) for t in tensors))
    info = dataclasses.replace(info, architecture=arch, path=str(folder), tensor_count=len(tensors))
    metadata = {f"{arch}.block_count": hp.block_count, f"{arch}.attention.head_count": hp.head_count,
                f"{arch}.attention.head_count_kv": hp.head_count_kv}
    experts = plan.config.get("num_local_experts") or plan.config.get("num_experts")
    if isinstance(experts, int) and experts > 0:
        metadata[f"{arch}.expert_count"] = experts
    header = max(0, plan.expected_bytes - plan.tensor_bytes)
    return source_from_tensors(str(folder), info, metadata, tensors, header)


def expected_sizes_for_checkpoint(folder: str | os.PathLike, types, via: str | None = None) -> dict[str, int]:
    """``expected_sizes`` for a checkpoint: converted (``via``, see ``checkpoint_source``), then
    quantized. The conversion's header is itself an estimate (a few KiB either way)."""
    src = checkpoint_source(folder, via)
    return {normalize_type(t): plan_from_source(src, t).expected_bytes for t in types}


def checkpoint_problems(folder: str | os.PathLike, types, via: str | None = None) -> dict[str, str]:
    """``target_problems`` for a checkpoint (see ``expected_sizes_for_checkpoint``)."""
    src = checkpoint_source(folder, via)
    found = {}
    for t in types:
        plan = plan_from_source(src, t)
        if plan.problem:
            found[plan.qtype] = plan.problem
    return found
