"""Group the library's files by model: the variants of one model (Q4_K_M, Q8_0, F16 ...) together.

Two files belong to one model when they come from the same Hugging Face repo, or when their names
are the same once the quant suffix is removed (``Qwen2.5-0.5B-Instruct-Q4_K_M`` and
``qwen2.5-0.5b-instruct-q8_0`` are one model, wherever each lies). Names that say nothing about the
model (``model``, ``ggml-model``) only group through their repo. Grouping is transitive: a local
copy named like a repo's files joins that repo's group.

Each group lists its files from the highest precision down (F32, BF16/F16, Q8_0 ... IQ1_S), the
order the Benchmark tab compares them in. Qt-free, no disk access: it works on ``ModelEntry``
objects (or anything with ``name``, ``repo_id`` and ``info``), so the GUI can group without a rescan.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from runtime.models.quants import quant_from_name, quant_rank

# A quant token at the end of a file stem: "-Q4_K_M", ".q8_0", "_F16", "-UD-Q4_K_XL", ".i1-Q4_K_S".
_QUANT_TOKEN = (r"(?:[IT]?Q\d(?:_[0-9A-Z]+)*|BF16|F16|F32|FP16|FP32|MXFP4)")
_QUANT_SUFFIX_RE = re.compile(rf"[-._](?:(?:UD|i1|imat)[-._])?(?P<quant>{_QUANT_TOKEN})$", re.IGNORECASE)
_SPLIT_RE = re.compile(r"-\d{5}-of-\d{5}$")
_REPO_TAIL_RE = re.compile(r"[-_.]?(?:GGUF|gguf)$")

# Base names that say nothing about which model it is: these group only through their repo.
GENERIC_NAMES = frozenset({"", "model", "ggml-model", "gguf", "weights", "unsloth", "model-gguf"})


def base_name(name: str) -> str:
    """The model's name without quant or split suffix: ``SmolLM2-135M-Instruct.Q4_1`` -> ``SmolLM2-135M-Instruct``."""
    stem = _SPLIT_RE.sub("", _strip_gguf(name))
    return _QUANT_SUFFIX_RE.sub("", stem)


def entry_quant(entry: Any) -> str | None:
    """A file's quant: the GGUF header's file type when it was read, else the one in its name."""
    info = getattr(entry, "info", None)
    file_type = getattr(info, "file_type", None) if info is not None else None
    if file_type and file_type.upper() not in ("UNKNOWN", "?"):
        return file_type.upper()
    return quant_from_name(entry.name)


@dataclass
class ModelGroup:
    """One model and the files of it on disk, highest precision first."""

    name: str                                          # shown name: the files' common base name
    entries: list = field(default_factory=list)        # ModelEntry (or the objects given), ordered
    repo_ids: list[str] = field(default_factory=list)  # the Hugging Face repos its files came from

    @property
    def size_bytes(self) -> int:
        return sum(int(getattr(e, "size_bytes", 0) or 0) for e in self.entries)

    @property
    def quants(self) -> list[str]:
        """Each file's quant ("?" when neither header nor name says), in the group's order."""
        return [entry_quant(e) or "?" for e in self.entries]


def group_key(name: str) -> str:
    """What two file names must share to be variants of one model (case and separators ignored)."""
    return re.sub(r"[-_. ]+", "-", base_name(name).casefold()).strip("-")


def group_entries(entries: list) -> list[ModelGroup]:
    """Group ``entries`` by model; groups in the order of their first entry, files by precision.

    Links: the same ``repo_id``, or the same ``group_key`` when that key is not generic.
    """
    parent = list(range(len(entries)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)   # the earlier entry stays the root: keeps the scan order

    first_by_link: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(entries):
        links = []
        repo = getattr(entry, "repo_id", None)
        if repo:
            links.append(("repo", repo.casefold()))
        key = group_key(entry.name)
        if key not in GENERIC_NAMES:
            links.append(("name", key))
        for link in links:
            if link in first_by_link:
                union(i, first_by_link[link])
            else:
                first_by_link[link] = i

    members: dict[int, list[int]] = {}
    for i in range(len(entries)):
        members.setdefault(find(i), []).append(i)
    groups = []
    for root in sorted(members):
        items = [entries[i] for i in members[root]]
        name, repos = _group_name(items), _repos(items)   # named in scan order
        # Highest precision first; the scan order breaks ties (stable sort).
        items.sort(key=lambda e: -quant_rank(entry_quant(e)))
        groups.append(ModelGroup(name=name, entries=items, repo_ids=repos))
    return groups


def _strip_gguf(name: str) -> str:
    return name[:-5] if name.lower().endswith(".gguf") else name


def _repos(items: list) -> list[str]:
    repos: list[str] = []
    for entry in items:
        repo = getattr(entry, "repo_id", None)
        if repo and repo not in repos:
            repos.append(repo)
    return repos


def _group_name(items: list) -> str:
    """The most common specific base name among the files; else the repo's name without '-GGUF'."""
    counts: dict[str, tuple[int, str]] = {}
    for entry in items:
        base = base_name(entry.name)
        key = group_key(entry.name)
        if key in GENERIC_NAMES:
            continue
        n, shown = counts.get(key, (0, base))
        counts[key] = (n + 1, shown)
    if counts:
        return max(counts.values(), key=lambda pair: pair[0])[1]
    repos = _repos(items)
    if repos:
        return _REPO_TAIL_RE.sub("", repos[0].split("/")[-1]) or repos[0]
    return items[0].name
