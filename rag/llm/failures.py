"""LLM failures: one exception with a short, key-free reason, the mapping from any
backend's exception to it, the wall-clock guard around a generator, and key redaction."""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator

from rag.config import API_KEY_ENV, api_key
from rag.errors import ModelError

log = logging.getLogger("rag.llm.failures")

__all__ = ["API_KEY_ENV", "LLMFailure", "api_key", "classify", "guarded", "redact"]


_SECRET_ENV = re.compile(r"(?i)(API_?KEY|_KEY|TOKEN|SECRET|PASSWORD)$")


def _secrets() -> list[str]:
    """The values of every environment variable that looks like it holds a secret: each
    configured generator may read its key from its own variable."""
    values = {v.strip() for k, v in os.environ.items() if _SECRET_ENV.search(k)}
    values.add(api_key() or "")
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with any API key or secret from the environment replaced, for anything
    logged or shown."""
    for value in _secrets():
        text = text.replace(value, "***")
    return re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)


class LLMFailure(ModelError):
    """The LLM could not give an answer. `reason` is short Chinese text for the notice."""

    def __init__(self, reason: str, retryable: bool = False, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.detail = redact(detail)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def classify(exc: BaseException) -> LLMFailure:
    """Map an exception from any backend to a failure with a short, key-free reason."""
    if isinstance(exc, LLMFailure):
        return exc
    detail = f"{type(exc).__name__}: {exc}"
    chain = list(_chain(exc))
    names = {type(e).__name__ for e in chain}
    status = next((s for e in chain if isinstance(s := getattr(e, "status_code", None), int)), None)
    if status is None:
        resp = next((r for e in chain if (r := getattr(e, "response", None)) is not None), None)
        status = getattr(resp, "status_code", None) if resp is not None else None
    if isinstance(status, int) and status >= 400:
        return LLMFailure(
            f"HTTP {status}", retryable=status in (408, 429) or status >= 500, detail=detail
        )
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in detail.lower():
        return LLMFailure("连接被拒绝", retryable=True, detail=detail)
    if names & {
        "APITimeoutError",
        "TimeoutException",
        "ReadTimeout",
        "ConnectTimeout",
        "TimeoutError",
        "WriteTimeout",
        "PoolTimeout",
    }:
        return LLMFailure("请求超时", retryable=True, detail=detail)
    if names & {
        "APIConnectionError",
        "ConnectError",
        "ConnectionError",
        "RemoteProtocolError",
        "ReadError",
        "OSError",
    } or any(isinstance(e, OSError) for e in chain):
        return LLMFailure("连接失败", retryable=True, detail=detail)
    if any(
        isinstance(e, json.JSONDecodeError | KeyError | TypeError | AttributeError | ValueError)
        for e in chain
    ):
        return LLMFailure("返回的数据无法解析", detail=detail)
    return LLMFailure(f"调用出错（{type(exc).__name__}）", detail=detail)


def guarded(
    produce: Callable[[], Iterator[str]],
    timeout_s: float,
    retries: int = 0,
    stop: threading.Event | None = None,
) -> Iterator[str]:
    """Yield the pieces `produce()` yields, within a wall-clock budget of `timeout_s`.

    The producer runs in a daemon thread, so a stalled connection or a slow drip cannot
    hold the caller past the deadline (the HTTP client's own timeout only bounds the gap
    between bytes). Failures before the first piece are retried `retries` times (with a
    short pause) while time is left. Raises `LLMFailure`.
    """
    deadline = time.monotonic() + timeout_s
    q: queue.Queue = queue.Queue()
    stop = stop or threading.Event()

    def work() -> None:
        for attempt in range(retries + 1):
            started = False
            try:
                for piece in produce():
                    if stop.is_set():
                        return
                    if piece:
                        started = True
                        q.put(("piece", piece))
                q.put(("end", None))
                return
            except BaseException as e:  # noqa: BLE001 -- everything becomes a notice
                failure = classify(e)
                pause = min(0.5 * 2**attempt, 4.0)
                last = attempt == retries or started or not failure.retryable
                if last or time.monotonic() + pause >= deadline or stop.is_set():
                    q.put(("error", failure))
                    return
                log.info("LLM call failed (%s), retrying", failure.reason)
                time.sleep(pause)

    threading.Thread(target=work, name="rag-llm", daemon=True).start()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LLMFailure(f"超过 {timeout_s:g} 秒未完成", detail="wall-clock timeout")
            try:
                kind, value = q.get(timeout=remaining)
            except queue.Empty:
                raise LLMFailure(
                    f"超过 {timeout_s:g} 秒未完成", detail="wall-clock timeout"
                ) from None
            if kind == "piece":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()  # the caller stopped (deadline, error, or closed the generator)
