"""BM25 over jieba tokens of the normalised text, stored as a sparse term-frequency matrix.

Our own because llama-index's BM25Retriever finds nothing in Chinese with its defaults
(a whole sentence becomes one token) and ignores a custom tokenizer for queries.
The term-frequency matrix is the persisted form (npz + JSON vocabulary, no pickle); the
BM25 weights are saved beside it in the same npz, so opening an index reads them instead
of recomputing them, and the term frequencies are only read when the index is changed.
Segmentation (which words a text is counted as) is rag.index.segment's.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from rag.index.segment import (
    LEGACY_SEGMENTER,
    TermRows,
    _Vocabulary,
    count_terms,
    default_segmenter,
    tokenize,
)


# --------------------------------------------------------------------------- the index
class BM25Hits(NamedTuple):
    rows: np.ndarray  # row numbers into the chunk table, best first
    scores: np.ndarray


def _bm25_weights(tf: sp.csr_matrix, k1: float, b: float) -> sp.csc_matrix:
    n = tf.shape[0]
    dl = np.asarray(tf.sum(axis=1)).ravel()
    avgdl = dl.mean() if n else 1.0
    df = np.bincount(tf.indices, minlength=tf.shape[1])
    idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
    rows = np.repeat(np.arange(n), np.diff(tf.indptr))
    denom = tf.data + k1 * (1 - b + b * dl[rows] / max(avgdl, 1e-9))
    w = idf[tf.indices] * tf.data * (k1 + 1) / denom
    return sp.csr_matrix((w.astype(np.float32), tf.indices, tf.indptr), shape=tf.shape).tocsc()


def bm25_idf(n_docs: int, df: np.ndarray) -> np.ndarray:
    """BM25's IDF of terms with document frequencies `df` among `n_docs` passages; also
    pooled over several indexes' counts (rag.search.multi)."""
    n = max(n_docs, 1)
    return np.log1p((n - df + 0.5) / (df + 0.5))


class BM25Index:
    """Okapi BM25 over a (chunks x vocabulary) term-frequency matrix.

    An index loaded from disk holds only the weights; the term frequencies (needed to
    add or remove rows) are read on first use of `tf`.
    """

    def __init__(
        self,
        tf: sp.csr_matrix | None,
        vocab: dict[str, int],
        k1: float = 1.2,
        b: float = 0.75,
        segmenter: str | None = None,
        weights: sp.csc_matrix | None = None,
        tf_loader=None,
        grouped_loader=None,
    ):
        if tf is None and (weights is None or tf_loader is None):
            raise ValueError("BM25Index needs tf, or weights and a tf_loader")
        self._tf = tf.tocsr() if tf is not None else None
        self._tf_loader = tf_loader
        self.vocab = vocab
        self.k1, self.b = k1, b
        self.segmenter = segmenter or default_segmenter()
        self._weights: sp.csc_matrix | None = weights
        self._grouped_loader = grouped_loader  # -> (group_of_row, weights) saved by `save`
        self._lock = threading.Lock()

    @property
    def tf(self) -> sp.csr_matrix:
        if self._tf is None:
            self._tf = self._tf_loader()
        return self._tf

    def tokenize(self, text: str, normalized: bool = False) -> list[str]:
        """Tokens of `text` as this index's segmenter makes them (use for its queries)."""
        return tokenize(text, normalized, self.segmenter)

    # building -------------------------------------------------------------
    @classmethod
    def empty(cls, k1: float = 1.2, b: float = 0.75, segmenter: str | None = None) -> BM25Index:
        return cls(sp.csr_matrix((0, 0), dtype=np.float32), {}, k1, b, segmenter)

    def _like(self, tf: sp.csr_matrix, vocab: dict[str, int] | None = None) -> BM25Index:
        return BM25Index(
            tf, self.vocab if vocab is None else vocab, self.k1, self.b, self.segmenter
        )

    def add(self, token_lists: Iterable[list[str]]) -> BM25Index:
        """A new index with one row appended per token list (the vocabulary grows)."""
        return self.add_rows([count_terms(token_lists)])

    def add_rows(self, blocks: Iterable[TermRows]) -> BM25Index:
        """A new index with the rows of each block (`count_terms`) appended, in order.

        `blocks` may be a generator: each is mapped onto the vocabulary as it comes.
        """
        vocab = _Vocabulary(self.vocab)
        column = vocab.__getitem__
        data, indices, lengths = [], [], []
        for b in blocks:
            remap = np.fromiter(map(column, b.terms), np.int32, len(b.terms))
            data.append(b.counts)
            indices.append(remap[b.cols])
            lengths.append(np.diff(b.indptr))
        indptr = np.zeros(sum(map(len, lengths)) + 1, np.int64)
        if lengths:
            np.cumsum(np.concatenate(lengths), out=indptr[1:])
        new = sp.csr_matrix(
            (
                np.concatenate(data) if data else np.zeros(0, np.float32),
                np.concatenate(indices) if indices else np.zeros(0, np.int32),
                indptr,
            ),
            shape=(len(indptr) - 1, len(vocab)),
        )
        old = self.tf
        old = sp.csr_matrix((old.data, old.indices, old.indptr), shape=(old.shape[0], len(vocab)))
        return self._like(sp.vstack([old, new], format="csr"), dict(vocab))

    def grouped(self, group_of_row: np.ndarray, n_groups: int) -> BM25Index:
        """BM25 over groups of rows (documents of chunks): term counts summed per group.

        Overlapping chunks count their shared sentence twice; harmless for ranking.
        Weights saved for the same grouping (`save(groups=...)`) are read, not recomputed.
        """

        def group_tf() -> sp.csr_matrix:
            n = self.tf.shape[0]
            agg = sp.csr_matrix(
                (np.ones(n, np.float32), (group_of_row, np.arange(n))), shape=(n_groups, n)
            )
            return (agg @ self.tf).tocsr()

        saved = self._grouped_loader() if self._grouped_loader is not None else None
        if saved is not None:
            rows, weights = saved
            if weights.shape[0] == n_groups and np.array_equal(rows, group_of_row):
                return BM25Index(
                    None, self.vocab, self.k1, self.b, self.segmenter, weights, group_tf
                )
        return self._like(group_tf())

    def select(self, rows: np.ndarray) -> BM25Index:
        """A new index keeping only `rows` (in that order); used when documents are removed."""
        return self._like(self.tf[rows])

    # scoring --------------------------------------------------------------
    @functools.cached_property
    def df(self) -> np.ndarray:
        """Document frequency of every vocabulary term."""
        if self._tf is None:  # a weight is never 0 where the term occurs: count per column
            return np.diff(self.weights.indptr)
        return np.bincount(self.tf.indices, minlength=len(self.vocab))

    def idf(self, terms: Sequence[str]) -> np.ndarray:
        """BM25's IDF of each term; a term outside the vocabulary has document frequency 0."""
        cols = (self.vocab.get(t) for t in terms)
        df = np.array([0 if j is None else self.df[j] for j in cols], float)
        return bm25_idf(len(self), df)

    @functools.cached_property
    def column_idf(self) -> np.ndarray:
        """BM25's IDF of every vocabulary column (as `idf`, by column number)."""
        n = max(len(self), 1)
        df = self.df.astype(float)
        return np.log1p((n - df + 0.5) / (df + 0.5))

    @property
    def avgdl(self) -> float:
        """The mean passage length in tokens, BM25's length norm."""
        n = self.tf.shape[0]
        return float(self.tf.sum()) / n if n else 1.0

    def term_part(self, rows: np.ndarray, avgdl: float | None = None) -> sp.csr_matrix:
        """The weights of `rows` without their IDF factor: what a store that takes the
        IDF from the query side keeps per chunk (rag/index/milvus.py), so that
        sum(idf(t) * term_part(t)) over the query's terms is this index's BM25 score.

        `avgdl`: the length norm to use instead of this index's own. A store keeps one
        for all its rows, so that rows written by earlier ingests (other lengths) and new
        ones are scored alike."""
        rows = np.asarray(rows, np.int64)
        if avgdl is not None:
            tf = self.tf[rows]
            dl = np.asarray(self.tf.sum(axis=1)).ravel()[rows]
            per = np.repeat(dl, np.diff(tf.indptr))
            part = (
                tf.data
                * (self.k1 + 1)
                / (tf.data + self.k1 * (1 - self.b + self.b * per / max(avgdl, 1e-9)))
            )
            return sp.csr_matrix((part.astype(np.float32), tf.indices, tf.indptr), shape=tf.shape)
        w = self.weights.tocsr()[rows]
        idf = self.column_idf
        return sp.csr_matrix(
            ((w.data / idf[w.indices]).astype(np.float32), w.indices, w.indptr), shape=w.shape
        )

    def query_weights(self, query_tokens: list[str]) -> dict[int, float]:
        """The query side of that sparse product: IDF of each distinct known term."""
        cols = sorted({self.vocab[w] for w in query_tokens if w in self.vocab})
        if not cols or len(self) == 0:
            return {}
        idf = self.column_idf
        return {c: float(idf[c]) for c in cols}

    @property
    def weights(self) -> sp.csc_matrix:
        if self._weights is None:
            with self._lock:  # two first queries at once compute it once
                if self._weights is None:
                    self._weights = _bm25_weights(self.tf, self.k1, self.b)
        return self._weights

    def search(self, query_tokens: list[str], k: int) -> BM25Hits:
        cols = sorted({self.vocab[w] for w in query_tokens if w in self.vocab})
        if not cols or len(self) == 0:
            return BM25Hits(np.empty(0, np.int64), np.empty(0, np.float32))
        scores = np.asarray(self.weights[:, cols].sum(axis=1)).ravel()
        nz = np.flatnonzero(scores)
        if len(nz) > k:
            nz = nz[np.argpartition(-scores[nz], k - 1)[:k]]
        order = nz[np.argsort(-scores[nz], kind="stable")]
        return BM25Hits(order, scores[order])

    def __len__(self) -> int:
        return (self._tf if self._tf is not None else self.weights).shape[0]

    # persistence ----------------------------------------------------------
    def save(self, folder: Path, groups: tuple[np.ndarray, int] | None = None) -> None:
        """bm25_tf.npz and bm25_vocab.json: the term frequencies, and precomputed for
        opening, the BM25 weights and (with `groups`, see `grouped`) the grouped weights."""
        tf, w = self.tf, self.weights
        extra = {}
        if groups is not None:
            g = self.grouped(*groups).weights
            extra = {
                "g_rows": np.asarray(groups[0], np.int64),
                "g_data": g.data,
                "g_indices": g.indices,
                "g_indptr": g.indptr,
                "g_shape": np.asarray(g.shape),
            }
        np.savez(
            folder / "bm25_tf.npz",
            data=tf.data,
            indices=tf.indices,
            indptr=tf.indptr,
            shape=np.asarray(tf.shape),
            w_data=w.data,
            w_indices=w.indices,
            w_indptr=w.indptr,
            w_k1_b=np.asarray([self.k1, self.b], np.float64),
            **extra,
        )
        (folder / "bm25_vocab.json").write_text(
            json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8"
        )

    @classmethod
    def load(
        cls, folder: Path, k1: float = 1.2, b: float = 0.75, segmenter: str | None = None
    ) -> BM25Index:
        """Open a saved index: the vocabulary and the weights; term frequencies on first use.

        The row count and row pointers of the term-frequency matrix are checked against
        the weights, so a damaged or tampered file fails here rather than at a query.
        Weights saved with other k1/b (or by an older version) are recomputed.
        """
        path = folder / "bm25_tf.npz"

        def load_tf() -> sp.csr_matrix:
            with np.load(path, allow_pickle=False) as z:
                return sp.csr_matrix(
                    (z["data"], z["indices"], z["indptr"]), shape=tuple(int(x) for x in z["shape"])
                )

        def load_grouped() -> tuple[np.ndarray, sp.csc_matrix] | None:
            with np.load(path, allow_pickle=False) as z:
                if "g_rows" not in z.files:
                    return None
                shape = tuple(int(x) for x in z["g_shape"])
                return z["g_rows"], sp.csc_matrix(
                    (z["g_data"], z["g_indices"], z["g_indptr"]), shape=shape
                )

        vocab = json.loads((folder / "bm25_vocab.json").read_text(encoding="utf-8"))
        segmenter = segmenter or LEGACY_SEGMENTER
        with np.load(path, allow_pickle=False) as z:
            shape = tuple(int(x) for x in z["shape"])
            saved = "w_k1_b" in z.files and np.allclose(z["w_k1_b"], [k1, b], rtol=0, atol=1e-12)
            if not saved:
                return cls(load_tf(), vocab, k1, b, segmenter)
            indptr = z["indptr"]
            weights = sp.csc_matrix((z["w_data"], z["w_indices"], z["w_indptr"]), shape=shape)
        if len(shape) != 2 or len(indptr) != shape[0] + 1 or indptr[-1] != weights.nnz:
            raise ValueError(f"{path}: term frequencies and weights disagree")
        grouped = functools.cache(load_grouped)
        return cls(None, vocab, k1, b, segmenter, weights, load_tf, grouped)
