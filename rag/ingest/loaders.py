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

import functools
import hashlib
import json
import os
import re
import unicodedata
from pathlib import Path

from rag.errors import LoadError
from rag.ingest.decode import _norm_newlines, decode_bytes
from rag.ingest.formats import (
    _docx,
    _fmt_mb,
    _html,
    _image,
    _markdown,
    _pdf,
    _short,
    _Unreadable,
    log,
)
from rag.ingest.legacy import convert_legacy
from rag.ingest.names import SIDECAR_SUFFIX, ignored, ragignore, skipped_name
from rag.ingest.slides import pptx
from rag.ingest.tables import delimited, xlsx
from rag.types import PROVENANCE, DocMeta, Document

_FORMATS = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".jsonl": "jsonl",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".csv": "csv",
    ".tsv": "tsv",
    ".pptx": "pptx",
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"), "image"),
    # older office formats: converted by LibreOffice when it is installed (rag.ingest.legacy)
    **dict.fromkeys((".doc", ".wps"), "doc"),
    ".xls": "xls",
    ".ppt": "ppt",
}
SUPPORTED = set(_FORMATS)
BINARY_FORMATS = {"pdf", "docx", "xlsx", "pptx", "image", "doc", "xls", "ppt"}


_BAD_SIDECAR = "元数据文件格式错误：请修正或删除这个 .meta.json 文件"


MAX_TITLE_CHARS = 60


def _doc_id(path: Path, root: Path) -> str:
    """The path relative to `root` without its extension ("sub/report"); with it
    ("sub/report.pdf") when another document in the folder has the same name before its
    extension (report.pdf, report.docx), so that both are kept. A folder without such
    pairs keeps the ids it always had."""
    for p, r in ((path, root), (path.resolve(), root.resolve())):
        try:
            rel = p.relative_to(r)
        except ValueError:
            continue
        if not rel.suffix or _shares_stem(path, rel, root):
            return rel.as_posix()
        return rel.with_suffix("").as_posix()
    return path.name if _shares_stem(path, None, root) else path.stem


def _shares_stem(path: Path, rel: Path | None, root: Path) -> bool:
    """Whether a document `discover` would also load sits beside `path` under the same
    stem: a supported suffix, not hidden nor a lock file, not in root's .ragignore."""
    folder = path.parent
    try:
        names = _stem_groups(str(folder), folder.stat().st_mtime_ns).get(path.stem, ())
    except OSError:
        return False
    others = [n for n in names if n != path.name]
    if others and rel is not None:
        patterns = _ragignore_of(str(root))
        base = rel.parent
        others = [n for n in others if not ignored((base / n).as_posix(), patterns)]
    return bool(others)


@functools.lru_cache(maxsize=256)
def _stem_groups(folder: str, mtime_ns: int) -> dict[str, tuple[str, ...]]:
    """{stem: names} of the folder's documents whose stem another one shares; listed once
    per folder and change (`mtime_ns`), not once per file."""
    groups: dict[str, list[str]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if skipped_name(name) or Path(name).suffix.lower() not in SUPPORTED:
                continue
            if entry.is_file():
                groups.setdefault(Path(name).stem, []).append(name)
    return {stem: tuple(names) for stem, names in groups.items() if len(names) > 1}


def _ragignore_of(root: str) -> list[str]:
    try:
        mtime = os.stat(os.path.join(root, ".ragignore")).st_mtime_ns
    except OSError:
        return []
    return _ragignore_cached(root, mtime)


@functools.lru_cache(maxsize=64)
def _ragignore_cached(root: str, mtime_ns: int) -> list[str]:
    return ragignore(Path(root))


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
    if 0 < len(first) <= MAX_TITLE_CHARS and "｜" not in first:  # a table row is no title
        return {**meta, "title": first}
    return {**meta, "title": fallback, **({"title_is_id": True} if fallback_is_id else {})}


def _binary(fmt: str, data: bytes, max_bytes: int, ocr: bool) -> tuple[str, dict]:
    if fmt == "pdf":
        return _pdf(data, ocr)
    if fmt == "docx":
        return _docx(data, max_bytes)
    if fmt == "image":
        if not ocr:
            raise _Unreadable(
                "图片中的文字要用 OCR 识别，而 OCR 已关闭：请在设置中打开 OCR（ocr = true）后重新导入"
            )
        return _image(data)
    try:
        return xlsx(data) if fmt == "xlsx" else pptx(data)
    except _Unreadable:
        raise
    except Exception as e:  # openpyxl / python-pptx raise many types on damaged files
        kind, app = (
            ("电子表格", "Excel/WPS 表格") if fmt == "xlsx" else ("演示文稿", "PowerPoint/WPS 演示")
        )
        raise _Unreadable(
            f"{kind}已损坏或已加密，无法读取：请去掉密码，或在{app}中打开后重新保存（{_short(e)}）"
        ) from None


# 成文日期 / 发文日期 lines, or a line that is only a date (an official document's date
# under its title or above its seal)
_DATED = re.compile(
    r"^(?:(?:成文|发文|印发|发布|簽發|签发)日期[：:]\s*)?(\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日)$"
)


def _date_from_text(text: str, meta: dict, fmt: str) -> dict:
    """{"date": ...} from the document's own words, when it states its date: the first
    15 or last 10 lines hold a 成文日期/发文日期 line or a line that is only a date. It wins
    over a PDF's or office file's creation date (a scan's is the day it was scanned); a
    date that HTML meta or front matter give as the document's stays."""
    if meta.get("date") and fmt in ("md", "html"):
        return {}
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    for line in lines[:15] + lines[-10:]:
        m = _DATED.match(line.replace(" ", ""))
        if m:
            return {"date": m.group(1)}
    return {}


# 发文字号: 机关代字〔年份〕序号 ("青政发〔2023〕5号", "国办发[2021]12号", "鲁政字（2022）
# 第8号"), alone on its line, after a 发文字号/文号 label, or before 签发人 (上行文)
_DOC_NUMBER = re.compile(
    r"(?:(?:发文字号|文号|发文号)[：:])?"
    r"(?P<org>[\u4e00-\u9fff]{1,12})[〔\[【(](?P<year>(?:19|20)\d{2})[〕\]】)]"
    r"(?P<n>第?\d{1,4}号)(?:签发人[：:].{1,20})?"
)
# a numbered order or announcement: "青岛市人民政府令第5号", "（2023年第5号）", "第 5 号"
_ORDER_NUMBER = re.compile(
    r"(?P<pre>[\u4e00-\u9fff]{0,30}?(?:令|公告|通告))?(?P<open>\()?(?P<n>(?:\d{4}年)?第\d{1,4}号)"
    r"(?(open)\))"
)
_ORDER_KIND = re.compile(r"(?:令|公告|通告)$")
# 发文机关: "发文机关：青岛市人民政府"
_ISSUER_LINE = re.compile(r"(?:发文机关|发文单位|发布机关|印发机关)[：:](?P<org>\S{2,40})")
# a line that is only the name of a body: 青岛市人民政府, 市住房和城乡建设局, 某某委员会
_BODY = re.compile(
    r"[\u4e00-\u9fff()]{2,30}?(?:人民政府|政府|办公厅|办公室|委员会|常委会|管委会|工委|党委|党组"
    r"|总局|局|厅|部|委|院|署|会|办|处|中心|集团|公司|银行|大学|学院|学校|街道)"
)
_NOT_BODY = re.compile(r"关于|通知|意见|办法|方案|决定|报告|规定|细则|批复|函$")


def _line_key(line: str) -> str:
    """A line as the patterns see it: half-width digits and brackets, no blanks."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", line))


def _body_name(line: str) -> str | None:
    """The line as the name of an issuing body ("青岛市人民政府文件" -> "青岛市人民政府")."""
    key = _line_key(line)
    key = key[:-2] if key.endswith("文件") else key
    if _BODY.fullmatch(key) and not _NOT_BODY.search(key):
        return key.replace("(", "（").replace(")", "）")
    return None


def _bodies_above(lines: list[str], i: int) -> str | None:
    """The issuing bodies on the (up to 3) lines just above line `i`, joined by 、."""
    names: list[str] = []
    for line in reversed(lines[max(0, i - 3) : i]):
        name = _body_name(line)
        if name is None:
            break
        names.insert(0, name)
    return "、".join(names) or None


def _doc_number(key: str, before: str) -> tuple[str, str] | None:
    """(number, the body it names or "") when the line `key` is only a document number;
    `before` is the line above (an order's "青岛市人民政府令" over its "第5号")."""
    m = _DOC_NUMBER.fullmatch(key)
    if m:
        return f"{m['org']}〔{m['year']}〕{m['n']}", ""
    m = _ORDER_NUMBER.fullmatch(key)
    if m is None:
        return None
    pre = m["pre"] or (before if _ORDER_KIND.search(before) else "")
    number = f"{pre}（{m['n']}）" if m["open"] and pre else pre + m["n"]
    return number, _ORDER_KIND.sub("", pre)


def _official_from_text(text: str) -> dict:
    """{"doc_number": ..., "issuer": ...} of an official document (公文), as it states them.

    The number (发文字号) is a line of the first 30 that is only the number ("青政发〔2023〕
    5号", its brackets written 〔〕 whichever the text uses) or an order's "第5号"; the
    issuer (发文机关) is a 发文机关 line, else the body named above the number (the red
    header "青岛市人民政府文件") or by the order, else the signature: the body on the
    line(s) just above the date that ends the document. A sentence citing another
    document's number ("根据《……》（国办发〔2021〕12号）") is not the document's own.
    """
    head = [ln.strip() for ln in text[:20_000].split("\n") if ln.strip()][:30]
    tail = [ln.strip() for ln in text[-4_000:].split("\n") if ln.strip()][-12:]
    out: dict[str, str] = {}
    for i, line in enumerate(head):
        found = _doc_number(_line_key(line), _line_key(head[i - 1]) if i else "")
        if found:
            out["doc_number"], named = found
            issuer = _bodies_above(head, i) or (_body_name(named) if named else None)
            if issuer:
                out["issuer"] = issuer
            break
    for line in head + tail:
        m = _ISSUER_LINE.fullmatch(_line_key(line))
        if m:
            out["issuer"] = m["org"]
            break
    if "issuer" not in out:
        for i in range(len(tail) - 1, 0, -1):
            if _DATED.match(_line_key(tail[i])):
                signed = _bodies_above(tail, i)
                if signed:
                    out["issuer"] = signed
                break
    return out


def _own_meta(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k not in PROVENANCE}


def _provenance(sidecar: dict) -> dict:
    return {k: sidecar[k] for k in PROVENANCE if k in sidecar}


def _read_sidecar(path: Path) -> dict:
    side = path.with_suffix(SIDECAR_SUFFIX)
    if not side.is_file():
        return {}
    try:
        data = side.read_bytes()
        text, _ = decode_bytes(data, name=str(side))
        meta = json.loads(text)
    except LoadError as e:
        raise LoadError(str(side), f"{_BAD_SIDECAR}（{e.reason}）") from None
    except (OSError, ValueError) as e:
        raise LoadError(str(side), f"{_BAD_SIDECAR}（{_short(e)}）") from None
    if not isinstance(meta, dict):
        raise LoadError(str(side), f"{_BAD_SIDECAR}（应是一个 JSON 对象 {{...}}）")
    return meta


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
        if file_meta.get("uploaded_at"):
            # an uploaded record lives in its upload's namespace: it can never take the id
            # of a document it does not own
            rid = f"{path.stem}/{rid}"
        if rid in seen:
            log.warning("%s: line %d repeats id %r; skipped", path, line_no, rid)
            skipped.append(line_no)
            continue
        seen.add(rid)
        extra = _own_meta({k: v for k, v in rec.items() if k not in ("id", "text")})
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
                    _with_title(
                        {**file_meta, **extra, **_provenance(file_meta)},
                        body,
                        rid,
                        fallback_is_id=True,
                    )
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
        raise LoadError(
            str(path),
            "没有可用的记录：每行应是一个 JSON 对象，并带有非空的 “text” 字段，请修正后再导入",
        )
    return docs


EMPTY_REASON = "文件是空的（0 字节）：请确认文件内容后重新上传"


def unsupported_reason(ext: str) -> str:
    """Why a file of type `ext` is refused (the loader's and the upload page's words)."""
    supported = " ".join(sorted(SUPPORTED))
    if ext == ".ofd":  # no maintained OFD reader on PyPI: say how to get a PDF of it
        return (
            "暂不支持 OFD 版式文件：请用数科 OFD 阅读器、福昕 OFD 或 WPS 打开后“另存为/导出 PDF”，"
            "再导入 PDF"
        )
    if not ext:
        return f"文件名没有扩展名，无法判断类型（支持：{supported}）：请加上扩展名后再导入"
    return f"不支持的文件类型 {ext}（支持：{supported}）：请另存为支持的格式后再导入"


def too_large_reason(size: int, max_bytes: int) -> str:
    return (
        f"文件过大（{_fmt_mb(size)} MB，上限 {_fmt_mb(max_bytes)} MB）："
        "请拆分后再导入，或请管理员调大上限（max_file_mb）"
    )


def load_file(
    path: Path, root: Path | None = None, max_bytes: int = 50 * 2**20, ocr: bool = True
) -> list[Document]:
    """Load one file into Documents (one, or one per record for .jsonl).

    `root` is the folder `doc_id` is relative to (default: the file's parent).
    Metadata from an optional sidecar `X.meta.json` next to `X.ext` overrides what the
    file itself declares. Raises LoadError(path, reason) for anything unreadable.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    name = str(path)
    if not path.exists():
        raise LoadError(name, "找不到文件：请确认路径和文件名是否正确")
    if not path.is_file():
        raise LoadError(name, "不是普通文件（可能是文件夹、管道或设备）：请选择要导入的文档文件")
    ext = path.suffix.lower()
    if ext not in SUPPORTED:
        raise LoadError(name, unsupported_reason(ext))
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise LoadError(name, too_large_reason(size, max_bytes))
        data = path.read_bytes()
    except OSError as e:
        raise LoadError(
            name, f"无法读取文件：请检查文件权限或磁盘（{e.strerror or _short(e)}）"
        ) from None
    if not data:
        raise LoadError(name, EMPTY_REASON)

    fmt = _FORMATS[ext]
    sidecar = _read_sidecar(path)
    file_hash = hashlib.sha256(data).hexdigest()
    doc_id = _doc_id(path, root)

    try:
        if fmt in ("doc", "xls", "ppt"):  # converted first; then read as their new format
            data, fmt = (
                convert_legacy(data, path, fmt),
                {"doc": "docx", "xls": "xlsx", "ppt": "pptx"}[fmt],
            )
        if fmt in BINARY_FORMATS:
            encoding = ""  # not a text file: there is no character encoding to report
            text, meta = _binary(fmt, data, max_bytes, ocr)
        elif fmt in ("csv", "tsv"):
            text, encoding, meta = delimited(data, name, tab=fmt == "tsv")
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
        raise LoadError(name, "文件中没有文字：请确认它不是空白文档")
    return [
        Document(
            doc_id=doc_id,
            text=text,
            source=name,
            format=fmt,
            encoding=encoding,
            meta=DocMeta.from_dict(
                _with_title(
                    {
                        **_own_meta(meta),
                        **_date_from_text(text, meta, fmt),
                        **_official_from_text(text),
                        **sidecar,
                    },
                    text,
                    path.stem,
                )
            ),
            file_hash=file_hash,
        )
    ]
