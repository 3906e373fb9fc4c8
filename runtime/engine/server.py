"""The engine process: one model behind a small OpenAI-compatible HTTP API on 127.0.0.1.

Started by ``runtime.engine.local.LocalEngine`` as ``python -m runtime.engine.server``. Native
crashes (a hostile GGUF, out of memory) kill only this process, never the window. Speaking the
OpenAI protocol means one client serves the local model and remote servers alike.

Protocol with the parent (``runtime.procs``): the API key arrives in the environment
(WORKBENCH_ENGINE_KEY); the process prints JSON lines on stdout: ``{"event": "loading"}`` before it
loads the model, then ``{"event": "ready", "port": N, "placement": "CPU", ...}`` once it is loaded,
or ``{"event": "error", **WorkbenchError.to_payload()}`` and exits 3. After "ready" it reads JSON-line
commands on stdin (``{"cmd": "serve", ...}`` / ``{"cmd": "unserve"}``: see ``_ServedApi``, which
serves the model to other apps on a second listener with its own key) and exits when stdin closes.

GPU layers: ``--gpu-layers auto`` (the default) offloads all layers when this build has a GPU backend
and the model fits in its free memory, as many layers as fit when only part does, else none; ``all`` or -1 offloads all; N the first N. The ready
event says what llama.cpp really did, read from its own load log (``runtime.engine.placement``):
``offload`` holds the layers it offloaded, of how many, and its buffers per device (model, KV cache,
work buffers) with a ``summary`` in words; ``placement`` says it briefly ("CPU", "CUDA0: 31/31
layers") and names what was asked for when llama.cpp did otherwise, e.g. GPU layers asked of a build
with no GPU backend (no silent CPU fallback).

Errors travel as ``WorkbenchError.to_payload()`` inside an OpenAI-style body:
``{"error": {"message": ..., "type": kind, "kind": ..., "hint": ..., "path": ..., "facts": {...}}}``
(mid-stream: the same object as one ``data:`` event).

Parallel requests: with ``--parallel N`` (N > 1) the context holds N sequences, each with its own
KV cache of ``--ctx`` tokens, and a ``BatchScheduler`` (``runtime.engine.scheduler``) decodes up to N
requests together, one ``llama_decode`` per step for all of them; more requests wait for a free
slot. Without it (N = 1) requests take turns under one lock, and a chat's next turn reuses the KV
cache of the previous one. ``/health`` says ``parallel`` and, with N > 1, the scheduler's exact
counts (``decode_calls``, ``sampled_tokens``, ``max_sequences_in_step``, ``active``, ``waiting``...).

Requests may add llama-server's ``ignore_eos`` (used by benchmarks to generate exactly max_tokens).
Every request is checked (BadRequest, 400, names the bad field); the body may be at most six times
what the loaded context can hold; any other failure inside the engine answers 500 with a typed
error naming its cause. Connections are bounded: see ``EngineServer`` and ``IDLE_TIMEOUT_S``.

Endpoints (all need the key): GET /health, GET /v1/models, POST /v1/chat/completions (stream or
not), POST /v1/count_tokens (the prompt size of some messages, and the loaded context length). Every
streamed content chunk carries the running ``usage`` (prompt tokens, and the completion tokens whose
text has been sent, counted as the chunk is written) and llama-server-style ``timings``
(``prompt_n``: prompt tokens evaluated, ``prompt_ms``, ``cache_n``: prompt tokens reused from the KV
cache, ``predicted_n``, ``predicted_ms`` / ``predicted_per_second``: the engine's own generation
timing); the final chunk carries the totals. So a client that stops or loses the engine mid-reply
still has exact counts for the text it received.
"""
from __future__ import annotations

import argparse
import hmac
import json
import os
import select
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from runtime.engine.templates import message_text
from runtime.engine.types import ALL_GPU_LAYERS, LoadOptions, SamplingParams
from runtime.errors import BadRequest, ContextOverflow, EngineError, TemplateError, WorkbenchError
from runtime.models.hardware import GpuDevice
from runtime.procs import peak_rss_bytes

KEY_ENV = "WORKBENCH_ENGINE_KEY"
STREAM_FLUSH_S = 0.05  # the GUI repaints at most every ~40 ms, so 50 ms batches still look fluid


MAX_CONNECTIONS = 32   # open connections at once; more evict the oldest that has not shown the key
IDLE_TIMEOUT_S = 10.0  # a connection silent this long (no request, or a client not reading) is closed
MIN_BODY_LIMIT = 4 << 20


def _sampling_from_request(body: dict) -> SamplingParams:
    """The request's sampling fields, checked (BadRequest names the first bad one)."""
    defaults = SamplingParams()

    def number(key, cast, default):
        value = body.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"'{key}' must be a number, not {json.dumps(value)[:40]}.")
        try:
            return cast(value)
        except (OverflowError, ValueError):
            raise BadRequest(f"'{key}' is out of range: {value}.") from None

    max_tokens = number("max_tokens", int, None)
    if max_tokens is None:
        max_tokens = number("max_completion_tokens", int, defaults.max_tokens)
    params = SamplingParams(
        temperature=number("temperature", float, defaults.temperature),
        top_p=number("top_p", float, defaults.top_p),
        top_k=number("top_k", int, defaults.top_k),
        min_p=number("min_p", float, defaults.min_p),
        repeat_penalty=number("repeat_penalty", float, defaults.repeat_penalty),
        max_tokens=max_tokens,
        seed=number("seed", int, None),
    )
    try:
        params.validate()
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return params


def _messages_from_request(body) -> list[dict]:
    """The request's messages, checked: a list of {"role": text, "content": text or text parts}."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        raise BadRequest("The request needs 'messages': a list of {\"role\": ..., \"content\": ...}.")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"Message {i} needs a 'role' (system, user or assistant).")
        try:
            message_text(m.get("content"))
        except TypeError as exc:
            raise BadRequest(f"Message {i}: {exc}.") from None
    return messages


def _unexpected(exc: BaseException) -> EngineError:
    """An error nobody planned for, as an EngineError that names it."""
    if isinstance(exc, MemoryError):
        return EngineError("The engine ran out of memory for this request.",
                           hint="Use a shorter conversation or a smaller context length, or close other programs.")
    return EngineError(f"The engine failed on this request: {type(exc).__name__}: {exc}"[:2000])


class EngineHandler(BaseHTTPRequestHandler):
    server_version = "ModelWorkbenchEngine/1"
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S  # reads and writes: a silent or stalled peer frees its thread

    # --- helpers -----------------------------------------------------------------------------

    def setup(self):
        super().setup()
        # Stream events are small writes; without this, Nagle's algorithm holds each one back until
        # the previous one is acknowledged (up to the peer's delayed-ACK timeout, ~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # keep the parent's stderr clean
        pass

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, error: WorkbenchError | str, kind: str = "invalid_request_error") -> None:
        """Answer with an error body (see ``error_body``)."""
        self._send_json(status, error_body(error, kind))

    def _authorized(self) -> bool:
        expected = self.server.api_key
        given = self.headers.get("Authorization", "")
        if expected and not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            self.close_connection = True
            self._send_error(401, "Invalid API key.", "authentication_error")
            return False
        self.server.mark_authorized(self.connection)
        return True

    def _read_json_body(self):
        """The request body as JSON; BadRequest when it is missing, too big or not JSON."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise BadRequest("Content-Length is not a number.") from None
        limit = self.server.body_limit
        if length > limit:
            self.close_connection = True  # the body stays unread
            raise BadRequest(f"The request is {length:,} bytes, more than this engine takes ({limit:,}).",
                             hint="Send a shorter conversation: it could not fit the loaded context anyway.")
        try:
            return json.loads(self.rfile.read(max(length, 0)) or b"{}")
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"The request is not valid JSON: {str(exc)[:200]}") from None

    def _client_gone(self) -> bool:
        """True once the client closed its end (how a chat client says Stop)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # --- endpoints ---------------------------------------------------------------------------

    def do_GET(self):
        if not self._authorized():
            return
        if self.path == "/health":
            scheduler = self.server.scheduler
            self._send_json(200, {"status": "ok", **(scheduler.counters() if scheduler else {"parallel": 1})})
        elif self.path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [
                {"id": self.server.model_id, "object": "model", "owned_by": "local"}]})
        else:
            self._send_error(404, f"No such endpoint: {self.path}", "not_found")

    def do_POST(self):
        if not self._authorized():
            return
        routes = {"/v1/count_tokens": self._count_tokens, "/v1/chat/completions": self._chat}
        route = routes.get(self.path)
        if route is None:
            self.close_connection = True
            self._send_error(404, f"No such endpoint: {self.path}", "not_found")
            return
        try:
            route(self._read_json_body())
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True  # the client left
        except WorkbenchError as exc:
            self._send_error(400 if isinstance(exc, (BadRequest, TemplateError, ContextOverflow)) else 500, exc)
        except Exception as exc:  # noqa: BLE001 - every failure reaches the client as a typed error
            self._send_error(500, _unexpected(exc))

    def _chat(self, body) -> None:
        messages = _messages_from_request(body)
        params = _sampling_from_request(body)
        ignore_eos = bool(body.get("ignore_eos"))
        reply = self._stream if body.get("stream") else self._complete
        if self.server.scheduler is not None:  # --parallel N: requests share the decode steps
            reply(messages, params, ignore_eos)
            return
        with self.server.generation_lock:
            reply(messages, params, ignore_eos)

    def _count_tokens(self, body) -> None:
        """POST /v1/count_tokens {"messages": [...]} -> {"prompt_tokens": N, "n_ctx": M}.

        N is the length of the prompt a chat request with these messages would evaluate (the model's
        own template, with the generation prompt), so callers can fit a conversation exactly; for a
        prompt far too long to fit, a lower bound above M.
        """
        messages = _messages_from_request(body)
        runner = self.server.runner
        if self.server.scheduler is not None:  # tokenizing only reads the vocabulary: no lock needed
            n = runner.count_prompt_tokens(messages)
        else:
            with self.server.generation_lock:  # the runner is not thread-safe
                n = runner.count_prompt_tokens(messages)
        self._send_json(200, {"prompt_tokens": n, "n_ctx": runner.n_ctx})

    def _start(self, messages, params, ignore_eos):
        """Render, tokenize and evaluate up to the first piece, so that errors become HTTP errors.
        Returns (first piece or None, the other pieces, the stats that count what was taken)."""
        scheduler = self.server.scheduler
        if scheduler is not None:
            pieces = scheduler.generate(messages, params, self._client_gone, ignore_eos)
            try:
                return next(pieces, None), pieces, pieces.stats
            except BaseException:
                pieces.close()
                raise
        pieces = self.server.runner.generate(messages, params, self._client_gone, ignore_eos)
        return next(pieces, None), pieces, self.server.runner.last_stats

    def _complete(self, messages, params, ignore_eos):
        first, pieces, stats = self._start(messages, params, ignore_eos)
        clock = _GenerationClock(stats)
        try:
            text = (first or "") + "".join(pieces)
        finally:
            pieces.close()
        clock.piece()
        self._send_json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.server.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": stats.finish_reason}],
            "usage": _usage(stats), "timings": _timings(stats, clock),
        })

    def _stream(self, messages, params, ignore_eos):
        first, pieces, stats = self._start(messages, params, ignore_eos)
        clock = _GenerationClock(stats)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.server.model_id}
        write = self.wfile.write
        # Every chunk is a whole OpenAI chunk object (id, object, created, model): strict clients need them.
        prefix = b'data: ' + json.dumps(base).encode()[:-1] + b',"choices":[{"index":0,"delta":{"content":'

        def chunk(text: str) -> bytes:
            # Every content chunk carries the running usage and timings, counted when it is written:
            # the generator is paused right after the batch's last piece, so the counts are exactly
            # those of the text sent so far (what a client that stops or loses the engine has got).
            return (prefix + json.dumps(text).encode() + b'}}],"usage":' + json.dumps(_usage(stats)).encode()
                    + b',"timings":' + json.dumps(_timings(stats, clock)).encode() + b"}\n\n")

        try:
            write(b"data: " + json.dumps({**base, "choices": [
                {"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}).encode() + b"\n\n")
            if first is not None:
                write(chunk(first))
                # Later pieces are sent in small batches: one event per token wakes the client (which
                # shares the CPU cores with llama.cpp) ~100 times a second for no visible gain.
                pending, flushed_at = [], clock.first_at
                for text in pieces:
                    pending.append(text)
                    now = clock.last_at = time.perf_counter()
                    if now - flushed_at >= STREAM_FLUSH_S:
                        write(chunk("".join(pending)))
                        pending, flushed_at = [], now
                if pending:
                    write(chunk("".join(pending)))
            final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": stats.finish_reason}],
                     "usage": _usage(stats), "timings": _timings(stats, clock)}
            write(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pieces.close()  # the client stopped listening: stop generating at once
        except Exception as exc:  # noqa: BLE001 - mid-stream failure: report it in the stream
            error = exc if isinstance(exc, WorkbenchError) else _unexpected(exc)
            try:
                write(b"data: " + json.dumps(error_body(error)).encode() + b"\n\n")
            except OSError:
                pass
        finally:
            pieces.close()  # a reply cut short frees its slot (--parallel) or its sampler


class _GenerationClock:
    """When the first and the latest reply piece left the generator, and how many tokens the first
    piece took: the engine's own generation timing, free of the client's batching and scheduling."""

    __slots__ = ("stats", "first_at", "first_n", "last_at")

    def __init__(self, stats) -> None:
        self.stats = stats
        self.first_at = self.last_at = time.perf_counter()
        self.first_n = stats.completion_tokens

    def piece(self) -> None:
        self.last_at = time.perf_counter()

    def timings(self) -> dict:
        """predicted_ms: first piece -> latest piece; predicted_per_second: the tokens generated after
        the first piece over that time (the same figure as ReplyStats.gen_tokens_per_s)."""
        span = self.last_at - self.first_at
        after_first = self.stats.completion_tokens - self.first_n
        rate = after_first / span if span > 0 and after_first > 0 else 0.0
        return {"predicted_ms": round(span * 1000, 3), "predicted_per_second": round(rate, 3)}


def error_body(error: WorkbenchError | str, kind: str = "invalid_request_error") -> dict:
    """An OpenAI-compatible error body. A WorkbenchError travels whole: its ``to_payload()``, with
    ``type`` set to its kind; a plain message (protocol errors) gets the OpenAI ``type`` ``kind``."""
    payload = error.to_payload() if isinstance(error, WorkbenchError) else {"message": error, "kind": kind}
    return {"error": {**payload, "type": payload["kind"]}}


def _usage(stats) -> dict:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens}


def _timings(stats, clock: "_GenerationClock | None" = None) -> dict:
    """llama-server-style timings: prompt_n / prompt_ms (evaluated), cache_n (reused), predicted_n,
    and with ``clock`` predicted_ms / predicted_per_second (see ``_GenerationClock.timings``)."""
    timings = {"prompt_n": stats.prompt_tokens_evaluated, "prompt_ms": round(stats.prompt_s * 1000, 3),
               "cache_n": stats.prompt_tokens - stats.prompt_tokens_evaluated,
               "predicted_n": stats.completion_tokens}
    if clock is not None:
        timings.update(clock.timings())
    return timings


class EngineServer(ThreadingHTTPServer):
    """One thread per connection, at most MAX_CONNECTIONS of them. When all are taken, a new
    connection evicts the oldest one that has not shown the API key yet, so idle strangers cannot
    lock the engine's own client out; if every connection has shown the key, the new one is closed."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, runner, api_key: str, model_id: str, port: int = 0, host: str = "127.0.0.1",
                 generation_lock: threading.Lock | None = None, scheduler=None):
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), EngineHandler)
        self.runner = runner
        self.api_key = api_key
        self.model_id = model_id
        # One lock per runner: a second listener (serving other apps) shares the engine's.
        self.generation_lock = generation_lock or threading.Lock()
        # --parallel N (N > 1): a BatchScheduler (runtime.engine.scheduler) decodes the requests
        # together instead of one after another under the lock.
        self.scheduler = scheduler
        # JSON may spell each byte of text as up to 6 ("\\u00e9"); a bigger body cannot fit the context.
        self.body_limit = max(MIN_BODY_LIMIT, 6 * runner.max_prompt_bytes)
        self._open: dict[socket.socket, bool] = {}  # connection -> has shown the key; oldest first
        self._open_lock = threading.Lock()

    def process_request(self, request, client_address):
        with self._open_lock:
            if len(self._open) >= MAX_CONNECTIONS:
                victim = next((conn for conn, known in self._open.items() if not known), None)
                if victim is None:
                    self.shutdown_request(request)
                    return
                del self._open[victim]
                _hang_up(victim)
            self._open[request] = False
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._open_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def mark_authorized(self, request) -> None:
        with self._open_lock:
            if request in self._open:
                self._open[request] = True

    def handle_error(self, request, client_address):
        pass  # a connection that broke (evicted, reset): nothing to report, the next one is served

    def hang_up_all(self) -> None:
        """Close every open connection (a reply being streamed to one stops at its next write)."""
        with self._open_lock:
            open_now = list(self._open)
        for conn in open_now:
            _hang_up(conn)


def _hang_up(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _announce(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


# ggml_backend_dev_type: CPU, GPU, IGPU (integrated, host memory), ACCEL (BLAS, AMX), META
_DEV_GPU, _DEV_IGPU = 1, 2


def gpu_devices() -> list[GpuDevice]:
    """The GPUs this llama.cpp build would offload to, with their free memory (empty: CPU only).

    Read through ggml's device registry (llama-cpp-python binds no ``ggml_backend_dev_*`` function,
    so they are bound here with ctypes). Like llama.cpp, integrated GPUs count only when there is no
    discrete one. Call it in the engine process: on CUDA it creates a context on each device.
    """
    import ctypes

    import llama_cpp

    if not llama_cpp.llama_supports_gpu_offload():  # also loads dynamically built backends
        return []
    try:
        from llama_cpp._ggml import libggml as ggml

        ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
        ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
        for fn in (ggml.ggml_backend_dev_name, ggml.ggml_backend_dev_description):
            fn.argtypes, fn.restype = [ctypes.c_void_p], ctypes.c_char_p
        ggml.ggml_backend_dev_type.argtypes, ggml.ggml_backend_dev_type.restype = [ctypes.c_void_p], ctypes.c_int
        ggml.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                                 ctypes.POINTER(ctypes.c_size_t)]
        ggml.ggml_backend_dev_memory.restype = None
    except (ImportError, AttributeError, OSError):  # another llama-cpp-python layout
        return [GpuDevice("GPU", "a GPU backend (its devices could not be listed)", 0, 0)]
    found: dict[int, list[GpuDevice]] = {_DEV_GPU: [], _DEV_IGPU: []}
    for index in range(ggml.ggml_backend_dev_count()):
        dev = ggml.ggml_backend_dev_get(index)
        kind = ggml.ggml_backend_dev_type(dev)
        if kind not in found:
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        ggml.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        found[kind].append(GpuDevice(
            name=(ggml.ggml_backend_dev_name(dev) or b"GPU").decode("utf-8", "replace"),
            description=(ggml.ggml_backend_dev_description(dev) or b"").decode("utf-8", "replace"),
            free_bytes=int(free.value), total_bytes=int(total.value)))
    return found[_DEV_GPU] or found[_DEV_IGPU]


def choose_gpu_layers(requested: int | None, model_path: str, n_ctx: int, devices: list[GpuDevice]) -> int:
    """``requested`` if given, else the automatic choice (``this_machine.auto_gpu_layers``): all layers
    if the model fits the GPUs' free memory, as many as fit if only part does, else 0."""
    if requested is not None:
        return requested
    if not devices:
        return 0
    from runtime.models.gguf_info import read_gguf_info
    from runtime.models.this_machine import auto_gpu_layers

    return auto_gpu_layers(read_gguf_info(model_path), n_ctx, [d.free_bytes for d in devices])


def parse_gpu_layers(text: str) -> int | None:
    """``--gpu-layers``: "auto" -> None, "all" or -1 -> -1, N >= 0 -> N."""
    value = str(text).strip().lower()
    if value == "auto":
        return None
    if value == "all":
        return ALL_GPU_LAYERS
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of layers, 'all' or 'auto'") from None
    if number < -1:
        raise argparse.ArgumentTypeError(f"{number} GPU layers: use 0 or more, or -1 / 'all' for all layers")
    return number


def main(argv: list[str] | None = None) -> int:
    if (argv if argv is not None else sys.argv[1:]) == ["--list-gpus"]:
        # The GPUs alone, for fit badges before any model is loaded (see runtime.engine.local.list_gpus).
        _announce({"event": "gpus", "devices": [d.__dict__ for d in gpu_devices()]})
        return 0
    parser = argparse.ArgumentParser(description="Serve one GGUF model over an OpenAI-compatible API.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--ctx", type=int, default=LoadOptions().n_ctx)
    parser.add_argument("--threads", type=int, default=LoadOptions().n_threads)
    parser.add_argument("--gpu-layers", type=parse_gpu_layers, default=None, help="auto (default), all, -1 or N")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=1,
                        help="requests decoded at once in one batch, each with its own KV cache of --ctx tokens")
    args = parser.parse_args(argv)
    _announce({"event": "loading", "model": os.path.basename(args.model)})
    try:
        import llama_cpp

        from runtime.engine.runner import LlamaRunner

        # Memory before the model: what the loaded model costs is measured from here (see LocalEngine).
        baseline_rss = peak_rss_bytes()
        started = time.perf_counter()
        LoadOptions(n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers,
                    n_parallel=args.parallel).validate()
        devices = gpu_devices()
        # The KV cache of N sequences takes N contexts' room in the fit.
        n_gpu_layers = choose_gpu_layers(args.gpu_layers, args.model, args.ctx * args.parallel, devices)
        options = LoadOptions(n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=n_gpu_layers,
                              n_parallel=args.parallel)
        runner = LlamaRunner(args.model, options)
        load_s = time.perf_counter() - started
        # What llama.cpp did (read from its load log), not what was asked for.
        report = runner.placement_report
        placement = report.placement(n_gpu_layers)
        scheduler = None
        if args.parallel > 1:
            from runtime.engine.scheduler import BatchScheduler

            scheduler = BatchScheduler(runner).start()
        server = EngineServer(runner, os.environ.get(KEY_ENV, ""), os.path.basename(args.model), args.port,
                              scheduler=scheduler)
    except WorkbenchError as exc:
        _announce({"event": "error", **exc.to_payload()})
        return 3
    except ValueError as exc:
        error = WorkbenchError(f"The engine cannot load the model this way: {exc}", path=args.model)
        _announce({"event": "error", **error.to_payload()})
        return 3
    except Exception as exc:  # noqa: BLE001 - OSError, MemoryError, ...: say what it was
        error = EngineError(f"The engine could not start: {type(exc).__name__}: {exc}", path=args.model)
        _announce({"event": "error", **error.to_payload()})
        return 3
    _announce({"event": "ready", "port": server.server_address[1], "load_s": round(load_s, 3),
               "n_ctx": runner.n_ctx, "n_parallel": args.parallel, "has_chat_template": runner.chat_template is not None,
               "llama_cpp_python": llama_cpp.__version__, "gpu_offload": bool(devices),
               "gpu_devices": [d.__dict__ for d in devices], "n_gpu_layers": n_gpu_layers,
               "placement": placement, "offload": report.to_dict(), "baseline_rss_bytes": baseline_rss})
    # Commands from the parent arrive on stdin; its closing stdin means it is gone: exit rather than
    # linger as an orphan.
    threading.Thread(target=_read_commands, args=(server,), name="commands", daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


# --- commands from the parent --------------------------------------------------------------------

def _read_commands(server: EngineServer) -> None:
    """Read JSON-line commands from stdin until it closes, then exit (see ``_ServedApi``)."""
    served = _ServedApi(server)
    try:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                command = json.loads(line)
                if not isinstance(command, dict):
                    raise ValueError("not a JSON object")
            except ValueError:
                continue  # not a command: nothing to answer
            _announce(served.handle(command))
    except (OSError, ValueError):
        pass
    finally:
        os._exit(0)


class _ServedApi:
    """The second listener that serves the loaded model to other apps (off until asked).

    ``{"cmd": "serve", "host": H, "port": N, "api_key": K, "id": I}`` opens it (a running one is
    closed first) and answers ``{"event": "serving", "host": H, "port": N, "id": I}``, or
    ``{"event": "serve_failed", "id": I, **EngineError.to_payload()}`` (port taken, no such address);
    ``{"cmd": "unserve", "id": I}`` closes it, with the connections it has open, and answers
    ``{"event": "unserved", "id": I}``. It shares the engine's runner and generation lock, so its
    requests and the app's own chat take turns; it has its own key.
    """

    def __init__(self, engine_server: EngineServer) -> None:
        self.engine_server = engine_server
        self.server: EngineServer | None = None

    def handle(self, command: dict) -> dict:
        name, ident = command.get("cmd"), command.get("id")
        if name == "serve":
            self.close()
            try:
                host, port, key = _serve_args(command)
                self.server = self._open(host, port, key)
            except EngineError as exc:
                return {"event": "serve_failed", "id": ident, **exc.to_payload()}
            bound = self.server.server_address
            return {"event": "serving", "id": ident, "host": host, "port": bound[1]}
        if name == "unserve":
            self.close()
            return {"event": "unserved", "id": ident}
        error = EngineError(f"The engine does not know the command {json.dumps(name)[:60]}.", hint="")
        return {"event": "command_failed", "id": ident, **error.to_payload()}

    def _open(self, host: str, port: int, key: str) -> EngineServer:
        main_server = self.engine_server
        try:
            server = EngineServer(main_server.runner, key, main_server.model_id, port, host,
                                  generation_lock=main_server.generation_lock, scheduler=main_server.scheduler)
        except OSError as exc:
            raise _bind_error(exc, host, port) from None
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="served-api", daemon=True).start()
        return server

    def close(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.hang_up_all()


def _serve_args(command: dict) -> tuple[str, int, str]:
    host, port, key = command.get("host") or "127.0.0.1", command.get("port", 0), command.get("api_key")
    if not isinstance(host, str):
        raise EngineError("The address to serve on must be text, like 127.0.0.1.", hint="")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise EngineError(f"{json.dumps(port)[:20]} is not a port: use a number from 1 to 65535.",
                          hint="8080 is a common choice.", port=port)
    if not isinstance(key, str) or not key:
        raise EngineError("Serving to other apps needs an API key.", hint="")
    return host, port, key


def _bind_error(exc: OSError, host: str, port: int) -> EngineError:
    """Why the served API could not listen on host:port, in words (EngineError with host and port)."""
    import errno

    facts = {"host": host, "port": port, "details": f"{type(exc).__name__}: {exc}"}
    if exc.errno == errno.EADDRINUSE:
        return EngineError(f"Port {port} is already in use by another program: choose another port.",
                           hint="", **facts)
    if exc.errno == errno.EACCES:
        return EngineError(f"This app may not listen on port {port}: choose a port above 1024.", hint="",
                           **facts)
    if exc.errno == errno.EADDRNOTAVAIL:
        return EngineError(f"This computer has no network address {host}.",
                           hint="Use 127.0.0.1 (this computer only) or one of this computer's own addresses.",
                           **facts)
    if isinstance(exc, socket.gaierror):
        return EngineError(f"'{host}' is not an address this computer can listen on.",
                           hint="Use 127.0.0.1 (this computer only) or an IP address of this computer.", **facts)
    return EngineError(f"The model could not be served on {host}:{port}: {exc.strerror or exc}.", hint="",
                       **facts)


if __name__ == "__main__":
    sys.exit(main())
