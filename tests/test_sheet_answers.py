"""A budget sheet's figure is never lost under a citation (issue 19).

An office's project sheet has six columns and a long 建设内容 cell; the answer to
"XX项目计划投资多少万元？" used to stop just before the value
("……｜建设年限：2022-2024｜计划投资（万元）[1]"): the reader cut a row longer than a
sentence window at a "：" (the value fell outside it, the colon was trimmed), and the cut
row still counted as holding the asked figure (序号：1 is a number, "（万元）" read as an
amount). The same rows are written here as .xlsx, as a DOCX table and as .csv, ingested
with the real pipeline and embedder, and asked about every row.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from rag.config import Settings
from rag.index.build import ingest

HEADER = ["序号", "区县", "项目名称", "建设内容", "建设年限", "计划投资（万元）"]
DISTRICTS = ["市南区", "市北区", "李沧区", "崂山区", "黄岛区", "城阳区", "即墨区", "胶州市", "平度市", "莱西市"]  # fmt: skip
KINDS = ["道路", "管网", "学校", "医院", "公园", "安置房", "污水处理厂", "体育馆", "图书馆", "停车场"]  # fmt: skip
CONTENT = (
    "{verb}{kind}及配套设施，总建筑面积约{area}万平方米，同步实施给排水、电力、通信、绿化等配套工程。"
    "完善周边交通组织和公共服务功能，提升片区综合承载能力"
)


def budget_rows(n: int = 30) -> list[list]:
    """Rows like an office's: projects that differ in one word (建设/改造/提升工程 of the
    same district and kind), 建设内容 of 20 to 80 characters (some with a 。 inside), a
    figure with one decimal in the last column, no two alike."""
    rows = []
    for i in range(n):
        district, kind = DISTRICTS[i % 10], KINDS[(i * 3) % 10]
        name = f"{district}{'东西南北中'[i % 5]}部{kind}{['建设', '改造', '提升'][i // 10]}工程"
        content = CONTENT.format(verb=["新建", "改造"][i % 2], kind=kind, area=i % 7 + 2)
        years = f"{2022 + i % 3}-{2024 + i % 3}"
        figure = round(1000 + i * 1733 + (i % 9 + 1) / 10, 1)
        rows.append([i + 1, district, name, content[: 20 + (i * 7) % 61], years, figure])
    return rows


ROWS = budget_rows()


def figure(row: list) -> str:
    return f"{row[5]:.1f}"


def write_xlsx(path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "预算"
    ws.append(HEADER)
    for row in ROWS:
        ws.append(row)
    wb.save(path)


def write_docx(path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_paragraph("2024年城市更新重点项目计划如下。")
    d.add_paragraph("表1 城市更新重点项目计划")
    t = d.add_table(rows=len(ROWS) + 1, cols=len(HEADER))
    for r, row in enumerate([HEADER, *ROWS]):
        for c, value in enumerate(row):
            t.cell(r, c).text = f"{value:.1f}" if isinstance(value, float) else str(value)
    d.save(str(path))


def write_csv(path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([HEADER, *ROWS])


WRITERS = {"xlsx": write_xlsx, "docx": write_docx, "csv": write_csv}
LOCATION = {"xlsx": "工作表“预算” 第{}行", "docx": "表1 第{}行", "csv": "第{}行"}


@pytest.fixture(scope="module", params=["xlsx", "docx", "csv", "xlsx-keyword-first"])
def sheet(request, tmp_path_factory, embedder):
    """(format, system) with the rows ingested from one file of that format; the
    keyword-first case is searchable by BM25 alone (no row has its vector yet)."""
    from rag.system import load_system

    fmt, _, mode = request.param.partition("-")
    root = tmp_path_factory.mktemp(request.param)
    (root / "docs").mkdir()
    WRITERS[fmt](root / "docs" / f"budget.{fmt}")
    s = Settings(index_dir=str(root / "index"), keyword_first_chunks=1 if mode else 512)
    report = ingest(
        [root / "docs"], s, embedder=embedder, progress=False, log=lambda m: None,
        embed_later=bool(mode),
    )  # fmt: skip
    assert report.count("added") == 1, report.results
    system = load_system(s, embedder=embedder)
    assert (system.index.n_embedded == 0) == bool(mode)
    return fmt, system


def _ask(system, row: list):
    return system.ask(f"{row[2]}计划投资多少万元？")


def test_the_exact_failing_case_keeps_the_value(sheet):
    """Row 1 (20 characters of 建设内容): the answer ended "计划投资（万元）[1]"."""
    fmt, system = sheet
    ans = _ask(system, ROWS[0])
    assert not ans.refused, ans.text
    quote = ans.sentences[0].text
    assert f"计划投资（万元）：{figure(ROWS[0])}" in quote, ans.text
    assert f"项目名称：{ROWS[0][2]}" in quote  # the row whole: what the figure is for
    assert ans.short_answer == f"{figure(ROWS[0])}万元"  # read with its column's unit


def test_every_rows_investment_is_answered_with_that_rows_figure(sheet):
    """For every row: the quote holds the row's own figure under its header, the
    citation names that row, and no other row's figure is in the answer."""
    fmt, system = sheet
    wrong = []
    for n, row in enumerate(ROWS):
        ans = _ask(system, row)
        first = next((c for c in ans.citations if c.n == ans.sentences[0].citation), None)
        others = [figure(r) for r in ROWS if r is not row and f"：{figure(r)}" in ans.text]
        if (
            ans.refused
            or f"计划投资（万元）：{figure(row)}" not in ans.sentences[0].text
            or first.location != LOCATION[fmt].format(n + 2)  # the header is line 1
            or others
        ):
            wrong.append((row[2], ans.text))
    assert not wrong, wrong


# ------------------------------------------------------------------ the parts
def test_a_row_is_one_sentence_whatever_its_cells_say():
    from rag.ingest.chunking import split_sentences

    row = "工作表“预算”｜项目名称：甲工程｜建设内容：新建道路。改造管网；绿化。｜计划投资（万元）：42602.1"
    text = f"说明：见下表。\n{row}\n合计。"
    assert [text[s:e] for s, e in split_sentences(text)] == ["说明：见下表。", row, "合计。"]
    # prose with a stray ｜ is still split into sentences
    prose = "首页｜新闻中心。会议指出：要加快推进。"
    assert len(split_sentences(prose)) == 2


def test_a_row_longer_than_a_chunk_is_cut_between_cells():
    from rag.ingest.chunking import chunk_spans

    cells = [f"列{i}：{'内容' * 20}{i}" for i in range(6)] + ["计划投资（万元）：42602.1"]
    row = "工作表“预算”｜" + "｜".join(cells)
    parts = [row[s:e] for s, e in chunk_spans(row, 120, 0)]
    assert "".join(parts) == row and len(parts) > 1
    for p in parts[:-1]:
        assert p.endswith("｜")  # never "……（万元）：" in one chunk and "42602.1" in the next


def test_a_cut_row_does_not_count_as_holding_the_asked_figure():
    from rag.read.reader import question_slot, type_match
    from rag.textnorm import norm

    q = norm("甲工程计划投资多少万元？")
    slot = question_slot(q, normalized=True)
    cut = norm("工作表“预算”｜序号：1｜项目名称：甲工程｜建设年限：2022-2024｜计划投资（万元）")
    whole = cut + norm("：42602.1")
    assert type_match("number", cut, slot, q) < 1.0  # 序号：1 is not the asked figure
    assert type_match("number", whole, slot, q) == 2.0  # 42602.1 under 万元 is
    assert not slot.search(norm("计划投资（万元）"))  # a header's unit is not an amount
