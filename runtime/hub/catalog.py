"""The curated beginner catalog: a few small models that run on most computers, known without a network.

The data lives in resources/catalog.json (found through the package path, so a frozen app has it
too). Each entry names the original Hugging Face checkpoint and a well-known GGUF conversion.
"""
from __future__ import annotations

import json
from dataclasses import fields
from functools import lru_cache

from runtime.errors import WorkbenchError
from runtime.hub.types import CatalogEntry, RepoSummary

CATALOG_FILE = "catalog.json"


def _read_catalog_text() -> str:
    from importlib import resources

    return resources.files("resources").joinpath(CATALOG_FILE).read_text(encoding="utf-8")


def parse_catalog(text: str) -> list[CatalogEntry]:
    """The entries of a catalog file's text; WorkbenchError naming the first problem if it is malformed."""
    hint = "The app's resources/catalog.json is damaged: reinstall the app."
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise WorkbenchError(f"The model catalog is not valid JSON ({exc}).", hint=hint) from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise WorkbenchError("The model catalog has no list of models.", hint=hint)
    names = [f.name for f in fields(CatalogEntry)]
    entries = []
    for i, item in enumerate(models):
        if not isinstance(item, dict):
            raise WorkbenchError(f"Catalog entry #{i + 1} is not an object.", hint=hint)
        missing = [n for n in names if not isinstance(item.get(n), str) or not item[n].strip()]
        if missing:
            raise WorkbenchError(f"Catalog entry #{i + 1} lacks {', '.join(missing)}.", hint=hint)
        for key in ("original_repo", "gguf_repo"):
            if item[key].count("/") != 1:
                raise WorkbenchError(f"Catalog entry {item['name']!r}: {key} {item[key]!r} is not org/name.",
                                     hint=hint)
        entries.append(CatalogEntry(**{n: item[n].strip() for n in names}))
    return entries


@lru_cache(maxsize=1)
def _cached() -> tuple[CatalogEntry, ...]:
    return tuple(parse_catalog(_read_catalog_text()))


def load_catalog() -> list[CatalogEntry]:
    """The catalog's models, in the order they are shown (smallest first). Works offline."""
    from copy import copy

    return [copy(e) for e in _cached()]


def catalog_entry_for(repo_id: str) -> CatalogEntry | None:
    """The catalog entry whose original or GGUF repo is ``repo_id`` (case-insensitive), else None."""
    wanted = repo_id.strip().lower()
    for entry in _cached():
        if wanted in (entry.original_repo.lower(), entry.gguf_repo.lower()):
            return entry
    return None


def search_catalog(query: str = "") -> list[CatalogEntry]:
    """Catalog entries whose name, repos or description contain every word of ``query`` (all if empty)."""
    words = query.lower().split()
    found = []
    for entry in _cached():
        text = " ".join((entry.name, entry.original_repo, entry.gguf_repo, entry.description)).lower()
        if all(w in text for w in words):
            found.append(entry)
    return found


def catalog_summaries(query: str = "", kind: str = "gguf") -> list[RepoSummary]:
    """The catalog as search results, for showing before (or instead of) a search.

    ``kind``: "gguf" gives each entry's GGUF repo (what a beginner downloads), "checkpoint" its
    original repo, "all" both.
    """
    summaries = []
    for entry in search_catalog(query):
        if kind in ("gguf", "all"):
            summaries.append(RepoSummary(repo_id=entry.gguf_repo, kind="gguf", licence=entry.licence,
                                         pipeline_tag="text-generation", catalog=entry))
        if kind in ("checkpoint", "all"):
            summaries.append(RepoSummary(repo_id=entry.original_repo, kind="checkpoint", licence=entry.licence,
                                         pipeline_tag="text-generation", catalog=entry))
    return summaries
