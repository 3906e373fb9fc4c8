"""Quantization types as file names state them, and how good each is (one table for the whole app)."""
from __future__ import annotations

import re

# Quantization names as llama.cpp's tools write them into file names, best quality first. The rank
# is how good the result is (higher is better); file size breaks ties within a repo.
QUANT_RANKS = {
    "F32": 100, "F16": 90, "BF16": 90,
    "Q8_0": 80, "Q6_K_L": 71, "Q6_K": 70, "Q5_K_L": 66, "Q5_K_M": 65, "Q5_1": 64, "Q5_K_S": 63, "Q5_0": 62,
    "Q4_K_L": 57, "Q4_K_M": 56, "Q4_1": 55, "Q4_K_S": 54, "IQ4_NL": 53, "IQ4_XS": 52, "Q4_0": 51, "MXFP4": 51,
    "Q3_K_XL": 45, "Q3_K_L": 44, "Q3_K_M": 43, "IQ3_M": 42, "IQ3_S": 41, "Q3_K_S": 40, "IQ3_XS": 39,
    "IQ3_XXS": 38, "Q2_K_L": 31, "Q2_K": 30, "IQ2_M": 29, "Q2_K_S": 28, "IQ2_S": 27, "IQ2_XS": 26,
    "IQ2_XXS": 25, "IQ1_M": 15, "IQ1_S": 14, "TQ2_0": 12, "TQ1_0": 11,
}
UNQUANTIZED = ("F32", "F16", "BF16")
# ARM repacks of Q4_0 that llama.cpp no longer loads (it repacks Q4_0 itself at load time now).
RETIRED_QUANTS = ("Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8")
# Ternary types for BitNet-style models only.
SPECIAL_QUANTS = ("TQ1_0", "TQ2_0")

_QUANT_RE = re.compile(
    r"(?<![A-Z0-9])("
    r"IQ[1-4]_(?:XXS|XS|NL|S|M)"
    r"|Q[2-8]_K(?:_(?:XXS|XS|XL|S|M|L))?"
    r"|Q4_0_[48]_[48]"
    r"|Q[4-8]_[01]"
    r"|TQ[12]_0|MXFP4(?:_MOE)?|BF16|FP16|F16|FP32|F32"
    r")(?![A-Z0-9])"
)

_SPLIT_RE = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


def quant_from_name(filename: str) -> str | None:
    """The quantization a GGUF file name states ("Q4_K_M", "F16", "IQ4_XS", ...), or None.

    Case and separators do not matter (``qwen2.5-0.5b-instruct-q4_k_m.gguf``, ``model.Q8_0.gguf``,
    ``Model-UD-Q4_K_XL.gguf``); ``FP16``/``FP32`` read as ``F16``/``F32``. The last match wins, so a
    model name that happens to contain a type (``...-F16-Q4_K_M.gguf``) gives the file's own.
    """
    stem = filename.rsplit("/", 1)[-1]
    split = _SPLIT_RE.match(stem)
    stem = split["base"] if split else re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE)
    found = _QUANT_RE.findall(stem.upper())
    if not found:
        return None
    quant = found[-1]
    return {"FP16": "F16", "FP32": "F32", "MXFP4_MOE": "MXFP4"}.get(quant, quant)


def quant_rank(quant: str | None) -> int:
    """How good a quantization is, higher is better (0: unknown); any case."""
    return QUANT_RANKS.get((quant or "").upper(), 0)
