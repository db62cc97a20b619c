"""The loaded system behind every API of `rag serve` and `rag mcp`, and the one seam
between a request and what it may read: who the caller is (`Service.authorize`), which
knowledge bases it may see (`Service.knowledge_bases`) and the one it asked for
(`Service.knowledge_base`, which raises `UnknownKnowledgeBase` for a name that does not
exist or that it may not read). Every route (OpenAI, Dify, /api, MCP) goes through it,
so accounts and permissions change only this module.

A caller is a `rag.org.accounts.Caller`: a service key (`--api-key`, named "key1",
"key2" ... in the order given, never the key itself) reads every knowledge base; an
account's key (`rag user add`) reads those it was granted and edits them as its role
allows. One bare index (`--index`) is served as the knowledge base `default`; a home
(`--home`) serves each of its knowledge bases (`rag.system.KbSystems`). Either way every
answer goes into the home's audit log, a caller let in without a key as anonymous.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import math
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from rag.errors import ForbiddenError, NotFoundError
from rag.org.accounts import Caller
from rag.serve.limits import RateLimiter, check_question, upload_limiter
from rag.types import Filters

KNOWLEDGE_BASE = "default"
MAX_CONCURRENT_ANSWERS = 4  # as the chat UI's queue: more would only slow every answer
NO_AUTH_CALLER = "no-auth"


class AuthError(Exception):
    """No valid key: `malformed` when the header is missing or not `Bearer KEY`."""

    def __init__(self, malformed: bool):
        self.malformed = malformed


class UnknownKnowledgeBase(NotFoundError):
    """A knowledge base that does not exist, or that the caller may not read (the same
    answer for both: a caller learns nothing of what it cannot read)."""

    def __init__(self, name: str, available: Sequence[str]):
        self.name = name
        shown = "、".join(repr(n) for n in available) or "无"
        super().__init__(f"知识库 {name[:60]!r} 不存在；可用的是 {shown}。")


def bearer(header: str | None) -> str | None:
    """The key of an `Authorization: Bearer KEY` header; None when malformed or missing."""
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or " " in key:
        return None
    return key


def key_name(key: str, keys: Sequence[str]) -> str | None:
    """The name of `key` in the logs, "key1" for the first of `keys`...; None if unknown."""
    # compare with every key, in constant time: no timing hint about which one is close
    found = [hmac.compare_digest(key.encode(), k.encode()) for k in keys]
    return f"key{found.index(True) + 1}" if any(found) else None


@dataclass
class Conversation:
    """What a chat asks: the last user message, and what it means with the turns before
    (`rag.serve.api.read_conversation`); a single question is both."""

    question: str
    standalone: str
    history: list = field(default_factory=list)


@dataclass
class KnowledgeBase:
    """One knowledge base as a route uses it: its name, its loaded system, and (made on
    first use) the `Library` that uploads and removes its documents under one write lock,
    shared with the chat UI."""

    name: str
    system: Any
    temp_dir: Path | None = None  # Gradio's upload folder, when the chat UI is mounted
    _library: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def library(self):
        with self._lock:
            if self._library is None:
                from rag.serve.ui.library import Library, data_dir

                root = data_dir(self.system.settings)
                # each knowledge base its own upload folder: the same file uploaded to two
                # of them is stored once in each, and removing it from one keeps the other's
                uploads = (
                    root / "uploads"
                    if self.name == KNOWLEDGE_BASE
                    else root / "uploads" / self.name
                )
                self._library = Library(
                    self.system, uploads, root / "feedback.jsonl", self.temp_dir
                )
            return self._library


def as_caller(caller: Caller | str | None) -> Caller:
    """A caller named by a string (a service key's name, "stdio", "no-auth") reads and
    edits everything, as the operator at the terminal does."""
    if isinstance(caller, Caller):
        return caller
    return Caller(str(caller or "operator"), "admin", None)


class Service:
    """The loaded system behind the APIs: callers, knowledge bases, limits, answers.

    `systems` (a home's knowledge bases, rag.system.KbSystems) is None when one bare index
    is served as `default`; `accounts` (rag.org.accounts.Accounts) lets account keys in;
    `audit` (rag.org.audit.AuditLog) records every answer."""

    def __init__(
        self, system, keys: Sequence[str] = (), no_auth: bool = False, temp_dir=None,
        systems=None, accounts=None, audit=None,
    ) -> None:  # fmt: skip
        self.system = system
        self.keys = tuple(keys)
        self.no_auth = no_auth
        self.systems = systems
        self.accounts = accounts
        self.audit = audit
        self.temp_dir = temp_dir
        self._gate: asyncio.Semaphore | None = None
        first = (
            (getattr(system, "kbs", None) or (KNOWLEDGE_BASE,))[0] if systems else KNOWLEDGE_BASE
        )
        self._bases = {first: KnowledgeBase(first, system, temp_dir)}  # the chat UI's
        s = system.settings
        self.requests = (  # None: no limit (0 in the settings)
            RateLimiter(s.api_requests_per_minute, math.inf, 60.0)
            if s.api_requests_per_minute
            else None
        )
        self.uploads = upload_limiter(s)

    # ----------------------------------------------------------------- callers
    def authorize(self, header: str | None) -> Caller:
        """The caller of a request with this Authorization header: a service key (by its
        name), an account (by its key), or "no-auth" when none is needed. Raises AuthError."""
        if self.no_auth:
            return as_caller(NO_AUTH_CALLER)
        key = bearer(header)
        if key is None:
            raise AuthError(malformed=True)
        name = key_name(key, self.keys)
        if name is not None:
            return as_caller(name)
        caller = self.accounts.caller_for_key(key) if self.accounts is not None else None
        if caller is None:
            raise AuthError(malformed=False)
        return caller

    def admit(self, caller: Caller | str) -> float | None:
        """Count one request of `caller`; None if it is within the per-minute limit, else
        the seconds until it would be (nothing counted)."""
        who = str(caller)
        if self.requests is None or self.requests.allow(who):
            return None
        return self.requests.retry_after(who)

    # ----------------------------------------------------------------- knowledge bases
    def knowledge_bases(self, caller: Caller | str | None = None) -> list[str]:
        """The names of the knowledge bases `caller` may read."""
        caller = as_caller(caller)
        if self.systems is None:
            return caller.readable(self._bases)
        return self.systems.names(caller)

    def knowledge_base(
        self, name: str | None, caller: Caller | str | None = None, edit: bool = False
    ) -> KnowledgeBase:
        """The knowledge base `name` (None: the default one, else the caller's first) if
        `caller` may read it, raising UnknownKnowledgeBase otherwise; with `edit`, one it
        may also change (ForbiddenError for a reader)."""
        caller = as_caller(caller)
        readable = self.knowledge_bases(caller)
        if name is None or not str(name).strip():
            name = KNOWLEDGE_BASE if KNOWLEDGE_BASE in readable or not readable else readable[0]
        name = str(name).strip()
        if name not in readable:
            raise UnknownKnowledgeBase(name, readable)
        if edit and not caller.may_edit(name):
            raise ForbiddenError(f"没有修改知识库 {name!r} 的权限：请联系管理员授予编辑权限。")
        if self.systems is not None:
            try:
                system = self.systems.get(name, caller)
            except NotFoundError:  # renamed or deleted since the list was read
                raise UnknownKnowledgeBase(name, readable) from None
            kb = self._bases.get(name)
            if kb is None or kb.system is not system:  # a knowledge base reloaded: a new lock
                kb = self._bases[name] = KnowledgeBase(name, system, self.temp_dir)
            return kb
        return self._bases[name]

    def system_for(self, name: str | None, caller: Caller | str | None = None):
        """The loaded system of the knowledge base `name` (see `knowledge_base`)."""
        return self.knowledge_base(name, caller).system

    def record(self, caller, system, ans, started: float, via: str = "api") -> int | None:
        """The answer into the audit log (none when the service has none); its id there.
        A caller let in without a key (`--no-auth`) is logged as `ANONYMOUS`."""
        from rag.org.audit import ANONYMOUS

        if self.audit is None or ans is None:
            return None
        latency = (time.perf_counter() - started) * 1e3
        kbs = getattr(system, "kbs", None) or (KNOWLEDGE_BASE,)
        user = str(as_caller(caller))
        return self.audit.record(ANONYMOUS if user == NO_AUTH_CALLER else user, kbs, ans,
                                 latency, via)  # fmt: skip

    # ----------------------------------------------------------------- answers
    @property
    def gate(self) -> asyncio.Semaphore:
        """At most MAX_CONCURRENT_ANSWERS answers and searches at a time. An asyncio
        semaphore, so a request waiting for its turn holds no worker thread: with a
        thread-blocking one, waiting streams filled the worker pool and the streams
        holding a turn had no thread left to send their next piece (found by the load
        benchmark, rag.eval.bench.serve_load, at 50 clients). Made in the serving loop."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(MAX_CONCURRENT_ANSWERS)
        return self._gate

    async def run(self, fn, /, *args, **kwargs):
        """`fn(*args, **kwargs)` in a worker thread once a turn is free."""
        async with self.gate:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def answer(
        self, conv: Conversation, filters: Filters | None = None, system=None, caller=None
    ):
        """The answer to `conv`, recorded in the audit log."""
        system = system or self.system
        check_question(conv.question, system.settings)
        started = time.perf_counter()
        ans = await self.run(system.ask, conv.standalone, filters=filters)
        ans.question, ans.rewritten_question = conv.question, conv.standalone
        self.record(caller, system, ans, started)
        return ans

    async def stream(
        self, conv: Conversation, filters: Filters | None = None, system=None, caller=None
    ) -> AsyncIterator[str | Any]:
        """The answer's text pieces as they come, then the checked `Answer` (recorded in
        the audit log); the turn is held until the stream ends, each piece read in a
        worker thread."""
        system = system or self.system
        check_question(conv.question, system.settings)
        started = time.perf_counter()
        async with self.gate:
            pieces = iter(system.answerer.stream(conv.standalone, filters=filters))
            final = None
            while (item := await anyio.to_thread.run_sync(next, pieces, _END)) is not _END:
                if isinstance(item, str):
                    yield item
                else:
                    final = item
        final.question, final.rewritten_question = conv.question, conv.standalone
        self.record(caller, system, final, started)
        yield final

    async def search(self, system, query: str, top_k: int, filters: Filters | None = None):
        """Search hits and their relevance in 0..1 (`rag.serve.passages.relevance`),
        taking turns with the answers."""
        check_question(query, system.settings)
        return await self.run(_search, system, query, top_k, filters)


_END = object()


def _search(system, query: str, top_k: int, filters: Filters | None):
    from rag.serve.passages import relevance

    hits = system.retriever.search(query, top_k=top_k, filters=filters).hits
    return hits, relevance(system, query, hits)
