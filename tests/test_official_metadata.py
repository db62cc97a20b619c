"""Official documents (公文) carry their number (发文字号) and issuer (发文机关): the loader
reads both from the document's own words, and a search can be limited to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Settings
from rag.index.build import ingest
from rag.ingest.loaders import load_file
from rag.types import Filters


def notice(number: str, body: str, header: str = "") -> str:
    """A notice as it is laid out: title, number, addressee, body, signature, date."""
    return "\n".join(
        ([header] if header else [])
        + [
            number,
            "青岛市人民政府关于进一步推进城市更新工作的通知",
            "各区、市人民政府，市政府各部门，市直各单位：",
            body,
            "根据《国务院办公厅关于全面推进城镇老旧小区改造工作的指导意见》"
            "（国办发〔2020〕23号），结合我市实际，现将有关事项通知如下。",
            "特此通知。",
            "青岛市人民政府",
            "2023年3月5日",
            "（此件公开发布）",
        ]
    )


def load_text(tmp_path: Path, text: str, name: str = "notice.txt"):
    (tmp_path / name).write_text(text, encoding="utf-8")
    [doc] = load_file(tmp_path / name)
    return doc


@pytest.mark.parametrize(
    ("line", "number"),
    [
        ("青政发〔2023〕5号", "青政发〔2023〕5号"),
        ("青政发[2023]5号", "青政发〔2023〕5号"),
        ("青政发［2023］５号", "青政发〔2023〕5号"),
        ("青政发（2023）5号", "青政发〔2023〕5号"),
        ("青政发 〔2023〕 5 号", "青政发〔2023〕5号"),
        ("发文字号：国办发〔2021〕12号", "国办发〔2021〕12号"),
        ("鲁政字〔2022〕第8号", "鲁政字〔2022〕第8号"),
        ("青政发〔2023〕5号          签发人：王某某", "青政发〔2023〕5号"),
    ],
)
def test_the_number_in_any_bracket_style(tmp_path, line, number):
    doc = load_text(tmp_path, notice(line, "全市计划改造老旧小区350个。"))
    assert doc.meta.get("doc_number") == number
    assert doc.meta.get("issuer") == "青岛市人民政府"  # the signature above the date
    assert doc.meta.date == "2023-03-05"


def test_the_red_header_names_the_issuer(tmp_path):
    doc = load_text(
        tmp_path, notice("青政办发〔2023〕8号", "正文。", header="青岛市人民政府办公厅文件")
    )
    assert doc.meta.get("doc_number") == "青政办发〔2023〕8号"
    assert doc.meta.get("issuer") == "青岛市人民政府办公厅"


def test_an_order_and_an_explicit_issuer_line(tmp_path):
    order = load_text(
        tmp_path,
        "青岛市人民政府令\n第 5 号\n《青岛市物业管理办法》已经市政府同意，现予公布。\n"
        "市长　张某某\n2023年3月5日",
    )
    assert order.meta.get("doc_number") == "青岛市人民政府令第5号"
    assert order.meta.get("issuer") == "青岛市人民政府"
    joint = load_text(
        tmp_path,
        "关于做好2023年防汛工作的通知\n各区市：\n请做好防汛准备。\n"
        "青岛市应急管理局\n青岛市水务管理局\n2023年5月1日",
        "joint.txt",
    )
    assert "doc_number" not in joint.meta
    assert joint.meta.get("issuer") == "青岛市应急管理局、青岛市水务管理局"
    stated = load_text(tmp_path, "一份说明\n发文机关：青岛市财政局\n正文内容。", "stated.txt")
    assert stated.meta.get("issuer") == "青岛市财政局"


def test_a_cited_number_and_a_news_story_are_not_taken(tmp_path):
    news = load_text(
        tmp_path,
        "我市加快推进老旧小区改造\n"
        "根据国办发〔2020〕23号文件精神，全市今年计划改造老旧小区350个。\n"
        "（青岛日报记者 张某某）\n2023年3月6日",
    )
    assert "doc_number" not in news.meta and "issuer" not in news.meta


def test_a_docx_notice(tmp_path):
    import docx

    d = docx.Document()
    for line in notice("青政发〔2023〕5号", "全市计划改造老旧小区350个。").split("\n"):
        d.add_paragraph(line)
    d.save(str(tmp_path / "notice.docx"))
    [doc] = load_file(tmp_path / "notice.docx")
    assert doc.meta.get("doc_number") == "青政发〔2023〕5号"
    assert doc.meta.get("issuer") == "青岛市人民政府"


def test_the_sidecar_still_wins(tmp_path):
    (tmp_path / "notice.meta.json").write_text(
        '{"doc_number": "青政发〔2023〕6号"}', encoding="utf-8"
    )
    doc = load_text(tmp_path, notice("青政发〔2023〕5号", "正文。"))
    assert doc.meta.get("doc_number") == "青政发〔2023〕6号"


# --------------------------------------------------------------------------- filtering
@pytest.fixture(scope="module")
def notices(tmp_path_factory, embedder):
    from rag.system import load_system

    root = tmp_path_factory.mktemp("notices")
    docs = root / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(
        notice("青政发〔2023〕5号", "2023年全市计划改造老旧小区350个，惠及居民4.2万户。"),
        encoding="utf-8",
    )
    (docs / "b.txt").write_text(
        notice("青政发〔2024〕2号", "2024年全市计划改造老旧小区420个，惠及居民5.1万户。"),
        encoding="utf-8",
    )
    (docs / "c.txt").write_text(  # another issuer, no number
        "关于老旧小区改造资金的说明\n老旧小区改造资金以区级财政为主。\n青岛市财政局\n2024年1月8日",
        encoding="utf-8",
    )
    s = Settings(index_dir=str(root / "index"))
    report = ingest([docs], s, embedder=embedder, progress=False, log=lambda m: None)
    assert report.count("added") == 3, report.results
    return load_system(s, embedder=embedder)


def found(system, question: str, **where: str) -> set[str]:
    hits = system.retriever.search(question, top_k=10, filters=Filters(where=where)).hits
    return {h.doc_id for h in hits}


def test_filter_by_number_returns_only_that_notice(notices):
    question = "全市计划改造老旧小区多少个？"
    assert found(notices, question) == {"a", "b", "c"}  # unfiltered: all three
    assert found(notices, question, doc_number="青政发〔2023〕5号") == {"a"}
    assert found(notices, question, doc_number="青政发[2024]2号") == {"b"}  # any brackets
    assert found(notices, question, doc_number="青政发〔2023〕9号") == set()
    assert found(notices, question, issuer="青岛市财政局") == {"c"}
    assert found(notices, question, issuer="青岛市人民政府", doc_number="青政发〔2024〕2号") == {
        "b"
    }


def test_an_answer_within_a_number_quotes_only_that_notice(notices):
    ans = notices.ask(
        "全市计划改造老旧小区多少个？", filters=Filters(where={"doc_number": "青政发〔2024〕2号"})
    )
    assert not ans.refused and "420个" in ans.sentences[0].text, ans.text
    assert {c.doc_id for c in ans.citations} == {"b"}
    assert Filters(where={"issuer": "x"}) == Filters(where=[("issuer", "x")])
    assert not Filters(where={"issuer": "x"}).empty and Filters().empty


def test_the_cli_asks_within_a_number_or_an_issuer(notices, capsys):
    import json

    from rag.serve.cli import main

    index = notices.settings.index_dir
    q = "全市计划改造老旧小区多少个？"
    assert main(["ask", q, "--index", index, "--json", "--doc-number", "青政发[2024]2号"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {c["doc_id"] for c in d["citations"]} == {"b"} and "420" in d["answer"]
    assert main(["ask", q, "--index", index, "--json", "--where", "issuer=青岛市财政局"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {c["doc_id"] for c in d["citations"]} <= {"c"}
    assert main(["ask", q, "--index", index, "--where", "issuer"]) != 0
    assert "字段=值" in capsys.readouterr().err
