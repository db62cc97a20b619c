"""The Milvus store: an index's dense vectors and BM25 postings in one Milvus collection.

One collection per knowledge base ("rag_<kb>"), one entity per chunk:

    id (chunk id, primary key), doc_id, date, doc_number, issuer    scalars filters test
    dense    FLOAT_VECTOR, inner product (FLAT, or HNSW at `ann_min_chunks` and above)
    sparse   SPARSE_FLOAT_VECTOR, inner product: the chunk's BM25 weights without IDF

The sparse vector holds our own jieba BM25 (rag/index/bm25.py) rather than Milvus's
BM25 function: milvus-lite 3.2 has no "chinese" analyzer (it offers a jieba tokenizer,
but segments the raw text its own way, without our normalisation), and with the same
segmentation and statistics both stores rank alike. The IDF is the query's side of the
product (`BM25Index.query_weights`), so adding documents never rewrites old rows' IDF.
The length norm (the mean passage length) is the row's side: the collection keeps one
(`avgdl`, in the manifest's store record) for all its rows, new rows are written with it,
and when an ingest moves the corpus's own mean by more than `SPARSE_DRIFT` every row's
sparse vector is rewritten with the new one (`realign_sparse`, a partial upsert that
leaves the dense vectors alone).

A URI ending in .db is a milvus-lite file (one process at a time); http://host:19530
(or milvus://host:19530) a Milvus standalone server or cluster. The catalogue (texts,
chunk table, BM25 statistics) stays in the index folder; search results whose chunk id
the live catalogue does not know (rows of a newer or an interrupted ingest) are skipped.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rag.errors import ConfigError, IndexStoreError
from rag.index.store import EMPTY, EVERYTHING, Ranked, Scope
from rag.textnorm import meta_key

MILVUS = "milvus"
# metadata fields with their own column, so `Filters.where` on them is pushed down
FILTER_FIELDS = ("doc_number", "issuer")
_MAX = {"id": 64, "doc_id": 1024, "date": 32, "doc_number": 512, "issuer": 512}
_BATCH = 1000  # entities per insert call
# relative change of the mean passage length at which every row's BM25 part is rewritten:
# 5% moves a term's weight in a passage of twice the mean length by at most about 2%
SPARSE_DRIFT = 0.05
_TOP_K_MAX = 16384  # Milvus's limit on one search's results

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise ConfigError("Milvus 存储需要 pymilvus：pip install pymilvus milvus-lite") from None
    return pymilvus


def client_uri(uri: str) -> str:
    """What pymilvus connects to: an absolute path for a milvus-lite file, http:// for
    a server named milvus://host:port."""
    if uri.endswith(".db"):
        return str(Path(uri).expanduser().resolve())
    if uri.startswith("milvus://"):
        return "http://" + uri[len("milvus://") :]
    return uri


def client(uri: str) -> Any:
    """One client per store in this process (milvus-lite allows one opener per file)."""
    key = client_uri(uri)
    with _clients_lock:
        if key not in _clients:
            if key.endswith(".db"):
                Path(key).parent.mkdir(parents=True, exist_ok=True)
            try:
                _clients[key] = _pymilvus().MilvusClient(key)
            except Exception as e:  # a server that is down, a file another process holds
                why = (
                    "milvus-lite 文件同一时间只能由一个进程打开，可能另一个进程（rag serve 或 "
                    "rag ingest）正在使用它；请等它结束，或改用 Milvus 服务器（http://主机:19530）"
                    if key.endswith(".db")
                    else f"{type(e).__name__}: {e}"
                )
                raise IndexStoreError(f"无法打开 Milvus 存储 {uri}：{why}") from None
        return _clients[key]


def collection_name(kb: str) -> str:
    """The collection of knowledge base `kb`: rag_<kb>. Milvus allows only letters, digits
    and underscores, so another name keeps what it can and gains a hash of itself
    ("cli-copy" -> "rag_cli_copy_5b1c0d2e", "青岛" -> "rag_kb_...")."""
    if re.fullmatch(r"[A-Za-z0-9_]{1,200}", kb):
        return f"rag_{kb}"
    readable = re.sub(r"[^A-Za-z0-9_]+", "_", kb).strip("_")[:60] or "kb"
    return f"rag_{readable}_{hashlib.sha1(kb.encode('utf-8')).hexdigest()[:8]}"


def _literal(value: str) -> str:
    # a JSON string is a valid Milvus string literal (\" and \\ escapes; tested)
    return json.dumps(value, ensure_ascii=False)


def _in(field: str, values: Iterable[str], negate: bool = False) -> str:
    items = ", ".join(_literal(v) for v in values)
    return f"{field} {'not in' if negate else 'in'} [{items}]"


def milvus_filter(scope: Scope) -> str:
    """The Milvus boolean expression for `scope`: the filters pushed down, as
    rag.search.retriever tests them on the catalogue ("" when there are none).

    A date bound excludes undated documents; `date_to="2023"` keeps all of 2023 (an ISO
    prefix compares at most its own length: "2023-05-17" <= "2023~"). A `where` field
    without a column of its own is tested through the catalogue's allowed documents.
    """
    f = scope.filters
    parts = []
    if f.doc_ids is not None:
        parts.append(_in("doc_id", f.doc_ids))
    if f.exclude_doc_ids:
        parts.append(_in("doc_id", f.exclude_doc_ids, negate=True))
    if f.date_from or f.date_to:
        parts.append('date != ""')
    if f.date_from:
        parts.append(f"date >= {_literal(f.date_from)}")
    if f.date_to:
        parts.append(f"date <= {_literal(f.date_to + '~')}")
    through_catalogue = False
    for key, want in f.where:
        if key in FILTER_FIELDS and meta_key(want):
            parts.append(f"{key} == {_literal(meta_key(want))}")
        else:
            through_catalogue = True
    if through_catalogue and scope.doc_ids is not None:
        parts.append(_in("doc_id", scope.doc_ids))
    return " and ".join(parts)


def _scalars(doc_id: str, doc: Mapping[str, Any]) -> dict[str, str]:
    """The filter columns of a document's chunks, from its manifest record."""
    meta = doc.get("meta") or {}
    out = {"doc_id": doc_id, "date": str(doc.get("date") or "")}
    for key in FILTER_FIELDS:
        value = meta.get(key, doc.get(key))
        out[key] = "" if value is None else meta_key(value)
    return {k: v[: _MAX[k]] for k, v in out.items()}


class MilvusStore:
    """A knowledge base's collection, bound to the catalogue of one index version."""

    kind = MILVUS

    def __init__(
        self, uri: str, collection: str, dim: int, index_type: str = "FLAT", ef_search: int = 128
    ):
        self.uri, self.collection, self.dim = uri, collection, dim
        self.index_type, self.ef_search = index_type, ef_search
        self.client = client(uri)
        self._ids: Sequence[str] = ()
        self._row_of: Mapping[str, int] = {}
        self._bm25: Any = None
        self._embedded = 0
        self.avgdl: float | None = None  # the length norm of every row's sparse vector

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(
        cls,
        uri: str,
        collection: str,
        dim: int,
        n_rows: int = 0,
        ann_min: int = 200_000,
        hnsw_m: int = 32,
        ef_search: int = 128,
        replace: bool = False,
    ) -> MilvusStore:
        """An empty `collection` (`collection_name(kb)`). One that holds rows is replaced
        only with `replace` (it is this index's own), else refused: it may be another
        index's knowledge base.

        The dense index is exact (FLAT) below `ann_min` rows and HNSW at or above it, as
        the FAISS store decides; it is chosen here, once, from `n_rows`.
        """
        pm = _pymilvus()
        c, name = client(uri), collection
        if not replace and c.has_collection(name):
            if int(c.get_collection_stats(name).get("row_count", 0)):
                raise IndexStoreError(
                    f"Milvus 存储 {uri} 中的集合 {name} 已有其他索引的数据；请换一个知识库名"
                    "（索引目录名），或确认可以覆盖后加 --replace"
                )
        index_type = "HNSW" if n_rows >= ann_min else "FLAT"
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", pm.DataType.VARCHAR, is_primary=True, max_length=_MAX["id"])
        for field in ("doc_id", "date", *FILTER_FIELDS):
            schema.add_field(field, pm.DataType.VARCHAR, max_length=_MAX[field])
        schema.add_field("dense", pm.DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("sparse", pm.DataType.SPARSE_FLOAT_VECTOR)
        params = c.prepare_index_params()
        dense_params = {"M": hnsw_m, "efConstruction": 80} if index_type == "HNSW" else {}
        params.add_index("dense", index_type=index_type, metric_type="IP", params=dense_params)
        params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        if c.has_collection(name):
            c.drop_collection(name)
        c.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
        return cls(uri, name, dim, index_type, ef_search)

    @classmethod
    def open(cls, record: Mapping[str, Any], uri: str | None, dim: int, ef_search: int = 128):
        """The collection a manifest's store `record` names, at `uri` (a Milvus server
        may have moved) or the recorded one."""
        uri = uri or record["uri"]
        store = cls(uri, record["collection"], dim, record.get("index", "FLAT"), ef_search)
        if not store.client.has_collection(store.collection):
            raise IndexStoreError(
                f"Milvus 存储 {uri} 中没有集合 {store.collection}：索引目录与存储不匹配；"
                "请用 `rag index copy` 重新复制，或用 `rag ingest --rebuild` 重建"
            )
        store.client.load_collection(store.collection)
        store.avgdl = record.get("avgdl")  # None: written before it was kept
        return store

    def record(self) -> dict[str, Any]:
        """What the manifest keeps of this store."""
        uri = client_uri(self.uri) if self.uri.endswith(".db") else self.uri
        return {
            "kind": MILVUS,
            "uri": uri,
            "collection": self.collection,
            "index": self.index_type,
            "sparse": "bm25-term-part",  # query side: IDF (rag/index/bm25.py)
            "avgdl": self.avgdl,
        }

    def bind(
        self, ids: Sequence[str], row_of: Mapping[str, int], bm25: Any, embedded: int | None = None
    ) -> None:
        """Answer in rows of this catalogue: its chunk ids, BM25 statistics for the query
        side of sparse search, and how many of its first rows have a dense vector (the
        rest hold placeholders until an ingest fills them in: `write`)."""
        self._ids, self._row_of, self._bm25 = ids, row_of, bm25
        self._embedded = len(ids) if embedded is None else embedded

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def is_approximate(self) -> bool:
        return self.index_type != "FLAT"

    def save(self, folder: Path) -> None:
        """Nothing to write into the version folder: the rows are in Milvus already."""

    # ------------------------------------------------------------------ writing
    def write(
        self,
        ids: Sequence[str],
        doc_ids: Sequence[str],
        vectors: np.ndarray,
        term_part: sp.csr_matrix,
        docs: Mapping[str, Mapping[str, Any]],
        fresh: bool = False,
    ) -> None:
        """Write chunks: ids, their documents, dense vectors, BM25 term parts (one row
        each, `BM25Index.term_part`) and the documents' manifest records (filter columns).
        Upserts, so a repeated write (an ingest run again after a crash) adds nothing;
        `fresh`: the collection was just created, plain inserts.

        A chunk whose vector is not computed yet is written with a placeholder (Milvus
        has no entity without its vector field) and rewritten whole once it is: the
        catalogue's `n_embedded` says which rows hold real ones, and `dense` skips the
        others."""
        if not (len(ids) == len(doc_ids) == len(vectors) == term_part.shape[0]):
            raise ValueError(f"{len(ids)} ids, {len(vectors)} vectors, {term_part.shape[0]} rows")
        scalars = {d: _scalars(d, docs[d]) for d in dict.fromkeys(doc_ids)}
        put = self.client.insert if fresh else self.client.upsert
        for a in range(0, len(ids), _BATCH):
            rows = []
            for i in range(a, min(a + _BATCH, len(ids))):
                lo, hi = term_part.indptr[i], term_part.indptr[i + 1]
                cols, vals = term_part.indices[lo:hi].tolist(), term_part.data[lo:hi].tolist()
                rows.append(
                    {
                        "id": ids[i],
                        **scalars[doc_ids[i]],
                        "dense": vectors[i].tolist(),
                        "sparse": dict(zip(cols, vals)),
                    }
                )
            put(self.collection, rows)

    def sparse_rows(self, bm25: Any, rows: np.ndarray) -> sp.csr_matrix:
        """The BM25 parts of catalogue `rows` as this collection writes them: with its
        length norm, set from `bm25` when it has none yet."""
        if self.avgdl is None:
            self.avgdl = bm25.avgdl
        return bm25.term_part(rows, avgdl=self.avgdl)

    def realign_sparse(self, ids: Sequence[str], bm25: Any, rows: np.ndarray) -> int:
        """Rewrite the sparse vectors of the chunks `ids` (catalogue `rows` of `bm25`)
        with `bm25`'s own length norm when the collection's has drifted from it by more
        than `SPARSE_DRIFT` (or is unknown); the number of rows rewritten. A run stopped
        half-way leaves the recorded norm unchanged, so the next ingest rewrites again."""
        now = bm25.avgdl
        if self.avgdl is not None and abs(now / max(self.avgdl, 1e-9) - 1) <= SPARSE_DRIFT:
            return 0
        part = bm25.term_part(rows, avgdl=now)
        for a in range(0, len(ids), _BATCH):
            batch = []
            for i in range(a, min(a + _BATCH, len(ids))):
                lo, hi = part.indptr[i], part.indptr[i + 1]
                cols, vals = part.indices[lo:hi].tolist(), part.data[lo:hi].tolist()
                batch.append({"id": ids[i], "sparse": dict(zip(cols, vals))})
            self.client.upsert(self.collection, batch, partial_update=True)
        self.avgdl = now
        return len(ids)

    def delete_docs(self, doc_ids: Iterable[str], keep_ids: Iterable[str] = ()) -> None:
        """Remove the chunks of `doc_ids`, except `keep_ids` (the chunks a changed document
        still has: same text at the same place, same id)."""
        doc_ids, keep = list(doc_ids), list(keep_ids)
        for a in range(0, len(doc_ids), _BATCH):
            expr = _in("doc_id", doc_ids[a : a + _BATCH])
            if keep:
                expr += " and " + _in("id", keep, negate=True)
            self.client.delete(self.collection, filter=expr)

    def doc_ids(self) -> set[str]:
        """The documents that have chunks in the collection."""
        it = self.client.query_iterator(
            self.collection, batch_size=_BATCH, output_fields=["doc_id"]
        )
        found: set[str] = set()
        try:
            while batch := it.next():
                found.update(r["doc_id"] for r in batch)
        finally:
            it.close()
        return found

    def count(self) -> int:
        res = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    # ------------------------------------------------------------------ searching
    def _ranked(self, hits: list[dict], below: int | None = None, k: int | None = None) -> Ranked:
        rows, scores = [], []
        for h in hits:
            r = self._row_of.get(h["id"])
            # else a row of another catalogue version: not this index's; rows from `below`
            # on hold placeholder vectors
            if r is not None and (below is None or r < below):
                rows.append(r)
                scores.append(h["distance"])
        return Ranked(np.asarray(rows[:k], np.int64), np.asarray(scores[:k], np.float32))

    def _search(
        self, data: Any, field: str, k: int, scope: Scope, params: dict, extra: int = 0
    ) -> list[dict]:
        res = self.client.search(
            self.collection,
            data=[data],
            anns_field=field,
            limit=min(k + extra, _TOP_K_MAX),
            filter=milvus_filter(scope),
            output_fields=["id"],
            search_params={"metric_type": "IP", "params": params},
        )
        return res[0]

    def dense(self, q: np.ndarray, k: int, scope: Scope = EVERYTHING) -> Ranked:
        if k <= 0 or not self._embedded:
            return EMPTY
        # placeholder rows (zero vectors, score 0) may fill up to `pending` of the places
        pending = len(self._ids) - self._embedded
        limit = min(k + pending, _TOP_K_MAX)
        params = {"ef": max(self.ef_search, limit)} if self.is_approximate else {}
        q = np.asarray(q, np.float32).ravel().tolist()
        hits = self._search(q, "dense", k, scope, params, extra=pending)
        return self._ranked(hits, below=self._embedded, k=k)

    def sparse(self, tokens: list[str], k: int, scope: Scope = EVERYTHING) -> Ranked:
        weights = self._bm25.query_weights(tokens)
        if k <= 0 or not self._ids or not weights:
            return EMPTY
        return self._ranked(self._search(weights, "sparse", k, scope, {}))

    def vectors(self, rows: np.ndarray | None = None) -> np.ndarray:
        rows = np.arange(len(self._ids)) if rows is None else np.asarray(rows, np.int64)
        out = np.zeros((len(rows), self.dim), np.float32)
        wanted = [self._ids[r] for r in rows]
        at: dict[str, list[int]] = {}
        for i, cid in enumerate(wanted):
            at.setdefault(cid, []).append(i)
        for a in range(0, len(wanted), _BATCH):
            part = list(dict.fromkeys(wanted[a : a + _BATCH]))
            for r in self.client.query(
                self.collection, filter=_in("id", part), output_fields=["dense"]
            ):
                out[at[r["id"]]] = np.asarray(r["dense"], np.float32)
        return out
