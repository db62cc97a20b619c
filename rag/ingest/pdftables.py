"""Ruled tables on PDF pages, read by pdfplumber as rows that carry their headers.

A table on a PDF page is, to a text extractor, a run of cell texts ("崂山区 156亿元
196"): nothing says which column a number is in. pdfplumber finds tables by
their ruling lines; each becomes rows in the format of rag.ingest.tables
("表2 各区投资计划｜区县：崂山区｜2023年计划投资：156亿元"), in its place among the
page's other lines, whose text no longer repeats the cells.

pdfplumber (pdfminer) parses a page about ten times slower than pypdf (and pypdf
about twenty times slower than pdfium), so it is run only on pages that may hold a
ruled table (drawn lines or rectangles, or forms that may draw them) and only up to
`TABLE_CONTENT_LIMIT` bytes of page content per file; the other pages keep pdfium's
text (rag.ingest.pdfium). It never sees a page the PDF expansion limits refused:
`rag.ingest.formats._pdf` calls it after they have been checked.
"""

from __future__ import annotations

import io
import logging
import re
from typing import Any

from rag.ingest.tables import row_lines, table_name

log = logging.getLogger("rag.ingest.loaders")

# Page content (decoded bytes) one file may have pdfplumber parse for tables: about
# 10 s of pdfminer. Pages beyond it are read as plain text, as before tables were read.
TABLE_CONTENT_LIMIT = 8 * 2**20

# A table needs a few ruling lines: `x y m x y l` segments or `x y w h re` rectangles.
# Bytes inside strings may match too; that only costs the time of looking.
_PATH_OP = re.compile(rb"(?<![^\s\])>])(?:re|l)(?=\s)")
_MIN_PATH_OPS = 4

_CJK = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f"
_CJK_GAP = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")


def may_hold_table(page: Any, content: bytes) -> bool:
    """Whether a pypdf page may draw a ruled table: enough line or rectangle operators in
    its content, or a form XObject (whose own content may draw one)."""
    ops = _PATH_OP.finditer(content)
    if sum(1 for _, _ in zip(ops, range(_MIN_PATH_OPS))) >= _MIN_PATH_OPS:
        return True
    try:
        xobjects = page["/Resources"]["/XObject"]
        return any(x.get_object().get("/Subtype") == "/Form" for x in xobjects.values())
    except Exception:  # no resources, no XObjects, or a damaged dictionary
        return False


def _join(text: str | None) -> str:
    """A cell's or line's text: wrapped lines joined, no blanks between two hanzi
    (pdfminer puts one wherever glyphs stand apart, as in justified Chinese text)."""
    return _CJK_GAP.sub("", text or "").replace("\n", " ").strip()


def _is_data(rows: list[list[str]]) -> bool:
    """Two or more rows of two or more filled cells: a table of data, not a frame."""
    return sum(sum(1 for c in row if c) >= 2 for row in rows) >= 2


def read_tables(data: bytes, pages: list[int]) -> dict[int, list[tuple[str, str | None]]]:
    """{page index: [(line, label)]} for each of `pages` (0-based) that holds a table.

    A page's lines are its text lines outside the tables and each table's rows, top to
    bottom; a row's label is "表2 第3行" (its table's, as `table_name` names it from the
    line above), other lines' None. Pages without tables, and any page pdfplumber cannot
    read (it is then logged), are left out: their pypdf text stands.
    """
    if not pages:
        return {}
    try:
        import pdfplumber
    except ImportError:
        log.warning("pdfplumber is not installed: PDF tables are read as plain text")
        return {}
    out: dict[int, list[tuple[str, str | None]]] = {}
    count = 0
    try:
        with pdfplumber.open(io.BytesIO(data), pages=[i + 1 for i in pages]) as pdf:
            for index, page in zip(pages, pdf.pages):
                try:
                    lines, count = _page_lines(page, count)
                except Exception as e:  # pdfminer raises many types on odd pages
                    log.warning("PDF page %d: tables not read (%r)", index + 1, e)
                    continue
                finally:
                    page.close()
                if lines is not None:
                    out[index] = lines
    except Exception as e:
        log.warning("PDF tables not read (%r); the pages are read as plain text", e)
    return out


def _page_lines(page: Any, count: int) -> tuple[list[tuple[str, str | None]] | None, int]:
    found = []
    for table in page.find_tables():
        rows = [[_join(cell) for cell in row] for row in table.extract()]
        if _is_data(rows):
            found.append((table.bbox, rows))
    if not found:
        return None, count
    boxes = [box for box, _ in found]

    def outside(obj: dict) -> bool:
        if obj.get("object_type") != "char":
            return True
        x, y = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
        return not any(x0 <= x <= x1 and top <= y <= bottom for x0, top, x1, bottom in boxes)

    text = page.filter(outside).extract_text_lines(return_chars=False)
    if any("(cid:" in ln["text"] for ln in text):
        return None, count  # glyphs pdfminer cannot map to text: pypdf's reading stands
    items: list[tuple[float, int, Any]] = [(ln["top"], 0, ln["text"]) for ln in text]
    items += [(box[1], 1, rows) for box, rows in found]
    items.sort(key=lambda item: (item[0], item[1]))
    lines: list[tuple[str, str | None]] = []
    before = ""
    for _, kind, value in items:
        if kind == 0:
            line = _join(value)
            if line:
                lines.append((line, None))
                before = line
            continue
        count += 1
        name, label = table_name(before, count)
        lines += [(line, f"{label} 第{n}行") for n, line in row_lines(value, name)]
        before = ""
    return lines, count
