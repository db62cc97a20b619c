"""A scripted OpenAI-compatible server on 127.0.0.1 for the LLM tests: real HTTP, real SSE.

    with FakeOpenAI() as srv:
        srv.script(Reply("崂山区部署了196个项目[1]。"))
        llm = OpenAILike(api_base=srv.base_url, model="fake", ...)

It also answers Ollama's /api/chat (NDJSON lines). Each POST to /v1/chat/completions takes the next scripted `Reply` (the last one repeats
when the script runs out). A reply's text may be a callable of the request body, so a
test can answer from the passages it was actually sent. `stream: true` is answered as
server-sent events, piece by piece, ending with `data: [DONE]`; `stream: false` as one
chat.completion object. Every request (body and headers) is recorded in `requests`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """One scripted response.

    kind: "text" (normal answer), "status" (HTTP error `status` with `text` as the body),
    "stall" (send the headers and the first `stall_after` pieces, then hang for
    `stall_s`), "malformed" (a stream whose events are not JSON), "empty" (a stream with
    no content, only [DONE]).
    """

    text: str | Callable[[dict], str] = ""
    kind: str = "text"
    status: int = 200
    piece_chars: int = 3
    delay_s: float = 0.0  # between stream pieces
    stall_after: int = 1
    stall_s: float = 30.0


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeOpenAI:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *replies: Reply) -> FakeOpenAI:
        with self._lock:
            self.replies = list(replies)
            self.requests.clear()
        return self

    def _next(self) -> Reply:
        with self._lock:
            if len(self.replies) > 1:
                return self.replies.pop(0)
            return self.replies[0] if self.replies else Reply("")

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._json(400, {"error": {"message": "bad json"}})
                    return
                if self.path.rstrip("/") == "/api/chat":  # Ollama's own API
                    with srv._lock:
                        srv.requests.append({"body": body, "headers": dict(self.headers)})
                    self._ollama(srv._next(), body)
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with srv._lock:
                    srv.requests.append({"body": body, "headers": dict(self.headers)})
                reply = srv._next()
                text = reply.text(body) if callable(reply.text) else reply.text
                if reply.kind == "status":
                    self._json(reply.status, {"error": {"message": text, "type": "server_error"}})
                elif body.get("stream"):
                    self._stream(reply, text, body.get("model", "fake"))
                elif reply.kind == "stall":
                    self._wait(reply.stall_s)
                    self._json(200, _completion(text, body.get("model", "fake")))
                elif reply.kind in ("malformed", "empty"):
                    raw = b"{not json" if reply.kind == "malformed" else b""
                    self._raw(200, raw, "application/json")
                else:
                    self._json(200, _completion(text, body.get("model", "fake")))

            # ------------------------------------------------------------ writers
            def _raw(self, status: int, data: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _json(self, status: int, obj: dict) -> None:
                self._raw(status, json.dumps(obj, ensure_ascii=False).encode(), "application/json")

            def _event(self, data: str) -> None:
                payload = f"data: {data}\n\n".encode()
                self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
                self.wfile.flush()

            def _wait(self, seconds: float) -> None:
                srv._stop.wait(seconds)

            def _ollama(self, reply: Reply, body: dict) -> None:
                """Ollama's /api/chat: NDJSON lines when streaming, one object otherwise."""
                text = reply.text(body) if callable(reply.text) else reply.text
                model = body.get("model", "fake")
                if reply.kind == "status":
                    self._json(reply.status, {"error": text})
                    return
                if not body.get("stream", True):
                    self._json(200, _ollama_part(text, model, done=True))
                    return
                lines = [_ollama_part(p, model) for p in _pieces(text, reply.piece_chars)]
                lines.append(_ollama_part("", model, done=True))
                data = b"".join(json.dumps(x, ensure_ascii=False).encode() + b"\n" for x in lines)
                self._raw(200, data, "application/x-ndjson")

            def _stream(self, reply: Reply, text: str, model: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    if reply.kind == "malformed":
                        self._event(json.dumps(_chunk("", model, role=True)))
                        self._event("{this is not json")
                        self._event("[DONE]")
                    else:
                        self._event(json.dumps(_chunk("", model, role=True)))
                        pieces = [] if reply.kind == "empty" else _pieces(text, reply.piece_chars)
                        for i, piece in enumerate(pieces):
                            if reply.kind == "stall" and i == reply.stall_after:
                                self._wait(reply.stall_s)
                                self.close_connection = True
                                return
                            self._event(json.dumps(_chunk(piece, model), ensure_ascii=False))
                            if reply.delay_s:
                                time.sleep(reply.delay_s)
                        self._event(json.dumps(_chunk("", model, finish=True)))
                        self._event("[DONE]")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to do

        return Handler


def _pieces(text: str, n: int) -> list[str]:
    return [text[i : i + n] for i in range(0, len(text), n)]


def _chunk(piece: str, model: str, role: bool = False, finish: bool = False) -> dict:
    delta: dict = {"role": "assistant", "content": ""} if role else {}
    if piece:
        delta["content"] = piece
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if finish else None}],
    }


def _ollama_part(piece: str, model: str, done: bool = False) -> dict:
    part = {
        "model": model,
        "created_at": "2026-11-01T00:00:00Z",
        "message": {"role": "assistant", "content": piece},
        "done": done,
    }
    if done:
        part.update(done_reason="stop", total_duration=1, eval_count=1, prompt_eval_count=1)
    return part


def _completion(text: str, model: str) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
