"""Questions asked with nobody logged in are audited too: the chat page over a bare
index (as the plain `python app.py`) and an API served without keys (`--no-auth`) write
each answer into a real audit.db, under the explicit marker ANONYMOUS, with their
channel; the thumbs given on the page land beside it."""

from __future__ import annotations

import httpx
from test_api import LAOSHAN, _serve

from rag.org.audit import ANONYMOUS, AuditLog


def test_the_chat_page_without_login_audits_as_anonymous(corpus_system, tmp_path):
    from rag.serve.api_ui import bare_access
    from rag.serve.ui.handlers import ChatState
    from rag.serve.ui.library import Library

    audit = AuditLog(tmp_path / "home" / "audit.db")
    library = Library(corpus_system, tmp_path / "uploads", tmp_path / "feedback.jsonl")
    # nobody logged in, and a session the page's ask made afresh (no load event before it)
    st = ChatState(library, library.settings, access=bare_access(library, audit))
    messages = list(st.respond(LAOSHAN))[-1]
    (row,) = audit.rows()
    assert (row.user, row.channel, row.kbs, row.question) == (
        ANONYMOUS,
        "ui",
        ("default",),
        LAOSHAN,
    )
    assert row.citations and not row.refused and row.latency_ms > 0
    st.feedback(len(messages) - 1, "down")
    assert audit.rows()[0].rating == "down"


def test_an_api_without_keys_audits_as_anonymous(corpus_system, tmp_path):
    from rag.serve.api import create_app

    audit = AuditLog(tmp_path / "home" / "audit.db")
    srv, thread, url = _serve(create_app(corpus_system, no_auth=True, audit=audit))
    try:
        r = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
            "model": "default", "messages": [{"role": "user", "content": LAOSHAN}]})  # fmt: skip
        assert r.status_code == 200, r.text
    finally:
        srv.should_exit = True
        thread.join(15)
    (row,) = audit.rows()
    assert (row.user, row.channel, row.question) == (ANONYMOUS, "api", LAOSHAN)
    assert row.answer == r.json()["choices"][0]["message"]["content"]


def test_the_cli_over_a_bare_index_audits_where_a_home_keeps_a_log(
    corpus_settings, tmp_path, monkeypatch, capsys
):
    from rag.serve.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("RAG_HOME", str(home))
    assert main(["ask", LAOSHAN, "--index", corpus_settings.index_dir, "--json"]) == 0
    assert not (home / "audit.db").exists()  # a laptop's bare index: no home, nothing kept
    audit = AuditLog(home / "audit.db")  # a department's home, whose pages keep a log
    from rag.org.audit import AUDIT_SCHEMA
    from rag.org.db import connect

    connect(home / "audit.db", AUDIT_SCHEMA).close()  # as the page's first question makes it
    assert main(["ask", LAOSHAN, "--index", corpus_settings.index_dir, "--json"]) == 0
    (row,) = audit.rows()
    assert (row.user, row.channel, row.kbs, row.question) == (
        "operator",
        "cli",
        ("default",),
        LAOSHAN,
    )
    assert "156" in row.answer and row.citations
