"""What one user may cost the server: question length, upload rate and size, login tries.

Each limit refuses with one Chinese sentence (`LimitError`) and changes nothing. The
numbers are settings (`max_question_chars`, `uploads_per_hour`, `upload_mb_per_hour`,
`login_delay_s`); `rag.serve.ui.app` wires them into the chat.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable

from rag.config import Settings
from rag.errors import RagError


class LimitError(RagError):
    """A request over one of the serving limits; the message is for the user."""


def check_question(question: str, settings: Settings) -> None:
    """Refuse a question longer than `max_question_chars` before any work is done on it."""
    n, limit = len(question), settings.max_question_chars
    if n > limit:
        raise LimitError(f"问题太长（{n} 字），请缩短到 {limit} 字以内再提问。")


def check_comment(comment: str, settings: Settings) -> None:
    n, limit = len(comment), settings.max_comment_chars
    if n > limit:
        raise LimitError(f"说明太长（{n} 字），请控制在 {limit} 字以内。")


class RateLimiter:
    """At most `max_events` events and `max_amount` in total per key within `window_s`.

    Thread-safe; each key keeps only the events of the last window.
    """

    def __init__(self, max_events: int, max_amount: float, window_s: float = 3600.0):
        self.max_events, self.max_amount, self.window_s = max_events, max_amount, window_s
        self._events: dict[str, deque[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, events: int = 1, amount: float = 0.0) -> bool:
        """Record `events` events of `amount` in total for `key` if that stays within the
        limits; False (and nothing recorded) if it would not."""
        now = time.monotonic()
        with self._lock:
            q = self._events.setdefault(key, deque())
            while q and q[0][0] <= now - self.window_s:
                q.popleft()
            used_events = sum(1 for _ in q)
            used_amount = sum(a for _, a in q)
            if used_events + events > self.max_events or used_amount + amount > self.max_amount:
                return False
            for i in range(events):
                q.append((now, amount if i == 0 else 0.0))
            return True

    def retry_after(self, key: str) -> float:
        """Seconds until `key`'s oldest event in the window leaves it (0 when none)."""
        now = time.monotonic()
        with self._lock:
            q = self._events.get(key)
            return max(q[0][0] + self.window_s - now, 0.0) if q else 0.0

    def message(self) -> str:
        minutes = round(self.window_s / 60)
        return (
            f"上传过于频繁：每 {minutes} 分钟最多 {self.max_events} 个文件、"
            f"共 {self.max_amount:g} MB，请稍后再试。"
        )


def upload_limiter(settings: Settings) -> RateLimiter:
    return RateLimiter(settings.uploads_per_hour, settings.upload_mb_per_hour, 3600.0)


class UploadRouteLimit:
    """ASGI middleware: the upload route answers 429 (Chinese JSON) past the limiter.

    Files posted straight to Gradio's upload route are written to disk before any event
    handler runs, so the limit must sit in front of the route: per client address, the
    request's declared size counts (a request without one counts as `max_file_mb`).
    """

    def __init__(self, app, limiter: RateLimiter, max_file_mb: float):
        self.app, self.limiter, self.max_file_mb = app, limiter, max_file_mb

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        path = scope.get("path", "").rstrip("/")
        if not path.endswith("/upload"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        try:
            mb = int(headers.get(b"content-length", b"")) / 2**20
        except ValueError:
            mb = self.max_file_mb
        client = (scope.get("client") or ("?", 0))[0]
        if self.limiter.allow(f"addr:{client}", 1, mb):
            return await self.app(scope, receive, send)
        body = json.dumps({"detail": self.limiter.message()}, ensure_ascii=False).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"60"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def login_checker(accounts: dict[str, str], delay_s: float) -> Callable[[str, str], object]:
    """Gradio's `auth` as an async function: passwords compared in constant time, one try
    at a time per user name, and `delay_s` of waiting after each failure, so guessing runs
    at about one try a second instead of a hundred. The wait does not block the server.
    """
    locks: dict[str, asyncio.Lock] = {}

    async def check(username: str, password: str) -> bool:
        lock = locks.setdefault(username if username in accounts else "", asyncio.Lock())
        async with lock:
            expected = accounts.get(username)
            ok = expected is not None and hmac.compare_digest(
                password.encode("utf-8"), expected.encode("utf-8")
            )
            if not ok:
                await asyncio.sleep(delay_s)
            return ok

    return check


MAX_LOGIN_LOCKS = 1024  # one per name tried; forgotten past this many (any name can be tried)


def account_login(settings, delay_s: float) -> Callable[[str, str], object]:
    """Gradio's `auth` over a home's accounts: a local password (argon2), else LDAP when
    configured (rag.org.ldap_auth.login). Any account may log in: what it may read and
    change is decided on every action by its role and grants (rag.serve.ui.access). One
    try at a time per name and `delay_s` after each failure, as
    `rag.serve.limits.login_checker`."""
    from rag.errors import AuthError, NotFoundError
    from rag.org.ldap_auth import login

    locks: dict[str, asyncio.Lock] = {}

    def allowed(username: str, password: str) -> bool:
        try:
            login(settings, username, password)
            return True
        except (AuthError, NotFoundError):
            return False

    async def check(username: str, password: str) -> bool:
        if len(locks) > MAX_LOGIN_LOCKS:
            locks.clear()
        async with locks.setdefault(username, asyncio.Lock()):
            ok = await asyncio.to_thread(allowed, username, password)  # argon2 takes ~50 ms
            if not ok:
                await asyncio.sleep(delay_s)
            return ok

    return check
