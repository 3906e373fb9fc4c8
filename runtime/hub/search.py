"""Search Hugging Face for text-generation models, one page at a time.

The request is the one huggingface_hub's ``HfApi.list_models`` sends (GET /api/models with search,
filter, pipeline_tag, sort, direction, limit), made through huggingface_hub's own HTTP session,
headers and error parsing (``get_session``, ``build_hf_headers``, ``hf_raise_for_status``). It
follows the hub's ``Link: <...>; rel="next"`` header itself rather than through ``list_models``
because ``list_models`` cannot fetch one page of N: its ``limit`` caps the total and then stops,
and without a limit the hub answers pages of thousands. ``list_models`` also retries a failed
request with back-off for about 23 s (1+2+4+8+8), which would leave a search box spinning with
no network; here a failure is reported at once.
"""
from __future__ import annotations

from runtime.errors import HubOffline, WorkbenchError
from runtime.hub.types import RepoSummary

KINDS = ("all", "gguf", "checkpoint")
SORTS = {"downloads": "downloads", "likes": "likes", "updated": "lastModified"}
PIPELINE_TAG = "text-generation"
SEARCH_TIMEOUT_S = 15.0
MAX_PAGE_SIZE = 1000          # the hub's own cap
MAX_QUERY_CHARS = 250
CHECKPOINT_TAGS = ("safetensors", "transformers", "pytorch")
# The fields a result needs; the hub sends only a few by default (no lastModified, no gated).
EXPAND = ("downloads", "likes", "lastModified", "tags", "pipeline_tag", "gated", "private", "library_name")


def repo_kind(tags: list[str] | None, library_name: str | None = None) -> str:
    """"gguf" for a repo of GGUF files, "checkpoint" for original weights, else "other" (by the hub's tags)."""
    tags = [t for t in tags or [] if isinstance(t, str)]
    if "gguf" in tags or library_name == "gguf":
        return "gguf"
    if any(t in tags for t in CHECKPOINT_TAGS) or library_name == "transformers":
        return "checkpoint"
    return "other"


def summary_from_item(item: dict) -> RepoSummary | None:
    """One /api/models result as a RepoSummary (None for an item without an id)."""
    from runtime.hub.catalog import catalog_entry_for
    from runtime.hub.repo import licence_of

    repo_id = item.get("id") or item.get("modelId")
    if not isinstance(repo_id, str) or not repo_id:
        return None
    tags = [t for t in item.get("tags") or [] if isinstance(t, str)]

    def count(key: str) -> int | None:
        value = item.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    modified = item.get("lastModified") or item.get("last_modified") or item.get("createdAt")
    pipeline = item.get("pipeline_tag")
    return RepoSummary(
        repo_id=repo_id, kind=repo_kind(tags, item.get("library_name")), downloads=count("downloads"),
        likes=count("likes"), last_modified=modified if isinstance(modified, str) else None,
        pipeline_tag=pipeline if isinstance(pipeline, str) else None, tags=tags, gated=bool(item.get("gated")),
        private=bool(item.get("private")), licence=licence_of(item.get("cardData"), tags),
        catalog=catalog_entry_for(repo_id),
    )


class ModelSearch:
    """One search, read page by page: ``next_page()`` until ``has_more`` is False.

    ``kind``: "all" (every text-generation repo), "gguf" (repos tagged gguf) or "checkpoint" (safetensors
    weights, GGUF repos left out). ``sort``: "downloads", "likes" or "updated" (most recent first).
    ``token``: the access token to send (runtime.hub.token.get_token()); None sends none.
    Not thread-safe: use one search from one thread at a time (a new query is a new ModelSearch).
    """

    def __init__(self, query: str, *, kind: str = "all", sort: str = "downloads", page_size: int = 20,
                 token: str | None = None):
        if kind not in KINDS:
            raise WorkbenchError(f"Unknown kind of model {kind!r}.", hint=f"Use one of: {', '.join(KINDS)}.")
        if sort not in SORTS:
            raise WorkbenchError(f"Unknown sort order {sort!r}.", hint=f"Use one of: {', '.join(SORTS)}.")
        if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise WorkbenchError(f"A page holds 1 to {MAX_PAGE_SIZE} results, not {page_size!r}.",
                                 hint="Ask for fewer results per page.")
        self.query = " ".join((query or "").split())[:MAX_QUERY_CHARS]
        self.kind, self.sort, self.page_size, self.token = kind, sort, page_size, token
        self.has_more = True
        self.pages_read = 0
        self._next_url: str | None = None

    def _first_request(self) -> tuple[str, list[tuple[str, str]]]:
        from runtime.hub.endpoint import endpoint

        params: list[tuple[str, str]] = []
        if self.query:
            params.append(("search", self.query))
        if self.kind == "gguf":
            params.append(("filter", "gguf"))
        elif self.kind == "checkpoint":
            params.append(("filter", "safetensors"))
        params += [("pipeline_tag", PIPELINE_TAG), ("sort", SORTS[self.sort]), ("direction", "-1"),
                   ("limit", str(self.page_size))]
        params += [("expand", e) for e in EXPAND]
        return f"{endpoint()}/api/models", params

    def _get(self):
        """The next page's HTTP response, read in full (huggingface_hub's session; errors as the app's)."""
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        from runtime.hub.failures import hub_error

        headers = build_hf_headers(token=self.token or False)
        try:
            if self._next_url is None:
                url, params = self._first_request()
                response = get_session().get(url, params=params, headers=headers, timeout=SEARCH_TIMEOUT_S)
            else:
                response = get_session().get(self._next_url, headers=headers, timeout=SEARCH_TIMEOUT_S)
            hf_raise_for_status(response)
        except WorkbenchError:
            raise
        except Exception as exc:
            raise hub_error(exc, token_given=bool(self.token)) from None
        return response

    @staticmethod
    def _items(response) -> list:
        """The page's JSON list of models."""
        from runtime.errors import HubError

        try:
            items = response.json()
        except ValueError:
            items = None
        if not isinstance(items, list):
            raise HubError("Hugging Face answered the search with something that is not a list of models.",
                           hint="Try again in a moment.")
        return items

    def next_page(self) -> list[RepoSummary]:
        """The next page of results (blocking, network); [] once ``has_more`` is False.

        Raises HubOffline when HF_HUB_OFFLINE is set (show the catalog and the files on disk instead),
        and HubError / BadToken for a network, server or token failure. A checkpoint search drops GGUF
        repos, so a page can hold fewer than ``page_size`` results; it is never empty while more exist.
        """
        from runtime.hub.endpoint import offline, sync_huggingface_hub

        if offline():
            raise HubOffline("Offline mode is on (HF_HUB_OFFLINE): Hugging Face cannot be searched.",
                             hint="The catalog and the models already on disk are still available. "
                                  + HubOffline.default_hint)
        sync_huggingface_hub()  # huggingface_hub's own copy of the flag dates from its import
        results: list[RepoSummary] = []
        while self.has_more and not results:
            response = self._get()
            items = self._items(response)
            self.pages_read += 1
            next_url = response.links.get("next", {}).get("url")
            self._next_url = next_url
            self.has_more = next_url is not None and len(items) > 0
            results = self.parse(items)
        return results

    def parse(self, items: list) -> list[RepoSummary]:
        """RepoSummaries of one page's raw items, filtered for this search's kind."""
        found = []
        for item in items:
            summary = summary_from_item(item) if isinstance(item, dict) else None
            if summary is None:
                continue
            if self.kind == "checkpoint" and summary.kind == "gguf":
                continue
            found.append(summary)
        return found
