"""The chat web app (Gradio): one shared system, independent sessions, cited answers.

`run(AppOptions)` is what `python app.py` calls. The process loads one `RagSystem`
(index and embedding model, once) and wraps it in a `Library`, which also owns uploads
and removals. Each browser session gets its own `ChatState` (history, settings,
answerer) in a `gr.State`, so nothing one user does changes another's chat or settings.

Everything that decides what the user sees is plain Python here (rendering, uploads,
sessions) and is tested without a browser; `build_app` only lays out the widgets and
wires them to it. All document and answer text goes through `html.escape` before it is
put into HTML: documents may contain markup.
"""

import dataclasses
import datetime as dt
import hashlib
import html
import json
import os
import re
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rag.config import Settings
from rag.errors import ConfigError, IndexStoreError, LoadError, RagError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CORPUS = REPO_ROOT / "corpus"
DEFAULT_QA = REPO_ROOT / "eval" / "datasets" / "corpus_qa.jsonl"
# Questions from the corpus QA set that make good first examples (short, answered
# correctly by the offline extractive answerer); others fill in when these are missing.
PREFERRED_EXAMPLES = ("cq001", "cq013", "cq035", "cq039", "cq048")
MAX_DOC_VIEW_CHARS = 200_000  # a longer document is shown as a window around the passage

GENERATORS = [
    ("抽取式（离线，默认）", "extractive"),
    ("OpenAI 兼容接口", "openai"),
    ("Ollama", "ollama"),
    ("GGUF 本地模型（llama.cpp）", "llamacpp"),
]
STATUS_ZH = {
    "added": "已添加",
    "updated": "已更新",
    "unchanged": "未变化",
    "failed": "失败",
    "removed": "已删除",
}
DOC_HEADERS = ["标题", "日期", "片段数", "编码", "入库时间", "文档 ID"]


# =========================================================================== startup
@dataclass(frozen=True)
class AppOptions:
    """What `python app.py` was asked to do."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    index_dir: str | None = None
    corpus_dir: str | None = str(DEFAULT_CORPUS)
    config: str | None = None
    feedback: str | None = None
    auth: str | None = None  # "user:password"; also $RAG_AUTH


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """`"user:password"` as a tuple; None for no auth. Raises ConfigError when malformed."""
    if value is None or value == "":
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth (or RAG_AUTH) must look like USER:PASSWORD, both non-empty")
    return user, password


def check_bind(host: str, auth: tuple[str, str] | None) -> None:
    """Refuse to listen beyond this machine without a password: the app can change the index."""
    if host not in LOCAL_HOSTS and auth is None:
        raise ConfigError(
            f"refusing to listen on {host} without a password: anyone who can reach it could "
            "read and change the knowledge base; pass --auth USER:PASSWORD (or set RAG_AUTH), "
            f"or use --host {DEFAULT_HOST}"
        )


def listen_message(host: str, port: int, auth: tuple[str, str] | None) -> str:
    """The startup line that says where the app listens and whether a login is needed.

    Names the user, never the password.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    scope = " (this machine only)" if host in LOCAL_HOSTS else ""
    login = f"login required (user {auth[0]})" if auth else "no login"
    return f"Listening on {where}{scope}; {login}"


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
            f"({corpus_dir}); run `rag ingest PATH --index {settings.index_dir}` or pass --corpus DIR"
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


# =========================================================================== rendering
class UploadResult(NamedTuple):
    name: str  # the file name the user gave (or the document title, for removals)
    status: str  # added | updated | unchanged | failed | removed
    reason: str = ""
    doc_id: str = ""
    chunks: int = 0


def esc(text: str) -> str:
    """HTML-escaped text with line breaks kept (as <br>, so no blank line ends an HTML block)."""
    return html.escape(text, quote=True).replace("\r", "").replace("\n", "<br>")


def mark_spans(text: str, spans: Sequence[tuple[int, int]], cls: str = "rag-quote") -> str:
    """Escape `text`, wrapping each (start, end) span in <mark class=cls>.

    Spans are clipped to the text; overlapping spans are merged.
    """
    merged: list[list[int]] = []
    for s, e in sorted((max(0, s), min(len(text), e)) for s, e in spans):
        if e <= s:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    out, pos = [], 0
    for s, e in merged:
        out.append(esc(text[pos:s]))
        out.append(f'<mark class="{cls}">{esc(text[s:e])}</mark>')
        pos = e
    out.append(esc(text[pos:]))
    return "".join(out)


def _date_zh(date: str | None) -> str:
    return date if date else "日期不详"


def location_zh(start: int, end: int, n_chars: int | None) -> str:
    """Where a passage lies in its document, e.g. "第 101–380 字，约在全文 12% 处"."""
    where = f"第 {start + 1}–{end} 字"
    if n_chars:
        where += f"，约在全文 {round(100 * start / n_chars)}% 处"
    return where


def _cite_class(turn: int, n: int) -> str:
    # The sanitiser of chat messages drops data-* attributes but keeps classes, so the
    # click handler reads (turn, n) from the class name.
    return f"rag-cite rag-at-{turn}-{n}"


def snippet(
    text: str, quotes: Sequence[tuple[int, int]], context: int = 60, plain: int = 160
) -> str:
    """HTML of the part of a passage worth showing: the quotes (marked) with some context.

    `quotes` are offsets in `text`. Without quotes, the first `plain` characters. Runs of
    blank lines are collapsed: a card is small.
    """
    if quotes:
        lo = max(0, min(s for s, _ in quotes) - context)
        hi = min(len(text), max(e for _, e in quotes) + context)
    else:
        lo, hi = 0, min(len(text), plain)
    body = mark_spans(text[lo:hi], [(s - lo, e - lo) for s, e in quotes])
    body = re.sub(r"(?:<br>\s*){2,}", "<br>", body)
    return ("……" if lo > 0 else "") + body + ("……" if hi < len(text) else "")


def render_citation_card(c, turn: int, n_chars: int | None = None, plain: int = 160) -> str:
    """One cited passage: title, date, location, the passage with its quoted sentences marked.

    `plain` is how much of a passage without quotes (a "possibly related" one) is shown.
    """
    rel = [(qs - c.start, qe - c.start) for qs, qe in c.quotes]
    return (
        f'<div class="rag-card {_cite_class(turn, c.n)}" title="点击查看原文">'
        f'<div class="rag-card-head"><span class="rag-badge">[{c.n}]</span>'
        f'<span class="rag-title">《{esc(c.title or c.doc_id)}》</span></div>'
        f'<div class="rag-meta">{esc(_date_zh(c.date))} · {esc(location_zh(c.start, c.end, n_chars))}</div>'
        f'<div class="rag-passage">{snippet(c.text, rel, plain=plain)}</div>'
        f'<div class="rag-open">查看原文 ›</div></div>'
    )


_MARKER = re.compile(r"\[(\d{1,3})\]")


def marker_spans(answer) -> list[tuple[int, int, int]]:
    """(start, end, n) of each citation marker the answerer put into `answer.text`.

    Only these become clickable: any other `[n]` in the text (a document that says
    "据[1]记载", quoted) is document text and stays plain. An extractive answer is its
    sentences, each followed by `[citation]`, so the markers are read off `answer.sentences`.
    An LLM answer's markers live only in its text, where `LLMAnswerer.check` has rewritten
    every marker it accepted as `[n]`, n a citation of the answer, and dropped the rest:
    those are the validated ones.
    """
    text, numbers = answer.text, {c.n for c in answer.citations}
    if answer.refused or not numbers:
        return []
    if answer.generator != "extractive":
        return [
            (m.start(), m.end(), int(m.group(1)))
            for m in _MARKER.finditer(text)
            if int(m.group(1)) in numbers
        ]
    spans, pos = [], 0
    for s in answer.sentences:
        marker = f"[{s.citation}]"
        at = pos + len(s.text)
        if not (text.startswith(s.text, pos) and text.startswith(marker, at)):
            break  # not the shape extractive answers have: link nothing past this point
        if s.citation in numbers:
            spans.append((at, at + len(marker), s.citation))
        pos = at + len(marker)
    return spans


def _linked_text(answer, turn: int) -> str:
    """The answer text, escaped, with its citation markers as clickable <sup> elements."""
    text, out, pos = answer.text, [], 0
    for start, end, n in marker_spans(answer):
        out.append(esc(text[pos:start]))
        out.append(f'<sup class="rag-marker {_cite_class(turn, n)}">[{n}]</sup>')
        pos = end
    out.append(esc(text[pos:]))
    return "".join(out)


def _rewritten_html(question: str, rewritten: str | None) -> str:
    if not rewritten or rewritten.strip() == question.strip():
        return ""
    return f'<div class="rag-rewritten">↻ 理解为：{esc(rewritten)}</div>'


def render_answer(answer, turn: int, n_chars: dict[str, int] | None = None) -> str:
    """The finished answer as chat-message HTML: text with [n] markers, then its sources.

    A refusal is drawn as one (a warning box), followed by the "possibly related"
    passages; those are not citations, so the answer text has no markers.
    """
    n_chars = n_chars or {}
    parts = [
        '<div class="rag-answer">',
        _rewritten_html(answer.question, answer.rewritten_question),
    ]
    if answer.refused:
        parts.append(
            f'<div class="rag-refusal"><span class="rag-refusal-icon">⚠</span> {esc(answer.text)}</div>'
        )
        if answer.citations:
            note = answer.notice or "以下段落可能相关，但不足以回答这个问题。"
            parts.append(f'<div class="rag-related-label">{esc(note)}</div>')
            parts.append('<div class="rag-cites rag-related">')
    else:
        if answer.notice:
            parts.append(f'<div class="rag-notice">{esc(answer.notice)}</div>')
        parts.append(f'<div class="rag-text">{_linked_text(answer, turn)}</div>')
        if answer.citations:
            parts.append('<div class="rag-cites-label">引用来源</div><div class="rag-cites">')
    for c in answer.citations:
        parts.append(
            render_citation_card(c, turn, n_chars.get(c.doc_id), 90 if answer.refused else 160)
        )
    if answer.citations:
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def render_partial(text: str, question: str, rewritten: str | None) -> str:
    """An answer still streaming in: the text so far and a cursor.

    The text is escaped and nothing in it is linked: which `[n]` are citations is known
    only from the finished Answer, which replaces this.
    """
    return (
        f'<div class="rag-answer rag-streaming">{_rewritten_html(question, rewritten)}'
        f'<div class="rag-text">{esc(text)}<span class="rag-cursor">▍</span></div></div>'
    )


def render_error(message: str) -> str:
    return f'<div class="rag-answer"><div class="rag-error">出错了：{esc(message)}</div></div>'


def render_user(question: str) -> str:
    return f'<div class="rag-user">{esc(question)}</div>'


VIEWER_EMPTY = '<div class="rag-doc rag-doc-empty">点击回答下方的引用，在这里查看原文。</div>'


def render_document(
    title: str,
    text: str,
    meta: dict[str, Any],
    passage: tuple[int, int] | None = None,
    quotes: Sequence[tuple[int, int]] = (),
    cite_n: int | None = None,
    note: str = "",
    max_chars: int = MAX_DOC_VIEW_CHARS,
) -> str:
    """A whole document, its cited passage highlighted (class rag-target) and quotes marked.

    Offsets are in `text`. Very long documents are cut to a window around the passage.
    """
    head = [f'<div class="rag-doc-title">{esc(title)}</div>']
    bits = [_date_zh(meta.get("date"))]
    if meta.get("source_name"):
        bits.append(str(meta["source_name"]))
    if meta.get("encoding"):
        bits.append(f"编码 {meta['encoding']}")
    bits.append(f"{len(text)} 字")
    head.append(f'<div class="rag-doc-meta">{esc(" · ".join(bits))}</div>')
    if passage is not None and cite_n is not None:
        head.append(
            f'<div class="rag-doc-cite">引用 [{cite_n}]：{esc(location_zh(passage[0], passage[1], len(text)))}</div>'
        )
    if note:
        head.append(f'<div class="rag-doc-note">{esc(note)}</div>')

    lo, hi = 0, len(text)
    if len(text) > max_chars:
        centre = passage[0] if passage else 0
        lo = max(0, centre - max_chars // 2)
        hi = min(len(text), lo + max_chars)
    body = []
    if lo > 0:
        body.append(f'<div class="rag-doc-cut">……（前 {lo} 字略）</div>')
    if passage is None:
        body.append(esc(text[lo:hi]))
    else:
        ps, pe = max(lo, passage[0]), min(hi, passage[1])
        rel = [(qs - ps, qe - ps) for qs, qe in quotes]
        body.append(esc(text[lo:ps]))
        body.append(
            f'<span class="rag-passage-hl rag-target">{mark_spans(text[ps:pe], rel)}</span>'
        )
        body.append(esc(text[pe:hi]))
    if hi < len(text):
        body.append(f'<div class="rag-doc-cut">……（后 {len(text) - hi} 字略）</div>')
    text_html = re.sub(r"(?:<br>){3,}", "<br><br>", "".join(body))
    return (
        f'<div class="rag-doc"><div class="rag-doc-head">{"".join(head)}</div>'
        f'<div class="rag-doc-text">{text_html}</div></div>'
    )


def render_results(results: Sequence[UploadResult]) -> str:
    """Per-file outcome of an upload or removal, as a small table."""
    if not results:
        return ""
    rows = []
    for r in results:
        detail = r.reason if r.status == "failed" else (f"{r.chunks} 个片段" if r.chunks else "")
        rows.append(
            f'<tr class="rag-result rag-result-{esc(r.status)}"><td>{esc(r.name)}</td>'
            f'<td class="rag-status">{esc(STATUS_ZH.get(r.status, r.status))}</td>'
            f"<td>{esc(detail)}</td></tr>"
        )
    return (
        '<table class="rag-results"><thead><tr><th>文件</th><th>结果</th><th>说明</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


# =========================================================================== uploads
_UNSAFE = re.compile(r"[^\w.\-]+")


def sanitize_filename(name: str, limit: int = 60) -> str:
    """A file-system-safe version of a user's file name stem (letters, digits, CJK, - _ .)."""
    stem = _UNSAFE.sub("_", Path(name.replace("\\", "/")).name)
    stem = re.sub(r"_+", "_", stem).strip("._-")
    return stem[:limit] or "file"


def store_upload(src: str | Path, name: str, uploads_dir: Path, max_bytes: int) -> Path:
    """Copy an uploaded file into `uploads_dir` under a generated name; return that path.

    The stored name is `<content hash>__<sanitised name>`: never a path the user chose,
    and the same file uploaded twice maps to the same document (reported unchanged).
    A sidecar gives the document its title from the original file name. Raises
    LoadError(name, reason) for a type the loader does not take, an empty or too large file.
    """
    from rag.ingest.loaders import SUPPORTED

    base = Path(name.replace("\\", "/")).name or "file"
    ext = Path(base).suffix.lower()
    if ext not in SUPPORTED:
        shown = ext or "(no extension)"
        raise LoadError(
            base, f"unsupported file type {shown} (supported: {' '.join(sorted(SUPPORTED))})"
        )
    src = Path(src)
    size = src.stat().st_size
    if size == 0:
        raise LoadError(base, "empty file")
    if size > max_bytes:
        raise LoadError(
            base, f"file is {size / 2**20:.3g} MB, over the {max_bytes / 2**20:.3g} MB limit"
        )
    h = hashlib.sha256()
    with open(src, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    stem = Path(base).stem
    uploads_dir.mkdir(parents=True, exist_ok=True)
    dest = uploads_dir / f"{h.hexdigest()[:16]}__{sanitize_filename(stem)}{ext}"
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    if ext != ".jsonl":  # records of a JSON-lines file carry their own titles
        side = {"title": stem or base, "original_file": base}
        dest.with_suffix(".meta.json").write_text(
            json.dumps(side, ensure_ascii=False), encoding="utf-8"
        )
    return dest


def _discard_upload(path: Path) -> None:
    for p in (path, path.with_suffix(".meta.json")):
        p.unlink(missing_ok=True)


# =========================================================================== shared state
class DocRow(NamedTuple):
    title: str
    date: str
    chunks: int
    encoding: str
    indexed_at: str
    doc_id: str


def _local_time(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


class Library:
    """What every session shares: the loaded system, the upload folder, the write lock.

    Uploads and removals are serialised by a lock, write a new index version and then
    `system.reload()`; sessions pick the new version up at their next question.
    """

    def __init__(self, system, uploads_dir: Path, feedback_path: Path):
        self.system = system
        self.settings: Settings = system.settings
        self.uploads_dir = Path(uploads_dir)
        self.feedback_path = Path(feedback_path)
        self._write_lock = threading.Lock()

    @property
    def index(self):
        return self.system.index

    def documents(self) -> list[DocRow]:
        """The indexed documents, most recently indexed first."""
        docs = sorted(self.index.docs.items(), key=lambda kv: kv[1].get("title") or kv[0])
        docs.sort(key=lambda kv: kv[1].get("indexed_at") or "", reverse=True)
        return [
            DocRow(
                d.get("title") or doc_id,
                d.get("date") or "",
                len(d.get("chunk_ids", [])),
                d.get("encoding") or "",
                _local_time(d.get("indexed_at")),
                doc_id,
            )
            for doc_id, d in docs
        ]

    def info(self) -> dict[str, Any]:
        idx = self.index
        m = idx.manifest
        return {
            "embed_model": m["embedding"]["model"],
            "dim": m["embedding"]["dim"],
            "index_dir": str(self.settings.index_path.resolve()),
            "version": idx.folder.name,
            "n_docs": len(idx.docs),
            "n_chunks": len(idx),
            "vector_index": m.get("vector_index", ""),
        }

    def add_files(
        self, files: Sequence[tuple[str | Path, str]], log: Callable[[str], None] | None = None
    ) -> list[UploadResult]:
        """Store and ingest uploaded files, given as (temporary path, original name) pairs.

        Returns one result per file (per record for JSON lines), in the given order.
        """
        from rag.index.build import FileResult, ingest

        max_bytes = int(self.settings.max_file_mb * 2**20)
        slots: list[UploadResult | Path] = []
        names: dict[Path, str] = {}
        for src, name in files:
            try:
                dest = store_upload(src, name, self.uploads_dir, max_bytes)
            except LoadError as e:
                slots.append(UploadResult(Path(name).name, "failed", e.reason))
                continue
            except OSError as e:
                slots.append(
                    UploadResult(
                        Path(name).name, "failed", f"cannot store the file: {e.strerror or e}"
                    )
                )
                continue
            names[dest.resolve()] = Path(name).name
            slots.append(dest.resolve())
        by_path: dict[Path, list] = {}
        if names:
            try:
                with self._write_lock:
                    report = ingest(
                        [str(p) for p in names],
                        self.settings,
                        embedder=self.system.embedder,
                        log=log,
                        progress=True,
                    )
                    self.system.reload()
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
            rs = by_path.get(slot) or [FileResult(str(slot), "failed", reason="not ingested")]
            for r in rs:
                out.append(UploadResult(names[slot], r.status, r.reason, r.doc_id, r.chunks))
            if all(r.status == "failed" for r in rs):
                _discard_upload(slot)
        return out

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
                _discard_upload(path)
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
        start, end, quotes, note = citation.start, citation.end, list(citation.quotes), ""
        if text[start:end] != citation.text:
            found = text.find(citation.text)
            if found < 0:
                note = "文档在回答之后已更新，找不到原引用的段落。"
                return render_document(d.get("title") or citation.doc_id, text, d, note=note)
            shift = found - start
            start, end = found, found + len(citation.text)
            quotes = [(s + shift, e + shift) for s, e in quotes]
        return render_document(
            d.get("title") or citation.doc_id, text, d, (start, end), quotes, citation.n, note
        )

    def n_chars(self) -> dict[str, int]:
        return {k: v.get("n_chars", 0) for k, v in self.index.docs.items()}


# =========================================================================== sessions
def build_answerer(settings: Settings, retriever, embedder) -> tuple[Any, str]:
    """The answerer the settings ask for, and a notice when it had to fall back.

    Uses `rag.system.make_answerer` when that module is importable; without it only the
    extractive answerer exists, so that one is used and the notice says why.
    """
    from rag.read.extractive import ExtractiveAnswerer

    try:
        from rag.llm.answerer import LLMAnswerer  # noqa: F401  (is the LLM answerer there?)
        from rag.system import make_answerer
    except ImportError as e:
        fallback = ExtractiveAnswerer(retriever, settings)
        if settings.llm == "extractive":
            return fallback, ""
        return fallback, f"LLM 生成器不可用（{e}），已改用抽取式回答。"
    return make_answerer(settings, retriever, embedder), ""


def _rewriter_for(answerer, settings: Settings):
    """An LLM follow-up rewriter when the answerer has an LLM (else None: key-term carry-over)."""
    llm = getattr(answerer, "llm", None)
    if llm is None:
        return None
    try:
        from rag.llm.rewrite import make_rewriter
    except ImportError:
        return None
    return make_rewriter(llm, settings)


@dataclass
class ChatState:
    """One browser session: its history, its settings and the answerer built from them."""

    library: Library
    settings: Settings
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    messages: list[dict[str, Any]] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)  # Answer per turn
    message_turn: dict[int, int] = field(default_factory=dict)  # assistant message -> turn
    pending: Any = None  # the Feedback a comment would be added to
    notice: str = ""
    _chat: Any = None
    _answerer: Any = None
    _answerer_key: tuple | None = None

    def __post_init__(self) -> None:
        from rag.read.followup import ChatSession

        self._chat = ChatSession(self.library.system)

    def __deepcopy__(self, memo) -> "ChatState":
        return self  # gr.State may copy values; a session is never duplicated

    @property
    def history(self):
        return self._chat.history

    def answerer(self):
        """This session's answerer over the live index, rebuilt when the index or settings change."""
        from rag.search.retriever import HybridRetriever

        system = self.library.system
        index = system.index
        key = (index, self.settings)  # the index compares by identity: one per version
        if self._answerer_key != key:
            retriever = HybridRetriever(index, system.embedder, self.settings)
            self._answerer, self.notice = build_answerer(self.settings, retriever, system.embedder)
            if self.notice:  # fell back to the extractive answerer: say so in the settings too
                self.settings = dataclasses.replace(self.settings, llm="extractive")
            key = (index, self.settings)
            self._chat.rewriter = _rewriter_for(self._answerer, self.settings)
            self._answerer_key = key
        return self._answerer

    def apply(self, **changes: Any) -> str:
        """Change this session's settings (empty strings mean unset); return a status line.

        The new answerer is built at once, so a bad setting is reported here and the
        previous settings stay in force.
        """
        allowed = {"llm", "llm_model", "llm_base_url", "llm_model_path", "top_k"}
        unknown = set(changes) - allowed
        if unknown:
            raise ConfigError(f"not a per-session setting: {', '.join(sorted(unknown))}")
        clean = {
            k: (v.strip() or None) if isinstance(v, str) and k != "llm" else v
            for k, v in changes.items()
        }
        if clean.get("llm") not in {v for _, v in GENERATORS}:
            raise ConfigError(f"unknown generator {clean.get('llm')!r}")
        clean["top_k"] = max(1, min(50, int(clean.get("top_k") or self.settings.top_k)))
        previous = (self.settings, self._answerer, self._answerer_key, self.notice)
        self.settings = dataclasses.replace(self.settings, **clean)
        try:
            self.answerer()
        except Exception as e:  # a UI boundary: any failure to build leaves the old settings
            self.settings, self._answerer, self._answerer_key, self.notice = previous
            return f"设置未生效：{e}"
        name = dict((v, k) for k, v in GENERATORS).get(self.settings.llm, self.settings.llm)
        msg = f"已应用（仅本会话）：生成方式 {name}，top-k {self.settings.top_k}。"
        return f"{msg}{self.notice}" if self.notice else msg

    def rewrite(self, question: str) -> str:
        """The standalone form of `question` given this session's history."""
        self.answerer()  # the rewriter comes with the answerer
        return self._chat.rewrite(question)

    def ask(self, question: str, standalone: str | None = None) -> Iterator[str | Any]:
        """Stream the answer to `question` (a follow-up is rewritten first, or `standalone`).

        Yields str pieces, then the finished Answer, which is also kept in the history.
        """
        from rag.read.followup import Turn

        answerer = self.answerer()
        standalone = standalone or self._chat.rewrite(question)
        final = None
        for item in answerer.stream(standalone, top_k=self.settings.top_k):
            if isinstance(item, str):
                yield item
            else:
                final = item
        if final is None:
            raise RagError("the answerer ended without an answer")
        final.question = question
        final.rewritten_question = standalone
        self._chat.history.append(Turn(question, standalone, final.text))
        yield final

    def respond(self, question: str) -> Iterator[list[dict[str, Any]]]:
        """Run one chat turn, yielding the message list after each streamed piece."""
        question = question.strip()
        if not question:
            return
        self.messages.append({"role": "user", "content": render_user(question)})
        self.messages.append({"role": "assistant", "content": render_partial("", question, None)})
        at = len(self.messages) - 1
        yield self.messages
        text = ""
        try:
            rewritten = self.rewrite(question)
            for item in self.ask(question, rewritten):
                if isinstance(item, str):
                    text += item
                    self.messages[at]["content"] = render_partial(text, question, rewritten)
                    yield self.messages
                else:
                    turn = len(self.answers)
                    self.answers.append(item)
                    self.message_turn[at] = turn
                    self.messages[at]["content"] = render_answer(item, turn, self.library.n_chars())
                    yield self.messages
        except RagError as e:
            self.messages[at]["content"] = render_error(str(e))
            yield self.messages
        except Exception as e:  # a generator bug must not take the session down
            print(f"app: error answering {question!r}: {type(e).__name__}: {e}", file=sys.stderr)
            self.messages[at]["content"] = render_error(f"{type(e).__name__}: {e}")
            yield self.messages

    def citation(self, turn: int, n: int):
        """Citation `n` of answer `turn`, or None."""
        if not 0 <= turn < len(self.answers):
            return None
        return next((c for c in self.answers[turn].citations if c.n == n), None)

    def reset(self) -> None:
        self._chat.reset()
        self.messages.clear()
        self.answers.clear()
        self.message_turn.clear()
        self.pending = None

    def feedback(self, message_index: int, rating: str, comment: str = ""):
        """Record a rating of the answer in chat message `message_index`; return the record."""
        from rag.serve.feedback import append_feedback, feedback_from_answer

        turn = self.message_turn.get(message_index)
        if turn is None:
            raise ConfigError("only answers can be rated")
        rec = feedback_from_answer(
            self.answers[turn],
            rating,
            self.settings.to_dict(),
            comment=comment,
            session=self.id,
            index_version=self.library.index.folder.name,
        )
        append_feedback(self.library.feedback_path, rec)
        self.pending = rec
        return rec

    def comment(self, text: str):
        """Add a comment to the last rating (appended as a superseding record)."""
        from rag.serve.feedback import append_feedback

        if self.pending is None:
            raise ConfigError("rate an answer first")
        rec = self.pending.with_comment(text)
        append_feedback(self.library.feedback_path, rec)
        self.pending = None
        return rec


def example_questions(
    doc_ids: set[str], titles: dict[str, str], qa_path: Path = DEFAULT_QA, n: int = 4
) -> list[str]:
    """Up to `n` example questions about documents in the index.

    From the corpus QA set when its documents are indexed (preferred ids first, then one
    per document); otherwise questions about document titles.
    """
    picked: list[str] = []
    try:
        rows = [
            json.loads(line)
            for line in Path(qa_path).read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    except (OSError, json.JSONDecodeError):
        rows = []
    usable = [
        r
        for r in rows
        if r.get("answerable")
        and r.get("question")
        and set(r.get("gold_doc_ids") or ["?"]) <= doc_ids
    ]
    by_id = {r.get("id"): r for r in usable}
    seen_docs: set[str] = set()
    for qid in PREFERRED_EXAMPLES:
        if qid in by_id and len(picked) < n:
            picked.append(by_id[qid]["question"])
            seen_docs.update(by_id[qid].get("gold_doc_ids") or [])
    for r in usable:
        if len(picked) >= n:
            break
        doc = (r.get("gold_doc_ids") or [""])[0]
        if r["question"] in picked or doc in seen_docs or len(r["question"]) > 40:
            continue
        seen_docs.add(doc)
        picked.append(r["question"])
    for doc_id in sorted(doc_ids):
        if len(picked) >= n:
            break
        q = f"《{titles.get(doc_id) or doc_id}》主要讲了什么？"
        if q not in picked:
            picked.append(q)
    return picked[:n]


# =========================================================================== the app
CSS = """
.rag-answer { line-height: 1.7; }
.rag-rewritten { font-size: 0.85em; color: #6b7280; margin-bottom: 0.4em; }
.rag-notice { font-size: 0.9em; color: #92400e; margin-bottom: 0.4em; }
.rag-refusal { border: 1px solid #f59e0b; background: #fffbeb; color: #92400e;
  border-radius: 8px; padding: 0.5em 0.8em; font-weight: 600; }
.rag-error { border: 1px solid #ef4444; background: #fef2f2; color: #991b1b;
  border-radius: 8px; padding: 0.5em 0.8em; }
.rag-related-label, .rag-cites-label { font-size: 0.85em; color: #6b7280; margin: 0.7em 0 0.3em; }
.rag-cites { display: flex; flex-direction: column; gap: 0.5em; }
.rag-card { border: 1px solid #e5e7eb; border-radius: 8px; padding: 0.5em 0.7em; cursor: pointer;
  background: #fafafa; font-size: 0.9em; }
.rag-card:hover { border-color: #3b82f6; background: #eff6ff; }
.rag-related .rag-card { opacity: 0.85; }
.rag-card-head { font-weight: 600; }
.rag-badge { color: #2563eb; margin-right: 0.3em; }
.rag-meta { font-size: 0.85em; color: #6b7280; }
.rag-passage { max-height: 9.5em; overflow: auto; margin-top: 0.3em; }
.rag-open { font-size: 0.8em; color: #2563eb; text-align: right; }
.rag-marker { color: #2563eb; cursor: pointer; font-weight: 600; }
mark.rag-quote { background: #fde68a; color: inherit; padding: 0 1px; border-radius: 2px; }
.rag-cursor { color: #9ca3af; }
.rag-doc { font-size: 0.95em; line-height: 1.8; }
.rag-doc-empty { color: #6b7280; padding: 1em; }
.rag-doc-head { position: sticky; top: 0; background: var(--block-background-fill, #fff);
  border-bottom: 1px solid #e5e7eb; padding: 0.3em 0 0.5em; margin-bottom: 0.5em; }
.rag-doc-title { font-weight: 700; font-size: 1.05em; }
.rag-doc-meta, .rag-doc-cite, .rag-doc-note, .rag-doc-cut { font-size: 0.85em; color: #6b7280; }
.rag-doc-text { white-space: normal; }
.rag-passage-hl { background: #dbeafe; border-radius: 3px; }
.rag-results { border-collapse: collapse; width: 100%; font-size: 0.9em; }
.rag-results th, .rag-results td { border-bottom: 1px solid #e5e7eb; padding: 0.3em 0.5em; text-align: left; }
.rag-result-failed .rag-status { color: #b91c1c; font-weight: 600; }
.rag-result-added .rag-status, .rag-result-updated .rag-status { color: #15803d; font-weight: 600; }
"""

# Runs once per page, bound to the document viewer: a click on any citation (card or
# [n] marker, anywhere on the page) asks the server for that document; when the viewer
# has new content, the highlighted passage is scrolled into view.
VIEWER_JS = """
const onCite = (e) => {
  const el = e.target.closest('.rag-cite');
  if (!el) return;
  const m = /\\brag-at-(\\d+)-(\\d+)\\b/.exec(el.className);
  if (!m) return;
  e.preventDefault();
  trigger('click', {turn: Number(m[1]), n: Number(m[2])});
};
if (window.__ragOnCite) document.removeEventListener('click', window.__ragOnCite);
window.__ragOnCite = onCite;
document.addEventListener('click', onCite);
watch('value', () => {
  const t = element.querySelector('.rag-target');
  if (t) t.scrollIntoView({block: 'center'});
});
"""


def _info_markdown(library: Library, state: ChatState | None) -> str:
    i = library.info()
    s = state.settings if state else library.settings
    name = dict((v, k) for k, v in GENERATORS).get(s.llm, s.llm)
    model = f"（{s.llm_model}）" if s.llm_model and s.llm != "extractive" else ""
    return (
        f"**嵌入模型**：`{i['embed_model']}`（{i['dim']} 维）  \n"
        f"**索引**：`{i['index_dir']}`，版本 `{i['version']}`，{i['n_docs']} 篇文档，"
        f"{i['n_chunks']} 个片段，向量检索 {i['vector_index']}  \n"
        f"**本会话**：生成方式 {name}{model}，top-k {s.top_k}"
    )


def build_app(library: Library, examples: Sequence[str]):
    """Lay out the app and wire its events; returns a `gr.Blocks` (not launched)."""
    import gradio as gr

    from rag.ingest.loaders import SUPPORTED

    base = library.settings

    def new_state() -> ChatState:
        return ChatState(library, base)

    def doc_table():
        return [list(r) for r in library.documents()]

    def doc_choices():
        return [(f"{r.title}（{r.doc_id}）", r.doc_id) for r in library.documents()]

    # every hour, drop Gradio's copies of uploads older than a day (they are indexed by then)
    with gr.Blocks(title="文档问答", delete_cache=(3600, 86400)) as demo:
        state = gr.State(None)
        gr.Markdown(
            "## 文档问答\n基于知识库中的文档回答问题，每个回答都标明出处 [n]；点击引用可查看原文。"
        )
        with gr.Tabs():
            with gr.Tab("对话", id="chat", elem_id="rag-tab-chat"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        chatbot = gr.Chatbot(
                            label="对话",
                            elem_id="rag-chat",
                            height=600,
                            examples=[{"text": q} for q in examples],
                            placeholder="**向知识库提问**<br>可以试试下面的示例问题。",
                            feedback_options=("Like", "Dislike"),
                            latex_delimiters=[],
                            buttons=["copy"],
                        )
                        with gr.Row():
                            question = gr.Textbox(
                                show_label=False,
                                placeholder="输入问题，按回车发送",
                                elem_id="rag-question",
                                scale=8,
                                lines=1,
                                max_lines=4,
                                autofocus=True,
                            )
                            send = gr.Button(
                                "发送", variant="primary", scale=1, min_width=80, elem_id="rag-send"
                            )
                            new_chat = gr.Button(
                                "新对话", scale=1, min_width=80, elem_id="rag-new-chat"
                            )
                        with gr.Row(visible=False, elem_id="rag-feedback-row") as fb_row:
                            fb_comment = gr.Textbox(
                                label="补充说明（可选）", elem_id="rag-feedback-comment", scale=5
                            )
                            fb_send = gr.Button("提交说明", elem_id="rag-feedback-send", scale=1)
                        fb_status = gr.Markdown(elem_id="rag-feedback-status")
                    with gr.Column(scale=2):
                        viewer = gr.HTML(
                            VIEWER_EMPTY,
                            label="原文",
                            show_label=True,
                            container=True,
                            js_on_load=VIEWER_JS,
                            elem_id="rag-viewer",
                            max_height=640,
                        )
            with gr.Tab("知识库", id="kb", elem_id="rag-tab-kb"):
                gr.Markdown("### 文档列表")
                docs = gr.Dataframe(
                    value=doc_table(),
                    headers=DOC_HEADERS,
                    interactive=False,
                    wrap=True,
                    elem_id="rag-docs",
                    label="已入库文档",
                )
                refresh = gr.Button("刷新列表", size="sm", elem_id="rag-refresh")
                gr.Markdown(
                    "### 上传文档\n支持的格式："
                    + "、".join(sorted(SUPPORTED))
                    + f"；单个文件不超过 {base.max_file_mb:g} MB。上传后自动入库。"
                )
                upload = gr.File(
                    label="上传文件（可多选）",
                    file_count="multiple",
                    file_types=sorted(SUPPORTED),
                    elem_id="rag-upload",
                )
                upload_result = gr.HTML(elem_id="rag-upload-result")
                gr.Markdown("### 删除文档")
                remove_pick = gr.Dropdown(
                    choices=doc_choices(),
                    multiselect=True,
                    label="选择要删除的文档",
                    elem_id="rag-remove-pick",
                )
                remove_btn = gr.Button("删除所选文档", variant="stop", elem_id="rag-remove")
                remove_result = gr.HTML(elem_id="rag-remove-result")
            with gr.Tab("设置", id="settings", elem_id="rag-tab-settings"):
                gr.Markdown("设置只对当前浏览器会话生效，不影响其他用户。")
                gen = gr.Dropdown(
                    choices=GENERATORS, value=base.llm, label="生成方式", elem_id="rag-gen"
                )
                llm_model = gr.Textbox(
                    value=base.llm_model or "", label="模型名称（OpenAI 兼容 / Ollama）"
                )
                llm_url = gr.Textbox(
                    value=base.llm_base_url or "", label="接口地址（OpenAI 兼容 / Ollama）"
                )
                llm_path = gr.Textbox(value=base.llm_model_path or "", label="GGUF 模型文件路径")
                top_k = gr.Slider(
                    1, 20, value=base.top_k, step=1, label="检索段落数（top-k）", elem_id="rag-topk"
                )
                apply = gr.Button("应用设置", variant="primary", elem_id="rag-apply")
                settings_status = gr.Markdown(elem_id="rag-settings-status")
                info = gr.Markdown(_info_markdown(library, None), elem_id="rag-info")

        # ------------------------------------------------------------------ events
        def on_load(st):
            st = st or new_state()
            return st, doc_table(), gr.update(choices=doc_choices()), _info_markdown(library, st)

        demo.load(on_load, [state], [state, docs, remove_pick, info])

        def on_ask(text, st):
            st = st or new_state()
            if not (text or "").strip():
                yield st.messages, "", st
                return
            for messages in st.respond(text):
                yield messages, "", st

        gr.on(
            [question.submit, send.click],
            on_ask,
            [question, state],
            [chatbot, question, state],
            concurrency_limit=4,
            concurrency_id="ask",
        )

        def on_example(st, evt: gr.SelectData):
            st = st or new_state()
            value = evt.value if isinstance(evt.value, dict) else {"text": str(evt.value)}
            yield from on_ask(value.get("text", ""), st)

        chatbot.example_select(
            on_example,
            [state],
            [chatbot, question, state],
            concurrency_limit=4,
            concurrency_id="ask",
        )

        def on_new(st):
            st = st or new_state()
            st.reset()
            return [], st, VIEWER_EMPTY, gr.update(visible=False), ""

        new_chat.click(on_new, [state], [chatbot, state, viewer, fb_row, fb_status])
        chatbot.clear(on_new, [state], [chatbot, state, viewer, fb_row, fb_status])

        def on_open(st, evt: gr.EventData):
            data = getattr(evt, "_data", None) or {}
            try:
                turn, n = int(data.get("turn")), int(data.get("n"))
            except (TypeError, ValueError):
                return gr.skip()
            c = st.citation(turn, n) if st else None
            if c is None:
                return '<div class="rag-doc rag-doc-empty">找不到这条引用。</div>'
            return library.document_view(c)

        viewer.click(on_open, [state], [viewer], concurrency_limit=4)

        def on_like(st, evt: gr.LikeData):
            idx = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
            liked = evt.liked
            rating = (
                "up" if liked in (True, "Like") else "down" if liked in (False, "Dislike") else None
            )
            if st is None or rating is None:
                return gr.update(visible=False), "", st
            try:
                st.feedback(int(idx), rating)
            except RagError as e:
                return gr.update(visible=False), f"未记录：{e}", st
            thumb = "👍" if rating == "up" else "👎"
            return gr.update(visible=True), f"已记录反馈 {thumb}，可以补充说明（可选）。", st

        chatbot.like(on_like, [state], [fb_row, fb_status, state])

        def on_comment(text, st):
            if st is None or st.pending is None:
                return gr.update(visible=False), "", "请先点赞或点踩一个回答。", st
            if (text or "").strip():
                st.comment(text)
                return gr.update(visible=False), "", "已记录说明，谢谢！", st
            st.pending = None
            return gr.update(visible=False), "", "", st

        gr.on(
            [fb_send.click, fb_comment.submit],
            on_comment,
            [fb_comment, state],
            [fb_row, fb_comment, fb_status, state],
        )

        def on_upload(files, st, progress=gr.Progress(track_tqdm=True)):
            st = st or new_state()
            paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
            if not paths:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), st
            progress(0.05, desc=f"正在入库 {len(paths)} 个文件……")
            results = library.add_files(
                [(p, Path(p).name) for p in paths], log=lambda m: progress(0.2, desc=m)
            )
            progress(1.0, desc="完成")
            return (
                render_results(results),
                doc_table(),
                gr.update(choices=doc_choices()),
                None,
                _info_markdown(library, st),
                st,
            )

        upload.upload(
            on_upload,
            [upload, state],
            [upload_result, docs, remove_pick, upload, info, state],
            concurrency_limit=1,
            concurrency_id="write",
        )

        def on_remove(doc_ids, st):
            if not doc_ids:
                return (
                    '<div class="rag-doc-note">请先选择要删除的文档。</div>',
                    gr.skip(),
                    gr.skip(),
                    gr.skip(),
                )
            try:
                results = library.remove(list(doc_ids))
            except RagError as e:
                return (
                    f'<div class="rag-error">{esc(str(e))}</div>',
                    gr.skip(),
                    gr.skip(),
                    gr.skip(),
                )
            return (
                render_results(results),
                doc_table(),
                gr.update(choices=doc_choices(), value=[]),
                _info_markdown(library, st),
            )

        remove_btn.click(
            on_remove,
            [remove_pick, state],
            [remove_result, docs, remove_pick, info],
            concurrency_limit=1,
            concurrency_id="write",
        )
        refresh.click(
            lambda: (doc_table(), gr.update(choices=doc_choices())), None, [docs, remove_pick]
        )

        def on_apply(g, model, url, path, k, st):
            st = st or new_state()
            try:
                msg = st.apply(
                    llm=g, llm_model=model, llm_base_url=url, llm_model_path=path, top_k=k
                )
            except RagError as e:
                msg = f"设置未生效：{e}"
            return msg, _info_markdown(library, st), st

        apply.click(
            on_apply,
            [gen, llm_model, llm_url, llm_path, top_k, state],
            [settings_status, info, state],
        )
    return demo


def run(opts: AppOptions) -> int:
    """Load (building if needed) the index, then serve the app until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = parse_auth(opts.auth if opts.auth is not None else os.environ.get("RAG_AUTH"))
    check_bind(opts.host, auth)
    settings = Settings.load(opts.config, index_dir=opts.index_dir)
    upload_tmp = use_upload_temp_dir(settings)

    from rag.system import load_system, make_embedder

    embedder = make_embedder(settings)
    ensure_index(settings, opts.corpus_dir, embedder=embedder)
    system = load_system(settings, embedder=embedder)
    print("Loading the embedding model ...", file=sys.stderr, flush=True)
    system.embedder.embed_query("预热")  # load the model now, not on the first question
    root = data_dir(settings)
    feedback = Path(opts.feedback) if opts.feedback else root / "feedback.jsonl"
    library = Library(system, root / "uploads", feedback)
    docs = system.index.docs
    examples = example_questions(set(docs), {k: v.get("title") or k for k, v in docs.items()})

    import gradio as gr

    demo = build_app(library, examples)
    demo.queue(default_concurrency_limit=4)
    theme = gr.themes.Default(
        font=[
            "Source Sans Pro",
            "Noto Sans CJK SC",
            "WenQuanYi Micro Hei",
            "PingFang SC",
            "Microsoft YaHei",
            "sans-serif",
        ]
    )
    print(
        f"Feedback goes to {feedback}; uploads to {library.uploads_dir} "
        f"(upload temp files in {upload_tmp})",
        file=sys.stderr,
        flush=True,
    )
    print(listen_message(opts.host, opts.port, auth), file=sys.stderr, flush=True)
    demo.launch(
        server_name=opts.host,
        server_port=opts.port,
        auth=auth,
        max_file_size=int(settings.max_file_mb * 2**20),
        css=CSS,
        theme=theme,
        footer_links=[],
        run_history=False,
        show_error=True,
    )
    return 0
