"""Where an index's chunks are searched: the store interface and the embedded store.

An index is two things. The catalogue (rag/index/hybrid.py): the manifest with every
document's record, the chunk table, document texts and BM25 statistics, kept as
immutable version folders; the reader and the answerers read only this. And the store:
what finds chunks, by dense vector and by BM25 terms, within filters. Two stores:

    FaissStore + BM25 files   the default ("faiss"): vectors.faiss and the BM25 matrix
                              in the version folder, searched in this process
    MilvusStore               rag/index/milvus.py: dense and sparse vectors in one
                              Milvus collection per knowledge base (milvus-lite file
                              or server), filters pushed down into its expression

The retriever calls `dense` and `sparse` of `ChunkStore` with a `Scope` and gets
row numbers of the catalogue's chunk table back, best first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import numpy as np

from rag.index.bm25 import BM25Index
from rag.index.vectors import FaissStore
from rag.types import NO_FILTERS, Filters

FAISS = "faiss"


class Ranked(NamedTuple):
    rows: np.ndarray  # rows of the chunk table, best first
    scores: np.ndarray


EMPTY = Ranked(np.empty(0, np.int64), np.empty(0, np.float32))


class Scope(NamedTuple):
    """Which chunks a search may return: the caller's `filters`, and the documents they
    allow as resolved on the catalogue (`doc_ids`, None: every document). A store that
    can test a filter itself (Milvus) pushes `filters` down; one that cannot uses
    `doc_ids`. Both give the same chunks."""

    filters: Filters = NO_FILTERS
    doc_ids: list[str] | None = None


EVERYTHING = Scope()


class ChunkStore(Protocol):
    """What retrieval needs of a store."""

    kind: str  # "faiss" | "milvus"

    def dense(self, q: np.ndarray, k: int, scope: Scope = EVERYTHING) -> Ranked:
        """The `k` chunks of largest inner product with the query vector `q`."""
        ...

    def sparse(self, tokens: list[str], k: int, scope: Scope = EVERYTHING) -> Ranked:
        """The `k` chunks of highest BM25 score for the query's tokens (scores > 0 only)."""
        ...

    def vectors(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The stored dense vectors of `rows` (all rows: None)."""
        ...


class LocalStore:
    """The embedded store: FAISS vectors and the BM25 matrix of one version folder."""

    kind = FAISS

    def __init__(self, faiss: FaissStore, bm25: BM25Index, doc_rows: Callable[[str], list[int]]):
        self.faiss, self.bm25, self.doc_rows = faiss, bm25, doc_rows

    def dense(self, q: np.ndarray, k: int, scope: Scope = EVERYTHING) -> Ranked:
        return Ranked(*self.faiss.search(q, k, doc_ids=scope.doc_ids))

    def sparse(self, tokens: list[str], k: int, scope: Scope = EVERYTHING) -> Ranked:
        if scope.doc_ids is None:
            return Ranked(*self.bm25.search(tokens, k))
        # every score, then the allowed rows: the matrix has no per-document postings
        allowed_rows = {r for d in scope.doc_ids for r in self.doc_rows(d)}
        rows, scores = self.bm25.search(tokens, len(self.bm25))
        keep = np.asarray([r in allowed_rows for r in rows], bool)
        return Ranked(rows[keep][:k], scores[keep][:k])

    def vectors(self, rows: np.ndarray | None = None) -> np.ndarray:
        return self.faiss.vectors(rows)


def store_kind(uri: str) -> str:
    """The kind of store a `Settings.store` value names: "faiss" or "milvus"."""
    return FAISS if uri == FAISS else "milvus"
