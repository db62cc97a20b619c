"""Citations say which section they quote: DOCX, Markdown and HTML headings become
heading-path locations ("一、总体要求 › （二）主要目标"), through cleaning and the index.
Real files (python-docx), the real ingest and the real answerer."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Settings
from rag.index.build import ingest
from rag.ingest.headings import heading_locations, is_title
from rag.ingest.loaders import load_file

GOAL = "（二）主要目标"
PATH = "一、总体要求 › （二）主要目标"


def make_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("青岛市城市更新三年行动方案", 0)  # the Title style
    d.add_paragraph("为加快推进城市更新，制定本方案。")
    d.add_heading("一、总体要求", 1)
    d.add_paragraph("坚持以人民为中心的发展思想。")
    d.add_heading(GOAL, 2)
    d.add_paragraph("到2025年，全市累计改造老旧小区1200个。")
    d.add_paragraph("表1 各区改造任务")
    t = d.add_table(rows=2, cols=2)
    for c, (head, value) in enumerate([("区县", "崂山区"), ("改造任务", "180个")]):
        t.cell(0, c).text = head
        t.cell(1, c).text = value
    d.add_heading("二、重点任务", 1)
    d.add_paragraph("实施城市燃气管道更新改造工程。")
    d.save(str(path))
    return path


MARKDOWN = """---
title: 青岛市海绵城市建设方案
---
首页 > 政策文件

# 青岛市海绵城市建设方案

为推进海绵城市建设，制定本方案。



## 一、总体要求

坚持生态优先。

```
# 这是代码里的注释，不是标题
```








### （二）主要目标

到2025年，全市建成区新建海绵型公园80个。

## 二、重点任务

建设雨水调蓄设施。
"""

HTML = """<html><head><title>青岛市公园城市建设方案_青岛政务网</title></head><body>
<div>首页 &gt; 政策文件</div>
<h1>青岛市公园城市建设方案</h1>
<p>为推进公园城市建设，制定本方案。</p>
<h2>一、<b>总体</b>要求</h2>
<p>坚持绿色发展。</p>
<h3>（二）主要目标</h3>
<p>到2025年，全市新增口袋公园300处。</p>
<h2>二、重点任务</h2>
<p>建设城市绿道。</p>
</body></html>"""


def labels(doc) -> list[str]:
    return [loc[1] for loc in doc.meta.get("locations") or []]


def where(doc, text: str) -> str:
    """The heading path recorded for the line holding `text`."""
    at = doc.text.index(text)
    return [loc[1] for loc in doc.meta.get("locations") if loc[0] <= at][-1]


def test_the_title_is_no_section():
    assert is_title([0, 1, 2, 1]) and is_title([1, 2, 2]) and not is_title([1, 2, 1])
    assert heading_locations([(0, 1, "标题"), (10, 2, "一、总体要求")]) == [
        [0, "", "section"],
        [10, "一、总体要求", "section"],
    ]
    assert heading_locations([(0, 1, "只有标题")]) == []  # nothing to locate by


def test_locations_move_with_their_lines_when_clutter_is_cleaned():
    from rag.ingest.clean import clean_text, relocate

    raw = "首页 > 政策文件\n\n\n\n## 一、总体要求\n坚持生态优先。\n版权所有：青岛政务网"
    cleaned = clean_text(raw)
    assert cleaned.text == "## 一、总体要求\n坚持生态优先。"
    locs = [[0, "", "section"], [raw.index("##"), "一、总体要求", "section"], [len(raw) - 3, "x"]]
    assert relocate(raw, cleaned, locs) == [[0, "一、总体要求", "section"]]


def test_docx_headings_and_a_table_in_a_section(tmp_path):
    [doc] = load_file(make_docx(tmp_path / "plan.docx"))
    assert labels(doc) == ["", "一、总体要求", PATH, f"{PATH} › 表1 第2行", "二、重点任务"]
    assert where(doc, "为加快推进城市更新") == ""  # before the first section
    assert where(doc, "全市累计改造老旧小区1200个") == PATH
    assert where(doc, "区县：崂山区") == f"{PATH} › 表1 第2行"
    assert where(doc, "实施城市燃气管道") == "二、重点任务"


def test_markdown_headings_skip_code_and_the_title(tmp_path):
    (tmp_path / "sponge.md").write_text(MARKDOWN, encoding="utf-8")
    [doc] = load_file(tmp_path / "sponge.md")
    assert labels(doc) == ["", "一、总体要求", PATH, "二、重点任务"]
    assert where(doc, "新建海绵型公园80个") == PATH
    assert where(doc, "这是代码里的注释") == "一、总体要求"


def test_html_headings(tmp_path):
    (tmp_path / "park.html").write_text(HTML, encoding="utf-8")
    [doc] = load_file(tmp_path / "park.html")
    assert labels(doc) == ["", "一、总体要求", PATH, "二、重点任务"]
    assert where(doc, "新增口袋公园300处") == PATH
    assert doc.text[doc.text.index("一、总体要求") - 1] == "\n"  # the heading's own line


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def plans(tmp_path_factory, embedder):
    from rag.system import load_system

    root = tmp_path_factory.mktemp("plans")
    docs = root / "docs"
    docs.mkdir()
    make_docx(docs / "renewal.docx")
    (docs / "sponge.md").write_text(MARKDOWN, encoding="utf-8")
    (docs / "park.html").write_text(HTML, encoding="utf-8")
    s = Settings(index_dir=str(root / "index"), chunk_size=60)
    report = ingest([docs], s, embedder=embedder, progress=False, log=lambda m: None)
    assert report.count("added") == 3, report.results
    return load_system(s, embedder=embedder)


@pytest.mark.parametrize(
    ("doc_id", "sentence"),
    [
        ("renewal", "到2025年，全市累计改造老旧小区1200个。"),
        ("sponge", "到2025年，全市建成区新建海绵型公园80个。"),
        ("park", "到2025年，全市新增口袋公园300处。"),
    ],
)
def test_the_index_locates_by_section_after_cleaning(plans, doc_id, sentence):
    """Markdown and HTML are cleaned before indexing (the 首页 > 政策文件 line goes, blank
    runs collapse): the locations move with their lines."""
    index = plans.index
    text = index.document_text(doc_id)
    if doc_id != "renewal":
        assert "首页" not in text  # cleaning removed a line above the sections
    at = text.index(sentence)
    assert index.location(doc_id, at, at + len(sentence)) == PATH
    # a span from one section into the next is located where it starts
    end = text.index("二、重点任务") + 3
    assert index.location(doc_id, at, end) == PATH


@pytest.mark.parametrize(
    ("question", "expected", "doc_id"),
    [
        ("到2025年全市累计改造老旧小区多少个？", "1200个", "renewal"),
        ("到2025年全市建成区新建海绵型公园多少个？", "80个", "sponge"),
        ("到2025年全市新增口袋公园多少处？", "300处", "park"),
    ],
)
def test_a_citation_names_its_section(plans, question, expected, doc_id):
    ans = plans.ask(question)
    assert not ans.refused and expected in ans.sentences[0].text, ans.text
    first = next(c for c in ans.citations if c.n == ans.sentences[0].citation)
    assert first.doc_id == doc_id and first.location == PATH
