"""Searching several knowledge bases at once, each with its own index and embedding model.

Each knowledge base's `HybridRetriever` searches as it does alone; the ranked lists are
fused by weighted reciprocal rank (`rrf`, the fusion the retriever offers for lists
whose scores are not comparable: every retriever normalises its scores per query, so a
knowledge base with nothing relevant still has a top score near 1). Ties, as the first
hits of each list are, go to the higher embedding cosine.

Answerers read passages through `retriever.index`; over several knowledge bases that is
a `MultiIndex`, a read-only view in which each document id is qualified by its
knowledge base ("hr/leave-rules") and rows follow one another, so two knowledge bases
may hold the same document id without mixing. Every hit names its knowledge base
(`Hit.kb`), and so every citation made from it.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence

import numpy as np

from rag.config import Settings
from rag.index.bm25 import bm25_idf
from rag.read.reader import Reader
from rag.search.retriever import HybridRetriever, rrf
from rag.types import Chunk, DocMeta, Filters, Hit, Query, SearchResult

SEP = "/"  # kb/doc: knowledge-base names never hold it (rag.org.kbs.check_name)


def qualify(kb: str, doc_id: str) -> str:
    return f"{kb}{SEP}{doc_id}"


class _PooledIdf:
    """What the reader needs of `bm25`: IDF over the passages of every knowledge base."""

    def __init__(self, indexes):
        self.indexes = indexes

    def idf(self, terms: Sequence[str]) -> np.ndarray:
        n = sum(len(ix.bm25) for ix in self.indexes)
        df = np.zeros(len(terms))
        for ix in self.indexes:
            vocab, counts = ix.bm25.vocab, ix.bm25.df
            df += [0 if vocab.get(t) is None else counts[vocab[t]] for t in terms]
        return bm25_idf(n, df)


class MultiIndex:
    """Several loaded indexes as one, read-only: qualified document ids, offset rows."""

    def __init__(self, names: Sequence[str], indexes: Sequence):
        self.names = list(names)
        self.indexes = list(indexes)
        self.offsets = list(np.cumsum([0] + [len(ix) for ix in self.indexes[:-1]]))
        self._by_name = dict(zip(self.names, self.indexes))
        self.bm25 = _PooledIdf(self.indexes)

    def __len__(self) -> int:
        return sum(len(ix) for ix in self.indexes)

    @property
    def n_embedded(self) -> int:
        """Rows with a dense vector, counted as HybridIndex counts them (the first rows):
        all when every part is complete, else those before the first part's first row
        still waiting for its vector; later parts' rows then rank by BM25 alone too, until
        their knowledge base's own ingest has filled its vectors in."""
        for off, ix in zip(self.offsets, self.indexes):
            if ix.n_embedded < len(ix):
                return int(off) + ix.n_embedded
        return len(self)

    def pending_vectors(self) -> dict[str, int]:
        """Per (qualified) document, its chunks still waiting for a vector."""
        return {
            qualify(kb, d): n
            for kb, ix in zip(self.names, self.indexes)
            for d, n in ix.pending_vectors().items()
        }

    def fill_failure(self, doc_id: str | None = None) -> str | None:
        """Why the last background fill of `doc_id`'s knowledge base failed (None: it did
        not); without a document, the first part's that did."""
        if doc_id is not None:
            ix, _ = self._split(doc_id)
            return ix.fill_failure()
        return next((f for ix in self.indexes if (f := ix.fill_failure())), None)

    def _split(self, doc_id: str):
        kb, _, local = doc_id.partition(SEP)
        return self._by_name[kb], local

    def _row(self, row: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.offsets, row) - 1
        return i, row - int(self.offsets[i])

    def offset(self, kb: str) -> int:
        return int(self.offsets[self.names.index(kb)])

    @property
    def docs(self) -> dict[str, dict]:
        return {
            qualify(kb, d): meta
            for kb, ix in zip(self.names, self.indexes)
            for d, meta in ix.docs.items()
        }

    def tokenize(self, text: str, normalized: bool = False) -> list[str]:
        # the segmenters (jieba, rjieba) cut alike (rag.index.segment)
        return self.indexes[0].tokenize(text, normalized)

    def chunk(self, row: int) -> Chunk:
        i, local = self._row(row)
        c = self.indexes[i].chunk(local)
        return Chunk(row, qualify(self.names[i], c.id), qualify(self.names[i], c.doc_id),
                     c.text, c.start, c.end)  # fmt: skip

    def doc_rows(self, doc_id: str) -> list[int]:
        ix, local = self._split(doc_id)
        off = self.offset(doc_id.partition(SEP)[0])
        return [off + r for r in ix.doc_rows(local)]

    def doc_meta(self, doc_id: str) -> DocMeta:
        ix, local = self._split(doc_id)
        return ix.doc_meta(local)

    def doc_labels(self, doc_id: str) -> tuple[str, ...]:
        ix, local = self._split(doc_id)
        return ix.doc_labels(local)

    def planted(self, doc_id: str) -> list[tuple[int, int, str]]:
        ix, local = self._split(doc_id)
        return ix.planted(local)

    def passage_flags(self, doc_id: str, start: int, end: int) -> tuple[str, ...]:
        ix, local = self._split(doc_id)
        return ix.passage_flags(local, start, end)

    def location(self, doc_id: str, start: int, end: int) -> str:
        ix, local = self._split(doc_id)
        return ix.location(local, start, end)

    def is_ocr(self, doc_id: str, start: int, end: int) -> bool:
        ix, local = self._split(doc_id)
        return ix.is_ocr(local, start, end)

    def document_text(self, doc_id: str) -> str:
        ix, local = self._split(doc_id)
        return ix.document_text(local)


def _local(filters: Filters | None, kb: str, kbs: Sequence[str]) -> Filters | None:
    """`filters` as one knowledge base sees them: "kb/doc" ids become "doc"; ids of
    another knowledge base are dropped, unqualified ones apply to every one."""
    if filters is None or (filters.doc_ids is None and not filters.exclude_doc_ids):
        return filters

    def mine(ids):
        out = []
        for d in ids:
            head, sep, rest = d.partition(SEP)
            if not sep or head not in kbs:
                out.append(d)
            elif head == kb:
                out.append(rest)
        return tuple(out)

    return dataclasses.replace(
        filters,
        doc_ids=None if filters.doc_ids is None else mine(filters.doc_ids),
        exclude_doc_ids=mine(filters.exclude_doc_ids),
    )


class MultiRetriever:
    """The retrievers of several knowledge bases searched as one (`search()`), with
    the `index`, `reader` and `settings` an answerer reads. With one knowledge base it is
    that retriever, its hits naming it."""

    def __init__(self, parts: Sequence[tuple[str, HybridRetriever]], settings: Settings):
        if not parts:
            raise ValueError("MultiRetriever needs at least one knowledge base")
        self.parts = list(parts)
        self.settings = settings
        self._view()

    def _view(self) -> None:
        if len(self.parts) == 1:
            self.index = self.parts[0][1].index
            self.reader = self.parts[0][1].reader
        else:
            self.index = MultiIndex([n for n, _ in self.parts], [r.index for _, r in self.parts])
            self.reader = Reader(self.index)

    @property
    def kbs(self) -> list[str]:
        return [n for n, _ in self.parts]

    def reload(self) -> None:
        """Open each knowledge base's live version again (after an ingest)."""
        from rag.index.hybrid import HybridIndex

        for _, r in self.parts:
            r.index = HybridIndex.open(r.settings.index_path, r.settings)
            r.reader = Reader(r.index)
        self._view()

    def search(
        self, query: str | Query, top_k: int | None = None, filters: Filters | None = None
    ) -> SearchResult:
        query = Query.of(query)
        top_k = top_k or self.settings.top_k
        if len(self.parts) == 1:
            name, r = self.parts[0]
            res = r.search(query, top_k=top_k, filters=filters)
            res.hits = [dataclasses.replace(h, kb=name) for h in res.hits]
            return res
        timings: dict[str, float] = {}
        rankings: list[list[int]] = []
        by_row: dict[int, Hit] = {}
        for name, r in self.parts:
            res = r.search(query, top_k=top_k, filters=_local(filters, name, self.kbs))
            for k, v in res.timings_ms.items():
                timings[k] = timings.get(k, 0.0) + v
            off = self.index.offset(name)
            ranking = []
            for h in res.hits:
                row = off + h.row
                by_row[row] = dataclasses.replace(
                    h, row=row, chunk_id=qualify(name, h.chunk_id),
                    doc_id=qualify(name, h.doc_id), kb=name,
                )  # fmt: skip
                ranking.append(row)
            rankings.append(ranking)
        fused = rrf(rankings, [1.0] * len(rankings), self.settings.rrf_k)
        order = sorted(fused, key=lambda row: (-fused[row], -(by_row[row].dense_score or 0.0)))
        hits = [dataclasses.replace(by_row[row], score=fused[row]) for row in order[:top_k]]
        return SearchResult(query.text, hits, timings)
