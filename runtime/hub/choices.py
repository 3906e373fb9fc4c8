"""What a person can download from one repo, whether each one runs here, and which one to take.

``model_choices(listing)`` groups a repo's files into downloadable choices:

- every GGUF model file is one choice; a split model (``name-00001-of-00003.gguf``) is ONE choice
  holding all its parts, and a part missing from the repo is named in ``missing``;
- the weights of a Hugging Face checkpoint (all safetensors shards) plus its config and tokenizer
  files are one choice;
- helper files that are no model (a vision projector ``mmproj-*.gguf``, an importance matrix,
  a vocabulary-only GGUF) are not offered as choices.

Each choice gets a memory estimate and a fit verdict (``runtime.models.hardware``): the weights, the
KV cache at the chosen context, and llama.cpp's working memory, against free RAM (or GPU memory). The
model's shape (layers, KV heads, head size) comes from the GGUF header, read from the server with
HTTP Range requests (only the header's bytes, not the file), or from config.json for a checkpoint.
A checkpoint is judged as it would run after converting it to GGUF at F16.

One choice per repo is recommended: the best quality that fits comfortably (see ``recommend``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from runtime.errors import HubError, ModelFileError, WorkbenchError
from runtime.hub.types import RemoteFile, RepoListing
from runtime.models.gguf_info import GGUFInfo, format_size
from runtime.models.hardware import FitVerdict, GpuDevice, check_fit, info_from_config
from runtime.models.quants import RETIRED_QUANTS, SPECIAL_QUANTS, UNQUANTIZED, quant_from_name, quant_rank

_SPLIT_RE = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_SHARD_RE = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.(?P<ext>safetensors|bin)$",
                       re.IGNORECASE)


# --- what a file is ----------------------------------------------------------------------------

CHECKPOINT_SIDE_FILES = {
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
    "chat_template.json", "model.safetensors.index.json", "pytorch_model.bin.index.json",
}


def is_model_gguf(path: str) -> bool:
    """A .gguf file that is a model, not a helper (vision projector, importance matrix, vocabulary)."""
    name = path.rsplit("/", 1)[-1].lower()
    if not name.endswith(".gguf"):
        return False
    return not (name.startswith("mmproj") or "-mmproj" in name or "imatrix" in name
                or name.startswith("ggml-vocab-"))


# --- choices -----------------------------------------------------------------------------------

@dataclass
class ModelChoice:
    """One thing to download: a GGUF file (all parts of a split one), or a whole checkpoint."""

    kind: str                          # "gguf" | "checkpoint"
    label: str                         # "Q4_K_M", "Q8_0 (2 parts)", "Checkpoint (BF16, 2 shards)"
    files: list[RemoteFile]            # every file to fetch, in order (split parts 1..n)
    size_bytes: int                    # all of them together
    quant: str | None = None           # GGUF: from the name, e.g. "Q4_K_M"; None when the name says none
    dtype: str | None = None           # checkpoints: "BF16", "F16", "F32" (from config.json or the files)
    estimate_bytes: int | None = None  # memory to run it (fit.needed_bytes)
    fit: FitVerdict | None = None
    recommended: bool = False
    reason: str = ""                   # why it is (or is not) the recommended one, in words
    missing: list[str] = field(default_factory=list)  # split parts or shards the repo lacks
    note: str = ""                     # anything else worth saying (e.g. the shape could not be read)
    unusable: str = ""                 # why this app cannot run it even though it is complete, or ""

    @property
    def name(self) -> str:
        """The file to show for this choice: the GGUF (its first part), or the first weight shard."""
        return self.files[0].path if self.files else self.label

    @property
    def downloadable(self) -> bool:
        """False when parts are missing: the model could not be put together from this repo."""
        return not self.missing

    def to_dict(self) -> dict:
        """JSON-safe: the choice, its files, and the verdict's figures."""
        fit = None
        if self.fit is not None:
            f = self.fit
            fit = {"status": f.status, "needed_bytes": f.needed_bytes, "available_bytes": f.available_bytes,
                   "memory": f.memory, "n_ctx": f.n_ctx, "weights_bytes": f.weights_bytes,
                   "kv_cache_bytes": f.kv_bytes, "compute_bytes": f.compute_bytes, "message": f.message}
        return {"kind": self.kind, "label": self.label, "name": self.name,
                "files": [x.to_dict() for x in self.files], "size_bytes": self.size_bytes, "quant": self.quant,
                "dtype": self.dtype, "estimate_bytes": self.estimate_bytes, "fit": fit,
                "recommended": self.recommended, "reason": self.reason, "missing": list(self.missing),
                "note": self.note, "unusable": self.unusable}


def group_files(files: list[RemoteFile], config: dict | None = None) -> list[ModelChoice]:
    """The downloadable choices among a repo's files (no estimates yet; see ``model_choices``).

    GGUF choices come first, smallest first; the checkpoint (if any) last.
    """
    ggufs: list[ModelChoice] = []
    splits: dict[tuple[str, str, int], dict[int, RemoteFile]] = {}
    for f in files:
        if not is_model_gguf(f.path):
            continue
        folder, _, name = f.path.rpartition("/")
        m = _SPLIT_RE.match(name)
        if m and int(m["count"]) >= 1 and 1 <= int(m["index"]) <= int(m["count"]):
            splits.setdefault((folder, m["base"], int(m["count"])), {})[int(m["index"])] = f
        elif not m:
            quant = quant_from_name(f.path)
            ggufs.append(ModelChoice(kind="gguf", label=quant or name, files=[f], size_bytes=f.size, quant=quant))
            if quant in RETIRED_QUANTS:
                ggufs[-1].unusable = ("An ARM-only layout of Q4_0 that current llama.cpp no longer loads: "
                                      "take Q4_0 instead.")
    for (folder, base, count), parts in splits.items():
        prefix = f"{folder}/" if folder else ""
        missing = [f"{prefix}{base}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1) if i not in parts]
        present = [parts[i] for i in sorted(parts)]
        quant = quant_from_name(base)
        label = f"{quant or base} ({count} parts)" if count > 1 else (quant or base)
        ggufs.append(ModelChoice(kind="gguf", label=label, files=present, size_bytes=sum(p.size for p in present),
                                 quant=quant, missing=missing))
    ggufs.sort(key=lambda c: (c.size_bytes, c.label))
    checkpoint = _checkpoint_choice(files, config)
    return ggufs + ([checkpoint] if checkpoint else [])


def _checkpoint_choice(files: list[RemoteFile], config: dict | None) -> ModelChoice | None:
    """All weight shards of a Hugging Face checkpoint plus its config and tokenizer files, or None."""
    top = [f for f in files if "/" not in f.path]
    weights = [f for f in top if f.path.lower().endswith(".safetensors")]
    if len(weights) > 1 and any(not f.path.startswith("consolidated") for f in weights):
        weights = [f for f in weights if not f.path.startswith("consolidated")]  # Mistral's duplicate copy
    pickled = False
    if not weights:
        weights = [f for f in top if f.path.lower().endswith(".bin") and f.path.startswith("pytorch_model")]
        pickled = bool(weights)
    if not weights:
        return None
    weights.sort(key=lambda f: f.path)
    missing = []
    shard_sets: dict[tuple[str, int, str], set[int]] = {}
    for f in weights:
        m = _SHARD_RE.match(f.path)
        if m:
            shard_sets.setdefault((m["base"], int(m["count"]), m["ext"]), set()).add(int(m["index"]))
    for (base, count, ext), seen in shard_sets.items():
        missing += [f"{base}-{i:05d}-of-{count:05d}.{ext}" for i in range(1, count + 1) if i not in seen]
    side = sorted((f for f in top if f.path in CHECKPOINT_SIDE_FILES), key=lambda f: f.path)
    if pickled:
        side = [f for f in side if f.path != "model.safetensors.index.json"]
    dtype = config_dtype(config)
    shards = f"{len(weights)} shard{'s' if len(weights) != 1 else ''}"
    label = f"Checkpoint ({dtype + ', ' if dtype else ''}{shards})"
    choice = ModelChoice(kind="checkpoint", label=label, files=weights + side,
                         size_bytes=sum(f.size for f in weights + side), dtype=dtype, missing=missing)
    if pickled:
        choice.unusable = ("Only PyTorch .bin weights (no safetensors): the app's converter reads safetensors "
                           "checkpoints, so this one cannot be converted here.")
    return choice


_DTYPE_NAMES = {"bfloat16": "BF16", "float16": "F16", "half": "F16", "float32": "F32", "float": "F32",
                "bf16": "BF16", "fp16": "F16", "f16": "F16", "fp32": "F32", "f32": "F32"}
DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def config_dtype(config: dict | None) -> str | None:
    """The weights' dtype as config.json states it (``torch_dtype``, or ``dtype`` in newer files)."""
    if not isinstance(config, dict):
        return None
    sources = [config]
    if isinstance(config.get("text_config"), dict):
        sources.append(config["text_config"])
    for source in sources:
        for key in ("torch_dtype", "dtype"):
            value = source.get(key)
            if isinstance(value, str) and value.lower().removeprefix("torch.") in _DTYPE_NAMES:
                return _DTYPE_NAMES[value.lower().removeprefix("torch.")]
    return None


# --- estimates and the recommendation (pure) --------------------------------------------------

def f16_weights_bytes(choice: ModelChoice, parameter_count: int | None = None) -> int:
    """What a checkpoint's weights take once converted to GGUF at F16: 2 bytes per parameter.

    ``parameter_count`` when known (from the safetensors headers); else the weight files' size
    scaled from their dtype (F32 halves, BF16/F16 stay; unknown dtype: taken as 2 bytes per weight).
    """
    if parameter_count:
        return 2 * parameter_count
    weights = sum(f.size for f in choice.files if f.path.lower().endswith((".safetensors", ".bin")))
    per_weight = DTYPE_BYTES.get(choice.dtype or "", 2)
    return weights * 2 // per_weight


def estimate_choice(choice: ModelChoice, shape: GGUFInfo | None, n_ctx: int | None, *,
                    available_bytes: int | None = None, gpus: list[GpuDevice] | None = None,
                    parameter_count: int | None = None) -> ModelChoice:
    """Set ``fit`` and ``estimate_bytes`` of ``choice`` from the model's ``shape`` (pure but for free RAM).

    ``shape``: the GGUF header's figures (any file of the repo: they share the shape), or
    ``info_from_config`` for a checkpoint; None when unknown (the KV cache cannot be counted then,
    which the note says). The weights are the choice's own size (a checkpoint: at F16 after
    conversion). ``n_ctx`` None or 0: the app's default context, capped by the model's own.
    """
    if choice.kind == "checkpoint":
        weights = f16_weights_bytes(choice, parameter_count)
    else:
        weights = choice.size_bytes
    if shape is None:
        shape = GGUFInfo(path=choice.name, size_bytes=weights, architecture="unknown", name=choice.name,
                         parameter_count=0, file_type=choice.quant or "unknown", tensor_count=0)
        unknown = ("The model's shape could not be read, so the estimate leaves out the memory for the "
                   "context (KV cache).")
        choice.note = f"{choice.note} {unknown}".strip()
    shape = replace(shape, size_bytes=weights)
    choice.fit = check_fit(shape, n_ctx or 0, available_bytes, gpus=gpus)
    if choice.kind == "checkpoint":
        choice.fit.detail += f" (judged as GGUF at F16 after converting it: {format_size(weights)} of weights)"
    choice.estimate_bytes = choice.fit.needed_bytes
    return choice


def _recommendable(choice: ModelChoice) -> bool:
    return choice.downloadable and choice.fit is not None and not choice.unusable


def recommend(choices: list[ModelChoice]) -> ModelChoice | None:
    """Mark the one choice to take and give every choice its reason; return it (None if none fits).

    The rule: among the choices that fit comfortably ("fits"), the best quality. Quantized GGUF files
    up to Q8_0 come first (Q8_0 is all but lossless and half the size of F16); F16/BF16/F32 only when
    the repo has no quantized file that fits; a checkpoint only when the repo has no GGUF that fits
    (it must be converted first). Ternary and retired ARM-only types are never recommended. Within a
    rank, the larger file wins (the same quant name can hide better recipes, e.g. Q4_K_L > Q4_K_M).
    When nothing fits comfortably, nothing is recommended, and each reason says what is needed.
    """
    for c in choices:
        c.recommended = False
    candidates = [c for c in choices if _recommendable(c) and c.fit.status == "fits"]

    def preference(c: ModelChoice) -> tuple:
        if c.kind == "checkpoint":
            tier = 0
        elif c.quant in SPECIAL_QUANTS:
            tier = 1
        elif c.quant in UNQUANTIZED:
            tier = 2
        else:
            tier = 3  # quantized (or a name that states no type: take it for a quantized file)
        return tier, quant_rank(c.quant), c.size_bytes

    best = max(candidates, key=preference, default=None)
    if best is not None:
        best.recommended = True
        best.reason = _why(best, choices)
    for c in choices:
        if c is not best:
            c.reason = _why_not(c, best, choices)
    return best


def _why(best: ModelChoice, choices: list[ModelChoice]) -> str:
    fit = best.fit
    room = f"needs about {format_size(fit.needed_bytes)} of the {format_size(fit.available_bytes)} of {fit.memory} free"
    if best.kind == "checkpoint":
        why = ("No GGUF file here fits comfortably." if any(c.kind == "gguf" for c in choices)
               else "This repo has no GGUF file: convert it to chat with it.")
        return (f"Recommended: the original checkpoint, to convert to GGUF (Compress tab); it {room} as F16. "
                + why)
    if best.quant in UNQUANTIZED:
        has_quantized = any(c.kind == "gguf" and c.quant not in UNQUANTIZED for c in choices)
        why = ("the quantized files here do not fit comfortably" if has_quantized
               else "this repo has no quantized file")
        return f"Recommended: full precision, because {why}; it {room}."
    bigger = [c for c in choices if c.kind == "gguf" and c.quant not in UNQUANTIZED and c is not best
              and quant_rank(c.quant) > quant_rank(best.quant) and c.downloadable]
    if best.quant == "Q8_0" or not bigger:
        quality = "the best quality here short of full precision (Q8_0 is nearly lossless)" \
            if best.quant == "Q8_0" else "the best quality among the quantized files here"
        return f"Recommended: {quality}, and it fits comfortably: it {room}."
    return (f"Recommended: the best quality that fits comfortably: it {room}; "
            f"larger, better files would be tight or too big here.")


def _why_not(c: ModelChoice, best: ModelChoice | None, choices: list[ModelChoice]) -> str:
    if c.missing:
        return f"Incomplete in this repo: {len(c.missing)} part(s) missing ({', '.join(c.missing[:3])})."
    if c.unusable:
        return c.unusable
    if c.fit is None:
        return "Not judged."
    if c.fit.status == "too_big":
        return f"Too big for this machine: {c.fit.detail}."
    if c.fit.status == "tight":
        return f"Tight: {c.fit.detail}; it may run if other programs are closed, but could run out of memory."
    if best is None:
        return "Fits."
    if c.kind == "checkpoint":
        return "Fits after converting it to GGUF, but a ready-made GGUF file here is simpler."
    if c.quant in SPECIAL_QUANTS:
        return "A ternary type for BitNet-style models only."
    if c.quant in UNQUANTIZED and best.quant not in UNQUANTIZED:
        return "Fits, but full precision is twice the size of Q8_0 for almost no gain in quality."
    return f"Fits; lower quality than {best.label}, which also fits comfortably."


def summarize(choices: list[ModelChoice]) -> str:
    """One sentence for the whole repo: the recommended file and why, or why there is none."""
    best = next((c for c in choices if c.recommended), None)
    if best is not None:
        return f"{best.label} ({best.name}): {best.reason}"
    judged = [c for c in choices if c.fit is not None and c.downloadable]
    if not choices:
        return "This repo has no GGUF model file and no checkpoint to download."
    if not judged:
        return "Nothing here can be downloaded as a whole model."
    smallest = min(judged, key=lambda c: c.fit.needed_bytes)
    fit = smallest.fit
    if fit.status == "tight":
        return (f"Nothing fits comfortably: the smallest, {smallest.label}, needs about "
                f"{format_size(fit.needed_bytes)} of the {format_size(fit.available_bytes)} of {fit.memory} free "
                "(tight: close other programs, or choose a shorter context).")
    return (f"Nothing here fits this machine: the smallest, {smallest.label}, needs about "
            f"{format_size(fit.needed_bytes)} with a {fit.n_ctx:,}-token context, and "
            f"{format_size(fit.available_bytes)} of {fit.memory} is free. Try a smaller model or a shorter context.")


# --- shapes from the network -------------------------------------------------------------------

HEADER_FIRST_BYTES = 2 * 1024**2    # the starter model's header takes 1.7 MiB (most of it the vocabulary)
HEADER_MAX_BYTES = 64 * 1024**2     # give up on headers larger than this (no real model's is)
HEADER_TIMEOUT_S = 15.0


def read_remote_gguf_info(repo_id: str, remote: RemoteFile, revision: str, *, token: str | None = None,
                          max_bytes: int = HEADER_MAX_BYTES) -> GGUFInfo:
    """The header figures of a GGUF file on the hub, from its first bytes (HTTP Range requests).

    Starts with ``HEADER_FIRST_BYTES`` and fetches more until the header parses, never more than
    ``max_bytes``; a server that ignores Range is read only as far as needed. Raises the hub's
    errors as ``runtime.hub.failures.hub_error`` gives them, and ModelFileError for a file that is
    not a usable GGUF.
    """
    from runtime.models.gguf_info import HeaderIncomplete, read_gguf_header_prefix

    if remote.size < 24:
        raise ModelFileError(f"{remote.path} is only {remote.size} bytes on the hub, too short for a GGUF model.",
                             path=remote.path, hint="The repo's file is damaged or empty; try another file.")
    want = min(HEADER_FIRST_BYTES, remote.size)
    data = bytearray()
    while True:
        asked = want - len(data)
        got = _fetch_range(repo_id, remote.path, revision, len(data), want, token=token)
        data += got
        try:
            return read_gguf_header_prefix(bytes(data), remote.size, remote.path)
        except HeaderIncomplete as more:
            if len(got) < asked:
                raise ModelFileError(f"{remote.path} on the hub ends after {len(data):,} bytes, inside its header "
                                     f"(the listing says {remote.size:,} bytes).", path=remote.path,
                                     hint="The repo's file is damaged or still uploading; try another file.") from None
            if len(data) >= min(remote.size, max_bytes) or more.needed > max_bytes:
                raise ModelFileError(f"{remote.path}: its header is larger than {format_size(max_bytes)}; "
                                     "not read over the network.", path=remote.path,
                                     hint="Download the file to see its figures.") from None
            want = min(remote.size, max_bytes, max(2 * len(data), more.needed + 1024**2))


def _fetch_range(repo_id: str, path: str, revision: str, start: int, end: int, *, token: str | None) -> bytes:
    """Bytes ``start`` .. ``end - 1`` of a file on the hub (fewer only if the file ends first)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    from runtime.hub.endpoint import endpoint, offline, sync_huggingface_hub
    from runtime.hub.failures import hub_error

    if offline():
        from runtime.errors import HubOffline

        raise HubOffline(f"Offline mode is on: the header of {path} cannot be read from Hugging Face.",
                         repo_id=repo_id, filename=path)
    sync_huggingface_hub()
    url = hf_hub_url(repo_id, path, revision=revision, endpoint=endpoint())
    headers = build_hf_headers(token=token or False)
    headers["Range"] = f"bytes={start}-{end - 1}"
    chunks, got = [], 0
    try:
        with get_session().stream("GET", url, headers=headers, follow_redirects=True,
                                  timeout=HEADER_TIMEOUT_S) as response:
            hf_raise_for_status(response)
            skip = start if response.status_code == 200 else 0  # Range ignored: the body starts at byte 0
            for chunk in response.iter_bytes():
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                chunks.append(chunk)
                got += len(chunk)
                if got >= end - start:
                    break
    except WorkbenchError:
        raise
    except Exception as exc:  # huggingface_hub's and httpx's errors, turned into ours
        raise hub_error(exc, repo_id, path, token_given=bool(token)) from None
    return b"".join(chunks)[:end - start]


def _header_sources(choices: list[ModelChoice]) -> list[RemoteFile]:
    """GGUF files whose header gives the repo's shape, smallest first: single files and first parts."""
    sources = []
    for c in choices:
        if c.kind != "gguf" or not c.files:
            continue
        first = c.files[0]
        split = _SPLIT_RE.match(first.path.rsplit("/", 1)[-1])
        if split is None or int(split["index"]) == 1:  # only a split model's first part has the metadata
            sources.append((c.size_bytes, first.path, first))
    return [f for _, _, f in sorted(sources, key=lambda s: s[:2])]


HEADER_ATTEMPTS = 3   # files tried when a header cannot be read (a damaged upload); network errors stop at once


def _repo_shape(listing: RepoListing, choices: list[ModelChoice], token: str | None) -> tuple[GGUFInfo | None, str]:
    """The GGUF shape of the repo's models and, when none could be read, why (a sentence)."""
    problem = ""
    for source in _header_sources(choices)[:HEADER_ATTEMPTS]:
        try:
            return _remote_info_once(listing.repo_id, source, listing.revision, token), ""
        except ModelFileError as exc:
            problem = f"Could not read the model's figures from {source.path}: {exc.message}."
        except HubError as exc:
            return None, f"Could not read the model's figures from {source.path}: {exc.message}"
    return None, problem


_HEADER_CACHE: dict[tuple, GGUFInfo] = {}
_HEADER_CACHE_SIZE = 64


def _remote_info_once(repo_id: str, remote: RemoteFile, revision: str, token: str | None) -> GGUFInfo:
    """``read_remote_gguf_info``, remembered for files at a commit (which never change), so that a
    new context length re-judges the choices without reading the header again."""
    from runtime.hub.endpoint import endpoint

    key = (endpoint(), repo_id, remote.path, remote.size, remote.sha256, revision, bool(token))
    if key in _HEADER_CACHE:
        return _HEADER_CACHE[key]
    info = read_remote_gguf_info(repo_id, remote, revision, token=token)
    if re.fullmatch(r"[0-9a-f]{40}", revision or ""):
        if len(_HEADER_CACHE) >= _HEADER_CACHE_SIZE:
            _HEADER_CACHE.pop(next(iter(_HEADER_CACHE)))
        _HEADER_CACHE[key] = info
    return info


def _safetensors_parameters(repo_id: str, revision: str, token: str | None) -> tuple[int | None, str | None]:
    """(parameter count, dtype holding most of them) from the safetensors headers; (None, None) if unreadable."""
    from huggingface_hub import HfApi

    from runtime.hub.endpoint import endpoint

    try:
        meta = HfApi(endpoint=endpoint()).get_safetensors_metadata(repo_id, revision=revision, token=token or False)
        counts = meta.parameter_count
    except Exception:  # an optional refinement: the file sizes give an estimate anyway
        return None, None
    if not counts:
        return None, None
    dtype = max(counts, key=counts.get)
    return sum(counts.values()), dtype if dtype in DTYPE_BYTES else None


def model_choices(listing: RepoListing, n_ctx: int | None = None, *, available_bytes: int | None = None,
                  token: str | None = None, gpus: list[GpuDevice] | None = None) -> list[ModelChoice]:
    """The repo's downloadable choices, each with its fit verdict, and one marked ``recommended``.

    Blocking: reads one GGUF header over the network (a few MiB of Range requests, once per repo:
    the files of one repo share their shape), or the safetensors headers of a checkpoint; call it off
    the UI thread. A header that cannot be read does not fail the listing: the estimate then leaves
    out the KV cache and the choice's ``note`` says so. ``n_ctx``: the context to judge at (None:
    the app's default, capped by the model's own). ``available_bytes``: free RAM (default: measured).
    ``gpus``: the GPUs llama.cpp can use (runtime.engine.server.gpu_devices; None or [] on CPU only).
    """
    choices = group_files(listing.files, listing.config)
    if not choices:
        return choices
    shape, problem = _repo_shape(listing, choices, token)
    config_shape = info_from_config(listing.config, 0, name=listing.repo_id) if listing.config else None
    if shape is None and config_shape is not None and config_shape.block_count:
        shape, problem = config_shape, ""
    parameters = None
    for choice in choices:
        if choice.kind == "checkpoint":
            parameters, st_dtype = (None, None)
            if choice.files and choice.files[0].path.endswith(".safetensors"):
                parameters, st_dtype = _safetensors_parameters(listing.repo_id, listing.revision, token)
            if choice.dtype is None and st_dtype:
                choice.dtype = st_dtype
                choice.label = choice.label.replace("Checkpoint (", f"Checkpoint ({st_dtype}, ", 1)
            cp_shape = config_shape if config_shape is not None and config_shape.block_count else None
            estimate_choice(choice, cp_shape, n_ctx, available_bytes=available_bytes, gpus=gpus,
                            parameter_count=parameters)
        else:
            if problem and not choice.note:
                choice.note = problem
            estimate_choice(choice, shape, n_ctx, available_bytes=available_bytes, gpus=gpus)
    recommend(choices)
    return choices
