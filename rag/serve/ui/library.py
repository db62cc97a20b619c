"""The knowledge base as the page sees it: the index built from corpus/ at start, uploads stored and ingested, documents listed, removed and shown."""

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rag.config import Settings
from rag.errors import IndexLockedError, IndexStoreError, LoadError, RagError
from rag.serve.ui.render import UploadResult, esc, render_document

REPO_ROOT = Path(__file__).resolve().parents[3]
log = logging.getLogger("rag.serve.ui.library")


DEFAULT_CORPUS = REPO_ROOT / "corpus"


DEFAULT_QA = REPO_ROOT / "eval" / "datasets" / "corpus_qa.jsonl"


DOC_HEADERS = [
    "标题",
    "日期",
    "文号 · 发文机关",
    "类型",
    "篇幅",
    "片段数",
    "来源",
    "入库时间",
    "状态",
]
_KINDS = {
    "txt": "文本", "md": "Markdown", "html": "网页", "pdf": "PDF", "docx": "Word",
    "jsonl": "数据记录", "xlsx": "Excel", "csv": "CSV 表格", "tsv": "TSV 表格",
    "pptx": "PPT", "image": "图片",
}  # fmt: skip


def data_dir(settings: Settings) -> Path:
    """The folder beside the index that holds uploads and feedback."""
    return settings.index_path.resolve().parent


def use_upload_temp_dir(settings: Settings, environ: dict[str, str] | None = None) -> Path:
    """Point Gradio's upload folder into the data folder, unless $GRADIO_TEMP_DIR is set.

    Gradio writes every uploaded file there before we store it, and otherwise uses the
    system temp folder: this keeps uploaded content inside the data folder. Gradio reads
    the variable when it is imported, so this must run first. Returns the folder.
    """
    env = os.environ if environ is None else environ
    if not env.get("GRADIO_TEMP_DIR"):
        env["GRADIO_TEMP_DIR"] = str(data_dir(settings) / "gradio-tmp")
    return Path(env["GRADIO_TEMP_DIR"])


def ensure_index(
    settings: Settings,
    corpus_dir: str | Path | None,
    embedder=None,
    log: Callable[[str], None] | None = None,
) -> bool:
    """Build the index from `corpus_dir` when there is none yet, or when it was written by
    another version of rag (`ingest` re-indexes it); True if it was built.

    Progress (a line per stage and the embedding progress bar) goes to stderr.
    """
    from rag.index.build import ingest
    from rag.index.versions import current_version, is_current_schema

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    exists = current_version(settings.index_path) is not None
    if exists and is_current_schema(settings.index_path):
        return False
    have_corpus = corpus_dir is not None and Path(corpus_dir).is_dir()
    if exists and not have_corpus:
        return False  # nothing to rebuild it from: opening it says how
    if not have_corpus:
        raise IndexStoreError(
            f"{settings.index_path}: no index here yet and no corpus folder to build it from "
            f"({corpus_dir}); run `rag ingest PATH --index {settings.index_path}` or pass --corpus DIR"
        )
    if not exists:
        log(f"No index in {settings.index_path} yet: building it from {corpus_dir} ...")
    report = ingest([corpus_dir], settings, embedder=embedder, log=log, progress=True)
    for r in report.results:
        if r.status == "failed":
            log(f"failed: {r.source}: {r.reason}")
    log(report.summary())
    if not report.ingested_anything:
        raise IndexStoreError(f"{corpus_dir}: no document could be indexed")
    return True


# =========================================================================== uploads
_UNSAFE = re.compile(r"[^\w.\-]+")


def sanitize_filename(name: str, limit: int = 60) -> str:
    """A file-system-safe version of a user's file name stem (letters, digits, CJK, - _ .)."""
    stem = _UNSAFE.sub("_", Path(name.replace("\\", "/")).name)
    stem = re.sub(r"_+", "_", stem).strip("._-")
    return stem[:limit] or "file"


def store_upload(
    src: str | Path, name: str, uploads_dir: Path, max_bytes: int, uploaded_by: str | None = None
) -> Path:
    """Copy an uploaded file into `uploads_dir` under a generated name; return that path.

    The stored name is `<content hash>__<sanitised name>`: never a path the user chose,
    and the same file uploaded twice maps to the same document (reported unchanged).
    A sidecar records where it came from (who uploaded it, when, its original name; the
    first upload of the same content keeps it) and gives it its title from the original
    file name. Raises LoadError(name, reason) for a type the loader does not take, an
    empty or too large file.
    """
    from rag.ingest.loaders import EMPTY_REASON, SUPPORTED, too_large_reason, unsupported_reason

    base = Path(name.replace("\\", "/")).name or "file"
    ext = Path(base).suffix.lower()
    if ext not in SUPPORTED:
        raise LoadError(base, unsupported_reason(ext))
    src = Path(src)
    size = src.stat().st_size
    if size == 0:
        raise LoadError(base, EMPTY_REASON)
    if size > max_bytes:
        raise LoadError(base, too_large_reason(size, max_bytes))
    stem = Path(base).stem
    uploads_dir.mkdir(parents=True, exist_ok=True)
    dest = uploads_dir / f"{_sha256(src)[:16]}__{sanitize_filename(stem)}{ext}"
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    sidecar = dest.with_suffix(".meta.json")
    if not sidecar.is_file():
        side = {
            "original_file": base,
            "uploaded_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            **({"uploaded_by": uploaded_by} if uploaded_by else {}),
        }
        if ext != ".jsonl":  # records of a JSON-lines file carry their own titles
            side["title"] = stem or base
        tmp = sidecar.with_name(f".{sidecar.name}.{uuid.uuid4().hex}.part")
        tmp.write_text(json.dumps(side, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, sidecar)
    return dest


def _discard_upload(path: Path, temp_dir: Path | None = None) -> None:
    """Delete a stored upload, its sidecar and (in `temp_dir`) Gradio's copies of it."""
    if temp_dir is not None and path.is_file():
        purge_temp_copies(temp_dir, path)
    for p in (path, path.with_suffix(".meta.json")):
        p.unlink(missing_ok=True)


def purge_temp_copies(temp_dir: Path, stored: Path) -> int:
    """Delete the files under `temp_dir` with the same content as `stored` (Gradio keeps
    a copy of each upload there, served by its file route); return how many."""
    size = stored.stat().st_size
    digest = _sha256(stored)
    n = 0
    for p in list(Path(temp_dir).rglob("*")):
        try:
            if p.is_file() and p.stat().st_size == size and _sha256(p) == digest:
                p.unlink()
                n += 1
                with contextlib.suppress(OSError):
                    p.parent.rmdir()  # Gradio's per-file folder, when empty
        except OSError:
            continue
    return n


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Remembering:
    """The embedder, remembering each passage's vector: an upload is embedded once, into
    a scratch index outside the write lock, and the real index is written from memory."""

    worker_spec = None  # embedding stays in this process, where it is remembered

    def __init__(self, embedder):
        self.embedder = embedder
        self._memo: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str):
        return getattr(self.embedder, name)

    def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            vecs = self.embedder.embed_passages(missing, show_progress=show_progress)
            self._memo.update(zip(missing, vecs))
        if not texts:
            return np.zeros((0, self.embedder.dim), np.float32)
        return np.stack([self._memo[t] for t in texts])


# =========================================================================== shared state
READY = "就绪"  # every chunk of the document has its vector


class DocRow(NamedTuple):
    """One line of the document list: what staff recognise, no internal ids or hashes
    (`doc_id` is kept for the code, not shown)."""

    title: str
    date: str
    official: str  # "青政发〔2023〕5号 · 青岛市人民政府"; "" for other documents
    kind: str  # "PDF · 3页 · 含扫描页", "Excel · 2个工作表", "文本 · gb18030"
    size: str  # "1.2万字"
    chunks: int
    source: str  # "知识库" or who uploaded it
    indexed_at: str
    doc_id: str
    status: str = READY  # `vector_status`: whether it is found by meaning yet
    embedded: int | None = None  # its chunks with a vector (None: not counted)

    def shown(self) -> list:
        """The columns of DOC_HEADERS."""
        return [*self[:8], self.status]


def vector_status(done: int, total: int, failure: str | None = None) -> str:
    """A document's status as every list shows it: "就绪" when each chunk has its vector,
    "向量计算中（1,200/5,512）" while keyword-first ingest fills them in (found by
    keyword meanwhile), or why the last fill failed and when it is tried again."""
    if done >= total:
        return READY
    if failure:
        return f"向量计算失败：{failure}，将在下次上传或重启时重试（已完成{done:,}/{total:,}）"
    return f"向量计算中（{done:,}/{total:,}）"


def document_rows(index) -> list[DocRow]:
    """The indexed documents, most recently indexed first, each with its vectors' status
    (the web page's list, `rag list`, the documents API)."""
    docs = sorted(index.docs.items(), key=lambda kv: kv[1].get("title") or kv[0])
    docs.sort(key=lambda kv: kv[1].get("indexed_at") or "", reverse=True)
    pending = index.pending_vectors()
    rows = []
    for doc_id, d in docs:
        total = len(d.get("chunk_ids", []))
        done = total - pending.get(doc_id, 0)
        failure = index.fill_failure(doc_id) if done < total else None
        rows.append(
            DocRow(
                d.get("title") or doc_id,
                d.get("date") or "",
                _official(d),
                _kind(d),
                _size(d.get("n_chars") or 0),
                total,
                _source(d),
                _local_time(d.get("indexed_at")),
                doc_id,
                vector_status(done, total, failure),
                done,
            )
        )
    return rows


def pick_labels(rows: Sequence[DocRow]) -> list[tuple[str, str]]:
    """(label, doc_id) for a pick list: the title, then the date and 发文字号 to tell
    same-titled documents apart, then who added it and when; never an internal id."""

    def label(r: DocRow, more: bool) -> str:
        bits = [r.date, r.official] + ([r.source, r.indexed_at] if more else [])
        extra = " · ".join(b for b in bits if b)
        return f"{r.title}（{extra}）" if extra else r.title

    plain = [label(r, False) for r in rows]
    labels = [label(r, plain.count(p) > 1) for r, p in zip(rows, plain, strict=True)]
    seen: dict[str, int] = {}
    out = []
    for r, lab in zip(rows, labels, strict=True):
        seen[lab] = seen.get(lab, 0) + 1
        # still the same: number them, in the order of the document list
        out.append((f"{lab}（第{seen[lab]}份）" if labels.count(lab) > 1 else lab, r.doc_id))
    return out


def fill_failure_reason(e: BaseException) -> str:
    """Why a background fill failed, as a document list shows it: in words for the usual
    causes, else the error's own first line (no server paths, at most 120 characters)."""
    if isinstance(e, IndexLockedError):
        return "另一个程序正在写入这个知识库的索引"
    if isinstance(e, MemoryError):
        return "内存不足"
    first = (str(e).strip().splitlines() or [""])[0]
    first = re.sub(r"(?:/[^\s/:：]+)+/?", "…", first)  # paths name the server's folders
    return f"{type(e).__name__}: {first}"[:120]


def _kind(d: dict) -> str:
    meta = d.get("meta") or {}
    bits = [_KINDS.get(d.get("format") or "", d.get("format") or "")]
    if meta.get("pages"):
        bits.append(f"{meta['pages']}页")
    if meta.get("slides"):
        bits.append(f"{meta['slides']}张幻灯片")
    if meta.get("sheets"):
        bits.append(f"{len(meta['sheets'])}个工作表")
    if meta.get("ocr"):
        bits.append("含扫描页" if d.get("format") == "pdf" else "文字识别")
    if d.get("encoding") and d.get("format") in ("txt", "md", "html", "jsonl", "csv", "tsv"):
        bits.append(str(d["encoding"]))
    return " · ".join(b for b in bits if b)


def _official(d: dict) -> str:
    meta = d.get("meta") or {}
    return " · ".join(str(meta[k]) for k in ("doc_number", "issuer") if meta.get(k))


def _size(n: int) -> str:
    return f"{n / 10000:.1f}万字" if n >= 10000 else f"{n}字"


def _source(d: dict) -> str:
    meta = d.get("meta") or {}
    if not meta.get("uploaded_at"):
        return "知识库"
    return f"{meta.get('uploaded_by') or '用户'}上传"


def _local_time(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _locate(citation, text: str) -> tuple[int, int, list[tuple[int, int]]] | None:
    """The citation's (start, end, quotes) in the document's current `text`: as cited, or
    shifted to where its passage is now; None when the passage is gone."""
    start, end, quotes = citation.start, citation.end, list(citation.quotes)
    if text[start:end] == citation.text:
        return start, end, quotes
    found = text.find(citation.text)
    if found < 0:
        return None
    shift = found - start
    return found, found + len(citation.text), [(s + shift, e + shift) for s, e in quotes]


class Library:
    """What every session shares: the loaded system, the upload folder, the write lock.

    Uploads and removals are serialised by a lock, write a new index version and then
    `system.reload()`; sessions pick the new version up at their next question.
    """

    def __init__(
        self, system, uploads_dir: Path, feedback_path: Path, temp_dir: Path | None = None
    ):
        self.system = system
        self.settings: Settings = system.settings
        self.uploads_dir = Path(uploads_dir)
        self.feedback_path = Path(feedback_path)
        self.temp_dir = Path(temp_dir) if temp_dir is not None else None  # Gradio's uploads
        self._write_lock = threading.Lock()
        self.filling: threading.Thread | None = None  # the last `fill_in_background`
        self._filler_lock = threading.Lock()
        # an upload or ingest was stopped; a view over several knowledge bases is read-only
        # (each one's own library fills its vectors in)
        if not hasattr(self.index, "indexes") and self.index.n_embedded < len(self.index):
            self.fill_in_background()

    @property
    def index(self):
        return self.system.index

    def documents(self) -> list[DocRow]:
        """The indexed documents, most recently indexed first (`document_rows`)."""
        return document_rows(self.index)

    def scopes(self) -> dict[str, list[str]]:
        """What the chat can narrow a search to: each official-document field's values
        present in the index ({"issuer": [...], "doc_number": [...]}), sorted."""
        found: dict[str, set[str]] = {"issuer": set(), "doc_number": set()}
        for d in self.index.docs.values():
            meta = d.get("meta") or {}
            for key, values in found.items():
                if meta.get(key):
                    values.add(str(meta[key]))
        return {key: sorted(values) for key, values in found.items()}

    def info(self) -> dict[str, Any]:
        idx = self.index
        parts = getattr(idx, "indexes", [idx])  # several knowledge bases: a MultiIndex
        m = parts[0].manifest
        return {
            "embed_model": "、".join(
                dict.fromkeys(p.manifest["embedding"]["model"] for p in parts)
            ),
            "dim": m["embedding"]["dim"],
            "index_dir": str(self.settings.index_path.resolve()),
            "version": "、".join(p.folder.name for p in parts),
            "n_docs": len(idx.docs),
            "n_chunks": len(idx),
            "vector_index": m.get("vector_index", ""),
        }

    def add_files(
        self,
        files: Sequence[tuple[str | Path, str]],
        log: Callable[[str], None] | None = None,
        user: str | None = None,
    ) -> list[UploadResult]:
        """Store and ingest uploaded files, given as (temporary path, original name) pairs,
        uploaded by `user` (the login name, when there is one).

        Returns one result per file (per record for JSON lines), in the given order. An
        upload never replaces a document it does not own: its records are namespaced by
        the upload, and a document of another source with the same id is refused.
        """
        from rag.index.build import FileResult, ingest

        max_bytes = int(self.settings.max_file_mb * 2**20)
        user = re.sub(r"[\x00-\x1f\x7f]", "", user or "")[:60] or None
        slots: list[UploadResult | Path] = []
        names: dict[Path, str] = {}
        for src, name in files:
            try:
                dest = store_upload(src, name, self.uploads_dir, max_bytes, uploaded_by=user)
            except LoadError as e:
                slots.append(UploadResult(Path(name).name, "failed", e.reason))
                continue
            except OSError as e:
                slots.append(
                    UploadResult(Path(name).name, "failed", f"无法保存文件：{e.strerror or e}")
                )
                continue
            names[dest.resolve()] = Path(name).name
            slots.append(dest.resolve())
        by_path: dict[Path, list] = {}
        if names:
            embedder = _Remembering(self.system.embedder)
            try:
                # the slow part (reading, chunking, embedding) runs outside the write lock,
                # into a scratch index: removals and other uploads do not wait for it
                with tempfile.TemporaryDirectory(
                    prefix=".scratch-", dir=self.uploads_dir.parent
                ) as tmp:
                    with contextlib.suppress(RagError):  # the real ingest reports any failure
                        ingest(
                            [str(p) for p in names],
                            self.settings.replace(index_dir=tmp),
                            embedder=embedder,
                            log=log,
                            progress=True,
                            embed_later=True,  # a large file's vectors: see below
                        )
                with self._write_lock:  # then the index is written from the remembered vectors
                    report = ingest(
                        [str(p) for p in names],
                        self.settings,
                        embedder=embedder,
                        log=log,
                        progress=False,
                        replace_others=False,
                        embed_later=True,
                    )
                    self.system.reload()
                if report.pending_chunks:  # searchable by keyword now; vectors follow
                    self.fill_in_background()
            except RagError as e:  # e.g. another process holds the index lock
                report = None
                for p in names:
                    by_path[p] = [FileResult(str(p), "failed", reason=str(e))]
            for r in report.results if report else []:
                by_path.setdefault(Path(r.source.split("#", 1)[0]).resolve(), []).append(r)
        out: list[UploadResult] = []
        for slot in slots:
            if isinstance(slot, UploadResult):
                out.append(slot)
                continue
            rs = by_path.get(slot) or [FileResult(str(slot), "failed", reason="未能入库")]
            for r in rs:
                out.append(UploadResult(names[slot], r.status, r.reason, r.doc_id, r.chunks))
            if all(r.status == "failed" for r in rs):
                _discard_upload(slot, self.temp_dir)
        return out

    def fill_in_background(self) -> threading.Thread:
        """Compute the vectors that uploads left for later (a large sheet is searchable
        by keyword as soon as it is read), in one background thread, and reload.

        The embedding runs outside the write lock, remembered, so uploads and removals
        go on meanwhile; the new version is then written under the lock. Rows added
        meanwhile are picked up by the next round.
        """
        with self._filler_lock:
            if self.filling is not None and self.filling.is_alive():
                return self.filling
            self.filling = threading.Thread(target=self._fill, name="rag-fill-vectors", daemon=True)
            self.filling.start()
            return self.filling

    # how long a fill waits for another process's write of the index before it fails
    fill_lock_wait_s = 30.0

    def _fill(self) -> None:
        from rag.index.build import fill_vectors
        from rag.index.fill_status import clear_failure, record_failure

        embedder = _Remembering(self.system.embedder)
        index_dir = self.settings.index_path
        clear_failure(index_dir)  # tried again: the list says "计算中" meanwhile
        while True:
            index = self.index
            pending = range(index.n_embedded, len(index))
            if not pending:
                return
            try:
                embedder.embed_passages(index.embed_inputs(pending))
                with self._write_lock:
                    fill_vectors(
                        self.settings,
                        embedder=embedder,
                        progress=False,
                        log=lambda m: log.info("%s", m),
                        lock_wait_s=self.fill_lock_wait_s,
                    )
                    self.system.reload()
            except Exception as e:  # the chunks stay searchable by keyword; a later upload retries
                reason = fill_failure_reason(e)
                log.warning(
                    "background vector fill of %s failed (%d chunks still found by keyword "
                    "alone; the next upload or start retries): %s",
                    index_dir, len(pending), reason,
                    exc_info=not isinstance(e, RagError),
                )  # fmt: skip
                with contextlib.suppress(OSError):
                    record_failure(index_dir, reason)
                return

    def remove(self, doc_ids: Sequence[str]) -> list[UploadResult]:
        """Remove documents from the index; an uploaded file no document uses is deleted too."""
        from rag.index.build import remove_documents

        with self._write_lock:
            before = dict(self.index.docs)
            report = remove_documents(doc_ids, self.settings)
            self.system.reload()
            still_used = {Path(d["source"].split("#", 1)[0]) for d in self.index.docs.values()}
        out = []
        uploads = self.uploads_dir.resolve()
        for r in report.results:
            d = before.get(r.doc_id, {})
            out.append(UploadResult(d.get("title") or r.doc_id, r.status, r.reason, r.doc_id))
            if r.status != "removed":
                continue
            path = Path(d["source"].split("#", 1)[0])
            if uploads in path.resolve().parents and path not in still_used:
                _discard_upload(path, self.temp_dir)
        return out

    def document_view(self, citation) -> str:
        """The cited document from the live index, scrolled to the citation's passage.

        If the document changed since the answer, the passage is looked up again by its
        text; if it was removed, say so.
        """
        idx = self.index
        d = idx.docs.get(citation.doc_id)
        if d is None:
            return f'<div class="rag-doc rag-doc-empty">《{esc(citation.title)}》已从知识库中删除。</div>'
        text = idx.document_text(citation.doc_id)
        located = _locate(citation, text)
        if located is None:
            note = "文档在回答之后已更新，找不到原引用的段落。"
            return render_document(d.get("title") or citation.doc_id, text, d, note=note)
        start, end, quotes = located
        return render_document(
            d.get("title") or citation.doc_id, text, d, (start, end), quotes, citation.n
        )

    def page_view(self, citation):
        """The cited page of a PDF or scanned image, the quoted text marked in yellow
        (rag.serve.ui.pages.PageImage), and a note; (None, why) when there is none to show.

        Only a document the live index holds is drawn, read from the path the index
        recorded when it ingested it, and only while that file is still the one indexed
        (same SHA-256): nothing the page sends names a file.
        """
        from rag.serve.ui.pages import cited_page

        idx = self.index
        d = idx.docs.get(citation.doc_id)
        if d is None or d.get("format") not in ("pdf", "image"):
            return None, ""
        path = Path(str(d.get("source") or "").split("#", 1)[0])
        try:
            if not path.is_file() or path.stat().st_size > self.settings.max_file_mb * 2**20:
                return None, "原文件已不在原处，无法显示原页。"
            data = path.read_bytes()
        except OSError:
            return None, "原文件无法读取，无法显示原页。"
        if hashlib.sha256(data).hexdigest() != d.get("file_hash"):
            return None, "原文件在入库后已更改，无法显示原页。"
        text = idx.document_text(citation.doc_id)
        located = _locate(citation, text)
        if located is None:
            return None, "文档在回答之后已更新，找不到原引用的段落。"
        start, end, quotes = located
        try:
            view = cited_page(
                data, d["format"], d.get("meta") or {}, text, quotes or [(start, end)]
            )
        except Exception as e:  # noqa: BLE001 -- a file pdfium cannot draw: the text view stays
            print(f"app: cannot draw a page of {path.name}: {e}", file=sys.stderr)
            return None, "无法显示原页。"
        note = "" if view.boxes else "未能在原页上定位引用的文字。"
        return view, note

    def n_chars(self) -> dict[str, int]:
        return {k: v.get("n_chars", 0) for k, v in self.index.docs.items()}
