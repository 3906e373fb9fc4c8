"""The engine process: one model behind a small OpenAI-compatible HTTP API on 127.0.0.1.

Started by ``runtime.engine_process.LocalEngine`` as ``python -m runtime.engine_server``. Native
crashes (a hostile GGUF, out of memory) kill only this process, never the window. Speaking the
OpenAI protocol means one client serves the local model and remote servers alike.

Protocol with the parent: the API key arrives in the environment (WORKBENCH_ENGINE_KEY); the
process prints exactly one JSON line on stdout: ``{"event": "ready", "port": N, ...}`` once the
model is loaded, or ``{"event": "error", "kind": ..., "message": ..., "hint": ...}`` and exits 3.

Requests may add llama-server's ``ignore_eos`` (used by benchmarks to generate exactly max_tokens).

Endpoints: GET /health, GET /v1/models, POST /v1/chat/completions (stream or not). Streaming
responses end with a chunk carrying ``usage`` and llama-server-style ``timings``
(``prompt_n``: prompt tokens evaluated, ``cache_n``: prompt tokens reused from the KV cache).
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

from runtime.chat_types import LoadOptions, SamplingParams
from runtime.errors import WorkbenchError

KEY_ENV = "WORKBENCH_ENGINE_KEY"
STREAM_FLUSH_S = 0.05  # the GUI repaints at most every ~40 ms, so 50 ms batches still look fluid


def _sampling_from_request(body: dict) -> SamplingParams:
    defaults = SamplingParams()
    seed = body.get("seed")
    return SamplingParams(
        temperature=float(body.get("temperature", defaults.temperature)),
        top_p=float(body.get("top_p", defaults.top_p)),
        top_k=int(body.get("top_k", defaults.top_k)),
        min_p=float(body.get("min_p", defaults.min_p)),
        repeat_penalty=float(body.get("repeat_penalty", defaults.repeat_penalty)),
        max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or defaults.max_tokens),
        seed=int(seed) if seed is not None else None,
    )


class EngineHandler(BaseHTTPRequestHandler):
    server_version = "ModelWorkbenchEngine/1"
    protocol_version = "HTTP/1.1"

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

    def _send_error(self, status: int, message: str, kind: str, hint: str = "") -> None:
        self._send_json(status, {"error": {"message": message, "type": kind, "hint": hint}})

    def _authorized(self) -> bool:
        expected = self.server.api_key
        given = self.headers.get("Authorization", "")
        if expected and not hmac.compare_digest(given, f"Bearer {expected}"):
            self._send_error(401, "Invalid API key.", "authentication_error")
            return False
        return True

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
        if self.path == "/health":
            self._send_json(200, {"status": "ok"})
        elif self.path == "/v1/models":
            if self._authorized():
                self._send_json(200, {"object": "list", "data": [
                    {"id": self.server.model_id, "object": "model", "owned_by": "local"}]})
        else:
            self._send_error(404, f"No such endpoint: {self.path}", "not_found")

    def do_POST(self):
        if self.path != "/v1/chat/completions":
            self._send_error(404, f"No such endpoint: {self.path}", "not_found")
            return
        if not self._authorized():
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            messages = body["messages"]
            params = _sampling_from_request(body)
        except (ValueError, KeyError, TypeError) as exc:
            self._send_error(400, f"Malformed chat request: {exc}", "invalid_request_error")
            return
        ignore_eos = bool(body.get("ignore_eos"))
        with self.server.generation_lock:
            if body.get("stream"):
                self._stream(messages, params, ignore_eos)
            else:
                self._complete(messages, params, ignore_eos)

    def _start(self, messages, params, ignore_eos):
        """Render and tokenize up front so template and context errors become clean HTTP errors."""
        pieces = self.server.runner.generate(messages, params, self._client_gone, ignore_eos)
        try:
            first = next(pieces, None)
        except WorkbenchError as exc:
            self._send_error(400, exc.message, exc.kind, exc.hint)
            return None
        return first, pieces

    def _complete(self, messages, params, ignore_eos):
        started = self._start(messages, params, ignore_eos)
        if started is None:
            return
        first, pieces = started
        text = (first or "") + "".join(pieces)
        stats = self.server.runner.last_stats
        self._send_json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.server.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": stats.finish_reason}],
            "usage": _usage(stats), "timings": _timings(stats),
        })

    def _stream(self, messages, params, ignore_eos):
        started = self._start(messages, params, ignore_eos)
        if started is None:
            return
        first, pieces = started
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.server.model_id}
        write = self.wfile.write
        prefix, suffix = b'data: {"choices":[{"index":0,"delta":{"content":', b'}}]}\n\n'
        try:
            write(b"data: " + json.dumps({**base, "choices": [
                {"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}).encode() + b"\n\n")
            if first is not None:
                write(prefix + json.dumps(first).encode() + suffix)
                # Later pieces are sent in small batches: one event per token wakes the client (which
                # shares the CPU cores with llama.cpp) ~100 times a second for no visible gain.
                pending, flushed_at = [], time.perf_counter()
                for text in pieces:
                    pending.append(text)
                    now = time.perf_counter()
                    if now - flushed_at >= STREAM_FLUSH_S:
                        write(prefix + json.dumps("".join(pending)).encode() + suffix)
                        pending, flushed_at = [], now
                if pending:
                    write(prefix + json.dumps("".join(pending)).encode() + suffix)
            stats = self.server.runner.last_stats
            final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": stats.finish_reason}],
                     "usage": _usage(stats), "timings": _timings(stats)}
            write(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pieces.close()  # the client stopped listening: stop generating at once
        except WorkbenchError as exc:  # mid-stream failure: report it in the stream
            payload = {"error": {"message": exc.message, "type": exc.kind, "hint": exc.hint}}
            try:
                write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            except OSError:
                pass


def _usage(stats) -> dict:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens}


def _timings(stats) -> dict:
    return {"prompt_n": stats.prompt_tokens_evaluated,
            "cache_n": stats.prompt_tokens - stats.prompt_tokens_evaluated,
            "predicted_n": stats.completion_tokens}


class EngineServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, runner, api_key: str, model_id: str, port: int = 0):
        super().__init__(("127.0.0.1", port), EngineHandler)
        self.runner = runner
        self.api_key = api_key
        self.model_id = model_id
        self.generation_lock = threading.Lock()


def _announce(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve one GGUF model over an OpenAI-compatible API.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--ctx", type=int, default=LoadOptions().n_ctx)
    parser.add_argument("--threads", type=int, default=LoadOptions().n_threads)
    parser.add_argument("--gpu-layers", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    options = LoadOptions(n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers)
    try:
        from runtime.llama_runner import LlamaRunner

        started = time.perf_counter()
        runner = LlamaRunner(args.model, options)
        load_s = time.perf_counter() - started
        server = EngineServer(runner, os.environ.get(KEY_ENV, ""), os.path.basename(args.model), args.port)
    except WorkbenchError as exc:
        _announce({"event": "error", "kind": exc.kind, "message": exc.message, "hint": exc.hint})
        return 3
    except OSError as exc:
        _announce({"event": "error", "kind": "engine", "message": f"The engine could not start: {exc}",
                   "hint": ""})
        return 3
    import llama_cpp

    _announce({"event": "ready", "port": server.server_address[1], "load_s": round(load_s, 3),
               "n_ctx": runner.n_ctx, "has_chat_template": runner.chat_template is not None,
               "llama_cpp_python": llama_cpp.__version__,
               "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload())})
    # The parent closing our stdin means it is gone: exit rather than linger as an orphan.
    threading.Thread(target=_exit_when_parent_leaves, args=(server,), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


def _exit_when_parent_leaves(server) -> None:
    try:
        sys.stdin.read()
    finally:
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
