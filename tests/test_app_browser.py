"""The chat app in a real browser: `python app.py` in a subprocess, driven by headless Chromium.

The app is started once for the module over an index it builds itself from two corpus
documents (in a tmp folder). Each test opens its own page, so its own session.
Screenshots of each state go to artifacts/screenshots/ (git-ignored); with
RAG_UPDATE_DOCS=1 the main chat view is also written to docs/chat.png for the README.

Needs the system Chromium (/usr/bin/chromium) and the `playwright` package; see
scripts/setup.sh.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import APP_HOME, running_app

from rag.org.audit import ANONYMOUS, AuditLog

sync_api = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("RAG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = REPO / "artifacts" / "screenshots"
DOCS = ("weihai-jingzhi-training-2022", "laoshan-urban-renewal-2023")
ANSWERABLE = "威海从哪年开始组织干部出去参加精致城市建设专题培训的?"
UNANSWERABLE = "火星上第一座城市叫什么名字？"
UPLOADED = (
    "青岚湖治理工作报告\n"
    "青岚湖水质监测站于2021年建成，共设有17个监测点位。\n"
    "治理工程总投资3.2亿元，由市生态环境局牵头实施。\n"
    "附注：<script>window.__xss = 1</script> 与 ${window.__xss2 = 1} 应原样显示。\n"
)
ANSWER_MS = 90_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
]


# --------------------------------------------------------------------------- fixtures
class Server:
    def __init__(self, url: str, root: Path, proc: subprocess.Popen, log: Path):
        self.url, self.root, self.proc, self.log = url, root, proc, log

    @property
    def feedback(self) -> Path:
        return self.root / "feedback.jsonl"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    corpus = root / "corpus"
    corpus.mkdir()
    for d in DOCS:
        for suffix in (".txt", ".meta.json"):
            shutil.copy(REPO / "corpus" / f"{d}{suffix}", corpus)
    args = [
        "--index", str(root / "data" / "index"),
        "--corpus", str(corpus),
        "--feedback", str(root / "feedback.jsonl"),
    ]  # fmt: skip
    with running_app(args, root / "app.log") as app:
        yield Server(app.url, root, app.proc, app.log)


@pytest.fixture(scope="module")
def browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="rag-chromium-")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            locale="zh-CN",
        )
        yield ctx
        ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


def _open(browser, server):
    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.goto(server.url)
    page.wait_for_selector("#rag-question textarea")
    return page


@pytest.fixture
def page(browser, server):
    pg = _open(browser, server)
    yield pg
    pg.close()


# --------------------------------------------------------------------------- helpers
def shot(page, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def ask(page, question: str, nth: int = 1):
    """Send `question` and wait until the `nth` answer of this page is complete."""
    box = page.locator("#rag-question textarea")
    box.fill(question)
    box.press("Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('#rag-chat .rag-answer:not(.rag-streaming)').length >= n",
        arg=nth,
        timeout=ANSWER_MS,
    )
    return page.locator("#rag-chat .rag-answer").nth(nth - 1)


def open_tab(page, name: str):
    page.get_by_role("tab", name=name).click()


def upload(page, path: Path):
    open_tab(page, "知识库")
    page.locator("#rag-upload input[type=file]").set_input_files(str(path))
    page.wait_for_selector("#rag-upload-result .rag-result", timeout=ANSWER_MS)
    return page.locator("#rag-upload-result .rag-result").first


# --------------------------------------------------------------------------- tests
def test_app_built_its_index_with_progress(server):
    log = server.log.read_text(errors="replace")
    assert "No index in" in log and "building it from" in log
    assert "Embedding: 100%" in log and "added 2" in log  # the embedding progress bar, the summary


def test_examples_on_the_empty_screen(page):
    examples = page.locator("#rag-chat button.example")
    texts = [t.strip() for t in examples.all_inner_texts()]
    assert ANSWERABLE in texts and len(texts) >= 2
    shot(page, "01_empty_with_examples")
    examples.nth(texts.index(ANSWERABLE)).click()  # an example is asked at once
    page.wait_for_selector("#rag-chat .rag-answer:not(.rag-streaming) .rag-card", timeout=ANSWER_MS)
    assert ANSWERABLE in page.locator("#rag-chat").inner_text()


def test_cited_answer_streams_in_and_opens_the_document(page):
    page.evaluate(
        """() => {
        window.__sawStreaming = false;
        new MutationObserver(() => {
          if (document.querySelector('#rag-chat .rag-streaming')) window.__sawStreaming = true;
        }).observe(document.body, {subtree: true, childList: true, characterData: true});
    }"""
    )
    answer = ask(page, ANSWERABLE)
    assert page.evaluate("window.__sawStreaming"), "the answer did not stream in"
    text = answer.locator(".rag-text").inner_text()
    assert "2019" in text and "[1]" in text
    card = answer.locator(".rag-card").first
    assert "跳出威海" in card.locator(".rag-title").inner_text()
    assert (
        "2022-08-29" in card.locator(".rag-meta").inner_text()
        and "字" in card.locator(".rag-meta").inner_text()
    )
    quotes = card.locator("mark.rag-quote").all_inner_texts()
    assert any("2019" in q for q in quotes), quotes  # the answering sentence is highlighted
    shot(page, "02_cited_answer")

    card.click()
    target = page.locator("#rag-viewer .rag-target")
    target.wait_for()
    doc_quotes = target.locator("mark.rag-quote").all_inner_texts()
    assert any("2019" in q for q in doc_quotes), doc_quotes
    assert "跳出威海" in page.locator("#rag-viewer .rag-doc-title").inner_text()
    page.wait_for_timeout(500)  # let scrollIntoView settle
    box = target.bounding_box()
    assert box is not None and 0 <= box["y"] < 900, "the passage is not scrolled into view"
    path = shot(page, "03_document_highlighted")
    if os.environ.get("RAG_UPDATE_DOCS"):
        _save_docs_screenshot(path)


def test_follow_up_question_shows_its_rewriting(page):
    ask(page, "报道里说深圳是哪一年在全国率先提出“城市更新”这个概念的?")
    second = ask(page, "那威海呢？", nth=2)
    rewritten = second.locator(".rag-rewritten").inner_text()
    assert "理解为" in rewritten and "那威海呢" in rewritten and "城市更新" in rewritten
    shot(page, "04_follow_up")


def test_unanswerable_question_is_refused(page):
    answer = ask(page, UNANSWERABLE)
    refusal = answer.locator(".rag-refusal")
    assert "无法回答" in refusal.inner_text()
    assert answer.locator(".rag-related .rag-card").count() >= 1
    assert answer.locator(".rag-marker").count() == 0
    page.wait_for_timeout(1000)  # the chat scrolls itself to the bottom once rendered
    refusal.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    shot(page, "05_refusal")


def test_upload_appears_in_the_list_and_answers(page, tmp_path):
    doc = tmp_path / "青岚湖治理报告.txt"
    doc.write_text(UPLOADED, encoding="utf-8")
    row = upload(page, doc)
    assert "已添加" in row.inner_text() and "青岚湖治理报告" in row.inner_text()
    page.locator("#rag-docs").get_by_text("青岚湖治理报告").first.wait_for()
    listed = page.locator("#rag-docs").inner_text()
    assert "状态" in listed and "就绪" in listed  # its vectors' status (embedded at once)
    shot(page, "06_uploaded")

    open_tab(page, "对话")
    answer = ask(page, "青岚湖水质监测站共设有多少个监测点位？")
    assert "17个" in answer.locator(".rag-text").inner_text()
    card = answer.locator(".rag-card").first
    assert "青岚湖治理报告" in card.locator(".rag-title").inner_text()
    card.click()
    page.locator("#rag-viewer .rag-target").wait_for()
    viewer = page.locator("#rag-viewer .rag-doc-text").inner_text()
    assert "<script>window.__xss = 1</script>" in viewer and "${window.__xss2 = 1}" in viewer
    assert page.evaluate("window.__xss === undefined && window.__xss2 === undefined")
    shot(page, "07_answer_from_upload")


def test_broken_upload_shows_its_error(page, tmp_path):
    broken = tmp_path / "损坏的文件.docx"
    broken.write_bytes(b"PK\x03\x04 not really a docx " + os.urandom(200))
    row = upload(page, broken)
    text = row.inner_text()
    assert "失败" in text and "损坏的文件.docx" in text and "DOCX" in text
    assert "rag-result-failed" in (row.get_attribute("class") or "")
    shot(page, "08_broken_upload")


def test_remove_a_document_asks_first_and_names_it_by_title(page, tmp_path):
    doc = tmp_path / "临时通知.txt"
    doc.write_text("临时通知\n本周五下午三点在三楼会议室召开安全生产例会。\n", encoding="utf-8")
    assert "已添加" in upload(page, doc).inner_text()
    docs = page.locator("#rag-docs")
    docs.get_by_text("临时通知").first.wait_for()
    pick = page.locator("#rag-remove-pick input")
    pick.click()
    options = [t.strip() for t in page.get_by_role("option").all_inner_texts()]
    assert any(o.startswith("跳出威海") and "2022-08-29" in o for o in options), options
    assert not [o for o in options if re.search(r"[0-9a-f]{8,}|weihai|laoshan", o)], options
    pick.fill("临时通知")
    page.get_by_role("option", name=re.compile("临时通知")).first.click()
    confirm = page.locator("#rag-remove-confirm")
    for answer in ("取消", "确认删除"):
        page.locator("#rag-remove").click()
        confirm.get_by_text("确定从知识库删除以下 1 篇文档吗？").wait_for()
        assert "临时通知" in confirm.locator("li").inner_text()
        shot(page, "12_remove_asks")
        if answer == "取消":
            confirm.get_by_role("button", name="取消").click()
            page.locator("#rag-remove-result").get_by_text("已取消").wait_for()
            assert "临时通知" in docs.inner_text() and not confirm.is_visible()
        else:
            confirm.get_by_role("button", name="确认删除").click()
    row = page.locator("#rag-remove-result .rag-result").first
    row.wait_for(timeout=ANSWER_MS)
    assert "已删除" in row.inner_text() and "临时通知" in row.inner_text()
    page.wait_for_function(
        "() => !document.querySelector('#rag-docs').innerText.includes('临时通知')"
    )
    shot(page, "12_removed")


def test_copy_gives_plain_text_with_the_citations(browser, server, page):
    browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url.rstrip("/"))
    ask(page, ANSWERABLE)
    buttons = page.locator("#rag-chat .message-buttons button")
    labels = {b.get_attribute("aria-label") for b in buttons.all()}
    assert {"复制", "赞", "踩"} <= labels and not labels & {"Copy message", "Like", "Dislike"}
    page.locator("#rag-chat .message-row.bot-row").last.hover()
    page.locator('#rag-chat .message-buttons button[aria-label="复制"]').last.click()
    page.wait_for_function("() => document.querySelector('#rag-chat [aria-label=\"已复制\"]')")
    copied = page.evaluate("navigator.clipboard.readText()")
    lines = copied.splitlines()
    assert "2019" in lines[0] and "[1]" in lines[0], copied
    assert lines[1:3] == ["", "引用来源："], copied
    assert lines[3].startswith("[1]《跳出威海") and "》：" in lines[3], copied
    assert "<" not in copied and "rag-" not in copied and "&" not in copied
    shot(page, "14_copied")


@pytest.mark.parametrize("width", [360, 768, 1280])
def test_the_header_never_covers_the_content(page, width):
    page.set_viewport_size({"width": width, "height": 800})
    page.wait_for_timeout(500)  # let the layout settle

    def box(selector):
        b = page.locator(selector).first.bounding_box()
        assert b is not None, selector
        return b

    def overlap(a, b):
        return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
                and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])  # fmt: skip

    header, tabs, chat = box("#rag-header"), box("[role=tablist]"), box("#rag-chat")
    assert header["y"] + header["height"] <= tabs["y"] and tabs["y"] + tabs["height"] <= chat["y"]
    assert not overlap(header, chat)
    ask(page, ANSWERABLE)
    page.locator("#rag-chat .message-row").first.evaluate("e => e.scrollIntoView()")
    page.wait_for_timeout(300)
    view = box("#rag-chat .bubble-wrap")  # the chat scrolls inside: only this part shows

    def shown(b):
        top, bottom = max(b["y"], view["y"]), min(b["y"] + b["height"], view["y"] + view["height"])
        return {**b, "y": top, "height": bottom - top} if bottom > top else None

    messages = [shown(m.bounding_box()) for m in page.locator("#rag-chat .message-row").all()]
    messages = [m for m in messages if m]
    floating = [b.bounding_box() for b in page.locator(
        "#rag-chat label, #rag-chat [data-testid=block-label]").all() if b.is_visible()]  # fmt: skip
    assert messages and not [f for f in floating for m in messages if overlap(f, m)]
    assert not [m for m in messages if overlap(box("#rag-header"), m)]
    shot(page, f"15_header_{width}px")


def test_two_pages_keep_separate_histories(browser, server):
    a, b = _open(browser, server), _open(browser, server)
    try:
        qa, qb = ANSWERABLE, "崂山今年要抓紧启动几个社区的村改?"
        for pg, q in ((a, qa), (b, qb)):
            pg.locator("#rag-question textarea").fill(q)
        a.locator("#rag-question textarea").press("Enter")
        b.locator("#rag-question textarea").press("Enter")
        for pg in (a, b):
            pg.wait_for_function(
                "() => document.querySelectorAll('#rag-chat .rag-answer:not(.rag-streaming)').length >= 1",
                timeout=ANSWER_MS,
            )
        chat_a, chat_b = a.locator("#rag-chat").inner_text(), b.locator("#rag-chat").inner_text()
        assert qa in chat_a and qb not in chat_a and "2019" in chat_a
        assert qb in chat_b and qa not in chat_b and "5個社區" in chat_b
        shot(a, "09a_session_a")
        shot(b, "09b_session_b")
    finally:
        a.close()
        b.close()


def test_settings_are_per_session(browser, server):
    a, b = _open(browser, server), _open(browser, server)
    try:
        open_tab(a, "设置")
        open_tab(b, "设置")
        slider = a.locator("#rag-topk input[type=number]")
        status = a.locator("#rag-settings-status")
        # Gradio's slider can snap back to its initial value when typed into within a
        # second or so of its tab first opening; the user sees it and types again, so do we
        for _ in range(6):
            slider.fill("2")
            slider.press("Tab")
            try:
                a.wait_for_function(
                    "() => document.querySelector('#rag-topk input[type=range]').value === '2'",
                    timeout=5_000,
                )
                a.locator("#rag-apply").click()
                status.get_by_text("top-k 2").wait_for(timeout=5_000)
                break
            except sync_api.TimeoutError:  # snapped back (status says top-k 5) or slow: again
                continue
        a.locator("#rag-info").get_by_text("top-k 2").wait_for()
        b.reload()
        b.wait_for_selector("#rag-question textarea")
        open_tab(b, "设置")
        assert "top-k 5" in b.locator("#rag-info").inner_text()
        shot(a, "10_settings")
    finally:
        a.close()
        b.close()


def test_feedback_is_appended_to_the_jsonl(page, server):
    ask(page, ANSWERABLE)
    page.locator('#rag-chat button[aria-label="赞"]').first.click()
    page.locator('#rag-chat button[aria-label="已赞"]').wait_for()  # not Gradio's "Liked"
    assert page.locator('#rag-chat [aria-label="Liked"], #rag-chat [title="Liked"]').count() == 0
    comment = page.locator("#rag-feedback-comment textarea")
    comment.wait_for()
    comment.fill("引用准确")
    page.locator("#rag-feedback-send").click()
    page.get_by_text("已记录说明").wait_for()
    rows = [json.loads(line) for line in server.feedback.read_text(encoding="utf-8").splitlines()]
    assert rows[-1]["rating"] == "up" and rows[-1]["comment"] == "引用准确"
    assert (
        rows[-1]["question"] == ANSWERABLE
        and rows[-1]["citations"]
        and rows[-1]["settings"]["top_k"] == 5
    )
    assert rows[-2]["id"] == rows[-1]["id"] and rows[-2]["comment"] == ""
    # nobody logged in: the question is in the home's audit log as anonymous, thumb beside
    asked = AuditLog(server.log.parent / APP_HOME / "audit.db").rows()
    assert (asked[-1].user, asked[-1].channel, asked[-1].question) == (ANONYMOUS, "ui", ANSWERABLE)
    assert asked[-1].rating == "up"
    shot(page, "11_feedback")


ENGLISH_LABELS = """() => [...document.querySelectorAll('[aria-label],[title],[placeholder]')]
    .flatMap(e => ['aria-label', 'title', 'placeholder'].map(a => e.getAttribute(a)))
    .filter(v => v && /[A-Za-z]{3,}/.test(v.replace(/top-k/g, '')))"""


def test_tooltips_and_labels_are_chinese(page):
    """No English tooltip, label or placeholder on any tab (Gradio's own strings included)."""
    scan = ENGLISH_LABELS
    english = set(page.evaluate(scan))
    for tab in ("知识库", "设置"):
        open_tab(page, tab)
        page.wait_for_timeout(500)
        english |= set(page.evaluate(scan))
    assert not english, english


def _save_docs_screenshot(src: Path) -> None:
    """docs/chat.png for the README: the chat view, palette-reduced to stay small."""
    from PIL import Image

    out = REPO / "docs" / "chat.png"
    out.parent.mkdir(exist_ok=True)
    img = Image.open(src).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    img.save(out, optimize=True)
    assert out.stat().st_size < 300_000


def test_scope_the_chat_to_one_issuer(page, tmp_path):
    """An uploaded notice's 发文字号 and 发文机关 show in the list; scoped to another issuer
    the chat does not answer from it, scoped to its own it does."""
    notice = tmp_path / "北湾通知.txt"
    notice.write_text(
        "北政发〔2024〕3号\n北湾区人民政府关于修缮北湾灯塔的通知\n各有关单位：\n"
        "北湾灯塔修缮工程共更换灯具26套。\n特此通知。\n北湾区人民政府\n2024年4月8日\n",
        encoding="utf-8",
    )
    assert "已添加" in upload(page, notice).inner_text()
    page.wait_for_function(
        "() => document.querySelector('#rag-docs').innerText.includes('北政发〔2024〕3号 · 北湾区人民政府')"
    )
    page.locator("#rag-refresh").click()  # the scope lists pick up the new issuer
    open_tab(page, "对话")
    page.locator("#rag-scope").get_by_text("检索范围（公文）").click()
    issuer = page.locator("#rag-scope-issuer input")
    issuer.click()
    issuer.fill("南湾区人民政府")  # an issuer with no documents here
    issuer.press("Enter")
    status = page.locator("#rag-scope-status")
    status.get_by_text("只检索发文机关为“南湾区人民政府”").wait_for()
    question = "北湾灯塔修缮工程共更换灯具多少套？"
    answer = ask(page, question)
    assert "26套" not in answer.inner_text()
    assert "所选检索范围内没有找到相关内容" in answer.locator(".rag-notice").inner_text()
    issuer.click()
    issuer.fill("北湾区人民政府")
    page.get_by_role("option", name="北湾区人民政府").first.click()
    status.get_by_text("只检索发文机关为“北湾区人民政府”").wait_for()
    answer = ask(page, question, nth=2)
    assert "26套" in answer.locator(".rag-text").inner_text()
    shot(page, "13_scoped_to_issuer")


@pytest.fixture(scope="module")
def login_server(tmp_path_factory):
    """The app under a login, its home (history.db) in a tmp folder."""
    root = tmp_path_factory.mktemp("login")
    corpus = root / "corpus"
    corpus.mkdir()
    for suffix in (".txt", ".meta.json"):
        shutil.copy(REPO / "corpus" / f"{DOCS[0]}{suffix}", corpus)
    args = ["--index", str(root / "index"), "--corpus", str(corpus),
            "--feedback", str(root / "feedback.jsonl"), "--auth", "alice:s3cret-pw"]  # fmt: skip
    with running_app(args, root / "app.log", env={"RAG_HOME": str(root / "home")}) as app:
        yield Server(app.url, root, app.proc, app.log)


def test_a_reload_keeps_a_logged_in_users_conversation(browser, login_server, page):
    page.wait_for_function(
        "() => document.querySelector('#rag-history-note').textContent.includes('未登录：')"
    )
    own = browser.new_page()
    try:
        own.set_default_timeout(30_000)
        own.goto(login_server.url)
        own.locator("input[type=text], input:not([type])").first.fill("alice")
        own.locator("input[type=password]").fill("s3cret-pw")
        own.locator("input[type=password]").press("Enter")
        own.wait_for_selector("#rag-question textarea")
        own.wait_for_function(  # the sidebar is closed: its text is there, not visible
            "() => document.querySelector('#rag-history-note').textContent.includes('已登录为 alice')"
        )
        ask(own, ANSWERABLE)
        own.reload()
        own.wait_for_selector("#rag-chat .rag-answer .rag-card", timeout=ANSWER_MS)
        chat = own.locator("#rag-chat").inner_text()
        assert ANSWERABLE in chat and "2019" in chat
        assert "2022-08-29" in own.locator("#rag-chat .rag-card .rag-meta").first.inner_text()
        own.locator("#rag-chat .rag-card").first.click()  # its citations still open
        own.locator("#rag-viewer .rag-target").wait_for()
        kept = own.locator("#rag-history-pick label").all_inner_texts()
        assert len(kept) == 1 and kept[0].startswith(ANSWERABLE[:10]), kept
        shot(own, "16_resumed_after_reload")
    finally:
        own.close()
    assert (login_server.root / "home" / "history.db").is_file()
    from rag.org.audit import AuditLog  # the question is in the audit log under the login

    rows = AuditLog(login_server.root / "home" / "audit.db").rows(user="alice")
    assert [(r.question, r.channel, r.kbs) for r in rows] == [(ANSWERABLE, "ui", ("default",))]


# --------------------------------------------------------------------------- a home's accounts
HOME_USERS = {"li": ("reader", ["hr"]), "wang": ("editor", ["hr"]), "boss": ("admin", [])}


def _password(name: str) -> str:
    return f"{name}-pass-2024"


@pytest.fixture(scope="module")
def home_server(tmp_path_factory, embedder):
    """`python app.py --home H` over a home with the knowledge bases plan and hr
    (tests/org_home.py) and accounts made by `rag user add ... --password-stdin`."""
    import sys

    from org_home import make_home

    root = tmp_path_factory.mktemp("home-app")
    s = make_home(root, embedder)
    for name, (role, kbs) in HOME_USERS.items():
        cmd = [sys.executable, "-m", "rag.serve.cli", "user", "add", name, "--role", role,
               "--password-stdin", "--home", s.home] + [a for kb in kbs for a in ("--kb", kb)]  # fmt: skip
        done = subprocess.run(cmd, input=_password(name) + "\n", capture_output=True, text=True,
                              cwd=REPO, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
    env = {"RAG_HOME": None, "RAG_INDEX": None, "RAG_AUTH": None}
    with running_app(["--home", s.home], root / "app.log", env=env) as app:
        yield Server(app.url, root, app.proc, app.log)


def _login(browser, server, name: str, password: str | None = None):
    browser.clear_cookies()  # the pages of the context share one session cookie
    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.goto(server.url)
    page.locator("#rag-login-name").fill(name)
    page.locator("#rag-login-password").fill(password or _password(name))
    page.locator("#rag-login-password").press("Enter")
    if password is None:
        page.wait_for_selector("#rag-question textarea")
        page.wait_for_function(
            "n => document.querySelector('#rag-history-note').textContent.includes('已登录为 ' + n)",
            arg=name,
        )
    return page


def _options(page, selector: str) -> list[str]:
    page.locator(f"{selector} input").click()
    options = [t.split("\n")[-1].strip() for t in page.get_by_role("option").all_inner_texts()]
    page.keyboard.press("Escape")  # (a chosen one's text starts with a check mark line)
    return options


def test_login_page_a_reader_sees_only_the_granted_knowledge_base(browser, home_server):
    page = _login(browser, home_server, "li", "wrong-password")
    try:
        assert page.title() == "登录 · 文档问答"
        error = page.locator("#rag-login-error")
        error.get_by_text("用户名或密码不正确。").wait_for()
        shot(page, "20_login_wrong_password")
    finally:
        page.close()
    page = _login(browser, home_server, "li")
    try:
        assert _options(page, "#rag-kbs") == ["hr"]
        assert page.get_by_role("tab", name="管理").count() == 0
        answer = ask(page, "崂山区2023年计划完成投资多少？")  # plan's answer; li reads hr only
        kbs = answer.locator(".rag-card .rag-kb").all_inner_texts()
        assert kbs and set(kbs) == {"〔知识库 hr〕"}
        assert "嶗山" not in answer.locator(".rag-card").first.inner_text()
        open_tab(page, "知识库")
        assert _options(page, "#rag-kb-pick") == ["hr"]
        page.locator("#rag-docs").get_by_text("杭州").first.wait_for()
        assert "嶗山" not in page.locator("#rag-docs").inner_text()
        page.locator("#rag-kb-readonly").get_by_text("只有提问权限").wait_for()
        assert not page.locator("#rag-upload").is_visible()
        assert not page.locator("#rag-remove").is_visible()
        shot(page, "21_reader_kb_tab")
        for width in (360, 1280):  # the logout button never covers the header
            page.set_viewport_size({"width": width, "height": 800})
            page.wait_for_timeout(500)
            h, b = (page.locator(s).bounding_box() for s in ("#rag-header", "#rag-logout"))
            assert (b["y"] >= h["y"] + h["height"] or b["x"] >= h["x"] + h["width"]
                    or b["y"] + b["height"] <= h["y"]), (width, h, b)  # fmt: skip
            shot(page, f"21_reader_{width}px")
        page.set_viewport_size({"width": 1280, "height": 900})
        page.locator("#rag-logout").click()
        page.wait_for_selector("#rag-login")
        page.goto(home_server.url)  # the session is gone, not only the page
        page.wait_for_selector("#rag-login")
    finally:
        page.close()


def test_an_editor_uploads_to_the_knowledge_base_granted(browser, home_server, tmp_path):
    page = _login(browser, home_server, "wang")
    try:
        doc = tmp_path / "人事通知.txt"
        doc.write_text("人事通知\n2024年起年休假可跨年度结转至次年3月31日。\n", encoding="utf-8")
        row = upload(page, doc)
        assert "已添加" in row.inner_text()
        page.locator("#rag-docs").get_by_text("人事通知").first.wait_for()
    finally:
        page.close()


def test_an_admin_asks_several_knowledge_bases_and_sees_the_admin_tab(browser, home_server):
    page = _login(browser, home_server, "boss")
    try:
        assert _options(page, "#rag-kbs") == ["hr", "plan"]
        pick = page.locator("#rag-kbs input")
        pick.click()
        pick.fill("plan")
        pick.press("Enter")
        page.keyboard.press("Escape")
        page.locator("#rag-kbs-status").get_by_text("知识库 hr、plan").wait_for()
        answer = ask(page, "崂山区2023年计划完成投资多少？")
        assert "〔知识库 plan〕" in answer.locator(".rag-card .rag-kb").all_inner_texts()
        answer.locator(".rag-card").first.click()
        page.locator("#rag-viewer .rag-target").wait_for()
        open_tab(page, "管理")
        has = "([id, text]) => document.querySelector(id)?.innerText.includes(text)"
        page.wait_for_function(has, arg=["#rag-admin-users", "读者"])
        users = page.locator("#rag-admin-users").inner_text()
        assert "li" in users and "全部" in users and "编辑" in users
        # wait for the admin's own row: another test's reader asked the same question
        page.wait_for_function(has, arg=["#rag-admin-recent", "boss"])
        recent = page.locator("#rag-admin-recent").inner_text()
        assert "网页" in recent and "崂山区2023年计划完成投资多少？" in recent
        assert "次提问" in page.locator("#rag-admin-summary").inner_text()
        page.locator("#rag-admin-per-day img").wait_for()
        shot(page, "22_admin_tab")
        english = set(page.evaluate(ENGLISH_LABELS))  # a message's label is its own text
        assert not {e for e in english if not e.startswith(("回答：", "提问："))}, english
        label = page.locator("#rag-chat [aria-label^='提问：']").first.get_attribute("aria-label")
        assert label == "提问：崂山区2023年计划完成投资多少？", label
    finally:
        page.close()


def test_history_rename_export_and_delete_with_confirmation(browser, home_server):
    page = _login(browser, home_server, "li")
    try:
        page.locator("#rag-new-chat").click()  # li's earlier conversation was resumed
        page.wait_for_function("() => !document.querySelector('#rag-chat .rag-answer')")
        ask(page, "赴杭州学习考察重点学习了哪些内容？")
        page.locator("button.toggle-button").first.click()  # open the sidebar
        pick = page.locator("#rag-history-pick label").filter(has_text="赴杭州学习考察")
        pick.wait_for()
        pick.click()
        page.locator("#rag-history-title textarea, #rag-history-title input").first.fill("杭州考察")
        page.locator("#rag-history-rename").click()
        page.locator("#rag-history-pick").get_by_text("杭州考察").wait_for()
        page.locator("#rag-history-pick label").filter(has_text="杭州考察").click()
        page.locator("#rag-history-export-btn").click()
        link = page.locator("#rag-history-export a").first
        link.wait_for()
        with page.expect_download() as got:
            link.click()
        md = Path(got.value.path()).read_text(encoding="utf-8")
        assert md.startswith("# 杭州考察\n") and "〔知识库 hr〕" in md and "引用：" in md
        shot(page, "23_history_exported")
        page.locator("#rag-history-delete").click()
        confirm = page.locator("#rag-history-confirm")
        confirm.get_by_text("确定删除对话“杭州考察”吗？").wait_for()
        page.locator("#rag-history-no").click()
        page.locator("#rag-history-status").get_by_text("已取消").wait_for()
        assert "杭州考察" in page.locator("#rag-history-pick").inner_text()
        page.locator("#rag-history-delete").click()
        confirm.get_by_text("确定删除对话“杭州考察”吗？").wait_for()
        page.locator("#rag-history-yes").click()
        page.locator("#rag-history-status").get_by_text("已删除对话").wait_for()
        page.wait_for_function(
            "() => !document.querySelector('#rag-history-pick')?.innerText.includes('杭州考察')"
        )
        shot(page, "24_history_deleted")
    finally:
        page.close()
