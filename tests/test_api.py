"""`rag serve`'s APIs over a real socket: the official `openai` client against
`/v1/chat/completions` (streamed and not), Dify's External Knowledge API with `httpx`.

A real uvicorn server runs in a thread on a free loopback port, over the session's index
of corpus/. Requests and responses follow the OpenAI and Dify documentation.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
from conftest import free_port

from rag.errors import ConfigError
from rag.read.extractive import REFUSAL
from rag.serve.api import (
    MAX_BODY_BYTES,
    ServeOptions,
    api_keys,
    check_serve_options,
    create_app,
    make_server,
)

KEY = "test-key-1"
OTHER_KEY = "test-key-2"
LAOSHAN = "崂山区2023年计划完成投资多少？"
OFF_TOPIC = "北京冬奥会吉祥物叫什么?"


@pytest.fixture(scope="module")
def server(corpus_system):
    """http://127.0.0.1:PORT of the API served over the corpus index, keys KEY and OTHER_KEY."""
    srv, thread, url = _serve(create_app(corpus_system, [KEY, OTHER_KEY]))
    yield url
    srv.should_exit = True
    thread.join(15)


def _serve(app, port: int | None = None):
    """The app on a real socket (`port`: a fixed one, when a URL must be known first)."""
    port = port or free_port()
    srv = make_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    return srv, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=120)


def _cited(refs: list[dict], text: str) -> list[dict]:
    return [r for r in refs if text in r["text"]]


# ------------------------------------------------------------------ options
def test_keys_come_from_the_flags_else_from_the_environment():
    assert api_keys(["a", " b "], env="x,y") == ("a", "b")
    assert api_keys(None, env=" x, ,y ") == ("x", "y")
    assert api_keys([], env="") == ()


def test_no_auth_or_a_ui_without_login_is_refused_beyond_loopback_and_so_is_no_key():
    check_serve_options(ServeOptions("127.0.0.1", 8000, (), no_auth=True))
    check_serve_options(ServeOptions("0.0.0.0", 8000, ("k",), ui=False))
    check_serve_options(ServeOptions("0.0.0.0", 8000, ("k",), ui_auth=("u", "p")))
    with pytest.raises(ConfigError, match="无需登录的网页界面"):
        check_serve_options(ServeOptions("0.0.0.0", 8000, ("k",)))
    with pytest.raises(ConfigError, match="拒绝在 0.0.0.0 上不设密钥"):
        check_serve_options(ServeOptions("0.0.0.0", 8000, (), no_auth=True))
    with pytest.raises(ConfigError, match="没有可用的 API 密钥"):
        check_serve_options(ServeOptions("127.0.0.1", 8000, ()))


# ------------------------------------------------------------------ health, docs, auth
def test_health_and_docs_need_no_key(server):
    h = httpx.get(server + "/healthz")
    assert h.status_code == 200 and h.json() == {"status": "ok", "documents": 5}
    assert httpx.get(server + "/docs").status_code == 200
    paths = httpx.get(server + "/openapi.json").json()["paths"]
    assert {"/v1/models", "/v1/chat/completions", "/retrieval"} <= set(paths)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_an_api_call_without_a_valid_key_gets_401_json(server, headers):
    r = httpx.get(server + "/v1/models", headers=headers)
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["code"] == "invalid_api_key" and "密钥" in err["message"]


def test_the_openai_client_with_a_wrong_key_raises_authentication_error(server):
    from openai import AuthenticationError, OpenAI

    bad = OpenAI(base_url=server + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(AuthenticationError):
        bad.models.list()


def test_every_request_is_logged_with_its_keys_name_never_the_key(server, caplog):
    with caplog.at_level(logging.INFO, logger="rag.serve.api"):
        httpx.get(server + "/v1/models", headers={"Authorization": f"Bearer {OTHER_KEY}"})
        httpx.get(server + "/v1/models", headers={"Authorization": "Bearer leaked-guess"})
    lines = [r.getMessage() for r in caplog.records if r.name == "rag.serve.api"]
    assert any(" key2 GET /v1/models 200 " in line for line in lines), lines
    assert any(" - GET /v1/models 401 " in line for line in lines), lines
    assert not any(OTHER_KEY in line or "leaked-guess" in line for line in lines)


def test_models_lists_the_default_knowledge_base_for_either_key(server, client):
    assert [m.id for m in client.models.list()] == ["default"]
    r = httpx.get(server + "/v1/models", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["default"]


def test_no_cors_headers_for_another_origin(server):
    pre = httpx.options(
        server + "/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers
    got = httpx.get(server + "/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in got.headers


def test_an_oversized_body_is_refused_with_413(server):
    body = (
        b'{"model": "default", "messages": [{"role": "user", "content": "'
        + (b"x" * (MAX_BODY_BYTES + 10))
        + b'"}]}'
    )
    r = httpx.post(
        server + "/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "请求体过大" in r.json()["error"]["message"]


def test_a_malformed_request_is_a_400_in_chinese_without_a_traceback(server):
    r = httpx.post(
        server + "/v1/chat/completions",
        json={"model": "default", "messages": "not a list"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 400
    assert "请求格式不正确" in r.json()["error"]["message"] and "Traceback" not in r.text


# ------------------------------------------------------------------ OpenAI chat
def test_a_chat_completion_answers_with_markers_and_references(client):
    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": LAOSHAN}]
    )
    resp = raw.parse()
    text = resp.choices[0].message.content
    assert "156" in text and "[1]" in text
    assert resp.choices[0].finish_reason == "stop" and resp.object == "chat.completion"
    extra = resp.model_extra
    assert extra["refused"] is False
    refs = extra["references"]
    assert set(refs[0]) == {"n", "doc_id", "title", "location", "text", "score"}
    cited = _cited(refs, "156")
    assert cited and 0.0 < cited[0]["score"] <= 1.0
    assert f"[{cited[0]['n']}]" in text
    assert raw.http_response.json()["references"] == refs


def test_a_streamed_chat_completion_ends_with_references_then_done(server, client):
    stream = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": LAOSHAN}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "156" in text
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["refused"] is False and _cited(last.model_extra["references"], "156")
    assert all("references" not in (c.model_extra or {}) for c in chunks[:-1])
    # on the wire: SSE data lines, the last one [DONE]
    with httpx.stream(
        "POST",
        server + "/v1/chat/completions",
        json={
            "model": "default",
            "stream": True,
            "messages": [{"role": "user", "content": LAOSHAN}],
        },
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=120,
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]" and '"references"' in lines[-2]


def test_a_refusal_is_an_ordinary_answer_with_refused_true(client):
    resp = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": OFF_TOPIC}]
    )
    assert resp.model_extra["refused"] is True
    assert resp.choices[0].message.content == REFUSAL
    streamed = list(
        client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": OFF_TOPIC}], stream=True
        )
    )
    assert streamed[-1].model_extra["refused"] is True


def test_a_follow_up_is_answered_with_the_earlier_turns_as_context(client):
    resp = client.chat.completions.create(
        model="default",
        messages=[
            {"role": "system", "content": "用中文回答"},
            {"role": "user", "content": LAOSHAN},
            {"role": "assistant", "content": "计划完成投资156亿元[1]"},
            {"role": "user", "content": "那威海呢？"},
        ],
    )
    rewritten = resp.model_extra["rewritten_question"]
    assert rewritten == "2023 计划 完成 投资：那威海呢？"
    alone = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "那威海呢？"}]
    )
    assert alone.model_extra["rewritten_question"] == "那威海呢？"


def test_an_unknown_model_is_404(client):
    from openai import NotFoundError

    with pytest.raises(NotFoundError, match="没有名为"):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": LAOSHAN}]
        )


# ------------------------------------------------------------------ Dify
def _retrieve(server, body: dict, headers: dict | None = None) -> httpx.Response:
    if headers is None:
        headers = {"Authorization": f"Bearer {KEY}"}
    return httpx.post(server + "/retrieval", json=body, headers=headers, timeout=60)


def _dify_body(query=LAOSHAN, top_k=3, score_threshold=0.0, knowledge_id="default") -> dict:
    return {
        "knowledge_id": knowledge_id,
        "query": query,
        "retrieval_setting": {"top_k": top_k, "score_threshold": score_threshold},
    }


def test_dify_retrieval_returns_records_of_content_score_title_metadata(server):
    r = _retrieve(server, _dify_body(top_k=3))
    assert r.status_code == 200
    records = r.json()["records"]
    assert 1 <= len(records) <= 3
    for rec in records:
        assert set(rec) == {"content", "score", "title", "metadata"}
        assert isinstance(rec["metadata"], dict) and rec["metadata"]["doc_id"]
        assert 0.0 <= rec["score"] <= 1.0 and rec["content"]
    assert any("156" in rec["content"] for rec in records)
    assert "/" not in records[0]["metadata"]["path"]  # a file name, not a server path


def test_dify_top_k_is_respected(server):
    assert len(_retrieve(server, _dify_body(top_k=1)).json()["records"]) == 1
    assert len(_retrieve(server, _dify_body(top_k=5)).json()["records"]) == 5


def test_dify_score_threshold_is_respected(server):
    every = _retrieve(server, _dify_body(top_k=5)).json()["records"]
    scores = sorted(rec["score"] for rec in every)
    cut = (scores[0] + scores[-1]) / 2
    assert scores[0] < cut < scores[-1], scores  # the threshold splits the records
    kept = _retrieve(server, _dify_body(top_k=5, score_threshold=cut)).json()["records"]
    assert kept and all(rec["score"] >= cut for rec in kept)
    assert len(kept) == sum(s >= cut for s in scores)
    assert _retrieve(server, _dify_body(top_k=5, score_threshold=1.0)).json() == {"records": []}


@pytest.mark.parametrize(
    "headers, status, code",
    [
        ({}, 401, 1001),
        ({"Authorization": KEY}, 401, 1001),
        ({"Authorization": "Basic abc"}, 401, 1001),
        ({"Authorization": "Bearer wrong-key"}, 401, 1002),
    ],
)
def test_dify_authorization_errors(server, headers, status, code):
    r = _retrieve(server, _dify_body(), headers=headers)
    assert r.status_code == status
    body = r.json()
    assert body["error_code"] == code and body["error_msg"]


def test_dify_unknown_knowledge_base_is_2001(server):
    r = _retrieve(server, _dify_body(knowledge_id="no-such-kb"))
    assert r.status_code == 404
    assert r.json()["error_code"] == 2001 and "不存在" in r.json()["error_msg"]


# ------------------------------------------------------------------ the chat UI at /
def test_the_chat_ui_is_served_at_root_beside_the_keyed_apis(corpus_system):
    app = create_app(corpus_system, [KEY], ui=True, ui_auth=("alice", "pw-1"))
    srv, thread, url = _serve(app)
    try:
        page = httpx.get(url + "/", follow_redirects=True, timeout=60)
        assert page.status_code == 200 and 'id="rag-login"' in page.text  # the login page
        assert httpx.get(url + "/config").status_code == 401  # the UI's own login applies
        wrong = httpx.post(url + "/login", data={"username": "alice", "password": "wrong"})
        assert wrong.status_code == 400
        with httpx.Client(base_url=url, timeout=60) as client:
            right = client.post("/login", data={"username": "alice", "password": "pw-1"})
            assert right.status_code == 200
            page = client.get("/")
            assert "gradio" in page.text.lower() and 'id="rag-login"' not in page.text
        assert httpx.get(url + "/v1/models").status_code == 401
        models = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "default"
        assert httpx.get(url + "/healthz").json()["status"] == "ok"
    finally:
        srv.should_exit = True
        thread.join(15)
