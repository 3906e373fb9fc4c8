"""Plain records that runtime/hub hands to the GUI and the CLI (Qt-free, JSON-friendly)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class CatalogEntry:
    """One model of the curated beginner catalog (resources/catalog.json)."""

    name: str                 # "SmolLM2 135M Instruct"
    parameters: str           # "135M"
    description: str          # one line in plain words
    licence: str              # "Apache-2.0", "Llama 3.2 Community License", ...
    original_repo: str        # the Hugging Face checkpoint, e.g. "HuggingFaceTB/SmolLM2-135M-Instruct"
    gguf_repo: str            # a well-known GGUF repo of the same model

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RepoSummary:
    """One search result (or catalog entry shown as one)."""

    repo_id: str
    kind: str                           # "gguf" | "checkpoint" | "other"
    downloads: int | None = None
    likes: int | None = None
    last_modified: str | None = None    # ISO 8601 text as the hub gives it
    pipeline_tag: str | None = None
    tags: list[str] = field(default_factory=list)
    gated: bool = False
    private: bool = False
    licence: str | None = None
    catalog: CatalogEntry | None = None  # set when the repo is one of the catalog's

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RemoteFile:
    """One file of a repo listing."""

    path: str                  # path inside the repo, "/"-separated, already checked (no "..", no "/" start)
    size: int
    sha256: str | None = None  # LFS files: the hub's sha256 of the content; None for small git files
    blob_id: str | None = None # git blob id (the ETag of non-LFS files)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RepoListing:
    """What a repo holds at one revision."""

    repo_id: str
    revision: str               # the commit sha the files were listed at
    files: list[RemoteFile]
    gated: bool = False
    private: bool = False
    licence: str | None = None
    config: dict | None = None  # config.json, when the repo has one (checkpoints; some GGUF repos)

    def to_dict(self) -> dict:
        return asdict(self)
