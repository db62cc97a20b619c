"""`rag serve`: the index as a service other tools call, in one FastAPI app.

- `GET /v1/models`, `POST /v1/chat/completions`: OpenAI-compatible chat (Open WebUI,
  LobeChat, Chatbox, the `openai` client). The served index is the knowledge base
  `default`, the one model listed. Answers carry `[n]` markers; the response carries the
  cited passages as a top-level `references` list and `refused` beside it (on the last
  chunk before `data: [DONE]` when streamed).
- `POST /retrieval`: Dify's External Knowledge API (`records` of content, score, title,
  metadata; errors 1001/1002/2001 as Dify defines them).
- `GET /healthz`, OpenAPI docs at `/docs`.

Every API route needs `Authorization: Bearer KEY` with one of the service's keys, unless
it was started with `--no-auth` (loopback only). Bodies over `MAX_BODY_BYTES` are refused
with 413, a failure shows `public_error`'s text (never a traceback), and no CORS headers
are sent: a browser page from elsewhere cannot call the API.

A passage's `score` (in `references` and Dify's `records`) is its embedding's cosine
similarity to the question, clipped to 0..1: the fused retrieval score only orders the
passages of one query, the cosine means the same across queries.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.errors import ConfigError, NotFoundError, RagError
from rag.serve.limits import check_question
from rag.serve.public import hide_paths, public_error

KNOWLEDGE_BASE = "default"
MAX_BODY_BYTES = 1 << 20  # a chat with a long history fits many times over
MAX_CONCURRENT_ANSWERS = 4  # as the chat UI's queue: more would only slow every answer
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


def is_api_path(path: str) -> bool:
    """Whether `path` is an API route (key and body limit apply); /healthz, /docs and the
    chat UI at / are not."""
    return path == "/retrieval" or path.rstrip("/") == "/v1" or path.startswith("/v1/")


# =========================================================================== options
@dataclass(frozen=True)
class ServeOptions:
    """What `rag serve` was asked to do."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_keys: tuple[str, ...] = ()
    no_auth: bool = False
    ui: bool = True  # the chat UI at /
    ui_auth: tuple[str, str] | None = None  # its login, USER:PASSWORD as `app.py --auth`
    account_keys: bool = False  # the home has accounts, whose keys are accepted too


def ui_login(value: str | None) -> tuple[str, str] | None:
    """The chat UI's login from `--auth USER:PASSWORD`, else `$RAG_AUTH`; None for none."""
    from rag.serve.ui.app import parse_auth

    return parse_auth(value if value is not None else os.environ.get("RAG_AUTH"))


def api_keys(cli_keys: Sequence[str] | None, env: str | None = None) -> tuple[str, ...]:
    """The keys the API accepts: `--api-key` values, else `$RAG_API_KEYS` (comma-separated)."""
    if env is None:
        env = os.environ.get("RAG_API_KEYS", "")
    keys = [k.strip() for k in (cli_keys or [])] or [k.strip() for k in env.split(",")]
    return tuple(k for k in keys if k)


def check_serve_options(opts: ServeOptions) -> None:
    """Refuse to start open to the network, or with nothing to let a caller in."""
    if opts.no_auth and opts.api_keys:
        raise ConfigError("--no-auth 与 --api-key（或 RAG_API_KEYS）不能同时使用，请只选其一。")
    if opts.no_auth and opts.host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"拒绝在 {opts.host} 上不设密钥提供服务：能访问该地址的任何人都能读取知识库。"
            f"请用 --api-key KEY（或设置 RAG_API_KEYS），或改用 --host {DEFAULT_HOST}。"
        )
    if (
        opts.ui
        and opts.ui_auth is None
        and not opts.account_keys
        and opts.host not in LOOPBACK_HOSTS
    ):
        raise ConfigError(
            f"拒绝在 {opts.host} 上提供无需登录的网页界面：能访问该地址的任何人都能读取和修改知识库。"
            "请用 --auth 用户名:密码（或设置 RAG_AUTH），或加 --no-ui 只提供 API。"
        )
    if not opts.no_auth and not opts.api_keys and not opts.account_keys:
        raise ConfigError(
            "没有可用的 API 密钥：请用 --api-key KEY（可重复）或环境变量 RAG_API_KEYS"
            f"（逗号分隔）设置；只在本机（--host {DEFAULT_HOST}）使用时可加 --no-auth。"
        )


# =========================================================================== middleware
class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before any route reads it.

    Checks the declared length and counts what actually arrives (chunked bodies too).
    """

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, send) -> None:
        mb = self.max_bytes / 2**20
        await _send_json(send, 413, _openai_error(f"请求体过大，不能超过 {mb:g} MB。", "too_large"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not is_api_path(scope.get("path", "")):
            return await self.app(scope, receive, send)  # the UI has Gradio's own limits
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared > self.max_bytes:
            return await self._refuse(send)
        seen, started = 0, False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)


class _TooLarge(Exception):
    pass


async def _send_json(send, status: int, body: dict, headers: Sequence[tuple] = ()) -> None:
    data = json.dumps(body, ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _openai_error(message: str, code: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _dify_error(code: int, message: str) -> dict:
    return {"error_code": code, "error_msg": message}


# =========================================================================== auth
def _bearer(header: str | None) -> str | None:
    """The key of an `Authorization: Bearer KEY` header; None when malformed or missing."""
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or " " in key:
        return None
    return key


def _key_name(key: str, keys: Sequence[str]) -> str | None:
    """The name of `key` in the logs, "key1" for the first of `keys`...; None if unknown."""
    # compare with every key, in constant time: no timing hint about which one is close
    found = [hmac.compare_digest(key.encode(), k.encode()) for k in keys]
    return f"key{found.index(True) + 1}" if any(found) else None


class _AuthError(Exception):
    def __init__(self, malformed: bool):
        self.malformed = malformed


# =========================================================================== passages
def relevance(system, question: str, hits) -> list[float]:
    """Each hit's relevance in 0..1: the cosine of its stored vector and the question's.

    The fused retrieval score only orders one query's passages; the cosine (embeddings are
    normalised) is comparable across queries, which a score threshold needs.
    """
    if not hits:
        return []
    import numpy as np

    from rag.textnorm import norm

    qv = np.asarray(system.embedder.embed_query(norm(question)), dtype=np.float32).ravel()
    vecs = system.index.vectors.vectors(np.asarray([h.row for h in hits], dtype=np.int64))
    cos = np.asarray(vecs, dtype=np.float32) @ qv
    return [float(min(max(c, 0.0), 1.0)) for c in cos]


def references(system, ans) -> list[dict]:
    """The cited passages of `ans` as the API returns them, each with its relevance."""
    by_chunk = {h.chunk_id: h for h in ans.retrieved}
    cited = [by_chunk.get(c.chunk_id) for c in ans.citations]
    known = [h for h in cited if h is not None]
    scores = dict(
        zip(
            [h.chunk_id for h in known],
            relevance(system, ans.rewritten_question or ans.question, known),
        )
    )
    return [
        {
            "n": c.n,
            "doc_id": c.doc_id,
            "title": c.title,
            "location": c.location,
            "text": c.text,
            "score": round(scores[c.chunk_id], 4) if c.chunk_id in scores else None,
        }
        for c in ans.citations
    ]


# =========================================================================== chat
def _text_of(content: Any) -> str:
    """An OpenAI message's text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


@dataclass
class Conversation:
    """What a chat request asks: the last user message, rewritten with the turns before."""

    question: str
    standalone: str
    history: list = field(default_factory=list)


def read_conversation(system, messages: list[dict]) -> Conversation:
    """The last user message and what it means given the earlier turns.

    Earlier user messages are rewritten without an LLM (`carry_over`), as `rag chat` would
    have, so a follow-up ("那它的投资是多少？") carries the subject of the turns before it.
    """
    from rag.llm.answerer import LLMAnswerer
    from rag.llm.rewrite import make_rewriter
    from rag.read.followup import ChatSession, Turn, carry_over

    turns: list[tuple[str, str]] = []  # (user question, the assistant's answer after it)
    for m in messages:
        role, text = m.get("role"), _text_of(m.get("content")).strip()
        if role == "user":
            turns.append((text, ""))
        elif role == "assistant" and turns:
            turns[-1] = (turns[-1][0], text)
    if not turns or not turns[-1][0]:
        raise RagError("没有找到要回答的问题：messages 的最后一条用户消息不能为空。")
    *earlier, (question, _) = turns
    rewriter = None
    if isinstance(system.answerer, LLMAnswerer):
        rewriter = make_rewriter(system.answerer.llm, system.settings)
    session = ChatSession(system, rewriter=rewriter)
    for q, a in earlier:
        if q:
            previous = session.history[-1].rewritten if session.history else ""
            session.history.append(Turn(q, carry_over(q, previous), a))
    return Conversation(question, session.rewrite(question), session.history)


class Service:
    """The loaded systems behind the API, who may call it, and how many answers may run
    at once.

    The one seam between a request and the data: `authorize` turns a bearer key into a
    `Caller` (a service key reads every knowledge base, an account's key what it was
    granted), and `system_for` gives the system of a knowledge base the caller may
    read, refusing any other exactly as one that does not exist. `systems` (a home's
    knowledge bases, rag.system.KbSystems) is None when one bare index is served as
    `default`; `accounts` (rag.org.accounts.Accounts) lets account keys in; `audit`
    (rag.org.audit.AuditLog) records every answer.
    """

    def __init__(self, system, keys: Sequence[str] = (), no_auth: bool = False,
                 systems=None, accounts=None, audit=None):  # fmt: skip
        self.system = system
        self.keys = tuple(keys)
        self.no_auth = no_auth
        self.systems = systems
        self.accounts = accounts
        self.audit = audit
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT_ANSWERS)

    def authorize(self, header: str | None):
        """The caller (`rag.org.accounts.Caller`; logs name it: "key2", an account's name,
        "no-auth" when none is needed)."""
        from rag.org.accounts import Caller

        if self.no_auth:
            return Caller("no-auth", "admin", None)
        key = _bearer(header)
        if key is None:
            raise _AuthError(malformed=True)
        name = _key_name(key, self.keys)
        if name is not None:
            return Caller(name, "admin", None)
        caller = self.accounts.caller_for_key(key) if self.accounts is not None else None
        if caller is None:
            raise _AuthError(malformed=False)
        return caller

    def models(self, caller) -> list[str]:
        """The knowledge bases `caller` may read."""
        if self.systems is None:
            return [KNOWLEDGE_BASE] if caller.may_read(KNOWLEDGE_BASE) else []
        return self.systems.names(caller)

    def system_for(self, knowledge_base: str, caller):
        """The system of `knowledge_base`; NotFoundError when it does not exist or the
        caller may not read it (the same message for both)."""
        from rag.org.kbs import kb_not_found

        if self.systems is None:
            if knowledge_base != KNOWLEDGE_BASE or not caller.may_read(knowledge_base):
                raise kb_not_found(knowledge_base)
            return self.system
        return self.systems.get(knowledge_base, caller)

    def _record(self, caller, system, ans, started: float) -> None:
        if self.audit is not None:
            latency = (time.perf_counter() - started) * 1e3
            self.audit.record(str(caller), system.kbs or (KNOWLEDGE_BASE,), ans, latency, "api")

    def answer(self, conv: Conversation, system=None, caller=None):
        system = system or self.system
        check_question(conv.question, system.settings)
        started = time.perf_counter()
        with self.slots:
            ans = system.ask(conv.standalone)
        ans.question, ans.rewritten_question = conv.question, conv.standalone
        self._record(caller, system, ans, started)
        return ans

    def stream(self, conv: Conversation, system=None, caller=None) -> Iterator[str | Any]:
        system = system or self.system
        check_question(conv.question, system.settings)
        started = time.perf_counter()
        with self.slots:
            final = None
            for item in system.answerer.stream(conv.standalone):
                if isinstance(item, str):
                    yield item
                else:
                    final = item
        final.question, final.rewritten_question = conv.question, conv.standalone
        self._record(caller, system, final, started)
        yield final


log = logging.getLogger("rag.serve.api")


def _log_request(request, key_name: str, status: int, started: float) -> None:
    """One line per API request with the name of its key ("key2", "-" for none), never the
    key itself; a streamed answer is logged when its response starts."""
    ms = (time.perf_counter() - started) * 1e3
    client = request.client.host if request.client else "?"
    log.info("%s %s %s %s %d %.0fms", client, key_name, request.method, request.url.path,
             status, ms)  # fmt: skip


def _completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def _answer_extras(system, ans) -> dict:
    return {
        "references": references(system, ans),
        "refused": ans.refused,
        "rewritten_question": ans.rewritten_question,
    }


# =========================================================================== request bodies
class ChatRequest(BaseModel):
    """An OpenAI chat completion request; fields we do not use are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = KNOWLEDGE_BASE
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False


class RetrievalSetting(BaseModel):
    top_k: int = Field(ge=1, le=100)
    score_threshold: float = Field(default=0.0, ge=0.0, le=1.0)


class RetrievalRequest(BaseModel):
    """A Dify External Knowledge API request (`metadata_condition` is not used yet)."""

    model_config = ConfigDict(extra="allow")
    knowledge_id: str
    query: str = Field(min_length=1)
    retrieval_setting: RetrievalSetting


# =========================================================================== the app
def create_app(system, keys: Sequence[str] = (), *, no_auth: bool = False,
               max_body_bytes: int = MAX_BODY_BYTES, ui: bool = False,
               ui_auth: tuple[str, str] | None = None, ui_temp_dir=None,
               systems=None, accounts=None, audit=None):  # fmt: skip
    """The FastAPI app serving `system` as the knowledge base `default`, or with `systems`
    a home's knowledge bases, each a model (`Service` says who may read which).

    `keys` are the accepted bearer keys; `no_auth` lets every caller in (the caller of
    this function checks that only loopback is served so, see `check_serve_options`).
    `ui` mounts the chat UI at `/` with its own login `ui_auth` (`rag.serve.api_ui`).
    """
    service = Service(system, keys, no_auth, systems, accounts, audit)
    app = FastAPI(
        title="rag",
        description="对自己的文档提问：OpenAI 兼容的对话接口（带引用）与 Dify 外部知识库接口。",
        version="0.1.0",
    )
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    def is_dify(request: Request) -> bool:
        return request.url.path.rstrip("/") == "/retrieval"

    @app.middleware("http")
    async def require_key(request: Request, call_next):
        if not is_api_path(request.url.path):
            return await call_next(request)
        started = time.perf_counter()
        try:
            name = service.authorize(request.headers.get("authorization"))
        except _AuthError as e:
            _log_request(request, "-", 401, started)
            hint = "请求头应为 Authorization: Bearer <API 密钥>。"
            if is_dify(request):
                body = (
                    _dify_error(1001, "Authorization 请求头格式不正确。" + hint)
                    if e.malformed
                    else _dify_error(1002, "授权失败：API 密钥无效。")
                )
            else:
                body = _openai_error(
                    ("缺少 API 密钥或格式不正确。" + hint) if e.malformed else "API 密钥无效。",
                    "invalid_api_key",
                    "authentication_error",
                )
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        request.state.caller = name
        response = await call_next(request)
        _log_request(request, name, response.status_code, started)
        return response

    def error_response(request: Request, status: int, message: str, code: str, dify_code=None):
        if is_dify(request):
            return JSONResponse(_dify_error(dify_code or status, message), status_code=status)
        return JSONResponse(_openai_error(message, code), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        where = "；".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or '请求体'}：{err.get('msg', '')}"
            for err in exc.errors()[:5]
        )
        return error_response(request, 400, f"请求格式不正确（{where}）。", "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = {404: "没有这个接口。", 405: "该接口不支持这种请求方法。"}.get(
            exc.status_code, "请求无法处理。"
        )
        return error_response(request, exc.status_code, message, "not_found")

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError):
        return error_response(request, 400, public_error(exc), "invalid_request")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        return error_response(request, 500, public_error(exc), "internal_error", 500)

    # ----------------------------------------------------------------- health, models
    @app.get("/healthz", summary="服务是否可用")
    def healthz() -> dict:
        return {"status": "ok", "documents": len(system.index.docs)}

    @app.get("/v1/models", summary="可用的知识库（每个知识库一个模型）")
    def models(request: Request) -> dict:
        names = service.models(request.state.caller)
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "rag"} for n in names],
        }

    # ----------------------------------------------------------------- chat
    @app.post("/v1/chat/completions", summary="OpenAI 兼容的对话：回答带 [n] 引用与 references")
    def chat_completions(req: ChatRequest, request: Request):
        caller = request.state.caller
        try:
            system = service.system_for(req.model, caller)
        except NotFoundError as e:
            return JSONResponse(_openai_error(str(e), "model_not_found"), status_code=404)
        conv = read_conversation(system, req.messages)
        cid, created = _completion_id(), int(time.time())
        if not req.stream:
            ans = service.answer(conv, system, caller)
            return {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": req.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": ans.text},
                        "finish_reason": "stop",
                    }
                ],
                **_answer_extras(system, ans),
            }
        check_question(conv.question, system.settings)  # refused before the stream starts
        return StreamingResponse(
            _sse(service, conv, cid, created, system, caller),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # ----------------------------------------------------------------- Dify
    @app.post("/retrieval", summary="Dify 外部知识库检索")
    def retrieval(req: RetrievalRequest, request: Request):
        try:
            system = service.system_for(req.knowledge_id, request.state.caller)
        except NotFoundError as e:
            return JSONResponse(_dify_error(2001, str(e)), status_code=404)
        check_question(req.query, system.settings)
        with service.slots:
            hits = system.retriever.search(req.query, top_k=req.retrieval_setting.top_k).hits
            scores = relevance(system, req.query, hits)
        docs = system.index.docs
        records = []
        for h, score in zip(hits, scores):
            if score < req.retrieval_setting.score_threshold:
                continue
            doc = docs.get(h.doc_id, {})
            records.append(
                {
                    "content": h.text,
                    "score": round(score, 4),
                    "title": doc.get("title") or h.doc_id,
                    "metadata": {
                        "doc_id": h.doc_id,
                        "chunk_id": h.chunk_id,
                        "path": hide_paths(doc.get("source") or ""),
                        "location": system.index.location(h.doc_id, h.start, h.end),
                        "date": doc.get("date") or "",
                    },
                }
            )
        return {"records": records[: req.retrieval_setting.top_k]}

    if ui:
        from rag.serve.api_ui import mount_ui

        app = mount_ui(app, system, ui_auth, ui_temp_dir)
    return app


def _chunk(cid: str, created: int, delta: dict, finish: str | None = None, **extra) -> str:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": KNOWLEDGE_BASE,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _sse(service: Service, conv: Conversation, cid: str, created: int, system=None,
         caller=None) -> Iterator[str]:  # fmt: skip
    """The answer as server-sent events: text pieces, then `references` and `refused` on
    the last chunk, then `data: [DONE]`. When the checked answer differs from what was
    streamed (sentences marked, an extractive answer after a failure), it follows in full,
    as `rag ask` prints it."""
    yield _chunk(cid, created, {"role": "assistant", "content": ""})
    shown: list[str] = []
    try:
        for item in service.stream(conv, system, caller):
            if isinstance(item, str):
                shown.append(item)
                yield _chunk(cid, created, {"content": item})
                continue
            streamed = "".join(shown).strip()
            if streamed != item.text.strip():
                lead = "\n\n——核查后——\n" if streamed else ""
                yield _chunk(cid, created, {"content": lead + item.text})
            yield _chunk(cid, created, {}, "stop", **_answer_extras(system or service.system, item))
    except Exception as e:  # the status line is sent: say it in the stream, never a traceback
        err = _openai_error(public_error(e), "internal_error", "server_error")
        yield f"data: {json.dumps(err, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


# =========================================================================== running
def make_server(app, host: str, port: int):
    """A uvicorn server for `app` (no reload, no proxy headers trusted, no server header)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


def serve(opts: ServeOptions, settings) -> int:
    """Check the options, load the index as `rag ask` does, and serve until interrupted."""
    import sys

    from rag.system import load_system

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s api: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    if not settings.index_dir and not opts.no_auth:
        from rag.org.accounts import Accounts

        if Accounts(settings).list():  # accounts' keys and logins let callers in
            opts = dataclasses.replace(opts, account_keys=True)
    check_serve_options(opts)
    temp_dir = None
    if opts.ui:  # before Gradio is imported: it reads $GRADIO_TEMP_DIR then
        from rag.serve.ui.library import use_upload_temp_dir

        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        temp_dir = use_upload_temp_dir(settings)
    systems = accounts = audit = None
    ui_auth = opts.ui_auth
    if settings.index_dir:  # one bare index (--index, $RAG_INDEX), served as `default`
        system = load_system(settings)
    else:  # the home's knowledge bases, its accounts' keys, its audit log
        from rag.org.accounts import Accounts
        from rag.org.audit import AuditLog
        from rag.system import KbSystems

        systems, accounts = KbSystems(settings), Accounts(settings)
        audit = AuditLog(settings.home_path / "audit.db")
        names = systems.names()
        if not names:
            raise ConfigError(
                f"{settings.home_path}：还没有建好的知识库，请先 rag ingest PATH --kb NAME。"
            )
        system = systems.get(KNOWLEDGE_BASE if KNOWLEDGE_BASE in names else names[0])
        if opts.ui and opts.ui_auth is None and opts.account_keys:  # the accounts log in
            from rag.serve.api_ui import account_login

            ui_auth = account_login(settings, system.kbs[0], settings.login_delay_s)
    print("Loading the embedding model ...", file=sys.stderr, flush=True)
    system.embedder.embed_query("预热")
    app = create_app(system, opts.api_keys, no_auth=opts.no_auth, ui=opts.ui,
                     ui_auth=ui_auth, ui_temp_dir=temp_dir, systems=systems,
                     accounts=accounts, audit=audit)  # fmt: skip
    where = f"[{opts.host}]:{opts.port}" if ":" in opts.host else f"{opts.host}:{opts.port}"
    auth = (
        "no key needed (this machine only)"
        if opts.no_auth
        else (f"{len(opts.api_keys)} API key(s) accepted")
    )
    ui = "no chat UI"
    if opts.ui:
        ui = "chat UI at / " + ("(login required)" if ui_auth else "(no login)")
    print(f"Serving {settings.index_path} on http://{where}/ ; {auth}; {ui}; docs at /docs",
          file=sys.stderr, flush=True)  # fmt: skip
    make_server(app, opts.host, opts.port).run()
    return 0
