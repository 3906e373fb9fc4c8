"""A checkpoint's tokenizer as GGUF arrays: tokens, scores, token types, merges, special tokens.

Two kinds, chosen as llama.cpp's converter chooses them:

- **SentencePiece** (``tokenizer.model``): tokenizer model "llama". The pieces, scores and types are
  read from the model file itself (a small protobuf, decoded here, so the app needs no sentencepiece
  package); added tokens come from ``added_tokens.json`` and ``tokenizer_config.json``'s
  ``added_tokens_decoder`` (or, for checkpoints saved by transformers 5, which no longer writes that,
  from ``tokenizer.json``'s ``added_tokens``).
- **Byte-level BPE** (``tokenizer.json``): tokenizer model "gpt2", tokens by id, added tokens typed
  CONTROL (special) or USER_DEFINED, merges. llama.cpp also needs the *pre-tokenizer* by name
  (``tokenizer.ggml.pre``): it is recognised here from the pre-tokenizer that tokenizer.json declares
  (its split regexes, digit splitting and byte-level step), matched against the ones llama.cpp
  implements. An unknown one is refused, since a wrong guess tokenizes text differently.

Special token ids, the add-BOS/EOS flags, merges and the chat template (tokenizer_config.json or
chat_template.jinja) come from the ``gguf`` package's ``SpecialVocab``.
"""
from __future__ import annotations

import contextlib
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

from runtime.compress.checkpoint import read_json
from runtime.errors import ConversionError

# GGUF token types (llama.cpp's llama_token_type; the same numbers as SentencePiece's piece types).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Pre-tokenizers llama.cpp implements, as tokenizer.json declares them -> llama.cpp's name.
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
KNOWN_PRE_TOKENIZERS = {
    (("split", QWEN2_REGEX), ("byte_level", False)): "qwen2",
    (("split", LLAMA3_REGEX), ("byte_level", False)): "llama-bpe",
    (("byte_level", True),): "gpt-2",
    (("split", GPT2_REGEX), ("byte_level", False)): "gpt-2",
    (("digits", True), ("byte_level", True)): "smollm",
}
# Tokens some models ship as added-but-not-special that llama.cpp's converter still types CONTROL.
_LOOKS_SPECIAL = ("<pad>", "<mask>", "<2mass>", "[@BOS@]")


@dataclass
class GGUFVocab:
    """What a tokenizer writes into a GGUF header."""

    model: str                       # "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    pre: str                         # llama.cpp's pre-tokenizer name ("default" for SentencePiece)
    tokens: list[bytes]
    types: list[int]
    scores: list[float] | None       # SentencePiece only
    special: object                  # gguf.SpecialVocab: merges, special ids, add flags, chat template
    add_space_prefix: bool | None = None

    def add_to(self, writer) -> None:
        writer.add_tokenizer_model(self.model)
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        writer.add_token_types(self.types)
        with quiet_gguf_logs():
            self.special.add_to_gguf(writer, quiet=True)


def looks_special(text: str) -> bool:
    """Added tokens that are control tokens in practice even when not marked special (llama.cpp's rule)."""
    return (text in _LOOKS_SPECIAL or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<｜") and text.endswith("｜>"))
            or (text.startswith("<unused") and text.endswith(">")))


def load_vocab(folder: Path, config: dict, gguf_arch: str) -> GGUFVocab:
    """The GGUF vocabulary of the checkpoint in ``folder``; ConversionError when it cannot be made."""
    folder = Path(folder)
    tokenizer_config = _tokenizer_config(folder)
    vocab_size = config.get("vocab_size") if isinstance(config.get("vocab_size"), int) else None
    if gguf_arch == "phi3" and tokenizer_config.get("tokenizer_class") == "GPT2Tokenizer":
        return _bpe_vocab(folder, vocab_size, tokenizer_config)
    if (folder / "tokenizer.model").is_file():
        vocab = _sentencepiece_vocab(folder, vocab_size, tokenizer_config, phi3_rules=gguf_arch == "phi3")
    elif gguf_arch == "phi3":
        raise ConversionError("This Phi-3 checkpoint has no tokenizer.model", path=folder,
                              hint="Download the model's tokenizer.model too.")
    elif (folder / "tokenizer.json").is_file():
        tokenizer_json = _tokenizer_json(folder)
        if _is_sentencepiece_like(tokenizer_json) and gguf_arch == "llama":
            vocab = _llama_hf_vocab(folder)
        else:
            vocab = _bpe_vocab(folder, vocab_size, tokenizer_config, tokenizer_json)
    else:
        raise ConversionError(f"{folder.name} has no tokenizer (tokenizer.model or tokenizer.json)", path=folder,
                              hint="Download the model's tokenizer files too (tokenizer.json, tokenizer_config.json).")
    if gguf_arch == "llama":
        prefix = tokenizer_config.get("add_prefix_space")
        vocab.add_space_prefix = prefix if isinstance(prefix, bool) else None
        if vocab_size == 49152:  # llama.cpp's converter turns BOS off for every 49152-token Llama (SmolLM, Granite)
            vocab.special.add_special_token["bos"] = False
    return vocab


def _tokenizer_config(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return {}
    data = read_json(path, "a tokenizer config")
    return data if isinstance(data, dict) else {}


def _tokenizer_json(folder: Path) -> dict:
    data = read_json(folder / "tokenizer.json", "a tokenizer")
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ConversionError("tokenizer.json is damaged: it has no tokenizer model", path=folder / "tokenizer.json",
                              hint="Download tokenizer.json of the model again.")
    return data


@contextlib.contextmanager
def quiet_gguf_logs():
    """The gguf package logs its heuristics' doubts as warnings; keep them off the user's terminal."""
    logger = logging.getLogger("gguf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _special_vocab(folder: Path, **kwargs):
    import gguf

    try:
        with quiet_gguf_logs():
            return gguf.SpecialVocab(folder, **kwargs)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConversionError(f"The tokenizer files are damaged: {exc}", path=folder,
                              hint="Download the model's tokenizer files again.") from None


# --- SentencePiece -------------------------------------------------------------------------------

def read_sentencepiece_model(path: Path) -> list[tuple[str, float, int]]:
    """(piece, score, type) of every piece of a SentencePiece ``tokenizer.model``, in id order.

    The file is a protobuf ModelProto: field 1 repeats SentencePiece messages of piece (1, string),
    score (2, float) and type (3, enum, NORMAL=1 when absent). Other fields are skipped.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConversionError(f"{path.name} cannot be read: {exc.strerror or exc}", path=path) from None
    pieces = []
    try:
        for field, wire, value in _protobuf_fields(data):
            if field == 1 and wire == 2:
                piece, score, kind = "", 0.0, NORMAL
                for f, w, v in _protobuf_fields(value):
                    if f == 1 and w == 2:
                        piece = v.decode("utf-8")
                    elif f == 2 and w == 5:
                        score = struct.unpack("<f", v)[0]
                    elif f == 3 and w == 0:
                        kind = v
                pieces.append((piece, score, kind))
    except (ValueError, IndexError, UnicodeDecodeError, struct.error):
        raise ConversionError(f"{path.name} is damaged: it is not a SentencePiece model", path=path,
                              hint="Download tokenizer.model of the model again.") from None
    if not pieces:
        raise ConversionError(f"{path.name} holds no tokens: it is not a SentencePiece model", path=path,
                              hint="Download tokenizer.model of the model again.")
    return pieces


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _protobuf_fields(data: bytes):
    """(field number, wire type, value) of each field: an int, 4/8 raw bytes, or a bytes payload."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("truncated field")
        yield field, wire, value


def _sentencepiece_vocab(folder: Path, vocab_size: int | None, tokenizer_config: dict,
                         phi3_rules: bool = False) -> GGUFVocab:
    pieces = read_sentencepiece_model(folder / "tokenizer.model")
    n = vocab_size or len(pieces)
    tokens = [f"[PAD{i}]".encode() for i in range(n)]
    scores = [-10000.0] * n
    types = [UNUSED] * n
    for i, (piece, score, kind) in enumerate(pieces[:n]):
        tokens[i], scores[i] = piece.encode("utf-8"), score
        # llama.cpp keeps USER_DEFINED pieces of the model file as NORMAL tokens.
        types[i] = kind if kind in (UNKNOWN, CONTROL, UNUSED, BYTE) else NORMAL

    added_json = folder / "added_tokens.json"
    if added_json.is_file():
        added = read_json(added_json, "a list of added tokens")
        for text, token_id in (added.items() if isinstance(added, dict) else ()):
            if isinstance(token_id, int) and 0 <= token_id < n:
                tokens[token_id], scores[token_id], types[token_id] = text.encode("utf-8"), -1000.0, USER_DEFINED

    decoder = tokenizer_config.get("added_tokens_decoder")
    entries: list[tuple[int, dict]] = []
    if isinstance(decoder, dict):
        entries = [(int(k), v) for k, v in decoder.items() if str(k).isdigit() and isinstance(v, dict)]
    if phi3_rules or not isinstance(decoder, dict):
        # transformers 5 no longer writes added_tokens_decoder; Phi-3's converter reads both.
        if (folder / "tokenizer.json").is_file():
            added = _tokenizer_json(folder).get("added_tokens") or []
            entries += [(int(e["id"]), e) for e in added if isinstance(e, dict) and isinstance(e.get("id"), int)]
    for token_id, entry in entries:
        text = entry.get("content")
        if not isinstance(text, str) or not 0 <= token_id < n:
            continue
        if phi3_rules:
            kind = CONTROL if entry.get("special") else USER_DEFINED
        elif entry.get("special") or looks_special(text):
            kind = CONTROL
        else:
            kind, text = USER_DEFINED, text.replace("\u2581", " ")
        tokens[token_id], scores[token_id], types[token_id] = text.encode("utf-8"), -1000.0, kind
    return GGUFVocab("llama", "default", tokens, types, scores, _special_vocab(folder, n_vocab=len(tokens)))


def _is_sentencepiece_like(tokenizer_json: dict) -> bool:
    model = tokenizer_json.get("model", {})
    decoder = tokenizer_json.get("decoder") or {}
    return model.get("type") == "BPE" and bool(model.get("byte_fallback")) and decoder.get("type") == "Sequence"


def _llama_hf_vocab(folder: Path) -> GGUFVocab:
    """A SentencePiece-style tokenizer.json without tokenizer.model, through gguf's LlamaHfVocab."""
    import gguf

    try:
        vocab = gguf.LlamaHfVocab(folder)
    except ImportError:
        raise ConversionError("This checkpoint's tokenizer (a SentencePiece-style tokenizer.json without "
                              "tokenizer.model) needs the transformers package to convert", path=folder,
                              hint="Install transformers (pip install transformers), or download the model's "
                                   "tokenizer.model too.") from None
    tokens, scores, types = [], [], []
    for text, score, kind in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(int(kind))
    return GGUFVocab("llama", "default", tokens, types, scores, _special_vocab(folder, n_vocab=len(tokens)))


# --- byte-level BPE ------------------------------------------------------------------------------

def pre_tokenizer_name(tokenizer_json: dict, tokenizer_config: dict | None = None) -> str:
    """llama.cpp's name for the pre-tokenizer a tokenizer.json declares; ConversionError if unknown."""
    signature = pre_tokenizer_signature(tokenizer_json.get("pre_tokenizer"))
    name = KNOWN_PRE_TOKENIZERS.get(signature)
    if name is None:
        described = ", ".join(":".join(str(p) for p in part) for part in signature) or "none"
        raise ConversionError(
            f"This tokenizer splits text in a way this converter does not know ({described[:300]}), so "
            "llama.cpp could not be told how to tokenize like it", path=None,
            hint="Convert this model with llama.cpp's own convert_hf_to_gguf.py, or look for a GGUF of it.")
    bos = (tokenizer_config or {}).get("bos_token")
    bos = bos.get("content") if isinstance(bos, dict) else bos
    if name == "qwen2" and bos == "<｜begin▁of▁sentence｜>":
        return "deepseek-r1-qwen"  # llama.cpp's name for the same pre-tokenizer with DeepSeek's tokens
    return name


def pre_tokenizer_signature(pre) -> tuple:
    """The steps of a tokenizer.json pre_tokenizer: ("split", regex), ("byte_level", use_regex), ..."""
    if not isinstance(pre, dict):
        return ()
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    signature = []
    for step in steps if isinstance(steps, list) else ():
        kind = step.get("type") if isinstance(step, dict) else None
        if kind == "Split":
            pattern = step.get("pattern") or {}
            regex = pattern.get("Regex")
            if regex is None and isinstance(pattern.get("String"), str):
                regex = "string:" + pattern["String"]
            signature.append(("split", regex))
        elif kind == "ByteLevel":
            signature.append(("byte_level", bool(step.get("use_regex", True))))
        elif kind == "Digits":
            signature.append(("digits", bool(step.get("individual_digits", False))))
        else:
            signature.append((str(kind),))
    return tuple(signature)


def _bpe_vocab(folder: Path, vocab_size: int | None, tokenizer_config: dict,
               tokenizer_json: dict | None = None) -> GGUFVocab:
    if tokenizer_json is None:
        if not (folder / "tokenizer.json").is_file():
            raise ConversionError(f"{folder.name} has no tokenizer.json", path=folder,
                                  hint="Download the model's tokenizer.json too.")
        tokenizer_json = _tokenizer_json(folder)
    model = tokenizer_json["model"]
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ConversionError(f"This tokenizer is a {model.get('type')} tokenizer, which this converter does not "
                              "handle for this architecture", path=folder / "tokenizer.json",
                              hint="Convert this model with llama.cpp's own convert_hf_to_gguf.py.")
    try:
        pre = pre_tokenizer_name(tokenizer_json, tokenizer_config)
    except ConversionError as exc:
        exc.path = str(folder / "tokenizer.json")
        raise
    by_id: dict[int, str] = {}
    for text, token_id in model["vocab"].items():
        if isinstance(token_id, int):
            by_id[token_id] = text
    added: dict[str, bool] = {}     # content -> special
    decoder = tokenizer_config.get("added_tokens_decoder") if isinstance(tokenizer_config, dict) else None
    named_special = _named_special_tokens(tokenizer_config)
    for entry in tokenizer_json.get("added_tokens") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int) or not isinstance(entry.get("content"), str):
            continue
        by_id[entry["id"]] = entry["content"]
        special = bool(entry.get("special"))
        if isinstance(decoder, dict) and isinstance(decoder.get(str(entry["id"])), dict):
            special = bool(decoder[str(entry["id"])].get("special", special))
        added[entry["content"]] = special or entry["content"] in named_special
    n = vocab_size or (max(by_id) + 1 if by_id else 0)
    if by_id and max(by_id) >= n:
        raise ConversionError(f"The tokenizer has token id {max(by_id)} but config.json says the vocabulary has "
                              f"{n} tokens", path=folder / "tokenizer.json",
                              hint="The tokenizer and config.json do not belong together: download both again.")
    tokens: list[bytes] = []
    types: list[int] = []
    for i in range(n):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]".encode())
            types.append(UNUSED)
            continue
        if text in added:
            if added[text] or looks_special(text):
                types.append(CONTROL)
            else:
                text = text.replace("\u2581", " ")
                types.append(USER_DEFINED)
        else:
            types.append(NORMAL)
        tokens.append(text.encode("utf-8"))
    return GGUFVocab("gpt2", pre, tokens, types, None, _special_vocab(folder, load_merges=True))


def _named_special_tokens(tokenizer_config: dict) -> set[str]:
    """Tokens tokenizer_config.json names as special (bos/eos/..., additional/extra special tokens)."""
    names: set[str] = set()
    for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
                "additional_special_tokens", "extra_special_tokens"):
        value = tokenizer_config.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                item = item.get("content")
            if isinstance(item, str):
                names.add(item)
    return names
