"""Load files of many formats into plain text, detecting and recording the encoding.

The first stage of the pipeline: `discover` lists the files under the paths a user
gives, `load_file` turns one file into `Document`s (one per file, or one per record for
JSON lines). Nothing is cleaned or chunked here; every failure is a `LoadError` that
names the file and the reason, so ingestion can report it and go on with the rest.

Chinese text files are often not UTF-8: `decode_bytes` tries byte-order marks, UTF-16
without a BOM (only when there are NUL bytes), strict UTF-8, then GB18030 and Big5,
choosing between the last two by which result reads like Chinese (both codecs accept
many of the same byte strings, and charset-normalizer often guesses wrong on short
Chinese text).
"""

from __future__ import annotations

import codecs
import fnmatch
import functools
import hashlib
import html
import io
import json
import logging
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rag.errors import LoadError
from rag.types import DocMeta, Document

log = logging.getLogger("rag.ingest.loaders")

SUPPORTED = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".jsonl"}

_FORMATS = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".jsonl": "jsonl",
}
SIDECAR_SUFFIX = ".meta.json"
MAX_TITLE_CHARS = 60
# A DOCX may expand to this much (or 2x max_bytes, if larger) before we refuse it.
DOCX_EXPAND_LIMIT = 200 * 2**20
# Page content streams of a PDF may expand to this much (or PDF_EXPAND_RATIO times the
# file's size, if larger) in all. pypdf parses them at a few MB/s, and a 20 KB file can
# point every page at one 70 MB stream of blanks: minutes of CPU per page.
PDF_EXPAND_LIMIT = 32 * 2**20
PDF_EXPAND_RATIO = 20
_UNDECODABLE = "cannot decode as UTF-8/UTF-16/GB18030/Big5"


# --------------------------------------------------------------------------- discovery


def _skipped_name(name: str) -> bool:
    # "~$x.docx" are Word's lock files: tiny, not documents, always fail to parse.
    return name.startswith((".", "~$"))


def _ragignore(folder: Path) -> list[str]:
    """Glob patterns (relative paths) from FOLDER/.ragignore: files that are not documents."""
    try:
        lines = (folder / ".ragignore").read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def discover(paths: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """List (file, root) pairs for `paths`: folders are walked recursively.

    Within a folder the files are sorted by relative path; hidden files and folders,
    Word lock files, sidecars (`*.meta.json`) and paths matching a glob in the
    folder's `.ragignore` are skipped. A file named directly
    has its parent as root (and is kept even if hidden; not if it is a sidecar). Unsupported extensions are kept: `load_file` reports
    them. Raises LoadError for a path that does not exist.
    """
    out: list[tuple[Path, Path]] = []
    seen: set[Path] = set()

    def add(file: Path, root: Path) -> None:
        key = file.resolve()
        if key not in seen:
            seen.add(key)
            out.append((file, root))

    for p in map(Path, paths):
        if p.is_dir():
            found: list[tuple[str, Path]] = []
            ignored = _ragignore(p)
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = [d for d in dirnames if not _skipped_name(d)]
                for name in filenames:
                    if _skipped_name(name) or name.lower().endswith(SIDECAR_SUFFIX):
                        continue
                    f = Path(dirpath) / name
                    rel = f.relative_to(p).as_posix()
                    if any(fnmatch.fnmatch(rel, pat) for pat in ignored):
                        continue
                    found.append((rel, f))
            for _, f in sorted(found):
                add(f, p)
        elif p.is_file():
            if not p.name.lower().endswith(SIDECAR_SUFFIX):
                add(p, p.parent)
        elif p.exists():  # a FIFO, a device: load_file refuses it, the batch goes on
            add(p, p.parent)
        else:
            raise LoadError(str(p), "no such file or folder")
    return out


# --------------------------------------------------------------------------- decoding

# The most frequent simplified characters; their traditional forms are added at first
# use. Text decoded with the right codec is full of them, mojibake is not.
_COMMON_SIMPLIFIED = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同"
    "工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理"
    "起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义"
    "事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结"
    "解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设"
    "及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决"
    "西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济"
    "阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万"
    "每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记"
    "需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技"
    "备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候"
    "毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细"
    "引听该铁价严"
)

# Code point ranges that real Chinese prose rarely uses but mis-decoded bytes often
# land in: private use, kana, Hangul, CJK extension A and compatibility ideographs,
# squared/enclosed symbols, radicals, Greek/Cyrillic and box drawing, U+FFFD.
_RARE_RANGES = (
    (0x0370, 0x04FF),
    (0x1100, 0x11FF),
    (0x2500, 0x257F),
    (0x2E80, 0x2FDF),
    (0x3040, 0x30FF),
    (0x3100, 0x318F),
    (0x3200, 0x33FF),
    (0x3400, 0x4DBF),
    (0xAC00, 0xD7AF),
    (0xE000, 0xF8FF),
    (0xF900, 0xFAFF),
    (0xFF65, 0xFF9F),
    (0xFFFD, 0xFFFD),
)


@functools.lru_cache(maxsize=1)
def _common_chars() -> frozenset[str]:
    import opencc

    s2t = opencc.OpenCC("s2t").convert
    return frozenset(_COMMON_SIMPLIFIED) | frozenset("".join(s2t(c) for c in _COMMON_SIMPLIFIED))


def _is_rare(c: str) -> bool:
    o = ord(c)
    return o > 0xFFFF or any(lo <= o <= hi for lo, hi in _RARE_RANGES)


def _chinese_score(text: str) -> int:
    """How much `text` looks like real Chinese: common characters minus rare ones."""
    common = _common_chars()
    score = 0
    for c in text[:20_000]:  # a sample is enough, and keeps big files fast
        if c in common:
            score += 1
        elif ord(c) >= 0x0370 and _is_rare(c):
            score -= 2
    return score


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # C0 controls other than \t\n\v\f\r


def _control_count(text: str) -> int:
    return sum(1 for _ in _CONTROL.finditer(text))


def _looks_binary(text: str) -> bool:
    if "\x00" in text:
        return True
    ctrl = _control_count(text)
    return ctrl > max(1, 0.02 * len(text))


def _bom(data: bytes) -> str | None:
    # UTF-32 first: its LE mark starts with the UTF-16 LE mark.
    for mark, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(mark):
            return codec
    return None


def _text_like_share(text: str) -> float:
    """Share of ASCII, CJK ideographs, CJK and full-width punctuation in `text`."""
    sample = text[:20_000]
    good = sum(
        1
        for c in sample
        if " " <= c <= "~"
        or c in "\t\n\r"
        or "\u4e00" <= c <= "\u9fff"
        or "\u3000" <= c <= "\u303f"
        or "\uff00" <= c <= "\uffef"
        or "\u2010" <= c <= "\u206f"
    )
    return good / max(1, len(sample))


def _utf16_without_bom(data: bytes) -> tuple[str, str] | None:
    """UTF-16 text without a BOM, told apart from binary data that has NUL bytes.

    A decoding counts only if it is nearly all ASCII/CJK with no control characters
    and its hanzi read like Chinese; of LE and BE the one that reads better wins (the
    parity of the NULs alone misleads: U+4E00 一 puts its NUL on the other side).
    Bytes that are all ASCII pass only with NULs as dense as UTF-16 ASCII has them,
    so an ASCII file with a stray NUL is not read as a run of CJK characters.
    """
    if len(data) % 2 or (data.isascii() and data.count(0) < len(data) // 4):
        return None
    best: tuple[int, str, str] | None = None
    for codec in ("utf-16-le", "utf-16-be"):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        if (
            "\x00" in text
            or _control_count(text)
            or _text_like_share(text) < 0.9
            or not _reads_like_chinese(text)
        ):
            continue
        score = _chinese_score(text) + sum(1 for c in text[:20_000] if " " <= c <= "~")
        if best is None or score > best[0]:
            best = (score, text, codec)
    return (best[1], best[2]) if best else None


def decode_bytes(data: bytes, *, name: str = "<bytes>") -> tuple[str, str]:
    """Decode the bytes of a text file; return (text, encoding name in lower case).

    Order: BOM (UTF-8/16/32), UTF-16 without BOM when NUL bytes are present, strict
    UTF-8, then GB18030 or Big5, whichever reads more like Chinese. Raises
    LoadError(name, reason) for binary data or bytes no candidate decodes.

    >>> decode_bytes("崂山区召开大会".encode("gbk"))
    ('崂山区召开大会', 'gb18030')
    """
    enc = _bom(data)
    if enc:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            raise LoadError(name, _UNDECODABLE) from None
    elif b"\x00" in data:
        found = _utf16_without_bom(data)
        if not found:
            raise LoadError(name, "binary data, not text")
        text, enc = found
    else:
        try:
            text, enc = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, enc = _decode_chinese(data, name)
    if _looks_binary(text):
        raise LoadError(name, "binary data, not text")
    return text, enc


def _decode_chinese(data: bytes, name: str) -> tuple[str, str]:
    candidates: list[tuple[int, int, str, str]] = []
    # cp950 (Microsoft's Big5) only when strict Big5 fails: it maps a few more codes.
    for order, codec in enumerate(("gb18030", "big5", "cp950")):
        if codec == "cp950" and any(c[3] == "big5" for c in candidates):
            continue
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        candidates.append((_chinese_score(text), -order, text, codec))
    if not candidates:
        raise LoadError(name, _UNDECODABLE)
    _, _, text, codec = max(candidates)  # ties go to GB18030, the more common one
    if not _reads_like_chinese(text):
        raise LoadError(name, _UNDECODABLE)
    return text, codec


def _reads_like_chinese(text: str) -> bool:
    """False for long runs of hanzi that are almost never common characters.

    GB18030 accepts nearly any run of bytes >= 0x81, so random bytes (or another
    legacy encoding) "decode" to rare hanzi. In every 40-character window of real
    prose we sampled (CMRC, DRCD, news) at least 22% of the hanzi were common
    characters; in such garbage it is about 4%, under 11% in 300 random samples.
    """
    sample = text[:20_000]
    cjk = [c for c in sample if "\u4e00" <= c <= "\u9fff" or _is_rare(c)]
    if len(cjk) < 30:
        return True
    common = _common_chars()
    return sum(c in common for c in cjk) >= 0.1 * len(cjk)


# --------------------------------------------------------------------------- helpers


def _fmt_mb(n: float) -> str:
    mb = n / 2**20
    return f"{mb:.0f}" if mb >= 100 else f"{mb:.3g}"


def _norm_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _short(exc: BaseException, limit: int = 120) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    s = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _doc_id(path: Path, root: Path) -> str:
    for p, r in ((path, root), (path.resolve(), root.resolve())):
        try:
            rel = p.relative_to(r)
        except ValueError:
            continue
        return rel.with_suffix("").as_posix() if rel.suffix else rel.as_posix()
    return path.stem


def _first_line(text: str) -> str:
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def _with_title(meta: dict, text: str, fallback: str, fallback_is_id: bool = False) -> dict:
    """Ensure meta["title"]: given title, else a short first line, else `fallback`.

    The first line is the first one with a letter, digit or hanzi in it, so a rule
    like "-----" or "***" is not taken for a title. A record id used as the title is
    marked (`title_is_id`): it names the record for people but means nothing to the
    embedding model, so the index does not prepend it to the chunks it embeds.
    """
    title = meta.get("title")
    if isinstance(title, str) and title.strip():
        return {**meta, "title": title.strip()}
    first = next((ln.strip() for ln in text.split("\n") if re.search(r"\w", ln)), "")
    if 0 < len(first) <= MAX_TITLE_CHARS:
        return {**meta, "title": first}
    return {**meta, "title": fallback, **({"title_is_id": True} if fallback_is_id else {})}


def _read_sidecar(path: Path) -> dict:
    side = path.with_suffix(SIDECAR_SUFFIX)
    if not side.is_file():
        return {}
    try:
        data = side.read_bytes()
        text, _ = decode_bytes(data, name=str(side))
        meta = json.loads(text)
    except LoadError as e:
        raise LoadError(str(side), f"malformed sidecar: {e.reason}") from None
    except (OSError, ValueError) as e:
        raise LoadError(str(side), f"malformed sidecar: {_short(e)}") from None
    if not isinstance(meta, dict):
        raise LoadError(str(side), "malformed sidecar: expected a JSON object {...}")
    return meta


# --------------------------------------------------------------------------- formats

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


def _jsonl(text: str, path: Path, encoding: str, file_meta: dict) -> list[Document]:
    """One Document per JSON object line that has a non-empty `text`; bad lines are logged."""
    docs: list[Document] = []
    seen: set[str] = set()
    skipped: list[int] = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            skipped.append(line_no)
            continue
        body = rec.get("text") if isinstance(rec, dict) else None
        if not isinstance(body, str) or not body.strip():
            skipped.append(line_no)
            continue
        rid = rec.get("id")
        rid = f"{path.stem}-{line_no}" if rid is None or str(rid) == "" else str(rid)
        if rid in seen:
            log.warning("%s: line %d repeats id %r; skipped", path, line_no, rid)
            skipped.append(line_no)
            continue
        seen.add(rid)
        extra = {k: v for k, v in rec.items() if k not in ("id", "text")}
        # the record's identity: its other fields, then the text as bytes (not re-escaped)
        canonical = (
            json.dumps(
                {k: v for k, v in rec.items() if k != "text"}, ensure_ascii=False, sort_keys=True
            ).encode("utf-8")
            + b"\0"
            + body.encode("utf-8")
        )
        body = _norm_newlines(body)
        docs.append(
            Document(
                doc_id=rid,
                text=body,
                source=f"{path}#{rid}",
                format="jsonl",
                encoding=encoding,
                meta=DocMeta.from_dict(
                    _with_title({**file_meta, **extra}, body, rid, fallback_is_id=True)
                ),
                file_hash=hashlib.sha256(canonical).hexdigest(),
            )
        )
    if skipped:
        lines = ", ".join(map(str, skipped[:20])) + (" ..." if len(skipped) > 20 else "")
        log.warning(
            "%s: skipped %d line(s) that are not JSON objects with a non-empty 'text': %s",
            path,
            len(skipped),
            lines,
        )
    if not docs:
        raise LoadError(str(path), "no usable records (each line needs a JSON object with 'text')")
    return docs


# --------------------------------------------------------------------------- entry point


def load_file(path: Path, root: Path | None = None, max_bytes: int = 50 * 2**20) -> list[Document]:
    """Load one file into Documents (one, or one per record for .jsonl).

    `root` is the folder `doc_id` is relative to (default: the file's parent).
    Metadata from an optional sidecar `X.meta.json` next to `X.ext` overrides what the
    file itself declares. Raises LoadError(path, reason) for anything unreadable.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    name = str(path)
    if not path.exists():
        raise LoadError(name, "file not found")
    if not path.is_file():
        raise LoadError(name, "not a regular file")
    ext = path.suffix.lower()
    if ext not in SUPPORTED:
        shown = ext or "(no extension)"
        supported = " ".join(sorted(SUPPORTED))
        raise LoadError(name, f"unsupported file type {shown} (supported: {supported})")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise LoadError(
                name,
                f"file is {_fmt_mb(size)} MB, over the {_fmt_mb(max_bytes)} MB limit "
                "(set max_file_mb)",
            )
        data = path.read_bytes()
    except OSError as e:
        raise LoadError(name, f"cannot read file: {e.strerror or _short(e)}") from None
    if not data:
        raise LoadError(name, "empty file")

    fmt = _FORMATS[ext]
    sidecar = _read_sidecar(path)
    file_hash = hashlib.sha256(data).hexdigest()
    doc_id = _doc_id(path, root)

    try:
        if fmt in ("pdf", "docx"):
            encoding = "binary"
            text, meta = _pdf(data) if fmt == "pdf" else _docx(data, max_bytes)
        else:
            text, encoding = decode_bytes(data, name=name)
            text = _norm_newlines(text).lstrip("\ufeff")
            if fmt == "jsonl":
                return _jsonl(text, path, encoding, sidecar)
            meta = {}
            if fmt == "md":
                text, meta = _markdown(text)
            elif fmt == "html":
                text, meta = _html(text)
    except _Unreadable as e:
        raise LoadError(name, str(e)) from None
    if not text.strip():
        raise LoadError(name, "no text")
    return [
        Document(
            doc_id=doc_id,
            text=text,
            source=name,
            format=fmt,
            encoding=encoding,
            meta=DocMeta.from_dict(_with_title({**meta, **sidecar}, text, path.stem)),
            file_hash=file_hash,
        )
    ]
