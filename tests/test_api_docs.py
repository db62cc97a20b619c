"""Search and documents over HTTP (/api/search, /api/documents) and filters on the chat
API, against a real uvicorn server over a copy of the corpus index (uploads and removals
write new index versions: the session's shared index stays as it was)."""

from __future__ import annotations

import shutil

import httpx
import pytest
from test_api import KEY, LAOSHAN, _serve

from rag.serve.api import create_app

AUTH = {"Authorization": f"Bearer {KEY}"}
FORUM = "weihai-jingzhi-forum-2023"
LAOSHAN_DOC = "laoshan-urban-renewal-2023"
NEW_TEXT = (
    "青岛市海湾大桥养护中心发布通知。\n\n"
    "2024年海湾大桥计划完成养护投资3.7亿元，重点更换伸缩缝和斜拉索护套。"
)


@pytest.fixture(scope="module")
def kb(tmp_path_factory, corpus_settings, embedder):
    """(url, system) of a server over its own copy of the corpus index."""
    from rag.system import load_system

    root = tmp_path_factory.mktemp("api-docs")
    shutil.copytree(corpus_settings.index_path, root / "index")
    settings = corpus_settings.replace(index_dir=str(root / "index"), api_upload_max_mb=0.05)
    system = load_system(settings, embedder=embedder)
    srv, thread, url = _serve(create_app(system, [KEY]))
    yield url, system
    srv.should_exit = True
    thread.join(15)


def _search(url: str, body: dict) -> httpx.Response:
    return httpx.post(url + "/api/search", json=body, headers=AUTH, timeout=60)


# ------------------------------------------------------------------ search
def test_search_returns_hits_with_scores_documents_and_locations(kb):
    url, system = kb
    r = _search(url, {"query": LAOSHAN, "top_k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["knowledge_base"] == "default" and body["query"] == LAOSHAN
    hits = body["hits"]
    ours = system.retriever.search(LAOSHAN, top_k=3).hits
    assert [h["chunk_id"] for h in hits] == [h.chunk_id for h in ours]
    assert set(hits[0]) == {
        "rank", "doc_id", "chunk_id", "title", "text", "score", "location", "date", "file",
        "start", "end",
    }  # fmt: skip
    for h, ours_h in zip(hits, ours, strict=True):
        assert 0.0 <= h["score"] <= 1.0 and h["doc_id"] == ours_h.doc_id
        assert system.index.document_text(h["doc_id"])[h["start"] : h["end"]] == h["text"]
    assert hits[0]["doc_id"] == LAOSHAN_DOC and hits[0]["date"] == "2023-02-07"
    assert hits[0]["title"] == system.index.docs[LAOSHAN_DOC]["title"]


def test_search_filters_by_document_date_and_metadata(kb):
    url, system = kb
    only = _search(url, {"query": LAOSHAN, "top_k": 5, "filters": {"doc_ids": [FORUM]}}).json()
    assert only["hits"] and {h["doc_id"] for h in only["hits"]} == {FORUM}
    dated = _search(
        url,
        {"query": LAOSHAN, "top_k": 10, "filters": {"date_from": "2023年1月", "date_to": "2023"}},
    ).json()["hits"]
    dates = {system.index.docs[h["doc_id"]]["date"] for h in dated}
    assert dated and all(d.startswith("2023") for d in dates)
    where = {"source_name": "威海新闻网"}
    by_meta = _search(url, {"query": LAOSHAN, "filters": {"where": where}}).json()["hits"]
    assert by_meta and {h["doc_id"] for h in by_meta} == {FORUM}
    nothing = _search(url, {"query": LAOSHAN, "filters": {"doc_number": "青政发〔2099〕1号"}})
    assert nothing.status_code == 200 and nothing.json()["hits"] == []


@pytest.mark.parametrize(
    "body, words",
    [
        (
            {"query": LAOSHAN, "filters": {"date_from": "2023-13"}},
            ["filters.date_from", "不是日期"],
        ),
        ({"query": LAOSHAN, "filters": {"where": {"": "x"}}}, ["filters.where", "不能为空"]),
        ({"query": LAOSHAN, "filters": {"author": "x"}}, ["请求格式不正确", "author"]),
        ({"query": LAOSHAN, "top_k": 0}, ["请求格式不正确", "top_k"]),
        ({"query": ""}, ["请求格式不正确", "query"]),
    ],
)
def test_a_bad_search_is_a_400_naming_the_field(kb, body, words):
    r = _search(kb[0], body)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert all(w in message for w in words), message


def test_an_unknown_knowledge_base_is_404_everywhere(kb):
    url, _ = kb
    r = _search(url, {"query": LAOSHAN, "knowledge_base": "no-such-kb"})
    assert r.status_code == 404 and "不存在" in r.json()["error"]["message"]
    listed = httpx.get(url + "/api/documents", params={"knowledge_base": "x"}, headers=AUTH)
    assert listed.status_code == 404 and "'x' 不存在" in listed.json()["error"]["message"]


def test_the_api_routes_need_a_key(kb):
    url, _ = kb
    assert httpx.post(url + "/api/search", json={"query": LAOSHAN}).status_code == 401
    assert httpx.get(url + "/api/documents").status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert (
        httpx.delete(url + "/api/documents", params={"doc_id": FORUM}, headers=bad).status_code
        == 401
    )
    assert FORUM in kb[1].index.docs


# ------------------------------------------------------------------ documents
def _documents(url: str) -> dict[str, dict]:
    r = httpx.get(url + "/api/documents", headers=AUTH)
    assert r.status_code == 200
    return {d["doc_id"]: d for d in r.json()["documents"]}


def test_documents_are_listed_with_what_a_script_needs(kb):
    url, system = kb
    docs = _documents(url)
    assert set(docs) == set(system.index.docs)
    d = docs[LAOSHAN_DOC]
    assert d["title"] == system.index.docs[LAOSHAN_DOC]["title"] and d["date"] == "2023-02-07"
    assert d["chunks"] == len(system.index.docs[LAOSHAN_DOC]["chunk_ids"]) and d["chars"] > 0
    assert d["source"] == "知识库" and d["indexed_at"] and "/" not in d["file"]


def test_upload_search_and_delete_round_trip(kb, tmp_path):
    url, system = kb
    before = _documents(url)
    files = [
        ("files", ("海湾大桥养护.txt", NEW_TEXT.encode("utf-8"), "text/plain")),
        ("files", ("工具.exe", b"MZ\x90\x00", "application/octet-stream")),
        ("files", ("空白.txt", b"", "text/plain")),
    ]
    r = httpx.post(url + "/api/documents", files=files, headers=AUTH, timeout=300)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["file"] for x in results] == ["海湾大桥养护.txt", "工具.exe", "空白.txt"]
    added, exe, empty = results
    assert added["status"] == "added" and added["chunks"] >= 1 and added["doc_id"]
    assert exe["status"] == "failed" and ".exe" in exe["reason"]
    assert empty["status"] == "failed" and empty["reason"]

    after = _documents(url)
    assert set(after) == set(before) | {added["doc_id"]}
    new = after[added["doc_id"]]
    assert new["title"] == "海湾大桥养护" and new["source"] == "key1上传"
    assert new["file"] == "海湾大桥养护.txt"
    hits = _search(url, {"query": "海湾大桥养护投资多少？", "top_k": 1}).json()["hits"]
    assert hits[0]["doc_id"] == added["doc_id"] and "3.7亿元" in hits[0]["text"]

    again = httpx.post(url + "/api/documents", files=files[:1], headers=AUTH, timeout=300)
    assert again.json()["results"][0]["status"] == "unchanged"

    gone = httpx.delete(
        url + "/api/documents", params={"doc_id": [added["doc_id"], "no-such-doc"]}, headers=AUTH
    )
    assert gone.status_code == 200
    removed, missing = gone.json()["results"]
    assert removed == {
        "doc_id": added["doc_id"], "title": "海湾大桥养护", "status": "removed", "reason": ""
    }  # fmt: skip
    assert missing["status"] == "failed" and missing["reason"] == "知识库中没有这个文档"
    assert set(_documents(url)) == set(before)
    assert added["doc_id"] not in system.index.docs


def test_an_upload_over_the_request_limit_is_413_and_stores_nothing(kb):
    url, system = kb
    before = set(system.index.docs)
    big = ("files", ("大文件.txt", ("青岛市" * 30_000).encode(), "text/plain"))  # 90 KB > 0.05 MB
    r = httpx.post(url + "/api/documents", files=[big], headers=AUTH, timeout=60)
    assert r.status_code == 413 and "请求体过大" in r.json()["error"]["message"]
    assert set(system.index.docs) == before


def test_deleting_every_document_is_refused(kb):
    url, system = kb
    ids = list(system.index.docs)
    r = httpx.delete(url + "/api/documents", params={"doc_id": ids}, headers=AUTH)
    assert r.status_code == 400 and "不能删除全部文档" in r.json()["error"]["message"]
    assert set(system.index.docs) == set(ids)


# ------------------------------------------------------------------ chat with filters
def test_a_chat_completion_takes_filters(kb):
    from openai import OpenAI

    url, _ = kb
    client = OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=120)
    messages = [{"role": "user", "content": LAOSHAN}]
    free = client.chat.completions.create(model="default", messages=messages)
    assert {r["doc_id"] for r in free.model_extra["references"]} >= {LAOSHAN_DOC}
    kept = client.chat.completions.create(
        model="default", messages=messages, extra_body={"filters": {"doc_ids": [FORUM]}}
    )
    refs = kept.model_extra["references"]
    assert all(r["doc_id"] == FORUM for r in refs)
    assert "156" not in kept.choices[0].message.content
    streamed = list(
        client.chat.completions.create(
            model="default", messages=messages, stream=True,
            extra_body={"filters": {"doc_ids": [FORUM]}},
        )
    )  # fmt: skip
    assert all(r["doc_id"] == FORUM for r in streamed[-1].model_extra["references"])
    bad = httpx.post(
        url + "/v1/chat/completions",
        json={"model": "default", "messages": messages, "filters": {"date_to": "明年"}},
        headers=AUTH,
    )
    assert bad.status_code == 400 and "filters.date_to" in bad.json()["error"]["message"]
