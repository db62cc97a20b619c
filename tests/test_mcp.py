"""The MCP tools with the official `mcp` client: over streamable HTTP at /mcp of a real
uvicorn server (with the API's keys), and over stdio from `rag mcp` in a subprocess
(`sys.executable -m rag.serve.cli mcp`, so this checkout's code runs)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest
from test_api import KEY, LAOSHAN, OFF_TOPIC, _serve

pytest.importorskip("mcp")

import httpx2  # noqa: E402 -- the transport the mcp 2.x client speaks through
from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from rag.read.extractive import REFUSAL  # noqa: E402
from rag.serve.api import create_app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOOLS = {"search_documents", "ask", "list_documents"}


@pytest.fixture(scope="module")
def server(corpus_system):
    srv, thread, url = _serve(create_app(corpus_system, [KEY]))
    yield url
    srv.should_exit = True
    thread.join(15)


def _http_client(url: str, key: str | None = KEY) -> Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120, read=300))
    return Client(streamable_http_client(url + "/mcp", http_client=http))


async def _session(client: Client, calls: list[tuple[str, dict]]):
    """List the tools, then make `calls` in one session; (tools, results)."""
    async with client as c:
        tools = (await c.list_tools()).tools
        results = [await c.call_tool(name, args) for name, args in calls]
    return tools, results


CALLS = [
    ("search_documents", {"query": LAOSHAN, "top_k": 3}),
    ("ask", {"question": LAOSHAN}),
    ("ask", {"question": OFF_TOPIC}),
    ("list_documents", {}),
    ("search_documents", {"query": LAOSHAN, "knowledge_base": "no-such-kb"}),
]


def _check_session(tools, results, system) -> None:
    assert {t.name for t in tools} == TOOLS
    schema = next(t for t in tools if t.name == "search_documents").input_schema
    assert set(schema["properties"]) == {"query", "knowledge_base", "top_k"}
    assert schema["required"] == ["query"]
    search, answered, refused, listed, unknown = results

    assert not search.is_error
    found = search.structured_content
    assert found["knowledge_base"] == "default" and found["query"] == LAOSHAN
    hits = found["passages"]
    assert 1 <= len(hits) <= 3 and [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    ours = system.retriever.search(LAOSHAN, top_k=3).hits
    assert [h["chunk_id"] for h in hits] == [h.chunk_id for h in ours]
    for h in hits:
        assert 0.0 <= h["score"] <= 1.0 and h["doc_id"] in system.index.docs
        assert {"title", "location", "text", "start", "end", "file"} <= set(h)
        assert "/" not in h["file"]
    assert any("156" in h["text"] for h in hits)

    ans = answered.structured_content
    assert not answered.is_error and ans["refused"] is False
    assert "156" in ans["answer"] and "[1]" in ans["answer"]
    cited = [c for c in ans["citations"] if "156" in c["text"]]
    assert cited and f"[{cited[0]['n']}]" in ans["answer"] and 0 < cited[0]["score"] <= 1

    no = refused.structured_content
    assert no["refused"] is True and no["answer"] == REFUSAL

    docs = listed.structured_content["documents"]
    assert {d["doc_id"] for d in docs} == set(system.index.docs)
    assert all(d["chunks"] >= 1 and d["chars"] > 0 and d["title"] for d in docs)

    assert unknown.is_error
    assert "no-such-kb" in unknown.content[0].text and "不存在" in unknown.content[0].text


def test_the_tools_over_streamable_http_with_a_key(server, corpus_system):
    tools, results = asyncio.run(_session(_http_client(server), CALLS))
    _check_session(tools, results, corpus_system)


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_mcp_over_http_needs_a_valid_key(server, key):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    r = httpx.post(
        server + "/mcp",
        json=body,
        headers={**headers, "Accept": "application/json, text/event-stream"},
    )
    assert r.status_code == 401 and "密钥" in r.json()["error"]["message"]
    with pytest.raises(Exception):  # noqa: B017 -- the client's error type is its own business
        asyncio.run(_session(_http_client(server, key), []))


def test_a_tool_failure_is_a_chinese_tool_error_without_internals(server):
    _, (res,) = asyncio.run(_session(_http_client(server), [("ask", {"question": "问" * 5000})]))
    assert res.is_error
    text = res.content[0].text
    assert "问题太长" in text and "Traceback" not in text and "/" not in text


def test_rag_mcp_serves_the_same_tools_over_stdio(corpus_settings, corpus_system):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "rag.serve.cli", "mcp", "--index", str(corpus_settings.index_path)],
        cwd=str(REPO),
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    tools, results = asyncio.run(_session(Client(params), CALLS))
    _check_session(tools, results, corpus_system)


def test_every_tool_asks_the_service_seam_with_the_callers_key_name(corpus_system):
    """The caller an MCP tool passes to `Service.knowledge_base` is the name of the key
    the HTTP request carried (what accounts and permissions will decide on)."""
    app = create_app(corpus_system, ["first-key", KEY])
    service = app.state.service
    seen: list[tuple[str | None, str | None]] = []
    original = service.knowledge_base

    def recording(name, caller=None):
        seen.append((name, str(caller)))
        return original(name, caller)

    service.knowledge_base = recording
    srv, thread, url = _serve(app)
    try:
        calls = [("list_documents", {}), ("search_documents", {"query": LAOSHAN, "top_k": 1})]
        asyncio.run(_session(_http_client(url, KEY), calls))
    finally:
        srv.should_exit = True
        thread.join(15)
    assert seen == [(None, "key2"), (None, "key2")]
