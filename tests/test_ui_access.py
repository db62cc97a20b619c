"""The chat page over a home, without a browser: every read and write goes through the
Service with the login's caller (rag.serve.ui.access), so a reader sees only the
knowledge bases granted, cannot upload or remove even by calling the handler itself,
keeps to their own conversations, and every question is in the audit log. Real parts:
a home with two knowledge bases built with the real embedding model (tests/org_home.py),
real SQLite files, the handlers of the real Gradio Blocks."""

from __future__ import annotations

import pytest
from org_home import HANGZHOU, HR_DOCS, LAOSHAN, PLAN_DOCS, make_home

from rag.errors import ForbiddenError, NotFoundError
from rag.org.accounts import Accounts
from rag.org.audit import AuditLog


@pytest.fixture(scope="module")
def home(tmp_path_factory, embedder):
    from rag.serve.service import Service
    from rag.serve.ui.access import UiAccess
    from rag.system import Embedders, KbSystems

    root = tmp_path_factory.mktemp("ui-access")
    s = make_home(root, embedder)
    a = Accounts(s)
    a.add("li", "reader", ["hr"], password="li-password")
    a.add("wang", "editor", ["hr"], password="wang-password")
    a.add("boss", "admin", password="boss-password")
    a.add("nobody", "reader", password="nobody-password")
    systems = KbSystems(s, Embedders(s, {s.embed_model: embedder}))
    audit = AuditLog(s.home_path / "audit.db")
    service = Service(systems.get("hr"), systems=systems, accounts=a, audit=audit,
                      temp_dir=root / "gradio-tmp")  # fmt: skip
    return s, UiAccess(service), root


def _state(home, user: str):
    from rag.serve.ui.handlers import ChatState

    _, access, _ = home
    lib = access.service.knowledge_base("hr").library
    st = ChatState(lib, lib.settings, access=access)
    st.login(user)
    return st


def _ask(st, question: str):
    list(st.respond(question))
    return st.answers[-1]


def test_a_reader_asks_only_the_knowledge_bases_granted(home):
    st = _state(home, "li")
    assert st.kbs == ("hr",)
    assert st.access.readable(st.caller) == ["hr"]
    ans = _ask(st, LAOSHAN)  # plan holds the answer; li reads hr only
    assert ans.citations and {c.kb for c in ans.citations} == {"hr"}
    assert not [m for m in st.messages if any(d in m["content"] for d in PLAN_DOCS)]
    with pytest.raises(NotFoundError) as denied:
        st.use_kbs(["plan"])
    with pytest.raises(NotFoundError) as missing:
        st.use_kbs(["plan2"])
    # refused exactly as a knowledge base that does not exist
    assert str(denied.value).replace("'plan'", "X") == str(missing.value).replace("'plan2'", "X")
    assert st.kbs == ("hr",)


def test_several_knowledge_bases_at_once_and_citations_name_theirs(home):
    st = _state(home, "boss")
    assert st.access.readable(st.caller) == ["hr", "plan"]
    assert st.use_kbs(["plan", "hr"]) == "提问范围：知识库 plan、hr。"
    ans = _ask(st, LAOSHAN)
    assert ans.citations and ans.citations[0].kb == "plan"
    assert ans.citations[0].doc_id.startswith("plan/")  # qualified across knowledge bases
    assert "〔知识库 plan〕" in st.messages[-1]["content"]  # the card names it
    info = st.library.info()
    assert info["n_docs"] == len(PLAN_DOCS) + len(HR_DOCS) and "、" in info["version"]
    lib, c = st.source(0, ans.citations[0].n)
    view = lib.document_view(c)
    assert "rag-target" in view and "嶗山區" in view
    ans = _ask(st, HANGZHOU)
    assert {c.kb for c in ans.citations} >= {"hr"}


def test_a_revoked_grant_counts_at_the_next_question(home):
    s, access, _ = home
    a = Accounts(s)
    a.add("temp", "reader", ["plan"])
    st = _state(home, "temp")
    assert st.kbs == ("plan",)
    a.revoke("temp", ["plan"])
    list(st.respond(LAOSHAN))
    assert "不存在" in st.messages[-1]["content"] and not st.answers
    assert st.source(0, 1) is None


def test_an_account_without_grants_gets_no_knowledge_base(home):
    st = _state(home, "nobody")
    assert st.kbs == ()
    list(st.respond(LAOSHAN))
    assert "还没有可以提问的知识库" in st.messages[-1]["content"]
    assert not st.answers


def test_every_question_is_in_the_audit_log_with_its_user_and_feedback(home):
    s, _, _ = home
    st = _state(home, "wang")
    ans = _ask(st, HANGZHOU)
    st.feedback(len(st.messages) - 1, "down")
    st.comment("引用的段落不全")
    row = AuditLog(s.home_path / "audit.db").rows(user="wang")[-1]
    assert (row.user, row.channel, row.kbs, row.question) == ("wang", "ui", ("hr",), HANGZHOU)
    assert row.answer == ans.text and row.citations[0]["kb"] == "hr"
    assert (row.rating, row.comment) == ("down", "引用的段落不全")


def _handler(demo, name: str):
    found = {f.fn for f in demo.fns.values() if f.name == name}  # one function, maybe 2 events
    assert len(found) == 1, name
    return found.pop()


@pytest.fixture(scope="module")
def demo(home):
    from rag.serve.ui.layout import build_app

    _, access, _ = home
    return build_app(access.service.knowledge_base("hr").library, [], access=access)


def test_a_readers_upload_and_removal_are_refused_by_the_handlers(home, demo, tmp_path):
    import gradio as gr

    s, access, _ = home
    hr = access.service.knowledge_base("hr").library
    before = set(hr.index.docs)
    doc = tmp_path / "通知.txt"
    doc.write_text("临时通知\n本周五下午三点召开安全生产例会。\n", encoding="utf-8")
    li = gr.Request(username="li")
    # the caller is the request's login, whatever state the handler is given: a reader
    # with an admin's page state, or with none (a handler called without loading the page)
    for st in (_state(home, "boss"), None):
        out = _handler(demo, "on_upload")([str(doc)], "hr", st, li)
        assert "没有修改知识库 &#x27;hr&#x27; 的权限" in out[0] and not doc.exists()
        doc.write_text("临时通知\n本周五下午三点召开安全生产例会。\n", encoding="utf-8")
        out = _handler(demo, "on_remove")([sorted(before)[0]], "hr", st, li)
        assert "没有修改知识库 &#x27;hr&#x27; 的权限" in out[0]
    out = _handler(demo, "on_remove_ask")([sorted(before)[0]], "hr", li)
    assert "没有修改知识库 &#x27;hr&#x27; 的权限" in out[0]
    out = _handler(demo, "on_upload")([str(doc)], "plan", None, li)  # not li's: as missing
    assert "不存在" in out[0] and "plan" in out[0]
    assert set(hr.index.docs) == before
    # and the page hides the controls from a reader, shows them to the editor
    table, _, editing, reading = _handler(demo, "kb_view")("hr", li)
    assert len(table) == len(HR_DOCS) and editing["visible"] is False and reading["visible"]
    _, _, editing, reading = _handler(demo, "kb_view")("hr", gr.Request(username="wang"))
    assert editing["visible"] is True and reading["visible"] is False
    table, _, editing, _ = _handler(demo, "kb_view")("plan", li)  # not li's: nothing of it
    assert table == [] and editing["visible"] is False


def test_the_admin_tab_is_served_to_admins_only(home, demo, tmp_path):
    from rag.serve.ui.admin import admin_panel

    _, access, _ = home
    _ask(_state(home, "li"), "火星上第一座城市叫什么名字？")
    with pytest.raises(ForbiddenError):
        admin_panel(access, access.caller("li"), tmp_path)
    with pytest.raises(ForbiddenError):
        admin_panel(access, access.caller("wang"), tmp_path)
    view = admin_panel(access, access.caller("boss"), tmp_path)
    users = {u[0]: u for u in view.users}
    assert users["li"][1:4] == ["读者", "hr", "密码"] and users["boss"][2] == "全部"
    assert "火星上第一座城市叫什么名字？" in view.summary and "次提问" in view.summary
    assert view.per_day_png.stat().st_size > 1000 and view.cited_png.is_file()
    assert view.recent[0][5] == "火星上第一座城市叫什么名字？" and view.recent[0][2] == "li"
    hidden = _handler(demo, "on_admin_load")(_state(home, "li"))
    assert hidden[0]["visible"] is False and hidden[1] == [] and hidden[2] == ""
    shown = _handler(demo, "on_admin_load")(_state(home, "boss"))
    assert shown[0]["visible"] is True and shown[1]


def test_conversations_rename_delete_export_and_are_per_user(home, tmp_path):
    li = _state(home, "li")
    ans = _ask(li, HANGZHOU)
    conv = li.conv_id
    li.rename_conversation(conv, "杭州考察")
    assert li.conversations()[0][0].startswith("杭州考察（")
    path = li.export_conversation(conv, tmp_path)
    md = path.read_text(encoding="utf-8")
    assert path.name == "对话-杭州考察.md" and md.startswith("# 杭州考察\n")
    assert f"## 问：{HANGZHOU}" in md and "引用：" in md and "〔知识库 hr〕" in md
    assert ans.citations[0].title in md
    wang = _state(home, "wang")  # another user: the id gives nothing
    for act in (lambda: wang.rename_conversation(conv, "x"), lambda: wang.delete_conversation(conv),
                lambda: wang.export_conversation(conv, tmp_path), lambda: wang.resume(conv)):  # fmt: skip
        with pytest.raises(NotFoundError):
            act()
    assert li.conversations()[0][1] == conv
    li.delete_conversation(conv)
    assert conv not in [i for _, i in li.conversations()]
    assert li.conv_id == "" and li.messages == []


def test_each_knowledge_base_keeps_its_own_uploads(home, tmp_path):
    """The same file uploaded to two knowledge bases, then removed from one: the other
    still has its document and its stored file."""
    _, access, _ = home
    doc = tmp_path / "共用通知.txt"
    doc.write_text("共用通知\n两个处室于下周一上午九点联合召开协调会。\n", encoding="utf-8")
    hr = access.library("hr", access.caller("wang"), edit=True)
    plan = access.library("plan", access.caller("boss"), edit=True)
    [added_hr] = hr.add_files([(doc, doc.name)], user="wang")
    [added_plan] = plan.add_files([(doc, doc.name)], user="boss")
    assert added_hr.status == added_plan.status == "added"
    [removed] = hr.remove([added_hr.doc_id])
    assert removed.status == "removed" and added_hr.doc_id not in hr.index.docs
    stored = [p for p in plan.uploads_dir.iterdir() if p.suffix == ".txt"]
    assert len(stored) == 1 and stored[0].is_file()
    assert added_plan.doc_id in plan.index.docs
    assert not [p for p in hr.uploads_dir.iterdir() if p.suffix == ".txt"]
    assert hr.uploads_dir != plan.uploads_dir


def test_exports_older_than_an_hour_are_swept(tmp_path, monkeypatch):
    import os
    import time

    from rag.serve.ui.access import EXPORT_KEEP_S, export_dir

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    old, fresh = export_dir(), export_dir()
    (old / "对话-旧.md").write_text("# 旧\n", encoding="utf-8")
    stale = time.time() - EXPORT_KEEP_S - 60
    os.utime(old, (stale, stale))
    new = export_dir()
    assert not old.exists() and fresh.is_dir() and new.parent == tmp_path / "exports"


def test_asking_without_loading_the_page_asks_as_the_requests_login(home, demo):
    """The ask handler called straight (as an API client may): no page state, or the
    state of another login's page, still asks as the login of the request."""
    import gradio as gr

    ask = _handler(demo, "on_ask")
    boss = _state(home, "boss")
    _ask(boss, HANGZHOU)
    for st in (None, boss):
        *_, (messages, _, after) = list(ask(LAOSHAN, st, gr.Request(username="li")))
        assert after.user == "li" and after.kbs == ("hr",) and len(after.answers) == 1
        assert after.conv_id not in [i for _, i in boss.conversations()]
        assert after.answers and {c.kb for c in after.answers[-1].citations} == {"hr"}
        assert "〔知识库 plan〕" not in messages[-1]["content"]
