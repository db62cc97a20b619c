"""PDF text comes from pdfium (rag/ingest/pdfium.py); pypdf, which read it before and
still opens the file, is the reference: the same characters in the same order, page by
page, but for blanks at the ends of lines and runs of blanks. PDFs are made here with
reportlab (a CID font, and the TrueType font the formats benchmark embeds)."""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_loaders import make_pdf

from rag.ingest.loaders import load_file
from rag.ingest.pdfium import page_texts

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
PAGES = [
    "青岛市城市更新工作方案\n一、总体要求   坚持规划引领\n崂山区计划投资156亿元，项目196个。",
    "第二页：嶗山區動員大會 2023\nIT之家 8 月 11 日消息，南纬 75°、西经 135°。\n第16届中国-\n南亚商务论坛",
    "",  # a page without text
    "附件：2024年全市计划改造老旧小区350个，涉及居民4.2万户。",
]


def _pypdf_pages(path: Path) -> list[str]:
    import pypdf

    return [p.extract_text() or "" for p in pypdf.PdfReader(io.BytesIO(path.read_bytes())).pages]


def _same_but_blanks(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = (re.sub(r"[ \t\u3000]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(lines).strip()


def _assert_as_pypdf_reads_it(pdf: Path) -> None:
    ours = page_texts(pdf.read_bytes())
    theirs = _pypdf_pages(pdf)
    assert len(ours) == len(theirs)
    for n, (a, b) in enumerate(zip(ours, theirs), start=1):
        assert _same_but_blanks(a) == _same_but_blanks(b), f"page {n}"


def test_pages_in_a_cid_font_read_as_pypdf_reads_them(tmp_path):
    pdf = make_pdf(tmp_path / "plan.pdf", PAGES, title="工作方案")
    _assert_as_pypdf_reads_it(pdf)
    [doc] = load_file(pdf)
    pages = doc.text.split("\n\n")
    assert pages[0] == "青岛市城市更新工作方案\n一、总体要求 坚持规划引领\n崂山区计划投资156亿元，项目196个。"  # fmt: skip
    assert pages[-1] == PAGES[-1]
    starts = doc.meta.get("page_starts")
    assert [loc for _, loc in doc.meta.get("locations")] == ["第1页", "第2页", "第4页"]
    assert doc.text[starts[3] :].startswith("附件：")


@pytest.mark.skipif(not FONT.is_file(), reason="fonts-wqy-microhei is not installed")
def test_the_benchmark_pdf_reads_as_pypdf_reads_it(tmp_path):
    from rag.eval.bench.formats import make_pdf as bench_pdf

    text = "".join(PAGES).replace("\n", "") * 40  # 38 characters a line, 48 a page, numbered
    arts = [SimpleNamespace(text=text), SimpleNamespace(text="原标题：" + text[::-1])]
    pdf = bench_pdf(tmp_path / "news.pdf", arts)
    _assert_as_pypdf_reads_it(pdf)
    assert len(page_texts(pdf.read_bytes())) > 3


def test_pdfium_is_used_by_one_thread_at_a_time(tmp_path):
    """PDFium is not thread-safe: the UI reads uploads and draws cited pages in threads."""
    from rag.ingest.ocr import render_pdf_page

    pdf = make_pdf(tmp_path / "plan.pdf", PAGES).read_bytes()
    want = page_texts(pdf)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(5):
                assert page_texts(pdf) == want
                assert render_pdf_page(pdf, i % len(PAGES), dpi=50).size[0] > 0
        except BaseException as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
