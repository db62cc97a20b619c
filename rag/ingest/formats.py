"""Text and metadata out of each format: Markdown front matter, HTML, PDF and DOCX (with their expansion limits)."""

from __future__ import annotations

import html
import io
import logging
import re
import zipfile
from typing import Any

from rag.ingest.decode import _norm_newlines
from rag.ingest.headings import SEP, HeadingPath, heading_locations
from rag.ingest.pdftables import TABLE_CONTENT_LIMIT, may_hold_table, read_tables
from rag.ingest.tables import TextBuilder, row_lines, table_name

log = logging.getLogger("rag.ingest.loaders")


# A DOCX may expand to this much (or 2x max_bytes, if larger) before we refuse it.
DOCX_EXPAND_LIMIT = 200 * 2**20


# Page content streams of a PDF may expand to this much (or PDF_EXPAND_RATIO times the
# file's size, if larger) in all, checked (by pypdf's decoding) before pdfium reads the
# text or pdfplumber the tables: a 20 KB file can point every page at one 70 MB stream
# of blanks, minutes of CPU per page for a parser.
PDF_EXPAND_LIMIT = 32 * 2**20


PDF_EXPAND_RATIO = 20


def _fmt_mb(n: float) -> str:
    mb = n / 2**20
    return f"{mb:.0f}" if mb >= 100 else f"{mb:.3g}"


def _short(exc: BaseException, limit: int = 120) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    s = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _first_line(text: str) -> str:
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)


# Values and headings are trimmed in Python, not by the pattern: `(.*?)[ \t]*$` and
# `(.+?)(?:[ \t]+#+)?[ \t]*$` backtrack quadratically over a long run of blanks, so a
# 64 KB first line took minutes.
_FM_LINE = re.compile(r"^([A-Za-z_][\w\-]*)[ \t]*:(.*)$")


_MD_HEADING = re.compile(r"^#{1,6}[ \t]+(\S.*)$")


def _heading_title(line: str) -> str | None:
    """The text of an ATX heading line ("## Title ##" -> "Title"), or None."""
    m = _MD_HEADING.match(line)
    if not m:
        return None
    title = m.group(1).rstrip(" \t")
    bare = title.rstrip("#")
    if bare != title and bare[-1:] in (" ", "\t"):  # a closing run of #s
        title = bare.rstrip(" \t")
    return title


def _markdown(text: str) -> tuple[str, dict]:
    """Split simple `key: value` front matter off; a leading `# Heading` is the title."""
    meta: dict[str, Any] = {}
    m = _FRONT_MATTER.match(text)
    if m:
        for line in m.group(1).split("\n"):
            kv = _FM_LINE.match(line)
            if not kv:
                continue  # nested YAML, lists, comments: out of scope
            key, value = kv.group(1).lower(), kv.group(2).strip(" \t")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            if value:
                meta[key] = value
        text = text[m.end() :].lstrip("\n")
    heading = _heading_title(_first_line(text))
    if heading and not meta.get("title"):
        meta["title"] = heading
    sections = heading_locations(_md_headings(text))
    if sections:
        meta["locations"] = sections
    return text, meta


def _md_headings(text: str) -> list[tuple[int, int, str]]:
    """(offset, level, text) of each ATX heading outside fenced code blocks."""
    out = []
    fence = ""
    pos = 0
    for line in text.split("\n"):
        mark = line.lstrip()[:3]
        if mark in ("```", "~~~"):
            fence = "" if fence == mark else fence or mark
        elif not fence and line.startswith("#"):
            title = _heading_title(line)
            if title:
                out.append((pos, len(line) - len(line.lstrip("#")), title))
        pos += len(line) + 1
    return out


_DROP_TAGS = ["script", "style", "noscript", "template", "svg", "title", "iframe", "object"]


_BLOCK_TAGS = [
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd",
    "details", "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer",
    "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "li",
    "main", "menu", "nav", "ol", "option", "p", "pre", "section", "summary", "table",
    "tbody", "tfoot", "thead", "tr", "ul", "legend",
]  # fmt: skip


_HTML_META = {
    "author": "author",
    "article:author": "author",
    "date": "date",
    "pubdate": "date",
    "publishdate": "date",
    "article:published_time": "date",
    "og:site_name": "source_name",
    "og:title": "title",
    "description": "description",
}


_INLINE_WS = re.compile(r"[ \t\n\r\f\xa0]+")


def _html(text: str) -> tuple[str, dict]:
    """Visible text of an HTML page, one line per block element, plus <title>/<meta>."""
    try:
        return _html_soup(text)
    except RecursionError:
        log.warning("HTML too deeply nested for the parser; stripping tags instead")
        return _html_regex(text), {}


_END_BLOCK = object()


_END_PRE = object()


def _html_soup(text: str) -> tuple[str, dict]:
    from bs4 import BeautifulSoup, NavigableString, Tag
    from bs4.element import PreformattedString

    # lxml (always installed: python-docx needs it), not "html.parser": on Python before
    # 3.11.13 the latter is quadratic on unclosed constructs ("<!--" * 16000: 6 s).
    soup = BeautifulSoup(text.replace("\0", ""), "lxml")  # NUL marks headings below
    meta: dict[str, Any] = {}
    for tag in soup.find_all("meta"):
        key = str(tag.get("name") or tag.get("property") or tag.get("itemprop") or "").lower()
        field = _HTML_META.get(key)
        content = str(tag.get("content") or "").strip()
        if field and content and field not in meta:
            meta[field] = content
    if soup.title and soup.title.get_text(strip=True):
        meta["title"] = _INLINE_WS.sub(" ", soup.title.get_text()).strip()

    # Depth-first walk with an explicit stack (deep nesting cannot overflow), pushing an
    # end marker after each block's children so the block ends its line. The tree is
    # not modified: inserting markers into it costs O(subtree) per insert in bs4.
    drop, blocks = set(_DROP_TAGS), set(_BLOCK_TAGS)
    parts: list[str] = []
    in_pre, tables = 0, 0
    headings: list[tuple[int, str]] = []  # (level, text); "\0k\0" in parts marks heading k
    stack: list[Any] = [soup]
    while stack:
        node = stack.pop()
        if node is _END_BLOCK:
            parts.append("\n")
        elif node is _END_PRE:
            in_pre -= 1
        elif isinstance(node, Tag):
            name = node.name
            if name in drop:
                continue
            if name == "br":
                parts.append("\n")
                continue
            if name == "table" and _is_data_table(node):
                tables += 1
                parts.append("\n" + "\n".join(_html_table_lines(node, tables)) + "\n")
                continue
            if name in blocks:
                parts.append("\n")
                stack.append(_END_BLOCK)
                if name in _HEADING_TAGS:
                    title = _INLINE_WS.sub(" ", node.get_text()).strip()
                    if title:
                        parts.append(f"\0{len(headings)}\0")
                        headings.append((int(name[1]), title))
            elif name in ("td", "th"):
                parts.append(" ")
            if name == "pre":
                in_pre += 1
                stack.append(_END_PRE)
            stack.extend(reversed(node.contents))
        elif isinstance(node, PreformattedString):
            continue  # comments, CDATA, doctype, processing instructions
        elif isinstance(node, NavigableString):
            parts.append(str(node).replace("\xa0", " ") if in_pre else _INLINE_WS.sub(" ", node))
    if not headings:
        return _join_lines("".join(parts)), meta
    body, marks = _join_marked("".join(parts))
    sections = heading_locations((at, *headings[k]) for at, k in marks)
    if sections:
        meta["locations"] = sections
    return body, meta


_HEADING_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_MARK = re.compile(r"\0(\d+)\0")


def _join_marked(text: str) -> tuple[str, list[tuple[int, int]]]:
    """`_join_lines` of text whose heading lines carry "\0k\0" marks: the text without
    them, and (offset of the line, k) for each marked line."""
    lines, marks, pos = [], [], 0
    for line in text.split("\n"):
        found = _MARK.search(line)
        if found:
            line = _MARK.sub("", line)
        line = line.strip()
        if not line:
            continue
        if found:
            marks.append((pos, int(found[1])))
        lines.append(line)
        pos += len(line) + 1
    return "\n".join(lines), marks


def _rows_of(table: Any) -> list[Any]:
    """The table's own rows (not those of tables nested in its cells)."""
    return [tr for tr in table.find_all("tr") if tr.find_parent("table") is table]


def _is_data_table(table: Any) -> bool:
    """A table of data (two or more rows of two or more cells), not a layout table that
    holds a page's blocks: those are read as ordinary text."""
    rows = _rows_of(table)
    if len(rows) < 2 or table.find("table") is not None:
        return False
    cells = [tr.find_all(["td", "th"], recursive=False) for tr in rows]
    return sum(len(c) >= 2 for c in cells) >= 2


def _html_table_lines(table: Any, n: int) -> list[str]:
    caption = table.find("caption")
    name = _INLINE_WS.sub(" ", caption.get_text(" ")).strip() if caption else ""
    rows = []
    for tr in _rows_of(table):
        row = []
        for cell in tr.find_all(["td", "th"], recursive=False):
            text = _INLINE_WS.sub(" ", cell.get_text(" ")).strip()
            span = int(cell.get("colspan") or 1) if str(cell.get("colspan") or "1").isdigit() else 1
            row += [text] * max(1, min(span, 50))  # a spanned cell's value in each column
        rows.append(row)
    return [line for _, line in row_lines(rows, name or f"表{n}")]


_RE_DROP = re.compile(
    r"<(script|style|noscript|template|svg|title)\b.*?</\1\s*>|<!--.*?-->", re.S | re.I
)


_RE_BLOCK = re.compile(r"</?(?:" + "|".join(_BLOCK_TAGS) + r"|br)\b[^>]*>", re.I)


_RE_TAG = re.compile(r"<[^>]*>")


def _html_regex(text: str) -> str:
    """Last-resort tag stripper for HTML the parser cannot handle."""
    text = _RE_DROP.sub(" ", text)
    text = _RE_BLOCK.sub("\n", text)
    text = _RE_TAG.sub("", text)
    lines = (_INLINE_WS.sub(" ", html.unescape(line)) for line in text.split("\n"))
    return _join_lines("\n".join(lines))


def _join_lines(text: str) -> str:
    return "\n".join(line.strip() for line in text.split("\n") if line.strip())


_PDF_DATE = re.compile(r"^(?:D:)?(\d{4})(\d{2})?(\d{2})?")


# Placeholders that reportlab and python-docx write when the author sets nothing.
_PLACEHOLDERS = {"untitled", "anonymous", "unspecified", "python-docx", "unknown"}


def _pdf_date(value: object) -> str | None:
    m = _PDF_DATE.match(str(value or "").strip())
    if not m:
        return None
    return "-".join(g for g in m.groups() if g)


def _content(page: Any) -> bytes:
    """A page's content streams, decoded (what extract_text parses)."""
    obj = page.get("/Contents")
    obj = obj.get_object() if obj is not None else None
    parts = obj if isinstance(obj, list) else [obj]
    out = []
    for part in parts:
        stream = part.get_object() if part is not None else None
        if hasattr(stream, "get_data"):
            out.append(stream.get_data())
    return b"".join(out)


_PDF_DAMAGED = "文件已损坏，无法读取 PDF：请用 PDF 阅读器打开后另存或重新导出，再上传"


def _pdf(data: bytes, ocr: bool = True) -> tuple[str, dict]:
    """Page texts joined by a blank line; ruled tables as rows with their headers
    (rag.ingest.pdftables); pages without a text layer are read by OCR (rag.ingest.ocr).
    Meta has title/author/date, a location per page ("第N页", a table row's "第N页 表2
    第3行") and, for OCR'd pages, each line's confidence and box.

    pypdf opens the file (encryption, metadata) and decodes each page's content for the
    expansion limits and the table test; pdfium then extracts the text (rag.ingest.pdfium:
    the same text as pypdf's `extract_text`, about 20 times faster)."""
    import pypdf

    from rag.ingest.pdfium import page_texts

    if b"%PDF-" not in data[:1024]:
        raise _Unreadable(
            "不是 PDF 文件（文件开头没有 %PDF 标记）：文件可能已损坏，或扩展名与内容不符"
        )
    # pypdf raises many exception types on damaged input (its own, ValueError,
    # KeyError, zlib.error, ...); any of them means the same thing to the user.
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception as e:
                raise _Unreadable(
                    f"PDF 已加密，无法打开：请先去掉密码再上传（{_short(e)}）"
                ) from None
            if not ok:
                raise _Unreadable("PDF 已加密，需要密码：请先去掉密码再上传")
        limit = max(PDF_EXPAND_LIMIT, PDF_EXPAND_RATIO * len(data))
        expanded, sizes, ruled = 0, [], []
        for page in reader.pages:
            content = _content(page)
            expanded += len(content)
            if expanded > limit:
                raise _Unreadable(
                    f"PDF 页面内容解压后超过 {_fmt_mb(limit)} MB（可能是恶意构造的文件）："
                    "请确认文件来源，或拆分成较小的文件后再导入"
                )
            sizes.append(len(content))
            ruled.append(may_hold_table(page, content))
            del content
        info = reader.metadata or {}
        texts = page_texts(data)
        # pages pdfium cannot find (a damaged page tree both parsers repair their own
        # way) are taken as pages without text: OCR tries to draw them
        texts = (texts + [""] * len(sizes))[: len(sizes)]
        pages = [_norm_newlines(t).strip() for t in texts]
    except _Unreadable:
        raise
    except Exception as e:
        raise _Unreadable(f"{_PDF_DAMAGED}（{_short(e)}）") from None
    scanned = [i for i, p in enumerate(pages) if len(p) < MIN_PAGE_TEXT]
    if scanned and not ocr and not any(pages):
        raise _Unreadable(
            "PDF 没有文字层（可能是扫描件），而 OCR 已关闭：请在设置中打开 OCR（ocr = true）"
            "后重新导入"
        )
    tables = read_tables(data, _table_pages(pages, sizes, ruled, set(scanned)))
    ocr_pages: dict[int, str] = {}
    ocr_lines: list[list] = []
    starts, locations, pos = [], [], 0
    for i, p in enumerate(pages):
        if ocr and i in scanned:
            log.info("OCR: page %d of %d", i + 1, len(pages))
            text, records = _ocr_pdf_page(data, i, pos)
            if len(text) > len(p):
                pages[i] = p = text
                ocr_pages[i] = text
                ocr_lines += records
        starts.append(pos)
        if i in tables:
            page = TextBuilder()
            for line, label in tables[i]:
                page.add(line, f"第{i + 1}页 {label}" if label else f"第{i + 1}页")
            pages[i] = p = page.text
            locations += [[pos + at, label] for at, label in page.locations]
        elif p:
            locations.append([pos, f"第{i + 1}页"])
        pos += len(p) + 2
    if not any(pages):
        raise _Unreadable(
            "PDF 没有文字层，扫描件经 OCR 后也没有识别出文字（可能是空白页）："
            "请确认扫描清晰后重新上传"
        )
    meta: dict[str, Any] = {"pages": len(pages), "page_starts": starts, "locations": locations}
    if ocr_pages:
        meta["ocr"] = _ocr_meta(sorted(ocr_pages), ocr_lines)
    for key, field in (("/Title", "title"), ("/Author", "author")):
        value = str(info.get(key) or "").strip()
        if value and value.lower() not in _PLACEHOLDERS:
            meta[field] = value
    date = _pdf_date(info.get("/CreationDate"))
    if date:
        meta["date"] = date
    return "\n\n".join(pages), meta


def _table_pages(
    pages: list[str], sizes: list[int], ruled: list[bool], scanned: set[int]
) -> list[int]:
    """The pages pdfplumber looks for tables on: those with a text layer that may draw a
    ruled table, while their content totals at most TABLE_CONTENT_LIMIT."""
    chosen, budget = [], TABLE_CONTENT_LIMIT
    for i, (size, maybe) in enumerate(zip(sizes, ruled)):
        if i in scanned or not maybe:
            continue
        if size > budget:
            log.warning(
                "PDF tables: pages from %d on are read as plain text (over %s MB of content)",
                i + 1,
                _fmt_mb(TABLE_CONTENT_LIMIT),
            )
            break
        budget -= size
        chosen.append(i)
    return chosen


MIN_PAGE_TEXT = 20  # a page with fewer extracted characters is a scan (or a picture)


MAX_IMAGE_PIXELS = 80_000_000  # 80 megapixels: a 300 dpi scan of an A0 sheet


def _ocr_pdf_page(data: bytes, index: int, offset: int) -> tuple[str, list[list]]:
    from rag.ingest.ocr import OcrUnavailable, blank, page_text, read_image, render_pdf_page

    try:
        image = render_pdf_page(data, index)
    except OcrUnavailable as e:
        raise _Unreadable(
            f"PDF 第 {index + 1} 页是扫描件，需要 OCR 识别文字，而本机没有安装 OCR 组件："
            f"请管理员安装后重新导入（{e}）"
        ) from None
    except Exception as e:  # pdfium cannot draw a damaged page: it keeps its text layer
        log.warning("OCR: page %d could not be rendered (%s)", index + 1, _short(e))
        return "", []
    if blank(image):  # an empty page: nothing to read, and no seconds spent on it
        return "", []
    lines, _ = read_image(image)
    return page_text(lines, index + 1, offset)


def _ocr_meta(pages: list[int], lines: list[list]) -> dict[str, Any]:
    conf = [rec[3] for rec in lines]
    return {
        "pages": [p + 1 for p in pages],
        "confidence": round(sum(conf) / len(conf), 3) if conf else None,
        "lines": lines,  # [page, start, end, confidence, x0, y0, x1, y1]
    }


def _image(data: bytes) -> tuple[str, dict]:
    """An image of text (a scanned notice, a photo of a page), read by OCR."""
    from PIL import Image, UnidentifiedImageError

    from rag.ingest.ocr import OcrUnavailable, page_text, read_image

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise _Unreadable(
            f"图片已损坏或不是图片，无法读取：请重新导出图片后再上传（{_short(e)}）"
        ) from None
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise _Unreadable(
            f"图片过大（{image.width}×{image.height} 像素，"
            f"上限 {MAX_IMAGE_PIXELS // 10**4} 万像素）：请缩小或裁切后再上传"
        )
    try:
        lines, _ = read_image(image)
    except OcrUnavailable as e:
        raise _Unreadable(
            f"识别图片中的文字需要 OCR，而本机没有安装 OCR 组件：请管理员安装后重新导入（{e}）"
        ) from None
    text, records = page_text(lines, 1)
    if not text.strip():
        raise _Unreadable("图片经 OCR 后没有识别出文字：请确认图片清晰、含有文字")
    return text, {"locations": [[0, "图片"]], "ocr": _ocr_meta([0], records)}


def _docx(data: bytes, max_bytes: int) -> tuple[str, dict]:
    """Paragraphs and table cells in document order, one per line; core properties."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        if data.startswith(b"\xd0\xcf\x11\xe0"):
            reason = (
                "这是旧版 .doc 或已加密的文件，不是 DOCX：请去掉密码，或在 Word/WPS 中另存为 .docx"
            )
        else:
            reason = (
                "DOCX 文件已损坏或不完整（不是 ZIP 压缩包），无法读取："
                "请重新保存后再上传，并确认扩展名与文件类型一致"
            )
        raise _Unreadable(reason) from None
    # Declared sizes bound what we read: `_bounded_copy` never inflates past them.
    expanded = sum(i.file_size for i in zf.infolist())
    limit = max(DOCX_EXPAND_LIMIT, 2 * max_bytes)
    if expanded > limit:
        raise _Unreadable(
            f"DOCX 解压后达 {_fmt_mb(expanded)} MB（可能是恶意构造的压缩包）：请确认文件来源，"
            "或在 Word/WPS 中打开后重新保存"
        )
    if "word/document.xml" not in zf.namelist():
        raise _Unreadable(
            "不是 Word 文档（缺少正文 word/document.xml），无法读取 DOCX：请确认扩展名与文件类型一致"
        )

    import docx

    try:
        document = docx.Document(io.BytesIO(_bounded_copy(zf)))
        body = _docx_text(document)
        props = document.core_properties
        raw = {"title": props.title, "author": props.author, "date": props.created}
    except Exception as e:  # lxml/python-docx raise many types on damaged parts
        raise _Unreadable(
            f"文件已损坏，无法读取 DOCX：请在 Word/WPS 中打开后重新保存（{_short(e)}）"
        ) from None
    meta: dict[str, Any] = {}
    if any(loc[1] for loc in body.locations):  # not only "" (no headings, no tables)
        meta["locations"] = body.locations
    for key, value in raw.items():
        if hasattr(value, "date"):
            if value.year == 2013 and value.month == 12 and value.day == 23:
                continue  # python-docx's template creation date, not the document's
            value = value.date().isoformat()
        value = str(value or "").strip()
        if value and value.lower() not in _PLACEHOLDERS:
            meta[key] = value
    return body.text, meta


def _bounded_copy(zf: zipfile.ZipFile) -> bytes:
    """The archive rebuilt, uncompressed, from members read 1 MB at a time.

    python-docx reads each member in one call, and zipfile then inflates all of the
    member's data before cutting it to the declared size: a 1.4 MB file that claims
    4 KB for a member holding 300 MB took 600 MB of memory. Read in steps, a member
    never yields more than its declared size (a lie then fails its CRC check).
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as dst:
        for info in zf.infolist():
            if info.is_dir():
                continue
            with zf.open(info) as src, dst.open(info.filename, "w", force_zip64=True) as w:
                while block := src.read(2**20):
                    w.write(block)
    return out.getvalue()


_DOCX_HEADING = re.compile(r"(?:heading|标题)\s*([1-9])", re.IGNORECASE)


def _docx_style_names(document: Any) -> dict[str, str]:
    """Each paragraph style's id and name, read once: `paragraph.style` looks its id up
    in the styles part on every call, 92% of loading a long document."""
    try:
        return {s.style_id: (s.name or "").strip() for s in document.styles if s.style_id}
    except Exception:  # a damaged styles part: no headings, the text still loads
        return {}


def _docx_level(paragraph: Any, names: dict[str, str]) -> int | None:
    """A paragraph's heading level: 1-9 for Heading 1-9 (标题 1-9), 0 for Title (标题)."""
    style_id = paragraph._p.style  # None: the default paragraph style, never a heading
    name = names.get(style_id, "") if style_id else ""  # an undefined id: no heading
    if name.lower() in ("title", "标题"):
        return 0
    m = _DOCX_HEADING.fullmatch(name)
    return int(m[1]) if m else None


def _docx_text(document: Any) -> TextBuilder:
    """Paragraphs in document order, one per line, located by the headings above them
    (rag.ingest.headings); each table as rows that carry their headers and the table's
    caption (rag.ingest.tables), located as "表N 第R行" under its section's path."""
    from docx.table import Table

    out = TextBuilder()
    count = 0
    names = _docx_style_names(document)
    blocks: list[tuple[Any, str, int | None]] = []  # (table, "", None) or (paragraph, text, level)
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            blocks.append((block, "", None))
        elif text := block.text.strip():
            blocks.append((block, text, _docx_level(block, names)))
    path = HeadingPath([level for _, _, level in blocks if level is not None])

    def table(t: Table, before: str, depth: int) -> None:
        nonlocal count
        count += 1
        name, label = table_name(before, count)
        nested = []
        rows = []
        for row in t.rows:
            cells = row.cells  # a merged cell repeats across its span: its value in each
            rows.append([c.text for c in cells])
            nested += [inner for c in cells for inner in c.tables]
        where = f"{path.path}{SEP}{label}" if path.path else label
        for n, line in row_lines(rows, name):
            out.add(line, f"{where} 第{n}行")
        if depth < 8:
            for inner in dict.fromkeys(nested):  # a merged cell lists its tables once
                table(inner, "", depth + 1)

    previous = ""
    for block, text, level in blocks:
        if isinstance(block, Table):
            table(block, previous, 0)
            previous = ""
            continue
        previous = text
        if level is not None:
            path.enter(level, previous)
        out.add(previous, path.path, section=True)
    return out


class _Unreadable(Exception):
    """A parser's failure reason; load_file adds the path."""
