"""Permissions enforced where the data is read: through `rag ask --user` and every HTTP
route of `rag serve` over a real socket with real account keys, a knowledge base the
caller may not read behaves as if it did not exist. The audit log records each answer."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from org_home import HANGZHOU, HR_DOCS, LAOSHAN, PLAN_DOCS, make_home

from rag.org.accounts import Accounts
from rag.org.audit import AuditLog, eval_records
from rag.serve.cli import main

SERVICE_KEY = "service-key-1"


@pytest.fixture(scope="module")
def home(tmp_path_factory, embedder):
    s = make_home(tmp_path_factory.mktemp("org-access"), embedder)
    a = Accounts(s)
    keys = {
        "li": a.add("li", "reader", ["hr"]),
        "boss": a.add("boss", "admin"),
        "nobody": a.add("nobody", "reader"),
    }
    return s, keys


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------ CLI --user
def test_ask_as_a_user_searches_only_what_they_may_read(home, capsys):
    s, _ = home
    code, out, err = _run(capsys, "ask", LAOSHAN, "--user", "li", "--home", s.home, "--json")
    assert code == 0, err
    ans = json.loads(out)
    # plan holds the answer, but li reads hr only: no passage of plan anywhere
    assert {c["kb"] for c in ans["citations"]} <= {"hr"}
    assert {h["kb"] for h in ans["retrieved"]} == {"hr"}
    assert all(d not in out for d in PLAN_DOCS)
    code, out, err = _run(capsys, "ask", LAOSHAN, "--user", "boss", "--home", s.home, "--json")
    assert code == 0 and "plan" in {c["kb"] for c in json.loads(out)["citations"]}


def test_a_knowledge_base_a_user_may_not_read_is_refused_as_missing(home, capsys):
    s, _ = home
    denied = _run(capsys, "ask", LAOSHAN, "--user", "li", "--kb", "plan", "--home", s.home)
    missing = _run(capsys, "ask", LAOSHAN, "--user", "li", "--kb", "plan2", "--home", s.home)
    assert denied[0] == missing[0] == 2
    assert denied[2].replace("plan", "X") == missing[2].replace("plan2", "X")
    assert denied[2] == "rag: 没有名为“plan”的知识库：该知识库不存在。\n"
    code, _, err = _run(capsys, "ask", LAOSHAN, "--user", "ghost", "--home", s.home)
    assert code == 2 and "没有名为“ghost”的用户" in err


# ------------------------------------------------------------------ HTTP
@pytest.fixture(scope="module")
def server(home, embedder):
    from rag.serve.api import create_app, make_server
    from rag.system import Embedders, KbSystems

    s, _ = home
    systems = KbSystems(s, Embedders(s, {s.embed_model: embedder}))
    audit = AuditLog(Path(s.home) / "audit.db")
    app = create_app(systems.get("plan"), [SERVICE_KEY], systems=systems,
                     accounts=Accounts(s), audit=audit)  # fmt: skip
    port = free_port()
    srv = make_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(15)


def _h(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_models_lists_only_the_readable_knowledge_bases(server, home):
    _, keys = home

    def ids(key: str) -> list[str]:
        r = httpx.get(server + "/v1/models", headers=_h(key))
        return [m["id"] for m in r.json()["data"]]

    assert ids(keys["li"]) == ["hr"]
    assert ids(keys["boss"]) == ["hr", "plan"]
    assert ids(SERVICE_KEY) == ["hr", "plan"]
    assert ids(keys["nobody"]) == []
    assert httpx.get(server + "/v1/models", headers=_h("rag-not-a-key")).status_code == 401


def test_chat_as_a_user_answers_from_their_knowledge_base_only(server, home):
    from openai import NotFoundError, OpenAI

    _, keys = home
    li = OpenAI(base_url=server + "/v1", api_key=keys["li"], max_retries=0, timeout=120)
    r = li.chat.completions.create(model="hr", messages=[{"role": "user", "content": HANGZHOU}])
    refs = r.model_extra["references"]
    assert refs and {ref["doc_id"] for ref in refs} <= set(HR_DOCS)
    errors = []
    for model in ("plan", "no-such-kb"):
        with pytest.raises(NotFoundError) as e:
            li.chat.completions.create(model=model, messages=[{"role": "user", "content": LAOSHAN}])
        errors.append(e.value.body["message"].replace(model, "X"))
    # the same for one that exists unreadable as for none: only the readable are named
    assert errors[0] == errors[1] == "没有名为 'X' 的知识库；可用的是 'hr'。"
    # streamed too: the refusal comes before any passage
    with pytest.raises(NotFoundError):
        li.chat.completions.create(model="plan", stream=True,
                                   messages=[{"role": "user", "content": LAOSHAN}])  # fmt: skip
    boss = OpenAI(base_url=server + "/v1", api_key=keys["boss"], max_retries=0, timeout=120)
    r = boss.chat.completions.create(model="plan", messages=[{"role": "user", "content": LAOSHAN}])
    assert "156" in r.choices[0].message.content
    assert {ref["doc_id"] for ref in r.model_extra["references"]} <= set(PLAN_DOCS)


def _retrieve(server, key, kb, query=LAOSHAN):
    body = {"knowledge_id": kb, "query": query, "retrieval_setting": {"top_k": 5}}
    return httpx.post(server + "/retrieval", json=body, headers=_h(key), timeout=120)


def test_dify_retrieval_of_an_unreadable_knowledge_base_is_2001_like_a_missing_one(server, home):
    _, keys = home
    denied, missing = _retrieve(server, keys["li"], "plan"), _retrieve(server, keys["li"], "zzz")
    assert denied.status_code == missing.status_code == 404
    assert denied.json()["error_code"] == missing.json()["error_code"] == 2001
    assert denied.json()["error_msg"].replace("plan", "X") == missing.json()["error_msg"].replace(
        "zzz", "X"
    )
    ok = _retrieve(server, keys["li"], "hr", HANGZHOU)
    assert ok.status_code == 200
    records = ok.json()["records"]
    assert records and {r["metadata"]["doc_id"] for r in records} <= set(HR_DOCS)
    assert _retrieve(server, keys["boss"], "plan").json()["records"]


def test_every_api_answer_is_in_the_audit_log_under_its_caller(server, home):
    s, keys = home
    from openai import OpenAI

    li = OpenAI(base_url=server + "/v1", api_key=keys["li"], max_retries=0, timeout=120)
    li.chat.completions.create(model="hr", messages=[{"role": "user", "content": "杭州的工匠精神"}])
    rows = AuditLog(Path(s.home) / "audit.db").rows(user="li")
    row = rows[-1]
    assert (row.question, row.kbs, row.channel) == ("杭州的工匠精神", ("hr",), "api")
    assert row.latency_ms > 0 and row.answer
    assert all(c["kb"] == "hr" for c in row.citations)


# ------------------------------------------------------------------ the audit log
def test_the_audit_log_is_append_only_filters_exports_and_feeds_the_eval_set(
    home, capsys, tmp_path
):
    from rag.eval.questions import load_questions

    s, _ = home
    code, _, err = _run(capsys, "ask", HANGZHOU, "--user", "li", "--home", s.home)
    assert code == 0
    n = int(err.split("#")[1].split("；")[0])
    assert _run(capsys, "feedback", str(n), "up", "--user", "li", "--home", s.home)[0] == 0
    # another's question cannot be rated: it is not there for them
    code, _, err = _run(capsys, "feedback", str(n), "down", "--user", "boss", "--home", s.home)
    assert code == 2 and f"没有编号为 {n} 的提问记录" in err
    assert _run(capsys, "ask", LAOSHAN, "--user", "boss", "--kb", "plan", "--home", s.home)[0] == 0
    log = AuditLog(Path(s.home) / "audit.db")
    last = log.rows(user="boss")[-1]
    log.feedback(last.id, "boss", "down", "年份不对", "156亿元")

    db = Path(s.home) / "audit.db"
    with sqlite3.connect(db) as con:
        for sql in ("UPDATE questions SET answer = 'x'", "DELETE FROM questions",
                    "DELETE FROM feedback", "UPDATE feedback SET rating = 'up'"):  # fmt: skip
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(sql)

    code, out, _ = _run(capsys, "audit", "--user", "li", "--home", s.home)
    lines = out.splitlines()
    assert code == 0 and lines and all(line.split("\t")[2] == "li" for line in lines)
    assert any(line.startswith(f"#{n}\t") and line.endswith("👍") for line in lines)
    code, out, _ = _run(capsys, "audit", "--user", "boss", "--home", s.home)
    assert out.splitlines()[-1].endswith("👎 年份不对（更正：156亿元）")
    code, out, _ = _run(capsys, "audit", "--since", "2999-01-01", "--home", s.home)
    assert code == 0 and out == ""
    code, _, err = _run(capsys, "audit", "--since", "yesterday", "--home", s.home)
    assert code == 2 and "--since" in err
    csv_path = tmp_path / "audit.csv"
    assert _run(capsys, "audit", "--csv", str(csv_path), "--home", s.home)[0] == 0
    import csv

    rows = list(csv.DictReader(csv_path.open(encoding="utf-8-sig")))
    assert rows and {"user", "kbs", "question", "answer", "citations", "refused", "confidence",
                     "latency_ms", "rating"} <= set(rows[0])  # fmt: skip
    assert [r["rating"] for r in rows if r["id"] == str(n)] == ["up"]

    eval_path = tmp_path / "feedback.jsonl"
    assert _run(capsys, "audit", "--eval", str(eval_path), "--home", s.home)[0] == 0
    qs = {q.id: q for q in load_questions(eval_path)}
    up = qs[f"audit-{n}"]
    assert up.answerable and up.question == HANGZHOU and set(up.gold_doc_ids) <= set(HR_DOCS)
    down = qs[f"audit-{last.id}"]
    assert down.answers == ("156亿元",) and down.gold_doc_ids == ()
    assert len(qs) == 2 and len(eval_records(log.rows())) == 2


def test_only_an_editor_of_a_knowledge_base_may_ingest_into_it(home, capsys, tmp_path):
    s, _ = home
    Accounts(s).add("zhao", "editor", ["hr"])
    src = tmp_path / "src"
    src.mkdir()
    (src / "note.txt").write_text("人事处通知：本周五下午组织业务培训。", encoding="utf-8")
    code, _, err = _run(capsys, "ingest", str(src), "--kb", "hr", "--user", "li", "--home", s.home)
    assert code == 2 and "不能加入文档" in err  # li reads hr, but is no editor
    denied = _run(capsys, "ingest", str(src), "--kb", "plan", "--user", "zhao", "--home", s.home)
    missing = _run(capsys, "ingest", str(src), "--kb", "plan9", "--user", "zhao", "--home", s.home)
    assert denied[0] == missing[0] == 2
    assert denied[2].replace("plan", "X") == missing[2].replace("plan9", "X")
    code, out, err = _run(capsys, "ingest", str(src), "--kb", "hr", "--user", "zhao", "--home",
                          s.home, "--quiet")  # fmt: skip
    assert code == 0 and "added 1" in out, err


def test_the_chat_ui_logs_in_every_account_with_its_password(home, embedder):
    """Readers too: what a login may read and change is decided on each action
    (tests/test_ui_access.py); the page without a session is the Chinese login page."""
    from rag.serve.api import create_app, make_server
    from rag.serve.limits import account_login
    from rag.system import Embedders, KbSystems

    s, _ = home
    a = Accounts(s)
    a.add("qian", "editor", ["hr"], password="qian-password")
    a.add("sun", "reader", ["hr"], password="sun-password")
    a.add("zhou", "editor", ["plan"], password="zhou-password")
    systems = KbSystems(s, Embedders(s, {s.embed_model: embedder}))
    app = create_app(systems.get("hr"), [SERVICE_KEY], ui=True,
                     ui_auth=account_login(s, 0.0), systems=systems, accounts=a)  # fmt: skip
    port = free_port()
    srv = make_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not srv.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/config").status_code == 401
        page = httpx.get(url + "/")
        assert page.status_code == 200 and 'id="rag-login"' in page.text
        assert "用户名或密码不正确。" in page.text and "<title>登录 · 文档问答</title>" in page.text

        def status(name: str, pw: str) -> int:
            data = {"username": name, "password": pw}
            return httpx.post(url + "/login", data=data, timeout=60).status_code

        assert status("qian", "qian-password") == 200
        assert status("qian", "wrong-password") == 400
        assert status("sun", "sun-password") == 200  # a reader: asks, cannot change
        assert status("zhou", "zhou-password") == 200  # an editor of another knowledge base
        assert status("ghost", "qian-password") == 400
        with httpx.Client(base_url=url) as client:  # logged in: the app, not the login page
            data = {"username": "sun", "password": "sun-password"}
            assert client.post("/login", data=data, timeout=60).status_code == 200
            page = client.get("/")
            assert page.status_code == 200 and 'id="rag-login"' not in page.text
            assert client.get("/config").status_code == 200
    finally:
        srv.should_exit = True
        thread.join(15)


def test_the_document_apis_and_mcp_keep_to_the_callers_knowledge_bases(server, home, tmp_path):
    """/api/search and /api/documents read only what the key may read; a reader may list
    and search its knowledge base but not add to it or delete from it (403), and another
    knowledge base is missing to it (404); MCP's tools answer the same."""
    import asyncio

    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    _, keys = home
    li, boss = _h(keys["li"]), _h(keys["boss"])
    r = httpx.post(server + "/api/search", headers=li, timeout=120,
                   json={"query": LAOSHAN, "knowledge_base": "hr"})  # fmt: skip
    assert r.status_code == 200 and {h["doc_id"] for h in r.json()["hits"]} <= set(HR_DOCS)
    r = httpx.post(server + "/api/search", headers=li, timeout=120,
                   json={"query": LAOSHAN, "knowledge_base": "plan"})  # fmt: skip
    assert r.status_code == 404 and "plan" not in r.json()["error"]["message"].split("可用的是")[1]
    listed = httpx.get(server + "/api/documents", headers=li, params={"knowledge_base": "hr"})
    assert listed.status_code == 200
    assert {d["doc_id"] for d in listed.json()["documents"]} == set(HR_DOCS)
    note = tmp_path / "通知.txt"
    note.write_text("临时通知\n本周五下午召开安全例会。\n", encoding="utf-8")
    with note.open("rb") as f:
        r = httpx.post(server + "/api/documents", headers=li, params={"knowledge_base": "hr"},
                       files=[("files", ("通知.txt", f, "text/plain"))], timeout=120)  # fmt: skip
    assert r.status_code == 403 and "权限" in r.json()["error"]["message"]
    r = httpx.delete(server + "/api/documents", headers=li,
                     params={"knowledge_base": "hr", "doc_id": HR_DOCS[0]})  # fmt: skip
    assert r.status_code == 403
    after = httpx.get(server + "/api/documents", headers=boss, params={"knowledge_base": "hr"})
    assert {d["doc_id"] for d in after.json()["documents"]} == set(HR_DOCS)  # nothing changed

    async def mcp_search(kb: str):
        http = httpx2.AsyncClient(headers=li, timeout=httpx2.Timeout(120, read=300))
        async with Client(streamable_http_client(server + "/mcp", http_client=http)) as c:
            return await c.call_tool("search_documents", {"query": LAOSHAN, "knowledge_base": kb})

    own, other = asyncio.run(mcp_search("hr")), asyncio.run(mcp_search("plan"))
    assert not own.is_error and not any(
        d in json.dumps(own.structured_content, ensure_ascii=False) for d in PLAN_DOCS
    )
    assert other.is_error and "不存在" in other.content[0].text
