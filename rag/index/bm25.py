"""BM25 over jieba tokens of the normalised text, stored as a sparse term-frequency matrix.

Our own because llama-index's BM25Retriever finds nothing in Chinese with its defaults
(a whole sentence becomes one token) and ignores a custom tokenizer for queries.
The term-frequency matrix is the persisted form (npz + JSON vocabulary, no pickle); the
BM25 weights are saved beside it in the same npz, so opening an index reads them instead
of recomputing them, and the term frequencies are only read when the index is changed.

Segmentation is jieba's search mode, done by one of two segmenters: `jieba` (the Python
package) or `rjieba` (its Rust port, about ten times faster, with jieba's rules restored
where the port differs; see `_RJieba`). An index records the one it was built with and
queries against it are segmented by the same one.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import re
import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import NamedTuple, Protocol

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
LEGACY_SEGMENTER = "jieba"  # what an index that records no segmenter was built with


# --------------------------------------------------------------------------- segmenters
class Segmenter(Protocol):
    name: str
    version: str

    def tokens(self, text: str) -> list[str]:
        """Search-mode words of normalised `text` without punctuation and stopwords."""
        ...

    def iter_tokens(self, text: str) -> Iterator[str]:
        """`tokens` as an iterator (counting them needs no list)."""
        ...


def _keep(w: str) -> bool:
    # isalnum() (every character a word character) settles most words without the regex
    return (w.isalnum() or bool(_WORD.search(w))) and w not in STOPWORDS


class _Jieba:
    """The Python jieba package, exactly as every index before rjieba was built."""

    name = "jieba"

    def __init__(self) -> None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        self.version = jieba.__version__
        self._dt = jieba.dt

    def cut_for_search(self, text: str) -> list[str]:
        return list(self._dt.cut_for_search(text))

    def tokens(self, text: str) -> list[str]:
        return [w for w in self._dt.cut_for_search(text) if _keep(w)]

    def iter_tokens(self, text: str) -> Iterator[str]:
        return iter(self.tokens(text))


# jieba's own character classes (jieba/__init__.py and jieba/finalseg)
_J_HAN = re.compile("([\u4e00-\u9fd5]+)")
_J_BLOCK = re.compile(r"([\u4e00-\u9fd5a-zA-Z0-9+#&\._%\-]+)")
_J_SKIP = re.compile(r"([a-zA-Z0-9]+(?:\.\d+)?%?)")
_ALL_HAN = re.compile("[\u4e00-\u9fd5]+")


class _RJieba:
    """rjieba (jieba-rs) in jieba's search mode, with jieba's output.

    jieba-rs keeps a run that its HMM sees, such as ``2.4km`` or ``cctv-1``, as one word,
    where jieba splits it (``2.4``, ``km``), and it adds different sub-words for such
    runs. So words come from `rjieba.cut` (HMM on), runs that are not dictionary words
    are split by jieba's rules, and the search-mode sub-words (dictionary 2- and 3-grams
    of longer words) are added here, as `jieba.Tokenizer.cut_for_search` does. Measured
    on 2,848 CMRC, DRCD and news paragraphs, all but one give jieba's token list.
    The filtered expansion of each word is cached: words repeat, and the per-word Python
    work is most of the cost.
    """

    name = "rjieba"
    _CACHE_MAX = 500_000

    def __init__(self) -> None:
        import rjieba

        self.version = importlib.metadata.version("rjieba")
        self._cut = rjieba.cut
        self._has = rjieba.has_word
        self._cut("预热", True)  # loads the dictionary
        self._cache = _Expansions(self)

    @staticmethod
    def _jieba_split(word: str) -> list[str]:
        """How jieba splits a non-dictionary run that its HMM is given."""
        out: list[str] = []
        for part in _J_BLOCK.split(word):
            if not part:
                continue
            if not _J_BLOCK.fullmatch(part):  # outside jieba's blocks: one char each
                out.extend(part)
                continue
            for h in _J_HAN.split(part):
                if h:
                    out.extend([h] if _J_HAN.fullmatch(h) else [x for x in _J_SKIP.split(h) if x])
        return out

    def _search_words(self, word: str) -> list[str]:
        """One word of `rjieba.cut` as jieba's search mode gives it (sub-words first)."""
        has = self._has
        words = [word]
        if len(word) > 1 and not _ALL_HAN.fullmatch(word) and not has(word):
            words = self._jieba_split(word)
        out = []
        for w in words:
            n = len(w)
            if n > 2:
                out.extend(g for i in range(n - 1) if has(g := w[i : i + 2]))
                if n > 3:
                    out.extend(g for i in range(n - 2) if has(g := w[i : i + 3]))
            out.append(w)
        return out

    def cut_for_search(self, text: str) -> list[str]:
        out: list[str] = []
        for w in self._cut(text, True):
            out.extend(self._search_words(w))
        return out

    def tokens(self, text: str) -> list[str]:
        return list(self.iter_tokens(text))

    def iter_tokens(self, text: str) -> Iterator[str]:
        if len(self._cache) >= self._CACHE_MAX:
            self._cache.clear()
        # a cache hit costs no Python frame: map and chain run in C
        return chain.from_iterable(map(self._cache.__getitem__, self._cut(text, True)))


class _Expansions(dict):
    """word -> its kept search-mode tokens, computed on first lookup."""

    def __init__(self, seg: _RJieba):
        super().__init__()
        self._seg = seg

    def __missing__(self, word: str) -> tuple[str, ...]:
        if len(word) == 1 or (len(word) == 2 and _ALL_HAN.fullmatch(word)):
            out = (word,) if _keep(word) else ()  # nothing to split, no sub-words
        else:
            out = tuple(x for x in self._seg._search_words(word) if _keep(x))
        self[word] = out
        return out


class _Vocabulary(dict):
    """term -> column, a new term getting the next column on first lookup."""

    def __missing__(self, term: str) -> int:
        j = self[term] = len(self)
        return j


_SEGMENTERS = {"jieba": _Jieba, "rjieba": _RJieba}
SEGMENTERS = tuple(_SEGMENTERS)
_lock = threading.Lock()


@functools.cache
def _segmenter(name: str) -> Segmenter:
    return _SEGMENTERS[name]()


def get_segmenter(name: str | None = None) -> Segmenter:
    """The segmenter called `name` ("jieba" or "rjieba"), loaded once; None: the default.

    Loading reads the segmenter's dictionary (about a second for jieba), so it is done
    once per process, under a lock: two threads asking at once get the same one.
    """
    name = name or default_segmenter()
    if name not in _SEGMENTERS:
        raise ValueError(f"unknown tokenizer {name!r}: use one of {', '.join(_SEGMENTERS)}")
    with _lock:
        return _segmenter(name)


def available_segmenter(preferred: str = "auto") -> str:
    """The segmenter a new index gets: rjieba when it is installed ("auto"), else jieba."""
    if preferred != "auto":
        if preferred not in _SEGMENTERS:
            raise ValueError(f"unknown tokenizer {preferred!r}: use auto, jieba or rjieba")
        return preferred
    try:
        importlib.metadata.version("rjieba")
        return "rjieba"
    except importlib.metadata.PackageNotFoundError:
        return "jieba"


def default_segmenter() -> str:
    """What `tokenize` uses when not told: the one a new index would get. No global state
    changes it (opening an index used to): callers holding an index use its `tokenize`."""
    return available_segmenter()


def segmenter_record(name: str) -> dict[str, str]:
    """{"name", "version"} of a segmenter, as written into an index manifest."""
    if name == "rjieba":
        return {"name": name, "version": importlib.metadata.version("rjieba")}
    return {"name": name, "version": importlib.metadata.version("jieba")}


def tokenize(text: str, normalized: bool = False, segmenter: str | None = None) -> list[str]:
    """Search-mode tokens of the normalised text, without punctuation and stopwords.

    `segmenter`: "jieba" or "rjieba"; None: `default_segmenter()`.
    """
    t = text if normalized else norm(text)
    return get_segmenter(segmenter).tokens(t)


class TermRows(NamedTuple):
    """BM25 rows of several chunks over their own small vocabulary (`count_terms`).

    What a segmenting worker sends back: a few arrays and one list of distinct terms,
    so the receiver maps each distinct term of the batch to a column once, not once
    per row it occurs in, and nothing is pickled term by term.
    """

    terms: list[str]  # the batch's vocabulary
    cols: np.ndarray  # int32: column in `terms` of each (row, term) entry
    counts: np.ndarray  # float32
    indptr: np.ndarray  # int64, rows + 1


def count_terms(rows: Iterable[Iterable[str]]) -> TermRows:
    """The term counts of each row of tokens, as one `TermRows` block.

    Tokens become batch-local columns in C (`map` over a dict whose misses assign the next
    column), and numpy counts the (row, column) pairs of the whole batch at once: a
    Counter per row cost twice as much (eval/reports/bench/optimisations.md).
    """
    local = _Vocabulary()
    col = local.__getitem__
    flat, indptr = array("i"), array("q", [0])
    for tokens in rows:
        flat.extend(map(col, tokens))
        indptr.append(len(flat))
    v = max(len(local), 1)
    lengths = np.diff(np.frombuffer(indptr, np.int64))
    row = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    keys, counts = np.unique(row * v + np.frombuffer(flat, np.int32), return_counts=True)
    per_row = np.bincount(keys // v, minlength=len(lengths))
    out_ptr = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(per_row, out=out_ptr[1:])
    return TermRows(list(local), (keys % v).astype(np.int32), counts.astype(np.float32), out_ptr)


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
        n = max(len(self), 1)
        cols = (self.vocab.get(t) for t in terms)
        df = np.array([0 if j is None else self.df[j] for j in cols], float)
        return np.log1p((n - df + 0.5) / (df + 0.5))

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
