"""The cited page drawn with the cited text in yellow (issue 19): real PDFs made here
(reportlab with a text layer; Pillow page images with none, read by the real OCR), the
marks checked by the colour of the page where the quoted words were put."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from rag.ingest.loaders import load_file
from rag.serve.ui.pages import (
    MAX_IMAGE_WIDTH,
    VIEW_DPI,
    cited_page,
    find_chars,
    merge_lines,
    page_index,
)

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
needs_font = pytest.mark.skipif(not FONT.is_file(), reason="fonts-wqy-microhei is not installed")

PAGE1 = ["第一页：青岚湖治理工作报告。", "本报告由市生态环境局编写。"]
PAGE2 = [
    "第二页：治理工程总投资3.2亿元。",
    "青岚湖水质监测站于2021年建成，共设有17个监测点位。",
    "附注：以上数据截至2023年底。",
]
SCAN = [
    "青岛市住房和城乡建设局",
    "关于开展老旧小区改造申报工作的通知",
    "各区住建部门：",
    "2024年全市计划改造老旧小区350个。",
    "申报截止日期为2024年3月15日。",
]
SCAN_X, SCAN_Y, SCAN_STEP, SCAN_PX = 100, 120, 80, 34  # where make_scan draws, 200 dpi


def text_pdf(path: Path) -> dict[str, tuple[float, float, float]]:
    """Two pages with a text layer; returns each line's (x, baseline y, width) in points."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    c = canvas.Canvas(str(path))
    where = {}
    for lines in (PAGE1, PAGE2):
        c.setFont("STSong-Light", 14)
        for i, line in enumerate(lines):
            y = 760 - 30 * i
            c.drawString(72, y, line)
            where[line] = (72.0, float(y), pdfmetrics.stringWidth(line, "STSong-Light", 14))
        c.showPage()
    c.save()
    return where


def make_scan(lines: list[str], size=(1240, 560)):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT), SCAN_PX)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((SCAN_X, SCAN_Y + i * SCAN_STEP), line, font=font, fill="black")
    return img, font


def yellow_share(image, box) -> float:
    """Share of the box's pixels that are yellow-ish: red and green high, blue well below."""
    a = np.asarray(image.crop(tuple(round(v) for v in box)).convert("RGB")).astype(int)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    return float(((r > 200) & (g > 170) & (b < 200) & (r - b > 60)).mean())


def span_of(text: str, quote: str) -> tuple[int, int]:
    at = text.index(quote)
    return at, at + len(quote)


# --------------------------------------------------------------------------- pure parts
def test_find_chars_ignores_white_space_and_folds_compatibility_forms():
    page = "治理工程总投资\r\n3.2 亿元。⼀期工程"  # U+2F00 KANGXI RADICAL ONE, as extractors give
    got = find_chars(page, "总投资3.2亿元")
    assert "".join(page[i] for i in got) == "总投资3.2亿元"
    assert "".join(page[i] for i in find_chars(page, "一期工程")) == "⼀期工程"
    # not there as a whole: the pieces between punctuation that are
    assert (
        "".join(page[i] for i in find_chars(page, "治理工程总投资，二期工程未定"))
        == "治理工程总投资"
    )
    assert find_chars(page, "完全无关的句子") == []


def test_merge_lines_joins_a_run_and_splits_at_a_new_line():
    chars = [(10, 10, 20, 30), (20, 10, 30, 30), (30, 11, 40, 29), (10, 40, 20, 60)]
    assert merge_lines(chars) == [(10, 10, 40, 30), (10, 40, 20, 60)]


def test_page_index_from_page_starts():
    meta = {"page_starts": [0, 40, 90]}
    assert [page_index(meta, o) for o in (0, 39, 40, 89, 90, 500)] == [0, 0, 1, 1, 2, 2]


# --------------------------------------------------------------------------- text layer
def test_a_quote_on_a_text_layer_page_is_marked_where_it_is_printed(tmp_path):
    where = text_pdf(tmp_path / "report.pdf")
    [doc] = load_file(tmp_path / "report.pdf")
    meta = doc.meta.to_dict()
    quote = PAGE2[1]
    view = cited_page(
        (tmp_path / "report.pdf").read_bytes(), "pdf", meta, doc.text, [span_of(doc.text, quote)]
    )
    assert (view.page, view.pages, view.from_scan) == (2, 2, False)
    s = VIEW_DPI / 72
    height = 841.89  # A4, reportlab's default page
    assert abs(view.image.width - 595.28 * s) <= 1 and abs(view.image.height - height * s) <= 1

    def region(line):  # the printed line, from its baseline to the top of the characters
        x, y, w = where[line]
        return (x * s + 2, (height - y - 11) * s, (x + w) * s - 2, (height - y + 2) * s)

    assert yellow_share(view.image, region(quote)) > 0.5
    assert yellow_share(view.image, region(PAGE2[0])) < 0.05  # the line above: not cited
    assert yellow_share(view.image, region(PAGE2[2])) < 0.05
    # the whole page apart from the mark is not yellow
    assert yellow_share(view.image, (0, 0, view.image.width, region(quote)[1] - 6)) < 0.01


def test_a_quote_across_a_page_break_shows_the_page_it_starts_on(tmp_path):
    text_pdf(tmp_path / "report.pdf")
    [doc] = load_file(tmp_path / "report.pdf")
    start = doc.text.index(PAGE1[1])
    end = doc.text.index(PAGE2[0]) + len(PAGE2[0])
    view = cited_page(
        (tmp_path / "report.pdf").read_bytes(), "pdf", doc.meta.to_dict(), doc.text, [(start, end)]
    )
    assert view.page == 1 and len(view.boxes) == 1  # only its part on page 1 is marked


# --------------------------------------------------------------------------- scans
@needs_font
def test_a_quote_on_a_scanned_page_is_marked_from_the_ocr_boxes(tmp_path):
    img, font = make_scan(SCAN)
    blank_first = img.copy()
    blank_first.paste("white", (0, 0, *img.size))
    # page 1 has no text at all (blank: never read); page 2 is the scan
    blank_first.save(
        tmp_path / "scan.pdf", "PDF", resolution=200.0, save_all=True, append_images=[img]
    )
    [doc] = load_file(tmp_path / "scan.pdf")
    meta = doc.meta.to_dict()
    assert meta["ocr"]["pages"] == [2]
    quote = SCAN[3]
    view = cited_page(
        (tmp_path / "scan.pdf").read_bytes(), "pdf", meta, doc.text, [span_of(doc.text, quote)]
    )
    assert (view.page, view.pages, view.from_scan) == (2, 2, True)
    s = VIEW_DPI / 200
    assert abs(view.image.width - img.width * s) <= 1

    def region(i):
        w = font.getlength(SCAN[i])
        y = SCAN_Y + i * SCAN_STEP
        return ((SCAN_X + 4) * s, (y + 4) * s, (SCAN_X + w - 4) * s, (y + SCAN_PX - 2) * s)

    assert yellow_share(view.image, region(3)) > 0.5
    for other in (0, 2, 4):
        assert yellow_share(view.image, region(other)) < 0.05, SCAN[other]


@needs_font
def test_part_of_an_ocr_line_marks_part_of_its_box(tmp_path):
    img, font = make_scan(SCAN)
    img.save(tmp_path / "notice.png")
    [doc] = load_file(tmp_path / "notice.png")
    quote = "申报截止日期"
    line = SCAN[4]
    view = cited_page(
        (tmp_path / "notice.png").read_bytes(),
        "image",
        doc.meta.to_dict(),
        doc.text,
        [span_of(doc.text, quote)],
    )
    # wider than the viewer's limit: shown at MAX_IMAGE_WIDTH, the boxes scaled with it
    k = MAX_IMAGE_WIDTH / img.width
    assert view.from_scan and view.image.width == MAX_IMAGE_WIDTH
    y = SCAN_Y + 4 * SCAN_STEP
    cut = SCAN_X + font.getlength(quote)
    cited = (SCAN_X + 4, y + 4, cut - 8, y + SCAN_PX - 2)
    rest = (cut + 30, y + 4, SCAN_X + font.getlength(line) - 4, y + SCAN_PX - 2)
    assert yellow_share(view.image, [v * k for v in cited]) > 0.5
    assert yellow_share(view.image, [v * k for v in rest]) < 0.05


def test_other_formats_have_no_page(tmp_path):
    with pytest.raises(ValueError, match="no pages"):
        cited_page(b"plain text", "txt", {}, "plain text", [(0, 5)])


# --------------------------------------------------------------------------- through the index
@needs_font
def test_the_app_draws_only_files_the_index_holds_as_they_were_indexed(tmp_path, embedder):
    from rag.config import Settings
    from rag.index.build import ingest
    from rag.serve.ui.library import Library
    from rag.system import load_system
    from rag.types import Citation

    docs = tmp_path / "docs"
    docs.mkdir()
    text_pdf(docs / "report.pdf")
    (docs / "note.txt").write_text(
        "青岚湖水质监测站共设有17个监测点位，这是文本文件。", encoding="utf-8"
    )
    settings = Settings(index_dir=str(tmp_path / "data" / "index"))
    report = ingest([docs], settings, embedder=embedder, progress=False, log=lambda m: None)
    assert report.count("added") == 2, report.results
    system = load_system(settings, embedder=embedder)
    library = Library(system, tmp_path / "data" / "uploads", tmp_path / "data" / "feedback.jsonl")

    answer = system.ask("青岚湖治理工程总投资多少？")
    by_doc = {c.doc_id: c for c in answer.citations}
    assert "report" in by_doc, answer.citations
    view, note = library.page_view(by_doc["report"])
    assert view is not None and view.page == 2 and view.boxes and note == ""
    text = system.index.document_text("note")
    plain = Citation(1, "c", "note", "note", "", None, 0, len(text), text)
    assert library.page_view(plain) == (None, "")  # a text file has no page

    # the file changed after it was indexed: its pages no longer match the citation
    pdf = docs / "report.pdf"
    original = pdf.read_bytes()
    pdf.write_bytes(original + b"\n% appended\n")
    assert hashlib.sha256(pdf.read_bytes()).hexdigest() != hashlib.sha256(original).hexdigest()
    assert library.page_view(by_doc["report"]) == (None, "原文件在入库后已更改，无法显示原页。")
    pdf.unlink()
    assert library.page_view(by_doc["report"]) == (None, "原文件已不在原处，无法显示原页。")
