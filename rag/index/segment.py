"""Word segmentation for BM25: jieba's search mode over the normalised text.

Done by one of two segmenters: `jieba` (the Python package) or `rjieba` (its Rust port,
about ten times faster, with jieba's rules restored where the port differs; see
`_RJieba`). An index records the one it was built with, and queries against it are
segmented by the same one. `count_terms` turns segmented rows into the term counts the
BM25 index (rag.index.bm25) stores.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import re
import threading
from array import array
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import NamedTuple, Protocol

import numpy as np

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
