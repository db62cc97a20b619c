"""Tables as data: every row one line that carries its column headers and its table's name.

"表2 各区投资计划｜区县：崂山区｜2023年计划投资：156亿元" is found by a question about one
cell (the headers and the caption are in the row's own words) and quoted whole, so the
answer shows the value with what it is. Rows are never split across lines; the chunker
keeps whole lines together, so a chunk holds whole rows.

Used for DOCX tables (merged cells repeated into each cell they span, nested tables as
tables of their own), spreadsheets (.xlsx, every sheet, cached formula values, dates as
dates) and .csv/.tsv files. Each row's start in the text is recorded with a location
label ("工作表“预算” 第12行", "表2 第5行") for citations.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from rag.ingest.decode import _norm_newlines, decode_bytes
from rag.ingest.headings import SECTION

CELL_SEP = "｜"
MAX_CELL_CHARS = 500  # one cell of a spreadsheet can hold a page: keep rows searchable
_SPACE = re.compile(r"\s+")


class Cell(NamedTuple):
    """One "header：value" cell of a row line, with its offsets in the line."""

    header: str
    value: str
    start: int
    end: int


# normalised text (rag.textnorm.norm) writes the separators half-width
_CELL_SPLIT = re.compile(r"[｜|]")
_HEADER_SEP = re.compile(r"[：:]")


def row_cells(line: str) -> list[Cell]:
    """The "header：value" cells of a row line as `row_lines` writes it (original or
    normalised text); the caption and cells without a header are not among them."""
    out = []
    start = 0
    for m in [*_CELL_SPLIT.finditer(line), None]:
        end = m.start() if m else len(line)
        part = line[start:end]
        sep = _HEADER_SEP.search(part)
        header = part[: sep.start()].strip() if sep else ""
        if _is_header(header) and part[sep.end() :].strip():
            out.append(Cell(header, part[sep.end() :].strip(), start, end))
        start = end + 1
    return out


def _is_header(text: str) -> bool:
    """A column header is a label: short, no sentence in it ("会议指出：" is prose)."""
    return 0 < len(text) <= MAX_HEADER_CHARS and not _SENTENCE_MARK.search(text)


MAX_HEADER_CHARS = 40
_SENTENCE_MARK = re.compile(r"[。！？!?；;]")


def is_row(line: str) -> bool:
    """A line that is a table row ("表2｜区县：崂山区｜项目数：196"): a unit, quoted and
    chunked whole, never split between a header and its value.

    Most of its `CELL_SEP`-separated parts are "header：value" cells (the caption and
    cells named by their own value are not), so prose with a stray ｜ stays prose.
    """
    if CELL_SEP not in line:
        return False
    parts = line.count(CELL_SEP) + 1
    return 2 * len(row_cells(line)) >= parts - 1


def cell_text(value: Any) -> str:
    """A cell as text: dates as ISO dates, whole floats without ".0", blanks collapsed."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value.date() if value.time() == dt.time() else value.replace(microsecond=0)
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.10g}"
    text = _SPACE.sub(" ", str(value)).strip()
    return text[:MAX_CELL_CHARS] + ("……" if len(text) > MAX_CELL_CHARS else "")


def _looks_like_header(row: Sequence[str]) -> bool:
    """A header row: at least one filled cell, none of them a bare number."""
    filled = [c for c in row if c]
    return bool(filled) and not any(re.fullmatch(r"[\d.,%\-+ ]+", c) for c in filled)


def row_lines(
    rows: Iterable[Sequence[Any]], caption: str, first_row: int = 1
) -> Iterator[tuple[int, str]]:
    """(row number, line) for each data row of a table; the first non-empty row is the
    header when it looks like one (no bare numbers), else columns are named 列1, 列2 ...

    A row's line is the caption, then "header：value" for each filled cell, joined by
    `CELL_SEP`. Empty rows are skipped; row numbers are the table's own (1-based, from
    `first_row`), so a citation can say which row.
    """
    header: list[str] | None = None
    for n, raw in enumerate(rows, start=first_row):
        cells = [cell_text(v) for v in raw]
        if not any(cells):
            continue
        if header is None:
            if _looks_like_header(cells):
                header = cells
                continue
            header = []
        parts = [caption] if caption else []
        for i, value in enumerate(cells):
            if not value:
                continue
            name = header[i] if i < len(header) and header[i] else f"列{i + 1}"
            parts.append(value if name == value else f"{name}：{value}")
        if len(parts) > (1 if caption else 0):
            yield n, CELL_SEP.join(parts)


# A caption: "表2 各区投资计划", "附表1", "Table 3", or a title that ends in 表
# ("各区投资计划表"), but not a sentence that points at one ("详见下表")
_CAPTION = re.compile(r"^(?:表|附表|table)\s*[\d一二三四五六七八九十]+", re.IGNORECASE)
_NAMES_A_TABLE = re.compile(r"(?<![下上如见附])表$")


def table_name(before: str, n: int) -> tuple[str, str]:
    """(name, label) of the table numbered `n` whose preceding line is `before`.

    The name starts each row ("表2 各区投资计划"); the label names it in locations
    ("表2"). `before` is the name when it is a caption: a short line that starts with
    "表N"/"附表N" or ends in 表 ("各区投资计划表"). Otherwise the table is "表N".
    """
    before = before.strip()
    if len(before) <= 60 and (_CAPTION.match(before) or _NAMES_A_TABLE.search(before)):
        return before, before.split()[0] if _CAPTION.match(before) else before
    return f"表{n}", f"表{n}"


class TextBuilder:
    """Lines joined by newlines, with the offset of chosen lines recorded as locations."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.pos = 0
        self.locations: list[list[Any]] = []  # [offset, label] or [offset, path, "section"]

    def add(self, line: str, label: str | None = None, section: bool = False) -> None:
        """Append `line`; a location starts here when its `label` differs from the last
        (a heading path when `section`: rag.ingest.headings)."""
        line = line.strip()
        if not line:
            return
        if label is not None and (not self.locations or self.locations[-1][1] != label):
            self.locations.append([self.pos, label, SECTION] if section else [self.pos, label])
        self.lines.append(line)
        self.pos += len(line) + 1

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


# ------------------------------------------------------------------ spreadsheets
def xlsx(data: bytes) -> tuple[str, dict]:
    """Every sheet's rows (cached values of formulas; dates as dates)."""
    import openpyxl

    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    out = TextBuilder()
    try:
        sheets = []
        for ws in wb.worksheets:
            sheets.append(ws.title)
            caption = f"工作表“{ws.title}”"
            for n, line in row_lines(ws.iter_rows(values_only=True), caption):
                out.add(line, f"{caption} 第{n}行")
        props = wb.properties
        meta: dict[str, Any] = {"sheets": sheets, "locations": out.locations}
        if props is not None:
            if props.title:
                meta["title"] = str(props.title).strip()
            if props.creator:
                meta["author"] = str(props.creator).strip()
    finally:
        wb.close()
    return out.text, meta


def delimited(data: bytes, name: str, tab: bool) -> tuple[str, str, dict]:
    """A .csv or .tsv file's rows: (text, encoding, meta); the encoding is detected as for
    text files (UTF-8, GB18030, Big5 ...)."""
    text, encoding = decode_bytes(data, name=name)
    text = _norm_newlines(text).lstrip("\ufeff")
    if tab:
        dialect: Any = csv.excel_tab
    else:
        try:
            dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|，")
        except csv.Error:
            dialect = csv.excel
    rows = csv.reader(io.StringIO(text), dialect)
    out = TextBuilder()
    for n, line in row_lines(rows, ""):
        out.add(line, f"第{n}行")
    return out.text, encoding, {"locations": out.locations}
