"""Each user's conversations in a real SQLite file (WAL): kept by `rag chat --user` and
`rag ask --user`, resumed after a restart, renamed, deleted, exported as Markdown; one
user never sees another's."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from org_home import HANGZHOU, REPO, make_home

from rag.errors import NotFoundError
from rag.org.accounts import Accounts
from rag.org.history import History


@pytest.fixture(scope="module")
def home(tmp_path_factory, embedder):
    s = make_home(tmp_path_factory.mktemp("org-history"), embedder)
    Accounts(s).add("li", "reader", ["hr"])
    Accounts(s).add("wang", "reader", ["hr", "plan"])
    return s


def _cli(home, *argv, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "rag.serve.cli", *argv, "--home", home.home],
        input=stdin, capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )  # fmt: skip


def test_a_chat_is_kept_resumed_after_a_restart_renamed_exported_and_deleted(home, tmp_path):
    r = _cli(home, "chat", "--user", "li", stdin=f"{HANGZHOU}\n/exit\n")
    assert r.returncode == 0, r.stderr
    h = History(Path(home.home) / "history.db")
    [conv] = h.list("li")
    assert conv.title == HANGZHOU and conv.kbs == ("hr",)
    assert f"--resume {conv.id}" in r.stderr

    # a new process goes on with it: the follow-up is read with the first question
    r = _cli(home, "chat", "--user", "li", "--resume", conv.id, stdin="那它的工匠精神呢？\n/exit\n")
    assert r.returncode == 0, r.stderr
    turns = h.get("li", conv.id).turns
    assert [t.question for t in turns] == [HANGZHOU, "那它的工匠精神呢？"]
    assert turns[1].rewritten != turns[1].question  # carried the subject over
    assert all(c["kb"] == "hr" for t in turns for c in t.citations)

    assert _cli(home, "history", "rename", conv.id, "杭州考察", "--user", "li").returncode == 0
    r = _cli(home, "history", "list", "--user", "li")
    assert r.returncode == 0 and f"{conv.id}\t" in r.stdout and "杭州考察" in r.stdout
    out = tmp_path / "conv.md"
    r = _cli(home, "history", "export", conv.id, "--user", "li", "--out", str(out))
    md = out.read_text(encoding="utf-8")
    assert md.startswith("# 杭州考察\n") and f"## 问：{HANGZHOU}" in md
    assert "引用：" in md and "〔知识库 hr〕《" in md

    # another user: not found, as if it did not exist
    r = _cli(home, "history", "show", conv.id, "--user", "wang")
    assert r.returncode == 2 and f"没有编号为 {conv.id} 的对话" in r.stderr
    with pytest.raises(NotFoundError):
        h.append("wang", conv.id, _Ans())
    assert h.list("wang") == []

    r = _cli(home, "history", "delete", conv.id, "--user", "li", "--yes")
    assert r.returncode == 0 and h.list("li") == []
    with sqlite3.connect(Path(home.home) / "history.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 0


class _Ans:
    question, rewritten_question, text, refused, citations = "q", None, "a", False, []


def test_ask_as_a_user_keeps_a_one_question_conversation(home):
    r = _cli(home, "ask", HANGZHOU, "--user", "wang", "--kb", "hr")
    assert r.returncode == 0, r.stderr
    [conv] = History(Path(home.home) / "history.db").list("wang")
    assert conv.title == HANGZHOU and len(History(Path(home.home) / "history.db").get(
        "wang", conv.id).turns) == 1  # fmt: skip
