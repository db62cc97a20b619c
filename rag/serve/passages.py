"""What the APIs return of a search, an answer and a knowledge base's documents, as the
OpenAI references, Dify's records, /api/search, /api/documents and the MCP tools all
show them: one shape per thing, built in one place.

A passage's `score` is its embedding's cosine similarity to the question, clipped to
0..1: the fused retrieval score only orders the passages of one query, the cosine means
the same across queries (which a score threshold needs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


def _file_name(doc: dict) -> str:
    """The name of the file an indexed document came from (never the server's path)."""
    return Path(str(doc.get("source") or "").split("#", 1)[0]).name


def relevance(system, question: str, hits) -> list[float]:
    """Each hit's relevance in 0..1: the cosine of its stored vector and the question's.

    The fused retrieval score only orders one query's passages; the cosine (embeddings are
    normalised) is comparable across queries, which a score threshold needs.
    """
    if not hits:
        return []
    import numpy as np

    from rag.textnorm import norm

    qv = np.asarray(system.embedder.embed_query(norm(question)), dtype=np.float32).ravel()
    index = system.index
    rows = np.asarray([h.row for h in hits], dtype=np.int64)
    stored = rows < index.n_embedded
    vecs = np.zeros((len(rows), len(qv)), np.float32)
    if stored.any():
        vecs[stored] = index.vectors.vectors(rows[stored])
    if not stored.all():  # an ingest is still filling vectors in: these few are made now
        vecs[~stored] = system.embedder.embed_passages(index.embed_inputs(rows[~stored]))
    cos = vecs @ qv
    return [float(min(max(c, 0.0), 1.0)) for c in cos]


def references(system, ans) -> list[dict]:
    """The cited passages of `ans` as the API returns them, each with its relevance."""
    by_chunk = {h.chunk_id: h for h in ans.retrieved}
    cited = [by_chunk.get(c.chunk_id) for c in ans.citations]
    known = [h for h in cited if h is not None]
    scores = dict(
        zip(
            [h.chunk_id for h in known],
            relevance(system, ans.rewritten_question or ans.question, known),
        )
    )
    return [
        {
            "n": c.n,
            "doc_id": c.doc_id,
            "title": c.title,
            "location": c.location,
            "text": c.text,
            "score": round(scores[c.chunk_id], 4) if c.chunk_id in scores else None,
        }
        for c in ans.citations
    ]


@dataclass(frozen=True)
class Passage:
    """One search hit as the APIs show it."""

    rank: int  # 1-based, in retrieval order
    doc_id: str
    chunk_id: str
    title: str
    text: str
    score: float  # relevance in 0..1 (`relevance`)
    location: str  # "第4页", "工作表“预算” 第12行"; "" for plain text
    date: str
    file: str  # the file's name, never a server path
    start: int  # the passage's offsets in the document's text
    end: int

    def to_json(self) -> dict:
        return asdict(self)


def passages(system, hits, scores: list[float]) -> list[Passage]:
    """`hits` with their relevance `scores` as `Passage`s."""
    docs = system.index.docs
    out = []
    for rank, (h, score) in enumerate(zip(hits, scores), start=1):
        doc = docs.get(h.doc_id, {})
        out.append(
            Passage(
                rank=rank,
                doc_id=h.doc_id,
                chunk_id=h.chunk_id,
                title=doc.get("title") or h.doc_id,
                text=h.text,
                score=round(score, 4),
                location=system.index.location(h.doc_id, h.start, h.end),
                date=doc.get("date") or "",
                file=_file_name(doc),
                start=h.start,
                end=h.end,
            )
        )
    return out


def answer_json(system, ans) -> dict:
    """An answer as the MCP `ask` tool returns it: text, refused, cited passages."""
    return {
        "answer": ans.text,
        "refused": ans.refused,
        "short_answer": ans.short_answer,
        "confidence": ans.confidence_level,
        "citations": references(system, ans),
    }


@dataclass(frozen=True)
class DocumentInfo:
    """One document of a knowledge base, as a script managing it needs to see it."""

    doc_id: str
    title: str
    date: str
    kind: str  # "PDF · 3页 · 含扫描页" (as the chat UI's list shows it)
    chars: int
    chunks: int
    source: str  # "知识库", or "alice上传"
    indexed_at: str  # ISO 8601
    file: str  # the file's name, never a server path
    doc_number: str  # 发文字号, when the document states one
    issuer: str  # 发文机关
    status: str  # "就绪", "向量计算中（1,200/5,512）", "向量计算失败：……" (as the UI shows it)
    embedded_chunks: int  # of `chunks`, those with a vector (the rest found by keyword alone)

    def to_json(self) -> dict:
        return asdict(self)


def documents(library) -> list[DocumentInfo]:
    """The knowledge base's documents, most recently indexed first, as the UI lists them."""
    return index_documents(library.index)


def index_documents(index) -> list[DocumentInfo]:
    """`documents` of a loaded index (`rag list` reads one without serving it)."""
    from rag.serve.ui.library import document_rows

    docs = index.docs
    out = []
    for row in document_rows(index):
        d = docs.get(row.doc_id, {})
        meta = d.get("meta") or {}
        out.append(
            DocumentInfo(
                doc_id=row.doc_id,
                title=row.title,
                date=row.date,
                kind=row.kind,
                chars=int(d.get("n_chars") or 0),
                chunks=row.chunks,
                source=row.source,
                indexed_at=d.get("indexed_at") or "",
                file=meta.get("original_file") or _file_name(d),
                doc_number=str(meta.get("doc_number") or ""),
                issuer=str(meta.get("issuer") or ""),
                status=row.status,
                embedded_chunks=row.chunks if row.embedded is None else row.embedded,
            )
        )
    return out
