"""Text and metadata out of each format: Markdown front matter, HTML, PDF and DOCX (with their expansion limits)."""

from __future__ import annotations

import html
import io
import logging
import re
import zipfile
from collections.abc import Iterator
from typing import Any

from rag.ingest.decode import _norm_newlines

log = logging.getLogger("rag.ingest.loaders")


# A DOCX may expand to this much (or 2x max_bytes, if larger) before we refuse it.
DOCX_EXPAND_LIMIT = 200 * 2**20


# Page content streams of a PDF may expand to this much (or PDF_EXPAND_RATIO times the
# file's size, if larger) in all. pypdf parses them at a few MB/s, and a 20 KB file can
# point every page at one 70 MB stream of blanks: minutes of CPU per page.
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
    return text, meta


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
    soup = BeautifulSoup(text, "lxml")
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
    in_pre = 0
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
            if name in blocks:
                parts.append("\n")
                stack.append(_END_BLOCK)
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
    return _join_lines("".join(parts)), meta


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


def _content_size(page: Any) -> int:
    """Decoded bytes of a page's content streams (what extract_text parses)."""
    obj = page.get("/Contents")
    obj = obj.get_object() if obj is not None else None
    parts = obj if isinstance(obj, list) else [obj]
    size = 0
    for part in parts:
        stream = part.get_object() if part is not None else None
        if hasattr(stream, "get_data"):
            size += len(stream.get_data())
    return size


def _pdf(data: bytes) -> tuple[str, dict]:
    """Page texts joined by a blank line; meta has title/author/date and page starts."""
    import pypdf

    if b"%PDF-" not in data[:1024]:
        raise _Unreadable("cannot read PDF: not a PDF file (no %PDF header)")
    # pypdf raises many exception types on damaged input (its own, ValueError,
    # KeyError, zlib.error, ...); any of them means the same thing to the user.
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception as e:
                raise _Unreadable(f"cannot read PDF: encrypted ({_short(e)})") from None
            if not ok:
                raise _Unreadable("cannot read PDF: encrypted (needs a password)")
        limit = max(PDF_EXPAND_LIMIT, PDF_EXPAND_RATIO * len(data))
        pages, expanded = [], 0
        for page in reader.pages:
            expanded += _content_size(page)
            if expanded > limit:
                raise _Unreadable(
                    f"PDF page content expands to over {_fmt_mb(limit)} MB (PDF bomb?)"
                )
            pages.append(_norm_newlines(page.extract_text() or "").strip())
        info = reader.metadata or {}
    except _Unreadable:
        raise
    except Exception as e:
        raise _Unreadable(f"cannot read PDF: {_short(e)}") from None
    if not any(pages):
        raise _Unreadable("PDF has no text layer (scanned?)")
    starts, pos = [], 0
    for p in pages:
        starts.append(pos)
        pos += len(p) + 2
    meta: dict[str, Any] = {"pages": len(pages), "page_starts": starts}
    for key, field in (("/Title", "title"), ("/Author", "author")):
        value = str(info.get(key) or "").strip()
        if value and value.lower() not in _PLACEHOLDERS:
            meta[field] = value
    date = _pdf_date(info.get("/CreationDate"))
    if date:
        meta["date"] = date
    return "\n\n".join(pages), meta


def _docx(data: bytes, max_bytes: int) -> tuple[str, dict]:
    """Paragraphs and table cells in document order, one per line; core properties."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        if data.startswith(b"\xd0\xcf\x11\xe0"):
            reason = "an old .doc or an encrypted file, not a DOCX (save it as .docx)"
        else:
            reason = "not a ZIP archive (damaged, truncated, or not a .docx)"
        raise _Unreadable(f"cannot read DOCX: {reason}") from None
    # Declared sizes bound what we read: `_bounded_copy` never inflates past them.
    expanded = sum(i.file_size for i in zf.infolist())
    limit = max(DOCX_EXPAND_LIMIT, 2 * max_bytes)
    if expanded > limit:
        raise _Unreadable(f"DOCX expands to {_fmt_mb(expanded)} MB (zip bomb?)")
    if "word/document.xml" not in zf.namelist():
        raise _Unreadable("cannot read DOCX: no word/document.xml (not a Word document)")

    import docx

    try:
        document = docx.Document(io.BytesIO(_bounded_copy(zf)))
        lines = list(_docx_lines(document))
        props = document.core_properties
        raw = {"title": props.title, "author": props.author, "date": props.created}
    except Exception as e:  # lxml/python-docx raise many types on damaged parts
        raise _Unreadable(f"cannot read DOCX: {_short(e)}") from None
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        if hasattr(value, "date"):
            if value.year == 2013 and value.month == 12 and value.day == 23:
                continue  # python-docx's template creation date, not the document's
            value = value.date().isoformat()
        value = str(value or "").strip()
        if value and value.lower() not in _PLACEHOLDERS:
            meta[key] = value
    return "\n".join(lines), meta


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


def _docx_lines(document: Any) -> Iterator[str]:
    from docx.table import Table

    def table_lines(table: Table, depth: int) -> Iterator[str]:
        seen: set[Any] = set()  # holds the <w:tc> elements, so their identity is stable
        for row in table.rows:
            for cell in row.cells:
                if cell._tc in seen:  # a merged cell repeats across its span
                    continue
                seen.add(cell._tc)
                for block in cell.iter_inner_content():
                    if isinstance(block, Table):
                        if depth < 8:
                            yield from table_lines(block, depth + 1)
                    elif block.text.strip():
                        yield block.text.strip()

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            yield from table_lines(block, 0)
        elif block.text.strip():
            yield block.text.strip()


class _Unreadable(Exception):
    """A parser's failure reason; load_file adds the path."""
