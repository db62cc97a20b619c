"""FAISS vectors: rows of the chunk table, searched by inner product.

Our own rather than llama-index-vector-stores-faiss: that store cannot delete by
document, keeps no row->node map on disk, and has no exact->HNSW switch. Retrieval
reaches it through rag/index/store.py's `LocalStore`, the default implementation of the
store interface that the Milvus store (rag/index/milvus.py) also implements.

Row i of the FAISS index is row i of the index's chunk table; the store keeps the
row -> node id and row -> document id maps. Adding rows appends to the FAISS index
(exact or HNSW alike); only removing rows or crossing `ann_min` rebuilds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexStoreError

VECTORS_FILE = "vectors.faiss"


def _faiss():
    import faiss

    return faiss


def build_faiss(vectors: np.ndarray, ann_min: int, hnsw_m: int = 32, ef_search: int = 128):
    """Exact inner-product search below `ann_min` vectors, HNSW at or above it."""
    faiss = _faiss()
    n, d = vectors.shape
    if n >= ann_min:
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = ef_search
    else:
        index = faiss.IndexFlatIP(d)
    if n:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


class FaissStore:
    """A FAISS index plus the row -> (chunk id, doc id) maps; text lives in the chunk table."""

    kind = "faiss"  # rag/index/store.py: the embedded store

    def __init__(
        self,
        dim: int,
        index: Any = None,
        ids=(),
        doc_ids=(),
        ann_min: int = 200_000,
        hnsw_m: int = 32,
        ef_search: int = 128,
    ):
        self.dim, self.ann_min, self.hnsw_m, self.ef_search = dim, ann_min, hnsw_m, ef_search
        self._index = (
            index
            if index is not None
            else build_faiss(np.zeros((0, dim), np.float32), ann_min, hnsw_m, ef_search)
        )
        self._ids = list(ids)
        self._doc_ids = list(doc_ids)
        if self._index.ntotal != len(self._ids):
            raise IndexStoreError(
                f"vector index has {self._index.ntotal} rows but {len(self._ids)} chunk ids: "
                "the index is damaged; rebuild it with `rag ingest --rebuild`"
            )

    @property
    def client(self) -> Any:
        return self._index

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def is_approximate(self) -> bool:
        return not isinstance(self._index, _faiss().IndexFlat)

    def __len__(self) -> int:
        return len(self._ids)

    def delete(self, doc_id: str) -> None:
        """Remove every row of document `doc_id`."""
        keep = [i for i, d in enumerate(self._doc_ids) if d != doc_id]
        self.keep_rows(np.asarray(keep, dtype=np.int64))

    def search(
        self, q: np.ndarray, k: int, doc_ids: list[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows and inner-product scores of the `k` nearest vectors (optionally within docs)."""
        n = len(self._ids)
        if n == 0 or k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        params = None
        if doc_ids is not None:
            wanted = set(doc_ids)
            allowed = np.asarray([i for i, d in enumerate(self._doc_ids) if d in wanted], np.int64)
            if len(allowed) == 0:
                return np.empty(0, np.int64), np.empty(0, np.float32)
            faiss = _faiss()
            sel = faiss.IDSelectorBatch(allowed)
            params = (
                faiss.SearchParametersHNSW(sel=sel, efSearch=self.ef_search)
                if self.is_approximate
                else faiss.SearchParameters(sel=sel)
            )
            k = min(k, len(allowed))
        k = min(k, n)
        sims, rows = self._index.search(q.reshape(1, -1), k, params=params)
        ok = rows[0] >= 0
        return rows[0][ok].astype(np.int64), sims[0][ok]

    def vectors(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The stored vectors (all, or `rows`), reconstructed from FAISS."""
        n = len(self._ids)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        allv = self._index.reconstruct_n(0, n)
        return allv if rows is None else allv[rows]

    def add_vectors(self, vecs: np.ndarray, ids: list[str], doc_ids: list[str]) -> None:
        """Append rows: added to the FAISS index in place while it stays the same kind
        (exact below `ann_min` rows, HNSW from there on); rebuilt when it switches."""
        if len(vecs) != len(ids) or len(ids) != len(doc_ids):
            raise ValueError(f"{len(vecs)} vectors for {len(ids)} ids and {len(doc_ids)} doc ids")
        n = len(self._ids) + len(ids)
        if self.is_approximate == (n >= self.ann_min):
            if len(ids):
                self._index.add(np.ascontiguousarray(vecs, dtype=np.float32))
            self._ids = self._ids + list(ids)
            self._doc_ids = self._doc_ids + list(doc_ids)
            return
        allv = np.vstack([self.vectors(), vecs]) if len(self._ids) else vecs
        self._rebuild(allv, self._ids + list(ids), self._doc_ids + list(doc_ids))

    def keep_rows(self, rows: np.ndarray) -> None:
        self._rebuild(
            self.vectors(rows), [self._ids[r] for r in rows], [self._doc_ids[r] for r in rows]
        )

    def _rebuild(self, vecs: np.ndarray, ids: list[str], doc_ids: list[str]) -> None:
        self._index = build_faiss(vecs, self.ann_min, self.hnsw_m, self.ef_search)
        self._ids, self._doc_ids = ids, doc_ids

    # persistence ----------------------------------------------------------
    def save(self, folder: Path) -> None:
        _faiss().write_index(self._index, str(folder / VECTORS_FILE))

    @classmethod
    def load(
        cls, folder: Path, ids: list[str], doc_ids: list[str], dim: int, **kw: Any
    ) -> FaissStore:
        faiss = _faiss()
        path = folder / VECTORS_FILE
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise IndexStoreError(
                f"{path}: cannot read the vector index ({e}); rebuild it"
            ) from None
        if index.d != dim:
            raise IndexStoreError(f"{path}: vectors have dimension {index.d}, manifest says {dim}")
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = kw.get("ef_search", 128)
        return cls(dim=dim, index=index, ids=ids, doc_ids=doc_ids, **kw)
