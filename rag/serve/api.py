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
import json
import logging
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.errors import ConfigError, ForbiddenError, RagError
from rag.serve.api_docs import FilterSpec
from rag.serve.limits import check_question
from rag.serve.passages import passages, references
from rag.serve.public import public_error
from rag.serve.service import (
    KNOWLEDGE_BASE,
    AuthError,
    Conversation,
    Service,
    UnknownKnowledgeBase,
)

MAX_BODY_BYTES = 1 << 20  # a chat with a long history fits many times over
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


API_PREFIXES = ("/v1", "/api", "/mcp")


def is_api_path(path: str) -> bool:
    """Whether `path` is an API route (key, rate and body limits apply); /healthz, /docs
    and the chat UI at / are not."""
    return path == "/retrieval" or any(path == p or path.startswith(p + "/") for p in API_PREFIXES)


def is_upload(method: str, path: str) -> bool:
    """Whether this is an upload to /api/documents (its body limit is the upload one)."""
    return method == "POST" and path.rstrip("/") == "/api/documents"


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


def from_this_machine(headers, cors_origins: Sequence[str] = ()) -> bool:
    """Whether a request to a key-less (`--no-auth`, loopback) server may be served: its
    Host is a loopback name, and an Origin, if sent, is a loopback page or a configured
    one. Without a key, anything a browser can be made to send is otherwise let in: a
    page elsewhere could post a form to /api/documents (a simple request, no preflight),
    or reach the server through a name of its own that resolves to 127.0.0.1."""
    host = (headers.get("host") or "").strip().lower()
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    if name not in ("127.0.0.1", "localhost", "[::1]"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    u = urlsplit(origin)
    loopback = u.scheme == "http" and (u.hostname or "") in ("127.0.0.1", "localhost", "::1")
    return loopback or origin in cors_origins


# =========================================================================== middleware
class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before any route reads it.

    Checks the declared length and counts what actually arrives (chunked bodies too).
    """

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, upload_bytes: int | None = None):
        self.app, self.max_bytes = app, max_bytes
        self.upload_bytes = max_bytes if upload_bytes is None else upload_bytes

    async def _refuse(self, send, limit: int) -> None:
        mb = limit / 2**20
        await _send_json(send, 413, _openai_error(f"请求体过大，不能超过 {mb:g} MB。", "too_large"))

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not is_api_path(path):
            return await self.app(scope, receive, send)  # the UI has Gradio's own limits
        limit = self.upload_bytes if is_upload(scope.get("method", ""), path) else self.max_bytes
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            return await self._refuse(send, limit)
        seen, started = 0, False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
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
                await self._refuse(send, limit)


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


def read_conversation(system, messages: list[dict]) -> Conversation:
    """The last user message and what it means given the earlier turns.

    Earlier user messages are rewritten without an LLM (`carry_over`), as `rag chat` would
    have, so a follow-up ("那它的投资是多少？") carries the subject of the turns before it.
    """
    from rag.llm.rewrite import rewriter_for
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
    session = ChatSession(system, rewriter=rewriter_for(system.answerer, system.settings))
    for q, a in earlier:
        if q:
            previous = session.history[-1].rewritten if session.history else ""
            session.history.append(Turn(q, carry_over(q, previous), a))
    return Conversation(question, session.rewrite(question), session.history)


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
    filters: FilterSpec | None = None  # ours: which documents the answer may use


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
               ui_auth=None, ui_temp_dir=None, host: str = DEFAULT_HOST,
               systems=None, accounts=None, audit=None):  # fmt: skip
    """The FastAPI app serving `system` as the knowledge base `default`, or with `systems`
    a home's knowledge bases, each a model (`Service` says who may read which; `accounts`
    let account keys in, `audit` records every answer).

    `keys` are the accepted bearer keys; `no_auth` lets every caller in (the caller of
    this function checks that only loopback is served so, see `check_serve_options`).
    `ui` mounts the chat UI at `/` with its own login `ui_auth` (`rag.serve.api_ui`).
    `host` is the address served (MCP checks the Host header against it on loopback).
    """
    from rag.serve.api_docs import router as docs_router
    from rag.serve.mcp_server import mount_mcp

    settings = system.settings
    service = Service(system, keys, no_auth, temp_dir=ui_temp_dir if ui else None,
                      systems=systems, accounts=accounts, audit=audit)  # fmt: skip
    app = FastAPI(
        title="rag",
        description="对自己的文档提问：OpenAI 兼容的对话接口（带引用）、Dify 外部知识库接口、"
        "检索与文档管理接口（/api），以及 MCP（/mcp）。",
        version="0.1.0",
    )
    app.state.service = service
    upload_bytes = int(settings.api_upload_max_mb * 2**20)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, upload_bytes=upload_bytes)

    def is_dify(request: Request) -> bool:
        return request.url.path.rstrip("/") == "/retrieval"

    @app.middleware("http")
    async def require_key(request: Request, call_next):
        if not is_api_path(request.url.path):
            return await call_next(request)
        started = time.perf_counter()
        if no_auth and not from_this_machine(request.headers, settings.cors_origins):
            _log_request(request, "-", 403, started)
            message = "未设密钥的服务只接受本机直接发出的请求（不接受来自网页的跨站请求）。"
            return JSONResponse(_openai_error(message, "forbidden", "permission_error"), 403)
        try:
            name = service.authorize(request.headers.get("authorization"))
        except AuthError as e:
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
        wait = service.admit(name)
        if wait is not None:
            _log_request(request, name, 429, started)
            limit = settings.api_requests_per_minute
            message = (
                f"请求过于频繁：每个 API 密钥每分钟最多 {limit} 次，请 {math.ceil(wait)} 秒后再试。"
            )
            body = _dify_error(429, message) if is_dify(request) else _openai_error(
                message, "rate_limit_exceeded", "rate_limit_error"
            )  # fmt: skip
            return JSONResponse(body, 429, headers={"Retry-After": str(max(math.ceil(wait), 1))})
        request.state.caller = name
        response = await call_next(request)
        _log_request(request, name, response.status_code, started)
        return response

    if settings.cors_origins:  # outermost: a preflight is answered before the key check
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Mcp-Session-Id",
                           "Mcp-Protocol-Version", "Last-Event-ID"],
            expose_headers=["Retry-After", "Mcp-Session-Id"],
            max_age=600,
        )  # fmt: skip

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

    @app.exception_handler(UnknownKnowledgeBase)
    async def unknown_knowledge_base(request: Request, exc: UnknownKnowledgeBase):
        return error_response(request, 404, public_error(exc), "not_found", 2001)

    @app.exception_handler(ForbiddenError)
    async def forbidden(request: Request, exc: ForbiddenError):
        return error_response(request, 403, public_error(exc), "permission_denied", 1002)

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
        names = service.knowledge_bases(request.state.caller)
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "rag"} for n in names],
        }

    # ----------------------------------------------------------------- chat
    @app.post("/v1/chat/completions", summary="OpenAI 兼容的对话：回答带 [n] 引用与 references")
    async def chat_completions(req: ChatRequest, request: Request):
        try:
            kb = service.knowledge_base(req.model, request.state.caller)
        except UnknownKnowledgeBase as e:
            shown = "、".join(repr(n) for n in service.knowledge_bases(request.state.caller))
            return JSONResponse(
                _openai_error(
                    f"没有名为 {e.name!r} 的知识库；可用的是 {shown}。", "model_not_found"
                ),
                status_code=404,
            )
        filters = req.filters.build() if req.filters else None
        conv = await run_in_threadpool(read_conversation, kb.system, req.messages)
        cid, created = _completion_id(), int(time.time())
        if not req.stream:
            ans = await service.answer(conv, filters, kb.system, request.state.caller)
            return {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": kb.name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": ans.text},
                        "finish_reason": "stop",
                    }
                ],
                **_answer_extras(kb.system, ans),
            }
        check_question(conv.question, kb.system.settings)  # refused before the stream starts
        return StreamingResponse(
            _sse(service, kb, conv, filters, cid, created, request.state.caller),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # ----------------------------------------------------------------- Dify
    @app.post("/retrieval", summary="Dify 外部知识库检索")
    async def retrieval(req: RetrievalRequest, request: Request):
        kb = service.knowledge_base(req.knowledge_id, request.state.caller)  # else 2001
        top_k = req.retrieval_setting.top_k
        hits, scores = await service.search(kb.system, req.query, top_k)
        records = [
            {
                "content": p.text,
                "score": p.score,
                "title": p.title,
                "metadata": {
                    "doc_id": p.doc_id,
                    "chunk_id": p.chunk_id,
                    "path": p.file,
                    "location": p.location,
                    "date": p.date,
                },
            }
            for p in passages(kb.system, hits, scores)
            if p.score >= req.retrieval_setting.score_threshold
        ]
        return {"records": records[:top_k]}

    app.include_router(docs_router)
    mount_mcp(app, service, host)
    if ui:
        from rag.serve.api_ui import mount_ui

        library = service.knowledge_base(None).library  # one write lock for both
        app = mount_ui(app, system, ui_auth, ui_temp_dir, library=library, service=service)
    return app


def _chunk(cid: str, created: int, delta: dict, finish: str | None = None,
           model: str = KNOWLEDGE_BASE, **extra) -> str:  # fmt: skip
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _sse(service: Service, kb, conv: Conversation, filters, cid: str,
               created: int, caller=None) -> AsyncIterator[str]:  # fmt: skip
    """The answer as server-sent events: text pieces, then `references` and `refused` on
    the last chunk, then `data: [DONE]`. When the checked answer differs from what was
    streamed (sentences marked, an extractive answer after a failure), it follows in full,
    as `rag ask` prints it."""
    yield _chunk(cid, created, {"role": "assistant", "content": ""}, model=kb.name)
    shown: list[str] = []
    try:
        async for item in service.stream(conv, filters, kb.system, caller):
            if isinstance(item, str):
                shown.append(item)
                yield _chunk(cid, created, {"content": item}, model=kb.name)
                continue
            streamed = "".join(shown).strip()
            if streamed != item.text.strip():
                lead = "\n\n——核查后——\n" if streamed else ""
                yield _chunk(cid, created, {"content": lead + item.text}, model=kb.name)
            yield _chunk(cid, created, {}, "stop", kb.name, **_answer_extras(kb.system, item))
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
    from rag.org.audit import AuditLog

    systems = accounts = None
    audit = AuditLog(settings.home_path / "audit.db")  # every answer, a bare index's too
    ui_auth = opts.ui_auth
    if settings.index_dir:  # one bare index (--index, $RAG_INDEX), served as `default`
        system = load_system(settings)
    else:  # the home's knowledge bases, its accounts' keys
        from rag.org.accounts import Accounts
        from rag.system import KbSystems

        systems, accounts = KbSystems(settings), Accounts(settings)
        names = systems.names()
        if not names:
            raise ConfigError(
                f"{settings.home_path}：还没有建好的知识库，请先 rag ingest PATH --kb NAME。"
            )
        system = systems.get(KNOWLEDGE_BASE if KNOWLEDGE_BASE in names else names[0])
        if opts.ui and opts.ui_auth is None and opts.account_keys:  # the accounts log in
            from rag.serve.limits import account_login

            ui_auth = account_login(settings, settings.login_delay_s)
    print("Loading the embedding model ...", file=sys.stderr, flush=True)
    system.embedder.embed_query("预热")
    app = create_app(system, opts.api_keys, no_auth=opts.no_auth, ui=opts.ui,
                     ui_auth=ui_auth, ui_temp_dir=temp_dir, host=opts.host,
                     systems=systems, accounts=accounts, audit=audit)  # fmt: skip
    where = f"[{opts.host}]:{opts.port}" if ":" in opts.host else f"{opts.host}:{opts.port}"
    auth = (
        "no key needed (this machine only)"
        if opts.no_auth
        else (f"{len(opts.api_keys)} API key(s) accepted")
    )
    ui = "no chat UI"
    if opts.ui:
        ui = "chat UI at / " + ("(login required)" if ui_auth else "(no login)")
    print(f"Serving {settings.index_path} on http://{where}/ ; {auth}; {ui}; MCP at /mcp; docs at /docs",
          file=sys.stderr, flush=True)  # fmt: skip
    make_server(app, opts.host, opts.port).run()
    return 0
