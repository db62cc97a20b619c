"""What offices keep (issue 19): tables, spreadsheets, CSV, slides, scans, old formats.

Every file is made here with the real libraries (python-docx, openpyxl, python-pptx,
Pillow with Debian's WenQuanYi font for the scans); each kind is ingested and asked a
question whose answer is in a table cell, a sheet row, a slide or a scanned page.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.config import Settings
from rag.errors import LoadError
from rag.index.build import ingest
from rag.ingest.loaders import load_file
from rag.ingest.ocr import OcrLine, reading_order

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
needs_font = pytest.mark.skipif(not FONT.is_file(), reason="fonts-wqy-microhei is not installed")


# --------------------------------------------------------------------------- makers
def make_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("2023年各区城市更新投资计划", 1)
    d.add_paragraph("根据市政府部署，各区投资计划如下。")
    d.add_paragraph("表2 各区投资计划")
    t = d.add_table(rows=4, cols=3)
    rows = [["区县", "2023年计划投资", "项目数"], ["崂山区", "156亿元", "196"],
            ["市南区", "88亿元", "75"], ["市北区", "102亿元", "120"]]  # fmt: skip
    for r, row in enumerate(rows):
        for c, v in enumerate(row):
            t.cell(r, c).text = v
    d.add_paragraph("特此通知。")
    d.save(str(path))
    return path


def make_xlsx(path: Path, extra_rows: int = 0) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "预算"
    ws.append(["部门", "预算金额（万元）", "截止日期"])
    ws.append(["住建局", 1250.5, dt.date(2024, 3, 31)])
    ws.append(["交通局", 980, dt.date(2024, 6, 30)])
    ws.append(["合计", "=B2+B3", None])
    for i in range(extra_rows):
        ws.append([f"街道{i:05d}", i * 3, None])
    other = wb.create_sheet("人员")
    other.append(["姓名", "职务"])
    other.append(["李瑞玲", "处长"])
    wb.save(path)
    return path


def make_pptx(path: Path) -> Path:
    from pptx import Presentation

    p = Presentation()
    s = p.slides.add_slide(p.slide_layouts[1])
    s.shapes.title.text = "杭州考察要点"
    s.placeholders[1].text = "杭州市城市更新采用“微改造”模式，共改造老旧小区620个。"
    s.notes_slide.notes_text_frame.text = "汇报时强调资金来源以区级财政为主。"
    s2 = p.slides.add_slide(p.slide_layouts[5])
    s2.shapes.title.text = "下一步工作"
    p.save(path)
    return path


def make_pdf_with_table(path: Path) -> Path:
    """A two-page PDF as reportlab draws it: page 2 has a captioned table with ruled
    lines (a grid), text above and below it."""
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import (
        PageBreak,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    zh = ParagraphStyle("zh", fontName="STSong-Light", fontSize=12, leading=18)
    rows = [["区县", "2023年计划投资", "项目数"], ["崂山区", "156亿元", "196"],
            ["市南区", "88亿元", "75"], ["市北区", "102亿元", "120"]]  # fmt: skip
    table = Table(rows)
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), "STSong-Light"),
                ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
            ]
        )
    )
    SimpleDocTemplate(str(path)).build(
        [
            Paragraph("青岛市城市更新工作简报", zh),
            Paragraph("今年以来，全市城市更新工作稳步推进，各区项目陆续开工建设。", zh),
            PageBreak(),
            Paragraph("根据市政府部署，各区投资计划如下，请各区认真落实。", zh),
            Paragraph("表2 各区投资计划", zh),
            table,
            Spacer(1, 12),
            Paragraph("各区要按月报送项目进展情况。", zh),
        ]
    )
    return path


def page_image(lines: list[str], size=(1240, 1754), x: int = 100):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT), 30)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((x, 150 + i * 70), line, font=font, fill="black")
    return img


NOTICE = [
    "青岛市住房和城乡建设局",
    "关于开展2024年老旧小区改造申报工作的通知",
    "各区住建部门：",
    "2024年全市计划改造老旧小区350个。",
    "申报截止日期为2024年3月15日。",
    "2024年1月8日",
]


# --------------------------------------------------------------------------- loading
def test_docx_table_rows_carry_their_headers_and_location(tmp_path):
    [doc] = load_file(make_docx(tmp_path / "plan.docx"))
    rows = [ln for ln in doc.text.split("\n") if "｜" in ln]
    assert rows[0] == "表2 各区投资计划｜区县：崂山区｜2023年计划投资：156亿元｜项目数：196"
    assert len(rows) == 3 and doc.text.endswith("特此通知。")
    locs = {label: at for at, label, *_ in doc.meta.get("locations")}
    assert doc.text[locs["表2 第2行"] :].startswith("表2 各区投资计划｜区县：崂山区")
    assert doc.meta.title == "2023年各区城市更新投资计划" and doc.encoding == ""


def test_pdf_table_rows_carry_their_headers_and_page(tmp_path):
    [doc] = load_file(make_pdf_with_table(tmp_path / "brief.pdf"))
    lines = doc.text.split("\n")
    page2 = lines.index("根据市政府部署，各区投资计划如下，请各区认真落实。")
    assert lines[page2:] == [
        "根据市政府部署，各区投资计划如下，请各区认真落实。",
        "表2 各区投资计划",
        "表2 各区投资计划｜区县：崂山区｜2023年计划投资：156亿元｜项目数：196",
        "表2 各区投资计划｜区县：市南区｜2023年计划投资：88亿元｜项目数：75",
        "表2 各区投资计划｜区县：市北区｜2023年计划投资：102亿元｜项目数：120",
        "各区要按月报送项目进展情况。",
    ]  # the cells are not repeated one per line, as pypdf reads them
    assert lines.count("156亿元") == 0 and doc.text.count("崂山区") == 1
    locs = {label: at for at, label in doc.meta.get("locations")}
    assert list(locs) == ["第1页", "第2页", "第2页 表2 第2行", "第2页 表2 第3行",
                          "第2页 表2 第4行"]  # fmt: skip
    assert doc.text[locs["第2页 表2 第2行"] :].startswith("表2 各区投资计划｜区县：崂山区")
    after = doc.meta.get("locations")[-1]  # the text under the table is on page 2 again
    assert after[1] == "第2页" and doc.text[after[0] :] == "各区要按月报送项目进展情况。"


def test_a_table_is_named_by_the_caption_above_it():
    from rag.ingest.tables import table_name

    assert table_name("表2 各区投资计划", 1) == ("表2 各区投资计划", "表2")
    assert table_name("附表1", 3) == ("附表1", "附表1")
    assert table_name("2023年各区投资计划表", 1) == ("2023年各区投资计划表", "2023年各区投资计划表")
    assert table_name("各区投资计划详见下表", 4) == ("表4", "表4")  # points at it, names nothing
    assert table_name("根据市政府部署，各区投资计划如下。", 2) == ("表2", "表2")


def test_pdf_pages_without_ruled_lines_are_not_given_to_pdfplumber(tmp_path):
    from pypdf import PdfReader

    from rag.ingest.formats import _content
    from rag.ingest.pdftables import may_hold_table

    pages = PdfReader(make_pdf_with_table(tmp_path / "brief.pdf")).pages
    assert [may_hold_table(p, _content(p)) for p in pages] == [False, True]


def test_a_pdf_table_row_is_one_chunk_with_its_page(tmp_path, embedder):
    from rag.system import load_system

    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf_with_table(docs / "brief.pdf")
    s = Settings(index_dir=str(tmp_path / "index"))
    report = ingest([docs], s, embedder=embedder, progress=False, log=lambda m: None)
    assert report.count("added") == 1, report.results
    system = load_system(s, embedder=embedder)
    index = system.index
    rows = [index.chunk(r) for r in range(len(index))]
    [chunk] = [c for c in rows if "区县：崂山区" in c.text]
    [line] = [ln for ln in chunk.text.split("\n") if "区县：崂山区" in ln]
    assert "2023年计划投资：156亿元" in line  # the district and its figure in one row
    at = chunk.start + chunk.text.index(line)
    assert index.location("brief", at, at + len(line)) == "第2页 表2 第2行"
    ans = system.ask("崂山区2023年计划投资多少？")
    assert not ans.refused and "156亿元" in ans.sentences[0].text, ans.text
    first = next(c for c in ans.citations if c.n == ans.sentences[0].citation)
    assert first.location == "第2页 表2 第2行"


def test_xlsx_every_sheet_with_values_and_dates(tmp_path):
    [doc] = load_file(make_xlsx(tmp_path / "budget.xlsx"))
    lines = doc.text.split("\n")
    assert "工作表“预算”｜部门：住建局｜预算金额（万元）：1250.5｜截止日期：2024-03-31" in lines
    assert "工作表“人员”｜姓名：李瑞玲｜职务：处长" in lines
    assert doc.meta.get("sheets") == ["预算", "人员"] and doc.meta.title == "budget"
    assert [lbl for _, lbl in doc.meta.get("locations")][:2] == [
        "工作表“预算” 第2行",
        "工作表“预算” 第3行",
    ]


def test_csv_in_gb18030_and_tsv(tmp_path):
    (tmp_path / "staff.csv").write_bytes(
        "姓名,职务,电话\n李瑞玲,处长,0532-1234\n".encode("gb18030")
    )
    [doc] = load_file(tmp_path / "staff.csv")
    assert doc.encoding == "gb18030" and doc.text == "姓名：李瑞玲｜职务：处长｜电话：0532-1234"
    (tmp_path / "t.tsv").write_text("区县\t项目数\n崂山区\t196\n", encoding="utf-8")
    assert load_file(tmp_path / "t.tsv")[0].text == "区县：崂山区｜项目数：196"


def test_pptx_slides_notes_and_locations(tmp_path):
    [doc] = load_file(make_pptx(tmp_path / "tour.pptx"))
    assert doc.text.split("\n") == [
        "杭州考察要点",
        "杭州市城市更新采用“微改造”模式，共改造老旧小区620个。",
        "备注：汇报时强调资金来源以区级财政为主。",
        "下一步工作",
    ]
    assert [lbl for _, lbl in doc.meta.get("locations")] == ["第1张幻灯片", "第2张幻灯片"]


def test_old_formats_without_libreoffice_are_refused_in_chinese(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no soffice on it
    (tmp_path / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 100)
    with pytest.raises(LoadError, match=r"\.doc 是旧版格式，需要 LibreOffice.*另存为 \.docx"):
        load_file(tmp_path / "old.doc")


# --------------------------------------------------------------------------- OCR
@needs_font
def test_a_scanned_pdf_is_read_by_ocr_with_page_locations(tmp_path):
    from pypdf import PdfReader, PdfWriter
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    page_image(NOTICE).save(tmp_path / "scan.pdf")
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    c = canvas.Canvas(str(tmp_path / "text.pdf"))
    c.setFont("STSong-Light", 14)
    c.drawString(72, 760, "第一页有文字层：本通知由市住建局负责解释。")
    c.showPage()
    c.save()
    mixed = PdfWriter()  # page 1 with a text layer, page 2 a scan
    for part in ("text.pdf", "scan.pdf"):
        for page in PdfReader(tmp_path / part).pages:
            mixed.add_page(page)
    mixed.write(tmp_path / "mixed.pdf")
    [doc] = load_file(tmp_path / "mixed.pdf")
    ocr = doc.meta.get("ocr")
    assert ocr["pages"] == [2]  # only the page without text was OCR'd
    assert ocr["confidence"] > 0.9
    assert "2024年全市计划改造老旧小区350个。" in doc.text.split("\n")
    assert doc.text.startswith("第一页有文字层")
    assert doc.meta.date == "2024-01-08"  # its own date line, not the file's creation date
    page2 = dict((lbl, at) for at, lbl in doc.meta.get("locations"))["第2页"]
    assert doc.text[page2:].startswith("青岛市住房和城乡建设局")
    page, start, end, conf, *box = ocr["lines"][3]
    assert page == 2 and doc.text[start:end] == "2024年全市计划改造老旧小区350个。"
    assert conf > 0.9 and box[2] > box[0] and box[3] > box[1]


@needs_font
def test_an_image_is_read_by_ocr(tmp_path):
    page_image(NOTICE[:4], size=(1240, 500)).save(tmp_path / "notice.png")
    [doc] = load_file(tmp_path / "notice.png")
    assert doc.format == "image" and "老旧小区350个" in doc.text
    (tmp_path / "blank.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with pytest.raises(LoadError, match="blank.png: 图片已损坏或不是图片，无法读取：请重新导出"):
        load_file(tmp_path / "blank.png")


def test_reading_order_follows_columns_and_margins():
    def box(text, x0, y0, x1, y1):
        return OcrLine(text, 0.99, (x0, y0, x1, y1))

    # a two-column page: a running header, left column, right column, a page number
    lines = [
        box("右栏第一行", 650, 200, 1100, 240),
        box("左栏第一行", 100, 200, 550, 240),
        box("左栏第二行", 100, 260, 550, 300),
        box("右栏第二行", 650, 260, 1100, 300),
        box("左栏第三行", 100, 320, 550, 360),
        box("右栏第三行", 650, 320, 1100, 360),
        box("第 3 页", 580, 1700, 660, 1730),
        box("青岛政报 2024年第2期", 100, 40, 500, 80),
    ]
    order = [p.text for p in reading_order(lines, (1240, 1754))]
    assert order == [
        "青岛政报 2024年第2期",
        "左栏第一行", "左栏第二行", "左栏第三行",
        "右栏第一行", "右栏第二行", "右栏第三行",
        "第 3 页",
    ]  # fmt: skip
    # one column: line by line, left to right within a line
    single = [
        box("乙", 300, 100, 400, 140),
        box("甲", 100, 102, 250, 138),
        box("丙", 100, 200, 900, 240),
    ]
    assert [p.text for p in reading_order(single, (1240, 1754))] == ["甲", "乙", "丙"]


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def office(tmp_path_factory, embedder):
    from rag.system import load_system

    root = tmp_path_factory.mktemp("office")
    docs = root / "docs"
    docs.mkdir()
    make_docx(docs / "plan.docx")
    make_xlsx(docs / "budget.xlsx")
    make_pptx(docs / "tour.pptx")
    if FONT.is_file():
        page_image(NOTICE).save(docs / "notice.pdf")
    s = Settings(index_dir=str(root / "index"))
    report = ingest([docs], s, embedder=embedder, progress=False, log=lambda m: None)
    assert report.count("failed") == 0, report.results
    return load_system(s, embedder=embedder)


@pytest.mark.parametrize(
    ("question", "expected", "location"),
    [
        ("崂山区2023年计划投资多少？", "156亿元", "表2 第2行"),
        ("市北区有多少个项目？", "项目数：120", "表2 第4行"),
        ("住建局的预算金额是多少？", "1250.5", "工作表“预算” 第2行"),
        ("杭州共改造老旧小区多少个？", "620个", "第1张幻灯片"),
    ],
)
def test_questions_about_cells_and_slides(office, question, expected, location):
    ans = office.ask(question)
    assert not ans.refused and expected in ans.sentences[0].text, ans.text
    first = next(c for c in ans.citations if c.n == ans.sentences[0].citation)
    assert first.location == location
    assert "市南区" not in ans.text  # another district's row is not part of the answer


@needs_font
def test_a_question_about_a_scanned_notice(office):
    ans = office.ask("2024年全市计划改造老旧小区多少个？")
    assert "350个" in ans.sentences[0].text, ans.text
    c = ans.citations[0]
    assert c.ocr and c.location == "第1页" and c.doc_id == "notice"


def test_a_large_sheet_ingests_in_seconds(tmp_path, embedder):
    import time

    make_xlsx(tmp_path / "big.xlsx", extra_rows=10_000)
    t0 = time.perf_counter()
    [doc] = load_file(tmp_path / "big.xlsx")
    assert time.perf_counter() - t0 < 30  # reading 10,000 rows (embedding is the embedder's)
    assert "工作表“预算”｜部门：街道09999｜预算金额（万元）：29997" in doc.text


# --------------------------------------------------------------------------- never lost
CELL = st.one_of(
    st.integers(0, 10**6).map(str),
    st.text(alphabet="崂山区预算项目投资计划万元亿0123456789", min_size=1, max_size=8),
)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(rows=st.lists(st.lists(CELL, min_size=3, max_size=3), min_size=2, max_size=8))
def test_every_table_cell_reaches_a_chunk(tmp_path_factory, rows):
    """Cleaning never removes content: every non-empty cell of a DOCX or XLSX table is in
    some chunk (the failing case was a table of whole numbers, taken for counters)."""
    import docx
    import openpyxl

    from rag.index.workers import _prepare
    from rag.ingest.chunking import chunk_spans

    root = tmp_path_factory.mktemp("cells")
    d = docx.Document()
    t = d.add_table(rows=len(rows), cols=3)
    wb = openpyxl.Workbook()
    for r, row in enumerate(rows):
        wb.active.append(row)
        for c, value in enumerate(row):
            t.cell(r, c).text = value
    d.save(str(root / "t.docx"))
    wb.save(root / "t.xlsx")
    for name in ("t.docx", "t.xlsx"):
        [raw] = load_file(root / name)
        text, _ = _prepare(raw, Settings())
        chunks = [text[s:e] for s, e in chunk_spans(text, Settings().chunk_size, 1)]
        for row in rows:
            for value in row:
                assert any(value in ch for ch in chunks), (name, value)
