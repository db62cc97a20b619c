"""The typed objects that flow through the pipeline; read this module first.

    files --load/clean--> Document --chunk--> Chunk --embed/index--> (index)
    Query --search--> SearchResult[Hit] --read/answer--> Answer[Citation, AnswerSentence]

Every stage takes and returns these (frozen where they are values), never free dicts
or parallel lists. Framework objects (llama-index's `TextNode`, `NodeWithScore`) are
made from them by `rag.integrations.llama_index` at the edge, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from rag.textnorm import iso_date

# The metadata fields every stage knows by name; anything else a document carries
# (sidecar keys, front matter) rides along in `DocMeta.extra`.
META_FIELDS = ("title", "date", "author", "source_name")
# Where an uploaded document came from. Only the sidecar the chat app writes beside an
# upload may set these (rag.ingest.loaders): a file's own metadata (front matter, HTML
# meta, a JSON-lines record's fields) cannot claim an uploader or an original name.
PROVENANCE = ("uploaded_by", "uploaded_at", "original_file")


@dataclass(frozen=True)
class DocMeta:
    """A document's metadata: what citations show and filters test."""

    title: str | None = None
    date: str | None = None  # ISO 8601 prefix: "2023", "2023-05", "2023-05-17"
    author: str | None = None
    source_name: str | None = None  # the publisher ("Hi威海客户端"), not the file
    title_is_id: bool = False  # the title is a record id: not prepended when embedding
    source: str | None = None  # the file it was loaded from (set by the index)
    extra: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        # one date form everywhere (filters compare strings, prompts quote it): ISO, or none
        if self.date is not None:
            object.__setattr__(self, "date", iso_date(self.date))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DocMeta:
        known = {f.name for f in fields(cls)} - {"extra"}
        extra = tuple(sorted((k, v) for k, v in d.items() if k not in known))
        return cls(**{k: d[k] for k in known if k in d}, extra=extra)

    def get(self, key: str, default: Any = None) -> Any:
        """A field, or an extra key (`meta.get("url")`), or `default`."""
        if key in META_FIELDS or key in ("title_is_id", "source"):
            return getattr(self, key)
        return dict(self.extra).get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """The plain mapping (for hashing and the manifest): known fields set, then extra."""
        out: dict[str, Any] = {k: getattr(self, k) for k in META_FIELDS if getattr(self, k)}
        if self.title_is_id:
            out["title_is_id"] = True
        if self.source:
            out["source"] = self.source
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Document:
    """One loaded document, before cleaning and chunking.

    `doc_id` is stable across runs: the path relative to the root without extension
    ("sub/dir/report"), or a JSON-lines record's `id`. `text` is what citations
    quote; `file_hash` (sha256) lets re-ingestion skip unchanged input.
    """

    doc_id: str
    text: str
    source: str  # the file it came from
    format: str
    encoding: str
    meta: DocMeta
    file_hash: str


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: row `row` of the index, `text` = doc text[start:end]."""

    row: int
    id: str
    doc_id: str
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Filters:
    """Which documents a search may return. Dates are ISO prefixes compared as strings
    (`date_to="2023"` includes all of 2023); an undated document fails any date bound.
    `exclude_doc_ids` hides documents (evaluation uses it to simulate a missing answer).
    `where` keeps documents whose metadata field equals each value, ignoring width, script
    and bracket style: `where={"doc_number": "青政发[2023]5号", "issuer": "青岛市人民政府"}`."""

    doc_ids: tuple[str, ...] | None = None
    date_from: str | None = None
    date_to: str | None = None
    exclude_doc_ids: tuple[str, ...] = ()
    where: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:  # lists and dicts from callers become hashable tuples
        if self.doc_ids is not None and not isinstance(self.doc_ids, tuple):
            object.__setattr__(self, "doc_ids", tuple(self.doc_ids))
        if not isinstance(self.exclude_doc_ids, tuple):
            object.__setattr__(self, "exclude_doc_ids", tuple(self.exclude_doc_ids or ()))
        if not isinstance(self.where, tuple):
            pairs = self.where.items() if isinstance(self.where, Mapping) else self.where or ()
            object.__setattr__(self, "where", tuple(sorted((str(k), str(v)) for k, v in pairs)))

    @property
    def empty(self) -> bool:
        return (
            self.doc_ids is None
            and self.date_from is None
            and self.date_to is None
            and not self.exclude_doc_ids
            and not self.where
        )


NO_FILTERS = Filters()


@dataclass(frozen=True)
class Query:
    """A question as searched: its text and its normalised form, computed once."""

    text: str
    normalized: str

    @classmethod
    def of(cls, text: str | Query) -> Query:
        if isinstance(text, Query):
            return text
        from rag.textnorm import norm

        return cls(text, norm(text))


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and the evidence behind it."""

    row: int
    chunk_id: str
    doc_id: str
    text: str
    start: int
    end: int
    score: float  # fused score (comparable within one query only)
    dense_rank: int | None  # 1-based; None when the method did not return the chunk
    dense_score: float | None
    bm25_rank: int | None
    bm25_score: float | None
    kb: str = ""  # the knowledge base it came from (rag.search.multi); "" for a bare index

    @property
    def chunk(self) -> Chunk:
        return Chunk(self.row, self.chunk_id, self.doc_id, self.text, self.start, self.end)


@dataclass
class SearchResult:
    query: str
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Citation:
    n: int
    chunk_id: str
    doc_id: str
    title: str
    source: str
    date: str | None
    start: int  # passage offsets in the document's original text
    end: int
    text: str  # the whole cited passage
    quotes: tuple[tuple[int, int], ...] = ()  # quoted sentences' offsets in the document
    # where the document came from when it is not the operator's corpus: "用户上传（alice，
    # 2026-12-02 10:15，原文件名：通知.pdf）"; empty for corpus documents
    provenance: str = ""
    # why the passage must not be taken at face value: "instruction" (text addressed to an
    # assistant: 忽略以上指令, 你现在是, role markers), "citation_marker" (carries [n] of its own)
    flags: tuple[str, ...] = ()
    # where in its file the cited text is: "第4页", "第2张幻灯片", "工作表“预算” 第12行",
    # "表2 第5行"; empty for plain text
    location: str = ""
    ocr: bool = False  # the cited text was read from a scan by OCR
    kb: str = ""  # the knowledge base the passage is from; "" for a bare index


@dataclass(frozen=True)
class AnswerSentence:
    text: str
    citation: int  # n of its citation
    start: int  # offsets in the document's original text
    end: int
    supported: bool | None = True  # extractive quotes are supported by construction


@dataclass
class Answer:
    question: str
    text: str
    refused: bool
    citations: list[Citation]
    sentences: list[AnswerSentence]
    retrieved: list[Hit]
    confidence: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    notice: str = ""
    rewritten_question: str | None = None
    generator: str = "extractive"
    # 高/中/低 and why, in the user's words ("引用中没有出现问题里的“2024年”")
    confidence_level: str = ""
    confidence_reason: str = ""
    # the exact span of the first quoted sentence that answers: "156亿元", "2019年"
    short_answer: str | None = None
    # an LLM answer's own text, checked: {"shown": "llm" | "fallback" | "refusal",
    # "cited_sentences", "valid_citations", "tokens"}; None for the extractive answerer
    generation: dict | None = None

    def to_json(self) -> dict:
        return {
            "question": self.question,
            "rewritten_question": self.rewritten_question,
            "answer": self.text,
            "refused": self.refused,
            "confidence": round(self.confidence, 4),
            "confidence_level": self.confidence_level,
            "confidence_reason": self.confidence_reason,
            "short_answer": self.short_answer,
            "generator": self.generator,
            "notice": self.notice,
            "sentences": [asdict(s) for s in self.sentences],
            "citations": [
                {
                    "n": c.n,
                    "doc_id": c.doc_id,
                    "title": c.title,
                    "source": c.source,
                    "date": c.date,
                    "start": c.start,
                    "end": c.end,
                    "text": c.text,
                    "quotes": [list(q) for q in c.quotes],
                    "provenance": c.provenance,
                    "flags": list(c.flags),
                    "location": c.location,
                    "ocr": c.ocr,
                    "kb": c.kb,
                }
                for c in self.citations
            ],
            "retrieved": [
                {
                    "chunk_id": h.chunk_id,
                    "doc_id": h.doc_id,
                    "kb": h.kb,
                    "score": round(h.score, 6),
                    "dense_rank": h.dense_rank,
                    "bm25_rank": h.bm25_rank,
                    "start": h.start,
                    "end": h.end,
                    "text": h.text,
                }
                for h in self.retrieved
            ],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


class Searcher(Protocol):
    """What an answerer needs of a retriever (`rag.search.retriever.HybridRetriever`)."""

    def search(
        self, query: str | Query, top_k: int | None = None, filters: Filters | None = None
    ) -> SearchResult: ...


class Answerer(Protocol):
    """Every answerer: `answer` returns an `Answer`; `stream` yields text pieces, then it."""

    name: str

    def answer(
        self, question: str, top_k: int | None = None, filters: Filters | None = None
    ) -> Answer: ...

    def stream(
        self, question: str, top_k: int | None = None, filters: Filters | None = None
    ) -> Iterator[str | Answer]: ...
