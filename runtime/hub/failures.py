"""Turn what huggingface_hub and its HTTP client raise into the app's own errors, in plain words."""
from __future__ import annotations

from runtime.errors import BadToken, GatedRepo, HubError, HubOffline, RepoNotFound, WorkbenchError


def hub_error(exc: BaseException, repo_id: str | None = None, filename: str | None = None,
              token_given: bool = False) -> WorkbenchError:
    """The WorkbenchError that explains ``exc`` (a huggingface_hub error, an httpx error, an OSError).

    ``token_given``: a token was sent, so a 401 means the token is wrong rather than missing.
    A WorkbenchError passes through unchanged.
    """
    if isinstance(exc, WorkbenchError):
        return exc
    from huggingface_hub import errors as hf

    facts = {"repo_id": repo_id, "filename": filename}
    what = f"{repo_id}/{filename}" if repo_id and filename else (repo_id or filename or "the request")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    facts["status"] = status
    if isinstance(exc, (hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError)):
        return HubOffline(f"Offline mode is on: {what} cannot be fetched from Hugging Face.", **facts)
    if isinstance(exc, hf.GatedRepoError):
        if token_given and status == 403:
            return GatedRepo(f"{repo_id} is gated and this token has not been granted access to it.",
                             hint="Open the model's page on huggingface.co while logged in as the token's owner, "
                                  "accept its licence, then try again.", **facts)
        return GatedRepo(f"{repo_id} is gated: it needs an access token from an account that accepted "
                         "its licence.", **facts)
    if isinstance(exc, hf.RepositoryNotFoundError):
        if token_given and status == 401:
            return BadToken(f"Hugging Face rejected the access token while opening {repo_id}.", **facts)
        return RepoNotFound(f"There is no model {repo_id!r} on Hugging Face (or it is private).", **facts)
    if isinstance(exc, hf.RevisionNotFoundError):
        return RepoNotFound(f"{repo_id} has no such revision.", hint="Use the main branch, or check the revision name.",
                            **facts)
    if isinstance(exc, hf.EntryNotFoundError):
        return RepoNotFound(f"{repo_id} has no file {filename!r}.",
                            hint=f"Run `workbench files {repo_id}` to list its files.", **facts)
    if isinstance(exc, hf.HfHubHTTPError):
        if status == 401:
            return (BadToken(f"Hugging Face rejected the access token ({what}).", **facts) if token_given else
                    RepoNotFound(f"{what} needs an access token (the repo is private or gated).",
                                 hint=GatedRepo.default_hint, **facts))
        if status is not None and status >= 500:
            return HubError(f"Hugging Face had a server error ({status}) for {what}.",
                            hint="This is on Hugging Face's side; try again in a few minutes.", **facts)
        return HubError(f"Hugging Face refused the request for {what} (HTTP {status}).", **facts)
    if _is_network_error(exc):
        reason = _network_reason(exc)
        return HubError(f"Could not reach Hugging Face ({reason}) for {what}.", **facts)
    return HubError(f"Unexpected failure talking to Hugging Face for {what}: {type(exc).__name__}.",
                    details=str(exc), **facts)


def _is_network_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"TransportError", "ConnectError", "TimeoutException", "NetworkError",
                         "RemoteProtocolError", "ReadError"}) or isinstance(exc, (ConnectionError, TimeoutError))


def _network_reason(exc: BaseException) -> str:
    """A short reason in words, without errno numbers or Python reprs."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"TimeoutException", "ReadTimeout", "ConnectTimeout"} or isinstance(exc, TimeoutError):
        return "it did not answer in time"
    if names & {"ConnectError"} or isinstance(exc, ConnectionRefusedError):
        return "no connection: are you online?"
    if names & {"RemoteProtocolError", "ReadError"} or isinstance(exc, ConnectionResetError):
        return "the connection dropped"
    return "a network error"
