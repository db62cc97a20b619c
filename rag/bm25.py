"""BM25 over jieba tokens of the normalised text, stored as a sparse term-frequency matrix.

Our own because llama-index's BM25Retriever finds nothing in Chinese with its defaults
(a whole sentence becomes one token) and ignores a custom tokenizer for queries.
The term-frequency matrix is the persisted form (npz + JSON vocabulary, no pickle):
adding documents stacks rows, and the BM25 weights are derived at load time.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from rag.textnorm import norm

# Question words and particles: frequent in queries, useless as evidence.
STOPWORDS = frozenset(
    "的 了 是 在 和 与 及 或 也 都 就 而 又 被 把 对 于 为 以 之 其 这 那 这个 那个 "
    "吗 呢 吧 啊 呀 么 什么 哪些 哪个 哪里 哪 谁 多少 几 怎么 怎样 如何 为什么 为何 "
    "是否 有没有 有 没有 请问 请 一下 告诉 我 我们 你 你们 他 她 它 他们 中 上 下 "
    "个 些 吗 ？ ? 呢".split()
)
_WORD = re.compile(r"\w", re.UNICODE)


@functools.lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def tokenize(text: str, normalized: bool = False) -> list[str]:
    """jieba search-mode tokens of the normalised text, without punctuation and stopwords."""
    t = text if normalized else norm(text)
    return [w for w in _jieba().cut_for_search(t) if _WORD.search(w) and w not in STOPWORDS]


class BM25Hits(NamedTuple):
    rows: np.ndarray  # row numbers into the chunk table, best first
    scores: np.ndarray


class BM25Index:
    """Okapi BM25 over a (chunks x vocabulary) term-frequency matrix."""

    def __init__(self, tf: sp.csr_matrix, vocab: dict[str, int], k1: float = 1.2, b: float = 0.75):
        self.tf = tf.tocsr()
        self.vocab = vocab
        self.k1, self.b = k1, b
        self._weights: sp.csc_matrix | None = None

    # building -------------------------------------------------------------
    @classmethod
    def empty(cls, k1: float = 1.2, b: float = 0.75) -> BM25Index:
        return cls(sp.csr_matrix((0, 0), dtype=np.float32), {}, k1, b)

    def add(self, token_lists: list[list[str]]) -> BM25Index:
        """A new index with one row appended per token list (the vocabulary grows)."""
        vocab = dict(self.vocab)
        data, indices, indptr = [], [], [0]
        for toks in token_lists:
            counts: dict[int, int] = {}
            for w in toks:
                j = vocab.setdefault(w, len(vocab))
                counts[j] = counts.get(j, 0) + 1
            indices.extend(counts)
            data.extend(counts.values())
            indptr.append(len(indices))
        new = sp.csr_matrix(
            (np.asarray(data, np.float32), np.asarray(indices, np.int32), np.asarray(indptr)),
            shape=(len(token_lists), len(vocab)),
        )
        old = self.tf
        old = sp.csr_matrix((old.data, old.indices, old.indptr), shape=(old.shape[0], len(vocab)))
        return BM25Index(sp.vstack([old, new], format="csr"), vocab, self.k1, self.b)

    def grouped(self, group_of_row: np.ndarray, n_groups: int) -> BM25Index:
        """BM25 over groups of rows (documents of chunks): term counts summed per group.

        Overlapping chunks count their shared sentence twice; harmless for ranking.
        """
        n = self.tf.shape[0]
        agg = sp.csr_matrix(
            (np.ones(n, np.float32), (group_of_row, np.arange(n))), shape=(n_groups, n)
        )
        return BM25Index((agg @ self.tf).tocsr(), self.vocab, self.k1, self.b)

    def select(self, rows: np.ndarray) -> BM25Index:
        """A new index keeping only `rows` (in that order); used when documents are removed."""
        return BM25Index(self.tf[rows], self.vocab, self.k1, self.b)

    # scoring --------------------------------------------------------------
    @functools.cached_property
    def df(self) -> np.ndarray:
        """Document frequency of every vocabulary term."""
        return np.bincount(self.tf.indices, minlength=len(self.vocab))

    @property
    def weights(self) -> sp.csc_matrix:
        if self._weights is None:
            tf = self.tf
            n = tf.shape[0]
            dl = np.asarray(tf.sum(axis=1)).ravel()
            avgdl = dl.mean() if n else 1.0
            df = self.df[: tf.shape[1]]
            idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
            rows = np.repeat(np.arange(n), np.diff(tf.indptr))
            denom = tf.data + self.k1 * (1 - self.b + self.b * dl[rows] / max(avgdl, 1e-9))
            w = idf[tf.indices] * tf.data * (self.k1 + 1) / denom
            self._weights = sp.csr_matrix(
                (w.astype(np.float32), tf.indices, tf.indptr), shape=tf.shape
            ).tocsc()
        return self._weights

    def search(self, query_tokens: list[str], k: int) -> BM25Hits:
        cols = sorted({self.vocab[w] for w in query_tokens if w in self.vocab})
        if not cols or self.tf.shape[0] == 0:
            return BM25Hits(np.empty(0, np.int64), np.empty(0, np.float32))
        scores = np.asarray(self.weights[:, cols].sum(axis=1)).ravel()
        nz = np.flatnonzero(scores)
        if len(nz) > k:
            nz = nz[np.argpartition(-scores[nz], k - 1)[:k]]
        order = nz[np.argsort(-scores[nz], kind="stable")]
        return BM25Hits(order, scores[order])

    def __len__(self) -> int:
        return self.tf.shape[0]

    # persistence ----------------------------------------------------------
    def save(self, folder: Path) -> None:
        tf = self.tf
        np.savez(
            folder / "bm25_tf.npz",
            data=tf.data,
            indices=tf.indices,
            indptr=tf.indptr,
            shape=np.asarray(tf.shape),
        )
        (folder / "bm25_vocab.json").write_text(
            json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8"
        )

    @classmethod
    def load(cls, folder: Path, k1: float = 1.2, b: float = 0.75) -> BM25Index:
        with np.load(folder / "bm25_tf.npz", allow_pickle=False) as z:
            tf = sp.csr_matrix(
                (z["data"], z["indices"], z["indptr"]), shape=tuple(int(x) for x in z["shape"])
            )
        vocab = json.loads((folder / "bm25_vocab.json").read_text(encoding="utf-8"))
        return cls(tf, vocab, k1, b)
