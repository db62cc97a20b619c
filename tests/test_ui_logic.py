"""The chat app's logic without a browser: rendering, uploads, removal, sessions, feedback.

One tiny index (two short documents) is built once for the module with the real
embedding model; tests that change the index work on a copy of it.
"""

import json
import shutil
from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import ConfigError, LoadError
from rag.read.extractive import Answer, AnswerSentence, Citation
from rag.read.followup import carry_over, is_follow_up, subject_phrase
from rag.serve.feedback import Feedback, append_feedback, feedback_from_answer, read_feedback
from rag.serve.public import CLI_ONLY, public_error, public_text
from rag.serve.ui.app import check_bind, listen_message, parse_auth
from rag.serve.ui.handlers import ChatState, example_questions
from rag.serve.ui.library import (
    DocRow,
    Library,
    ensure_index,
    pick_labels,
    sanitize_filename,
    store_upload,
    use_upload_temp_dir,
)
from rag.serve.ui.render import (
    UploadResult,
    mark_spans,
    marker_spans,
    plain_answer,
    render_answer,
    render_document,
    render_partial,
    render_remove_confirm,
    render_results,
    snippet,
)

LAKE = (
    "青岚湖治理工作报告\n"
    "青岚湖水质监测站于2021年建成，共设有17个监测点位。\n"
    "治理工程总投资3.2亿元，由市生态环境局牵头实施。\n"
)
PARK = (
    "北山森林公园建设情况\n"
    "北山森林公园占地460公顷，园内修建了12公里登山步道。\n"
    "公园于2020年10月正式对外开放，年接待游客约80万人次。\n"
)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(settings, embedder) for a tiny index built by `ensure_index`."""
    from rag.system import make_embedder

    root = tmp_path_factory.mktemp("ui")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "lake.txt").write_text(LAKE, encoding="utf-8")
    (corpus / "park.txt").write_text(PARK, encoding="utf-8")
    settings = Settings(index_dir=str(root / "data" / "index"))
    embedder = make_embedder(settings)
    assert ensure_index(settings, corpus, embedder=embedder, log=lambda m: None) is True
    assert ensure_index(settings, corpus, embedder=embedder, log=lambda m: None) is False
    return settings, embedder


def test_an_index_from_another_version_is_rebuilt_on_start(built, tmp_path):
    """The chat's start (README's first command) must not fail on an index that an
    older rag wrote: it re-indexes the corpus, as `rag ingest` would."""
    from rag.index.hybrid import HybridIndex
    from rag.index.versions import is_current_schema

    settings, embedder = built
    s = settings.replace(index_dir=str(tmp_path / "index"))
    shutil.copytree(settings.index_path, s.index_path)
    folder = HybridIndex.open(s.index_path, s).folder
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["schema_version"] = 1
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert not is_current_schema(s.index_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "lake.txt").write_text(LAKE, encoding="utf-8")
    said = []
    assert ensure_index(s, corpus, embedder=embedder, log=said.append) is True
    assert any("another version" in m for m in said), said
    assert is_current_schema(s.index_path) and HybridIndex.open(s.index_path, s).docs.keys() == {
        "lake"
    }
    assert ensure_index(s, corpus, embedder=embedder, log=said.append) is False


@pytest.fixture
def library(built, tmp_path):
    """A Library over a private copy of the tiny index."""
    from rag.system import load_system

    settings, embedder = built
    index_dir = tmp_path / "data" / "index"
    shutil.copytree(settings.index_path, index_dir)
    system = load_system(settings.replace(index_dir=str(index_dir)), embedder=embedder)
    return Library(system, tmp_path / "data" / "uploads", tmp_path / "data" / "feedback.jsonl")


def _answer(
    text="答案[1]",
    refused=False,
    passage="<script>alert(1)</script>关键句。后文",
    quotes=((35, 38),),
):
    c = Citation(
        1, "c1", "doc1", "标题<b>", "doc1.txt", "2023-01-02", 10, 10 + len(passage), passage, quotes
    )
    sentences = [] if refused else [AnswerSentence(text.removesuffix("[1]"), 1, 35, 38)]
    return Answer("问题", text, refused, [c], sentences, [], 0.9, rewritten_question="问题")


def _cited(n: int) -> Citation:
    return Citation(n, f"c{n}", "doc1", "标题", "doc1.txt", None, 0, 10, "段落", ())


# --------------------------------------------------------------------------- startup
def test_auth_is_required_beyond_localhost():
    assert parse_auth("alice:s3:cret") == ("alice", "s3:cret")
    assert parse_auth(None) is None
    with pytest.raises(ConfigError, match="USER:PASSWORD"):
        parse_auth("alice")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", ("alice", "pw"))
    with pytest.raises(ConfigError, match="--auth"):
        check_bind("0.0.0.0", None)


def test_startup_says_where_it_listens_and_who_logs_in():
    wide = listen_message("0.0.0.0", 7861, ("alice", "s3cret"))
    assert wide == "Listening on 0.0.0.0:7861; login required (user alice)"
    assert "s3cret" not in wide
    assert (
        listen_message("::", 80, ("bob", "pw")) == "Listening on [::]:80; login required (user bob)"
    )
    assert listen_message("127.0.0.1", 7860, None) == (
        "Listening on 127.0.0.1:7860 (this machine only); no login"
    )


def test_upload_temp_dir_is_in_the_data_folder_unless_set(tmp_path):
    settings = Settings(index_dir=str(tmp_path / "data" / "index"))
    env: dict[str, str] = {}
    assert use_upload_temp_dir(settings, env) == tmp_path / "data" / "gradio-tmp"
    assert env["GRADIO_TEMP_DIR"] == str(tmp_path / "data" / "gradio-tmp")
    env = {"GRADIO_TEMP_DIR": "/srv/gradio"}  # the user's own choice stays
    assert use_upload_temp_dir(settings, env) == Path("/srv/gradio")
    assert env == {"GRADIO_TEMP_DIR": "/srv/gradio"}
    env = {"GRADIO_TEMP_DIR": ""}  # empty is unset, as for Gradio
    assert use_upload_temp_dir(settings, env) == tmp_path / "data" / "gradio-tmp"


# --------------------------------------------------------------------------- rendering
def test_mark_spans_escapes_and_merges():
    assert mark_spans("a<b>c&d", [(1, 4)]) == 'a<mark class="rag-quote">&lt;b&gt;</mark>c&amp;d'
    assert mark_spans("abcdef", [(3, 5), (1, 4)]) == 'a<mark class="rag-quote">bcde</mark>f'
    assert mark_spans("ab\ncd", []) == "ab<br>cd"


def test_snippet_centres_on_the_quote():
    text = "甲" * 100 + "引用句。" + "乙" * 100
    html = snippet(text, [(100, 104)], context=5)
    assert html == '……甲甲甲甲甲<mark class="rag-quote">引用句。</mark>乙乙乙乙乙……'


def test_render_answer_escapes_documents_and_links_markers():
    html = render_answer(_answer(), turn=3, n_chars={"doc1": 400})
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "《标题&lt;b&gt;》" in html
    assert '<sup class="rag-marker rag-cite rag-at-3-1">[1]</sup>' in html
    assert 'class="rag-card rag-cite rag-at-3-1"' in html
    assert '<mark class="rag-quote">关键句</mark>' in html  # quote offsets are document offsets
    assert "2023-01-02 · 第 11–" in html and "约在全文 2% 处" in html
    assert "\n\n" not in html  # a blank line would end the HTML block in the chat's Markdown


def test_only_the_answerers_markers_are_links():
    """A "[1]" quoted from a document is text; the marker after each sentence is a link."""
    quoted = "据[1][2]记载，总投资3.2亿元。"
    ans = Answer(
        "问题",
        f"{quoted}[2]监测点位17个。[1]",
        False,
        [_cited(1), _cited(2)],
        [AnswerSentence(quoted, 2, 0, 9), AnswerSentence("监测点位17个。", 1, 20, 28)],
        [],
        0.9,
    )
    assert marker_spans(ans) == [
        (len(quoted), len(quoted) + 3, 2),
        (len(ans.text) - 3, len(ans.text), 1),
    ]
    html = render_answer(ans, turn=0)
    text = html.split('<div class="rag-text">')[1].split("</div>")[0]
    assert text == (
        '据[1][2]记载，总投资3.2亿元。<sup class="rag-marker rag-cite rag-at-0-2">[2]</sup>'
        '监测点位17个。<sup class="rag-marker rag-cite rag-at-0-1">[1]</sup>'
    )
    # text that does not have the shape of its sentences gets no links past the mismatch
    odd = Answer("问题", "别的文字[1]", False, [_cited(1)], ans.sentences[:1], [], 0.5)
    assert marker_spans(odd) == [] and "rag-marker" not in render_answer(odd, 0)


def test_llm_answers_link_the_validated_markers():
    """An LLM answer keeps its markers in the text, renumbered by the answerer; a bracket
    that is no citation of the answer ([7], full-width ones) stays text."""
    text = "投资156亿元[1]〔未核实〕。据[7]与【来源】，共196个项目[2][1]。"
    ans = Answer(
        "问题",
        text,
        False,
        [_cited(1), _cited(2)],
        [
            AnswerSentence("投资156亿元。", 1, 0, 9, False),
            AnswerSentence("共196个项目。", 2, 9, 20),
        ],
        [],
        0.6,
        generator="openai:fake",
    )
    assert [n for _, _, n in marker_spans(ans)] == [1, 2, 1]
    html = render_answer(ans, turn=4)
    assert html.count('class="rag-marker') == 3 and "据[7]与【来源】" in html
    assert '投资156亿元<sup class="rag-marker rag-cite rag-at-4-1">[1]</sup>〔未核实〕' in html


def test_the_copy_text_is_plain_with_the_citations_listed():
    """What the copy button copies: the answer with its markers, then each cited passage
    by title and location, as plain text; kept hidden in the answer's HTML, a line a <div>."""
    ans = _answer()
    assert plain_answer(ans) == "答案[1]\n\n引用来源：\n[1]《标题<b>》：关键句"
    paged = Citation(2, "c2", "doc2", "通知", "a.pdf", None, 0, 300, "甲" * 300, (),
                     location="第4页")  # fmt: skip
    ans.citations.append(paged)
    assert plain_answer(ans).splitlines()[-1] == f"[2]《通知》第4页：{'甲' * 160}……"
    html = render_answer(ans, turn=0)
    hidden = html.split('<div class="rag-plain">')[1]
    assert hidden.startswith("<div>答案[1]</div><div></div><div>引用来源：</div>")
    assert "<div>[1]《标题&lt;b&gt;》：关键句</div>" in hidden and "\n" not in html
    refusal = _answer(text="根据现有文档无法回答这个问题。", refused=True, quotes=())
    assert plain_answer(refusal).splitlines()[2] == "可能相关的段落："


def _row(title, date="", official="", source="知识库", at="2026-01-01 10:00", doc_id="x"):
    return DocRow(title, date, official, "文本", "10字", 1, source, at, doc_id)


def test_pick_labels_name_documents_by_title_never_by_id():
    rows = [
        _row("通知", "2023-03-05", "青政发〔2023〕5号", doc_id="a1b2c3"),
        _row("通知", "2024-01-02", doc_id="d4e5f6"),
        _row("报告", doc_id="0123456789abcdef"),
        _row("纪要", "2023-01-01", source="张三上传", doc_id="k1"),
        _row("纪要", "2023-01-01", source="李四上传", doc_id="k2"),
        _row("简报", doc_id="s1"),
        _row("简报", doc_id="s2"),
    ]
    assert pick_labels(rows) == [
        ("通知（2023-03-05 · 青政发〔2023〕5号）", "a1b2c3"),
        ("通知（2024-01-02）", "d4e5f6"),
        ("报告", "0123456789abcdef"),
        ("纪要（2023-01-01 · 张三上传 · 2026-01-01 10:00）", "k1"),
        ("纪要（2023-01-01 · 李四上传 · 2026-01-01 10:00）", "k2"),
        ("简报（知识库 · 2026-01-01 10:00）（第1份）", "s1"),
        ("简报（知识库 · 2026-01-01 10:00）（第2份）", "s2"),
    ]
    html = render_remove_confirm(["通知<b>（2024-01-02）", "报告"])
    assert (
        "确定从知识库删除以下 2 篇文档吗？" in html
        and "<li>通知&lt;b&gt;（2024-01-02）</li>" in html
    )


def test_web_messages_never_quote_cli_flags(tmp_path):
    """Every message in rag/ that quotes a flag reads without it on the web; the hints
    that have a web equivalent are reworded to it, the rest become one generic line."""
    import ast
    import re

    from rag.errors import IndexStoreError
    from rag.index.hybrid import HybridIndex

    flag = re.compile(r"(?<![\w-])--[a-z]")
    root = Path(__file__).resolve().parent.parent / "rag"
    found = []
    for py in root.rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            if flag.search(text):
                found.append(text)
    assert len(found) > 20  # the scan sees the CLI's messages
    assert not [t for t in found if flag.search(public_text(t))]
    assert public_text("知识库“部门”还没有文档；先运行 rag ingest PATH --kb 部门") == (
        "知识库“部门”还没有文档；请先上传文档"
    )
    assert (
        public_text(
            "/srv/x/a.html: 去掉网页杂项后没有剩下正文：请确认文件里有正文，或用 rag ingest --explain 查看清理了什么"
        )
        == "a.html: 去掉网页杂项后没有剩下正文：请确认文件里有正文"
    )
    with pytest.raises(IndexStoreError) as e:  # a real error of a missing index
        HybridIndex.open(tmp_path / "none", Settings())
    assert "--index" in str(e.value) and public_error(e.value) == CLI_ONLY
    assert public_text("文件太大") == "文件太大"


def test_streaming_text_is_escaped_and_not_linked():
    html = render_partial("据[1]记载<script>x</script>\n\n![a](javascript:1)", "问<b>", "改写<i>")
    assert "<script" not in html and "&lt;script&gt;" in html and "\n" not in html
    assert "据[1]记载" in html and "rag-marker" not in html and "rag-cite" not in html
    assert "理解为：改写&lt;i&gt;" in html and html.endswith(
        '<span class="rag-cursor">▍</span></div></div>'
    )


def test_render_refusal_looks_like_one():
    ans = _answer(text="根据现有文档无法回答这个问题。", refused=True, quotes=())
    html = render_answer(ans, turn=0)
    assert 'class="rag-refusal"' in html and "以下段落可能相关" in html
    assert "rag-related" in html and "rag-marker" not in html


def test_render_document_highlights_passage_and_quotes():
    text = "前言。<i>正文</i>第一句。第二句。结尾。"
    html = render_document("标题", text, {"date": "2023-01-02"}, (3, 20), [(16, 20)], cite_n=2)
    assert (
        '<span class="rag-passage-hl rag-target">&lt;i&gt;正文&lt;/i&gt;第一句。<mark class="rag-quote">第二句。</mark></span>结尾。'
        in html
    )
    assert "引用 [2]" in html
    long = "字" * 1000 + "目标" + "字" * 1000
    cut = render_document("长文", long, {}, (1000, 1002), [], cite_n=1, max_chars=100)
    assert "（前 950 字略）" in cut and "（后 952 字略）" in cut and ">目标<" in cut


def test_render_results_names_failures():
    html = render_results(
        [UploadResult("a.txt", "added", chunks=2), UploadResult("<b>.docx", "failed", "not a ZIP")]
    )
    assert "rag-result-added" in html and "2 个片段" in html
    assert "&lt;b&gt;.docx" in html and "失败" in html and "not a ZIP" in html


# --------------------------------------------------------------------------- uploads
def test_sanitize_filename_never_keeps_a_path():
    assert sanitize_filename("../../etc/passwd") == "passwd"
    assert sanitize_filename("C:\\Users\\me\\报告 (终稿)") == "报告_终稿"
    assert sanitize_filename("...") == "file"


def test_store_upload_checks_type_and_size(tmp_path):
    src = tmp_path / "in.bin"
    src.write_text(LAKE, encoding="utf-8")
    uploads = tmp_path / "uploads"
    with pytest.raises(LoadError, match="不支持的文件类型 .exe"):
        store_upload(src, "tool.exe", uploads, 1000)
    with pytest.raises(LoadError, match="文件过大"):
        store_upload(src, "big.txt", uploads, 10)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(LoadError, match="文件是空的"):
        store_upload(tmp_path / "empty", "e.txt", uploads, 1000)
    dest = store_upload(src, "../../青岚湖 报告.TXT", uploads, 1000)
    assert dest.parent == uploads and dest.name.endswith("__青岚湖_报告.txt")
    assert dest.read_text(encoding="utf-8") == LAKE
    side = json.loads(dest.with_suffix(".meta.json").read_text(encoding="utf-8"))
    assert side["title"] == "青岚湖 报告"
    assert (
        store_upload(src, "青岚湖 报告.txt", uploads, 1000) == dest
    )  # same content, same document


# --------------------------------------------------------------------------- feedback
def test_feedback_round_trip_keeps_the_latest_per_id(tmp_path):
    path = tmp_path / "fb" / "feedback.jsonl"
    rec = feedback_from_answer(_answer(), "down", {"top_k": 3}, session="s1", index_version="v-1")
    append_feedback(path, rec)
    append_feedback(path, rec.with_comment("引用不对"))
    latest = read_feedback(path)
    assert [(r.id, r.rating, r.comment) for r in latest] == [(rec.id, "down", "引用不对")]
    assert len(read_feedback(path, latest_only=False)) == 2
    row = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert (
        row["question"] == "问题"
        and row["cited_doc_ids"] == ["doc1"]
        and row["settings"] == {"top_k": 3}
    )
    assert row["citations"][0]["quotes"] == [[35, 38]]
    with pytest.raises(ConfigError, match="rating"):
        feedback_from_answer(_answer(), "meh", {})
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"feedback.jsonl:1"):
        read_feedback(path)
    assert isinstance(latest[0], Feedback)


# --------------------------------------------------------------------------- with an index
def _ask(state: ChatState, question: str):
    *pieces, final = list(state.ask(question))
    assert all(isinstance(p, str) for p in pieces) and pieces
    return final


def test_upload_reports_each_file_and_answers_from_it(library, tmp_path):
    doc = tmp_path / "incoming" / "x"
    doc.parent.mkdir()
    doc.write_text(
        "南湾码头扩建报告\n南湾码头扩建工程新增泊位9个，设计年吞吐量450万吨。\n", encoding="utf-8"
    )
    broken = tmp_path / "incoming" / "y"
    broken.write_bytes(b"PK\x03\x04 this is not really a docx")
    odd = tmp_path / "incoming" / "z"
    odd.write_text("x", encoding="utf-8")
    results = library.add_files([(doc, "南湾码头.txt"), (broken, "坏文件.docx"), (odd, "程序.exe")])
    assert [(r.name, r.status) for r in results] == [
        ("南湾码头.txt", "added"),
        ("坏文件.docx", "failed"),
        ("程序.exe", "failed"),
    ]
    assert "DOCX" in results[1].reason and "不支持的文件类型" in results[2].reason
    assert sorted(p.suffix for p in library.uploads_dir.iterdir()) == [
        ".json",
        ".txt",
    ]  # failed ones discarded
    rows = {r.title: r for r in library.documents()}  # titled by the original file name
    assert rows["南湾码头"].chunks == 1 and rows["南湾码头"].kind == "文本 · utf-8"
    assert rows["南湾码头"].source == "用户上传" and "__" not in "".join(
        map(str, rows["南湾码头"].shown())
    )
    again = library.add_files([(doc, "南湾码头.txt")])
    assert [r.status for r in again] == ["unchanged"]

    state = ChatState(library, library.settings)
    ans = _ask(state, "南湾码头扩建工程新增了多少个泊位？")
    assert not ans.refused and "9个" in ans.text
    assert ans.citations[0].title == "南湾码头"


def test_remove_documents_keeps_the_rest(library, tmp_path):
    doc = tmp_path / "x.txt"
    doc.write_text("东港灯塔修缮记\n东港灯塔始建于1907年，2019年完成修缮。\n", encoding="utf-8")
    [added] = library.add_files([(doc, "灯塔.txt")])
    stored = Path(library.index.docs[added.doc_id]["source"])
    assert stored.exists()
    results = library.remove([added.doc_id, "no-such-doc"])
    assert [(r.status, r.name) for r in results] == [
        ("failed", "no-such-doc"),
        ("removed", "灯塔"),
    ] or [(r.status, r.name) for r in results] == [("removed", "灯塔"), ("failed", "no-such-doc")]
    assert added.doc_id not in library.index.docs and not stored.exists()
    assert sorted(library.index.docs) == ["lake", "park"]
    assert len(library.index) == sum(len(d["chunk_ids"]) for d in library.index.docs.values())
    ans = _ask(ChatState(library, library.settings), "北山森林公园的登山步道有多长？")
    assert "12公里" in ans.text
    library.remove(["lake"])  # a corpus document: the file is not ours, it stays
    with pytest.raises(ConfigError, match="不能删除全部文档"):
        library.remove(["park"])


def test_sessions_have_their_own_history_and_settings(library):
    a = ChatState(library, library.settings)
    b = ChatState(library, library.settings)
    msg = a.apply(generator="extractive", top_k=1)
    assert "top-k 1" in msg and a.settings.top_k == 1 and b.settings.top_k == library.settings.top_k
    assert a.settings.llm_model is None
    list(a.respond("青岚湖水质监测站有多少个监测点位？"))
    list(b.respond("北山森林公园什么时候开放？"))
    assert [t.question for t in a.history] == ["青岚湖水质监测站有多少个监测点位？"]
    assert [t.question for t in b.history] == ["北山森林公园什么时候开放？"]
    assert "17个" in a.messages[1]["content"] and "17个" not in b.messages[1]["content"]
    assert len(a.answers[0].retrieved) == 1 < len(b.answers[0].retrieved)
    with pytest.raises(ConfigError, match="没有名为"):
        a.apply(generator="gpt-9", top_k=3)
    assert a.settings.top_k == 1  # a refused choice changes nothing


def test_a_session_chooses_among_the_operators_generators_only(library):
    """A session picks a configured generator by name; it cannot give a URL, model file or
    key, and a generator that fails to build leaves the previous choice in force."""
    pytest.importorskip("llama_index.llms.openai_like")
    fake = pytest.importorskip("fake_openai")  # tests/fake_openai.py: a real local HTTP server
    with fake.FakeOpenAI() as srv:
        library.settings = library.settings.replace(
            generators={
                "local": {
                    "llm": "openai",
                    "label": "本地接口",
                    "model": "fake-model",
                    "base_url": srv.base_url,
                },
                "broken": {"llm": "ollama"},  # no model name: cannot be built
            }
        )
        a = ChatState(library, library.settings)
        b = ChatState(library, library.settings)
        choices = [name for _, name in library.settings.generator_choices()]
        assert choices == ["extractive", "local", "broken"]
        srv.script(fake.Reply("青岚湖水质监测站共设有17个监测点位[1]。"))
        msg = a.apply(generator="local", top_k=2)
        assert msg.startswith("已应用") and "本地接口" in msg
        list(a.respond("青岚湖水质监测站有多少个监测点位？"))
        sent = len(srv.requests)
        list(b.respond("青岚湖水质监测站有多少个监测点位？"))
        assert sent >= 1 and len(srv.requests) == sent  # b never talks to a's LLM
        with pytest.raises(TypeError):  # there is no way to pass an endpoint
            a.apply(generator="local", llm_base_url="http://169.254.169.254/")
    assert a.answers[0].generator.startswith("openai") and b.answers[0].generator == "extractive"
    assert "17个监测点位" in a.answers[0].text and a.answers[0].citations[0].doc_id == "lake"
    msg = a.apply(generator="broken", top_k=2)
    assert msg.startswith("设置未生效") and "管理员" in msg
    assert a.generator == "local" and a.settings.llm == "openai" and b.settings.llm == "extractive"


def test_follow_up_is_rewritten_and_shown(library):
    s = ChatState(library, library.settings)
    list(s.respond("青岚湖水质监测站是哪一年建成的？"))
    list(s.respond("那它的治理工程总投资是多少？"))
    second = s.answers[1]
    assert second.question == "那它的治理工程总投资是多少？"
    assert second.rewritten_question != second.question and "青岚湖" in second.rewritten_question
    assert "理解为" in s.messages[3]["content"] and second.citations[0].doc_id == "lake"
    assert s.message_turn == {1: 0, 3: 1}


PREVIOUS = "崂山区2023年重点推进多少个城市更新项目？"


@pytest.mark.parametrize(
    ("question", "subject"),
    [
        ("精致城市论坛在哪里举办？", "精致城市论坛"),
        ("这次精致城市论坛在哪里举办？", "精致城市论坛"),
        ("这个城市更新计划的总投资是多少？", "城市更新计划"),
        ("那威海市民中心在哪里？", "威海市民中心"),
    ],
)
def test_a_question_that_names_its_subject_is_not_rewritten(question, subject):
    assert subject_phrase(question) == subject
    assert not is_follow_up(question)
    assert carry_over(question, PREVIOUS) == question


@pytest.mark.parametrize(
    "question",
    [
        "这个呢？",
        "它在哪？",
        "那投资多少？",
        "这次论坛在哪里举办？",  # one word of its own: 论坛 of the turn before
        "该项目投资多少？",
        "那它的治理工程总投资是多少？",  # a pronoun is the subject, whatever else is named
        "那威海呢？",  # elliptical: what about 威海 is in the turn before
        "那还有呢？",
    ],
)
def test_a_bare_follow_up_gets_the_previous_terms(question):
    assert subject_phrase(question) is None and is_follow_up(question)
    rewritten = carry_over(question, PREVIOUS)
    assert rewritten.endswith("：" + question) and "城市更新" in rewritten
    if "威海" in question:  # 那威海呢: 威海 takes 崂山区's place, the quantity is carried
        assert "崂山" not in rewritten
    else:
        assert "崂山区" in rewritten


def test_carry_over_needs_a_previous_turn():
    assert carry_over("这个呢？", "") == "这个呢？"
    assert carry_over("  精致城市论坛在哪里举办？ ", PREVIOUS) == "精致城市论坛在哪里举办？"


def test_citation_opens_the_document_at_the_passage(library):
    s = ChatState(library, library.settings)
    list(s.respond("北山森林公园占地多少公顷？"))
    c = s.citation(0, 1)
    assert c is not None and s.citation(0, 9) is None and s.citation(5, 1) is None
    html = library.document_view(c)
    assert '<span class="rag-passage-hl rag-target">' in html
    quoted = c.text[c.quotes[0][0] - c.start : c.quotes[0][1] - c.start]
    assert f'<mark class="rag-quote">{quoted}</mark>' in html and "460公顷" in quoted


def test_feedback_from_a_session_is_appended(library):
    s = ChatState(library, library.settings)
    list(s.respond("青岚湖治理工程由哪个部门牵头？"))
    with pytest.raises(ConfigError):
        s.feedback(0, "up")  # the user's own message
    rec = s.feedback(1, "up")
    s.comment("很准确")
    [row] = read_feedback(library.feedback_path)
    assert (row.id, row.rating, row.comment) == (rec.id, "up", "很准确")
    assert (
        row.question == "青岚湖治理工程由哪个部门牵头？"
        and row.settings["top_k"] == s.settings.top_k
    )
    assert row.index_version == library.index.folder.name and row.session == s.id
    assert row.cited_doc_ids == ["lake"]


def test_example_questions_prefer_the_qa_set(tmp_path):
    qa = tmp_path / "qa.jsonl"
    rows = [
        {"id": "q1", "question": "湖有几个点位？", "answerable": True, "gold_doc_ids": ["lake"]},
        {"id": "q2", "question": "山上有什么？", "answerable": True, "gold_doc_ids": ["gone"]},
        {"id": "q3", "question": "无法回答", "answerable": False, "gold_doc_ids": ["lake"]},
    ]
    qa.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    got = example_questions({"lake", "park"}, {"lake": "青岚湖", "park": "北山"}, qa, n=3)
    assert got == ["湖有几个点位？", "《青岚湖》主要讲了什么？", "《北山》主要讲了什么？"]
    assert example_questions({"park"}, {"park": "北山"}, tmp_path / "missing.jsonl", n=2) == [
        "《北山》主要讲了什么？"
    ]


def test_the_app_builds(library):
    gr = pytest.importorskip("gradio")
    demo = __import__("rag.serve.ui.layout", fromlist=["build_app"]).build_app(library, ["问题一"])
    assert isinstance(demo, gr.Blocks)
    labels = {getattr(b, "label", None) for b in demo.blocks.values()}
    assert {
        "对话",
        "原文",
        "已入库文档",
        "上传文件（可多选）",
        "生成方式",
        "检索段落数（top-k）",
    } <= labels


def _notice(number: str, issuer: str, body: str) -> str:
    return "\n".join(
        [number, f"{issuer}关于推进老旧小区改造的通知", "各有关单位：", body,
         "特此通知。", issuer, "2023年3月5日"]
    )  # fmt: skip


def test_the_list_shows_official_numbers_and_the_chat_can_be_scoped_to_them(library, tmp_path):
    """The document list names each notice by 发文字号 and 发文机关, and a session scoped to
    one issuer (or one number) answers only from that issuer's documents."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(
        _notice("青政发〔2023〕5号", "青岛市人民政府", "2023年全市计划改造老旧小区350个。"),
        encoding="utf-8",
    )
    b.write_text(
        _notice("威政发〔2023〕9号", "威海市人民政府", "2023年全市计划改造老旧小区120个。"),
        encoding="utf-8",
    )
    results = library.add_files([(a, "青岛通知.txt"), (b, "威海通知.txt")])
    assert [r.status for r in results] == ["added", "added"]
    rows = {r.title: r for r in library.documents()}
    assert rows["青岛通知"].official == "青政发〔2023〕5号 · 青岛市人民政府"
    assert rows["威海通知"].official == "威政发〔2023〕9号 · 威海市人民政府"
    assert rows["青岛通知"].shown()[2] == rows["青岛通知"].official  # the column the page shows
    scopes = library.scopes()
    assert scopes["issuer"] == ["威海市人民政府", "青岛市人民政府"]
    assert "青政发〔2023〕5号" in scopes["doc_number"]

    state = ChatState(library, library.settings)
    assert state.scope("威海市人民政府", "") == "检索范围：只检索发文机关为“威海市人民政府”的文档。"
    ans = _ask(state, "2023年计划改造老旧小区多少个？")
    assert not ans.refused and "120个" in ans.text and "350" not in ans.text
    assert {c.title for c in ans.citations} == {"威海通知"}

    state.scope("", "青政发[2023]5号")  # any bracket style
    ans = _ask(state, "2023年计划改造老旧小区多少个？")
    assert "350个" in ans.text and {c.title for c in ans.citations} == {"青岛通知"}

    assert state.scope(None, "  ") == "检索范围：全部文档。"
    assert state.filters.empty


def test_a_logged_in_users_conversation_survives_a_reload(built, tmp_path):
    """A logged-in user's answers go to HOME/history.db; a new session of the same user
    (a reload, another browser) lists and resumes them, citations and follow-ups working;
    another user sees none, and without login nothing is kept."""
    from rag.errors import NotFoundError
    from rag.system import load_system

    settings, embedder = built
    home = tmp_path / "home"
    system = load_system(settings.replace(home=str(home)), embedder=embedder)
    lib = Library(system, tmp_path / "uploads", tmp_path / "feedback.jsonl")
    first = ChatState(lib, lib.settings, user="alice")
    list(first.respond("青岚湖水质监测站共设有多少个监测点位？"))
    assert first.conv_id and (home / "history.db").is_file()
    assert [i for _, i in first.conversations()] == [first.conv_id]
    assert first.conversations()[0][0].startswith("青岚湖水质监测站共设有多少个监测点位？（")

    again = ChatState(lib, lib.settings, user="alice")  # the page reloaded
    again.resume(first.conv_id)
    assert [m["role"] for m in again.messages] == ["user", "assistant"]
    assert "17个" in again.messages[1]["content"] and "rag-at-0-1" in again.messages[1]["content"]
    assert "rag-target" in lib.document_view(again.citation(0, 1))  # the passage is found
    assert again.citation(0, 1).date == lib.index.docs[again.citation(0, 1).doc_id].get("date")
    list(again.respond("总投资多少？"))
    kept = again._history().get("alice", first.conv_id)
    assert [t.question for t in kept.turns] == [
        "青岚湖水质监测站共设有多少个监测点位？",
        "总投资多少？",
    ]
    assert len(again.conversations()) == 1

    bob = ChatState(lib, lib.settings, user="bob")
    assert bob.conversations() == []
    with pytest.raises(NotFoundError):
        bob.resume(first.conv_id)
    anonymous = ChatState(lib, lib.settings)
    list(anonymous.respond("青岚湖治理工程总投资多少？"))
    assert anonymous.conv_id == "" and anonymous.conversations() == []
    with pytest.raises(ConfigError, match="登录"):
        anonymous.resume(first.conv_id)
