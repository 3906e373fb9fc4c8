"""A streaming client for OpenAI-compatible chat servers: the local engine, llama-server, vLLM, Ollama.

Only the standard library: one request per reply, Server-Sent Events read line by line. Stop is
immediate: cancelling shuts the socket down, which also tells the server to stop generating.
"""
from __future__ import annotations

import http.client
import json
import re
import math
import socket
import ssl
import time
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

from runtime.engine.types import ChatReply, ReplyStats, SamplingParams
from runtime.errors import Cancelled, EngineError, RemoteServerError, WorkbenchError, from_payload
from runtime.jobs import CancelToken

if TYPE_CHECKING:
    from runtime.engine.local import LocalEngine


MAX_EVENT_BYTES = 8 << 20     # one Server-Sent Event line; no reply piece comes near this
MAX_JSON_BYTES = 32 << 20     # a whole JSON answer (model lists, errors, token counts)
ESTIMATE_BYTES_PER_TOKEN = 3   # English runs ~4 bytes a token, code ~3, CJK ~3 (one per character)
ESTIMATE_TOKENS_PER_MESSAGE = 8  # the template's role markers around each message


def estimate_tokens(messages: list[dict]) -> int:
    """A deliberately high token count for servers that cannot count (so a fit errs on the safe side)."""
    total = ESTIMATE_TOKENS_PER_MESSAGE
    for m in messages:
        size = len(str(m.get("content") or "").encode("utf-8"))
        total += ESTIMATE_TOKENS_PER_MESSAGE + -(-size // ESTIMATE_BYTES_PER_TOKEN)
    return total


EXAMPLE_URL = "http://192.168.1.20:8080/v1"
ADD_SCHEME_HINT = f"Add http:// or https:// in front, e.g. {EXAMPLE_URL}"
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_base_url(text: str) -> str:
    """The address, trimmed (no trailing slash); RemoteServerError naming the problem otherwise."""
    url = (text or "").strip()
    if not url:
        raise RemoteServerError("Enter the server's address.", hint=f"For example {EXAMPLE_URL}")
    if not _SCHEME_RE.match(url):
        raise RemoteServerError(f"'{url}' is missing http:// or https:// in front.", hint=ADD_SCHEME_HINT)
    if len(url) > len(url.split("://", 1)[0]) + 3:
        url = url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise RemoteServerError(f"'{url}' starts with {parts.scheme}://; a chat server's address starts with "
                                "http:// or https://.", hint=f"For example {EXAMPLE_URL}")
    if not parts.hostname:
        raise RemoteServerError(f"'{url}' has no host name or IP address.", hint=f"For example {EXAMPLE_URL}")
    try:
        parts.port
    except ValueError:
        raise RemoteServerError(f"The port in '{url}' is not a number from 1 to 65535.",
                                hint=f"For example {EXAMPLE_URL}") from None
    if any(c.isspace() for c in url):
        raise RemoteServerError(f"'{url}' contains spaces.", hint=f"For example {EXAMPLE_URL}")
    return url


def unreachable_error(base_url: str, parts, exc: Exception, timeout_s: float) -> RemoteServerError:
    """Why a server could not be reached, in a person's words; the system's own text goes in the details."""
    where = parts.netloc or base_url
    details = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, socket.gaierror):
        message = f"The address {parts.hostname} could not be found."
        hint = "Check the spelling of the server address, and that this computer is on the right network."
    elif isinstance(exc, ConnectionRefusedError):
        message = f"Nothing answered at {where}: no server is listening there."
        hint = "Check that the server is running and that the address and port are right."
    elif isinstance(exc, (socket.timeout, TimeoutError)):
        message = f"The server at {where} did not answer within {timeout_s:g} seconds."
        hint = "Check that the server is running and reachable from this computer (firewall, VPN)."
    elif isinstance(exc, ssl.SSLError):
        message = f"A secure connection to {where} could not be made."
        hint = "If the server does not use HTTPS, use an address starting with http:// instead."
    else:
        message = f"The server at {where} could not be reached."
        hint = "Check that the server is running and that the address is right."
    return RemoteServerError(message, hint=hint, details=details, url=base_url)


class ChatClient:
    """Talks to one server. ``engine`` is set when that server is our own engine process."""

    def __init__(self, base_url: str, api_key: str = "", model: str = "", timeout_s: float = 30.0,
                 read_timeout_s: float = 600.0, engine: "LocalEngine | None" = None) -> None:
        self.base_url = check_base_url(base_url)
        self._parts = urlsplit(self.base_url)
        self.api_key = api_key
        self.model = model
        self.timeout_s = timeout_s
        self.read_timeout_s = read_timeout_s
        self.engine = engine

    # --- plumbing ----------------------------------------------------------------------------

    @property
    def _error_class(self) -> type[WorkbenchError]:
        """What this server's failures are: our own engine's (EngineError) or a remote one's."""
        return EngineError if self.engine is not None else RemoteServerError

    def _connect(self) -> http.client.HTTPConnection:
        port = self._parts.port
        if self._parts.scheme == "https":
            return http.client.HTTPSConnection(self._parts.hostname, port, timeout=self.timeout_s,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self._parts.hostname, port, timeout=self.timeout_s)

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _request(self, method: str, path: str, body: dict | None = None, cancel: CancelToken | None = None):
        """Send a request; return (connection, response, hang_up) for a 2xx answer, raise otherwise.

        With ``cancel``, cancelling hangs up from the moment the connection is open, whether the
        server is still preparing its answer (this raises Cancelled) or already streaming it; the
        caller removes ``hang_up`` from ``cancel`` when done (it is None without ``cancel``). It
        holds the socket itself because http.client lets go of it once a "Connection: close"
        response starts.
        """
        conn = self._connect()
        hang_up = None
        try:
            conn.connect()
            sock = conn.sock
            sock.settimeout(self.read_timeout_s)
            if cancel is not None:
                def hang_up():
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

                cancel.add_callback(hang_up)  # runs at once when already cancelled
            conn.request(method, self._parts.path + path, body=json.dumps(body) if body is not None else None,
                         headers=self._headers())
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            if hang_up is not None:
                cancel.remove_callback(hang_up)
            conn.close()
            if cancel is not None and cancel.cancelled:
                raise Cancelled() from None
            raise self._unreachable(exc) from exc
        if response.status >= 300:
            payload = _read_bounded(response)
            if hang_up is not None:
                cancel.remove_callback(hang_up)
            conn.close()
            raise self._http_error(response.status, payload)
        return conn, response, hang_up

    def _unreachable(self, exc: Exception) -> WorkbenchError:
        if self.engine is not None:  # our own engine: its crash, or an EngineError; never "check the address"
            return self.engine.connection_error(exc)
        return unreachable_error(self.base_url, self._parts, exc, self.timeout_s)

    def _http_error(self, status: int, payload: bytes) -> WorkbenchError:
        error: dict = {}
        try:
            data = json.loads(payload or b"{}")
            error = data.get("error", {}) if isinstance(data, dict) else {}
            if not isinstance(error, dict):
                error = {"message": str(error)}
        except ValueError:
            pass
        message = error.get("message") or payload[:200].decode("utf-8", "replace").strip()
        if status in (401, 403):
            return RemoteServerError(f"The server at {self.base_url} rejected the API key (HTTP {status}).",
                                     hint="Check the API key for this server.")
        if status == 404:
            return RemoteServerError(
                f"The server at {self.base_url} answered 'not found' (HTTP 404){': ' + message if message else ''}.",
                hint="Check the base URL (it usually ends in /v1) and the model name.",
            )
        return from_payload({**error, "message": message or f"The server answered HTTP {status}."},
                            self._error_class)

    # --- API ---------------------------------------------------------------------------------

    def list_models(self) -> list[str]:
        conn, response, _ = self._request("GET", "/models")
        try:
            data = json.loads(_read_bounded(response) or b"{}")
        except ValueError as exc:
            raise RemoteServerError(f"{self.base_url} is not an OpenAI-compatible server (bad /models answer).") from exc
        finally:
            conn.close()
        return [m.get("id", "") for m in data.get("data", []) if isinstance(m, dict)]

    def check(self) -> None:
        """Raise RemoteServerError unless the server answers and accepts the key."""
        self.list_models()

    def count_tokens(self, messages: list[dict]) -> int:
        """Prompt tokens these messages take: exact for our engine, a generous estimate elsewhere.

        OpenAI-compatible servers have no standard way to count, so for them see ``estimate_tokens``.
        """
        if self.engine is None:
            return estimate_tokens(messages)
        return int(self._count(messages)["prompt_tokens"])

    def context_length(self) -> int | None:
        """The loaded context in tokens, or None when the server does not say.

        Our engine always knows; a remote server only when its /models lists ``max_model_len`` (vLLM).
        """
        if self.engine is not None:
            return int(self.engine.ready_info.get("n_ctx") or self._count([])["n_ctx"])
        if not hasattr(self, "_remote_n_ctx"):
            self._remote_n_ctx = self._remote_context_length()
        return self._remote_n_ctx

    def _count(self, messages: list[dict]) -> dict:
        conn, response, _ = self._request("POST", "/count_tokens", {"messages": messages})
        try:
            return json.loads(_read_bounded(response) or b"{}")
        except ValueError as exc:
            raise EngineError("The model engine sent a bad token count.") from exc
        finally:
            conn.close()

    def _remote_context_length(self) -> int | None:
        try:
            conn, response, _ = self._request("GET", "/models")
            try:
                data = json.loads(_read_bounded(response) or b"{}")
            finally:
                conn.close()
            models = [m for m in data.get("data", []) if isinstance(m, dict)]
        except (WorkbenchError, ValueError, AttributeError):
            return None
        for m in sorted(models, key=lambda m: m.get("id") != self.model):  # the chosen model first
            if isinstance(m.get("max_model_len"), int):
                return m["max_model_len"]
        return None

    def stream_chat(self, messages: list[dict], params: SamplingParams,
                    on_text: Callable[[str], None] | None = None,
                    cancel: CancelToken | None = None, extra: dict | None = None) -> ChatReply:
        """Stream one reply. Blocking: run it off the UI thread.

        Cancelling returns the partial reply with finish_reason "cancelled" (it does not raise). A
        stream that breaks off (engine crash, server error mid-reply) raises, with the figures for the
        text received so far attached as ``error.partial_stats`` (finish_reason "error"). Token counts
        are the server's own (see ``_StreamCounts``), never a count of chunks.
        ``extra`` adds server-specific request fields (e.g. llama-server's ``ignore_eos``).
        """
        cancel = cancel or CancelToken()
        body = {"model": self.model or "default", "messages": messages, "stream": True,
                "stream_options": {"include_usage": True},
                "temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k,
                "min_p": params.min_p, "repeat_penalty": params.repeat_penalty}
        if params.max_tokens > 0 or self.engine is not None:
            body["max_tokens"] = params.max_tokens  # -1 (up to the context) only where it is understood
        if params.seed is not None:
            body["seed"] = params.seed
        body.update(extra or {})
        started = time.perf_counter()
        try:
            conn, response, hang_up = self._request("POST", "/chat/completions", body, cancel)
        except Cancelled:
            return ChatReply("", ReplyStats(finish_reason="cancelled", total_s=time.perf_counter() - started))
        pieces: list[str] = []
        counts = _StreamCounts(started)
        stats = counts.stats
        done = False
        try:
            while not done:
                try:
                    line = response.readline(MAX_EVENT_BYTES + 1)
                except (OSError, http.client.HTTPException):
                    line = b""
                if not line:
                    break
                if len(line) > MAX_EVENT_BYTES:
                    raise self._oversized_event()
                if not line.endswith(b"\n"):
                    break  # the stream ended in the middle of an event: what came before is the reply
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                    if not isinstance(event, dict):
                        raise ValueError("not a JSON object")
                except (ValueError, RecursionError) as exc:
                    raise self._bad_event(exc) from None
                if "error" in event:
                    err = event["error"] if isinstance(event["error"], dict) else {"message": str(event["error"])}
                    err.setdefault("message", "The server reported an error mid-reply.")
                    raise from_payload(err, self._error_class)
                for choice in event.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text and isinstance(text, str):
                        counts.text_arrived()
                        pieces.append(text)
                        if on_text is not None:
                            on_text(text)
                    if choice.get("finish_reason"):
                        stats.finish_reason = str(choice["finish_reason"])
                counts.read(event)  # the counts of this event belong with its text: read both, then stop
                if cancel.cancelled:
                    break
        except WorkbenchError as exc:
            exc.partial_stats = counts.finish("error")  # type: ignore[attr-defined]
            raise
        finally:
            cancel.remove_callback(hang_up)
            response.close()
            conn.close()
        if not done:
            if cancel.cancelled:
                stats.finish_reason = "cancelled"
            else:
                error = self._broken_stream()
                error.partial_stats = counts.finish("error")  # type: ignore[attr-defined]
                raise error
        elif self.engine is not None:
            self.engine.note_reply_done()
        return ChatReply("".join(pieces), counts.finish())

    def _oversized_event(self) -> WorkbenchError:
        return self._error_class(
            f"The server at {self.base_url} sent one event of more than {MAX_EVENT_BYTES >> 20} MiB; the reply "
            "was stopped there.", hint="The server is misbehaving; try another server or model.")

    def _bad_event(self, exc: Exception) -> WorkbenchError:
        return self._error_class(
            f"The server at {self.base_url} sent an event that is not valid JSON ({str(exc)[:100]}).",
            hint="The server is not speaking the OpenAI streaming protocol; check the address.")

    def _broken_stream(self) -> WorkbenchError:
        if self.engine is not None:
            return self.engine.connection_error()
        return RemoteServerError(f"The server at {self.base_url} closed the connection mid-reply.")


class _StreamCounts:
    """The figures of a reply being streamed, from what the server said and when text arrived.

    Token counts are only ever the server's own: the last ``usage`` seen. Our engine puts a running
    usage (and llama-server-style ``timings``) into every content event, so after Stop or a crash the
    last one seen counts exactly the text received; servers that send usage only at the end leave
    the counts of a stopped reply unknown (0, ``counted_by`` ""). Chunks are never counted as tokens.
    """

    def __init__(self, started: float) -> None:
        self.stats = ReplyStats()
        self.started = started
        self.first_at = self.last_at = 0.0
        self.counted = False
        self.engine_rate: float | None = None  # the server's own tokens/s (timings.predicted_per_second)

    def text_arrived(self) -> None:
        self.last_at = time.perf_counter()
        if not self.first_at:
            self.first_at = self.last_at

    def read(self, event: dict) -> None:
        stats = self.stats
        usage = event.get("usage")
        if isinstance(usage, dict) and ("completion_tokens" in usage or "prompt_tokens" in usage):
            stats.prompt_tokens = _count(usage.get("prompt_tokens"))
            stats.completion_tokens = _count(usage.get("completion_tokens"))
            self.counted = True
        timings = event.get("timings")
        if isinstance(timings, dict):
            if "prompt_n" in timings:
                stats.prompt_tokens_evaluated = _count(timings["prompt_n"])
            rate = timings.get("predicted_per_second")
            if isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate) and rate >= 0:
                self.engine_rate = float(rate)

    def finish(self, finish_reason: str | None = None) -> ReplyStats:
        """The stats as they stand (``finish_reason`` overrides the server's, e.g. "error")."""
        stats = self.stats
        ended = time.perf_counter()
        if finish_reason is not None:
            stats.finish_reason = finish_reason
        stats.counted_by = "engine" if self.counted else ""
        if not self.counted:
            stats.prompt_tokens = stats.completion_tokens = stats.prompt_tokens_evaluated = 0
        elif not stats.prompt_tokens_evaluated:
            stats.prompt_tokens_evaluated = stats.prompt_tokens
        stats.ttft_s = (self.first_at or ended) - self.started
        stats.total_s = ended - self.started
        if not self.counted:
            stats.gen_tokens_per_s = 0.0
        elif self.engine_rate is not None:
            stats.gen_tokens_per_s = self.engine_rate
        elif stats.completion_tokens > 1 and self.last_at > self.first_at:
            stats.gen_tokens_per_s = (stats.completion_tokens - 1) / (self.last_at - self.first_at)
        return stats


def _read_bounded(response) -> bytes:
    """A response body, refused beyond MAX_JSON_BYTES (a server that sends gigabytes is broken)."""
    data = response.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise RemoteServerError(f"The server sent an answer of more than {MAX_JSON_BYTES >> 20} MiB.",
                                hint="The server is misbehaving; check the address.")
    return data


def _count(value) -> int:
    """A token count from a server's JSON: a non-negative int, or 0 when it is anything else."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
