"""Citation checking for generated answers: are the [n] markers real, and do they hold?

An LLM is asked to put a citation [n] after every claim. `check_citations` splits its
answer into sentences, parses the markers (also full-width ［n］ and 【n】, and lists such
as [1,3]), drops the ones that point at passages that were not given, and scores each
cited sentence against the passages it cites:

- lexical support: the share of the sentence's character bigrams found in one window of
  the passage -- a sentence of it, or two adjacent ones -- after `rag.textnorm.norm`,
  punctuation ignored. High for quotes and close paraphrase; a claim stitched from words
  scattered over the passage (a planted instruction plus a real sentence) scores low;
- figures: every number in the sentence (also 三万, 零个) must occur in one window;
- semantic support (when an embedder is given): cosine similarity of the sentence
  (embedded as a query) and the whole passage.

The score is the maximum over the cited passages of `lexical` (no embedder) or
`COMBINED_WEIGHT * lexical + (1 - COMBINED_WEIGHT) * cosine`; a sentence is supported
when the score reaches the threshold and its figures are found. The thresholds were
chosen by measurement on CMRC 2018 (rag/eval/tuning/calibrate_grounding.py, figures in
eval/reports/grounding_calibration.md).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from rag.ingest.chunking import SENTENCE_END, split_sentences
from rag.textnorm import norm

# Chosen by rag/eval/tuning/calibrate_grounding.py (see eval/reports/grounding_calibration.md). On
# held-out CMRC pairs, with the figure rule: lexical only accepts 98.0% of supported claims
# and 1.7% of unsupported ones; combined, 99.3% and 1.2% (paraphrased claims 97.9%,
# wrong figures 3.4%).
LEXICAL_THRESHOLD = 0.41
COMBINED_WEIGHT = 0.25
COMBINED_THRESHOLD = 0.77

# [1]  [1,2]  [1、3]  ［2］  【3】  [1][2] is two markers
CITATION = re.compile(r"[\[［【]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]］】]")
_MARKERS_AFTER = re.compile(r"(?:[ \t\u3000]*" + CITATION.pattern + r")+")
_CONTENT = re.compile(r"[\w]", re.UNICODE)


@dataclass(frozen=True)
class SentenceCheck:
    """One sentence of an answer and what its citations are worth.

    `cited` are the valid passage numbers (1-based, as numbered in the prompt), `invalid`
    the removed ones. `supported` is None for a sentence without a valid citation (it
    was not checked), else whether `support` reaches the threshold; `best` is the cited
    passage that supports it most.
    """

    text: str  # the sentence without its citation markers
    raw: str  # the sentence as generated
    cited: tuple[int, ...]
    invalid: tuple[int, ...]
    support: float
    supported: bool | None
    best: int | None
    lexical: float = 0.0
    semantic: float | None = None
    figures_ok: bool = True  # every number of the sentence occurs in one passage window


def split_answer(text: str) -> list[str]:
    """Claims of an answer: sentences, each keeping the citation markers that follow it.

    A sentence that cites different passages for its clauses ("A[1]，B[2]。") is split
    after each marker, so every clause is checked against its own passage.

    >>> split_answer("项目有196个[1]。投资156亿元。[2]")
    ['项目有196个[1]。', '投资156亿元。[2]']
    """
    out: list[str] = []
    pos = 0
    for m in SENTENCE_END.finditer(text):
        if m.start() < pos:
            continue
        end = m.end()
        after = _MARKERS_AFTER.match(text, end)
        if after:
            end = after.end()
        for clause in _clauses(text[pos:end]):
            _append(clause, out)
        pos = end
    for clause in _clauses(text[pos:]):
        _append(clause, out)
    return out


_MIN_CLAUSE = 8  # content characters on each side before a sentence is split at a marker


def _content_len(text: str) -> int:
    return len(_CONTENT.findall(CITATION.sub("", text)))


def _clauses(sentence: str) -> list[str]:
    parts, start = [], 0
    for m in _MARKERS_AFTER.finditer(sentence):
        head, tail = sentence[start : m.end()], sentence[m.end() :]
        if _content_len(head) >= _MIN_CLAUSE and _content_len(tail) >= _MIN_CLAUSE:
            parts.append(head)
            start = m.end()
    parts.append(sentence[start:])
    return parts


def _append(piece: str, out: list[str]) -> None:
    piece = piece.strip()
    if not piece:
        return
    if out and not _CONTENT.search(CITATION.sub("", piece)):
        out[-1] += piece  # stray markers or punctuation belong to the previous sentence
    else:
        out.append(piece)


def citation_numbers(sentence: str) -> list[int]:
    """Every number cited in `sentence`, in order, repeats removed."""
    nums: list[int] = []
    for m in CITATION.finditer(sentence):
        for part in re.split(r"[,，、]", m.group(1)):
            n = int(part)
            if n not in nums:
                nums.append(n)
    return nums


def strip_citations(text: str) -> str:
    return CITATION.sub("", text).strip()


def _bigrams_normed(text: str) -> frozenset[str]:
    chars = "".join(c for c in text if c.isalnum())
    if len(chars) == 1:
        return frozenset({chars})
    return frozenset(chars[i : i + 2] for i in range(len(chars) - 1))


def _bigrams(text: str) -> frozenset[str]:
    return _bigrams_normed(norm(text))


_CN_DIGITS = str.maketrans("零〇一二两三四五六七八九", "001223456789")
_UNITS = "个名次年月日天人岁项座条部处家种届期位里米元吨亩株倍成%"
_CN_FIGURE = re.compile(f"[零〇一二两三四五六七八九十百千万亿]+(?=[{_UNITS}])")
_FIGURE = re.compile(r"\d+(?:\.\d+)?")
_LIST_MARK = re.compile(r"^\s*(?:\d{1,2}[.、)）]|[-*•·])\s*")


def _figures_normed(text: str) -> frozenset[str]:
    text = _LIST_MARK.sub("", text)
    # a lone 一 is mostly part of a word (统一部署, 一批), not a figure
    text = _CN_FIGURE.sub(
        lambda m: m.group().translate(_CN_DIGITS) if m.group() != "一" else "", text
    )
    return frozenset(_FIGURE.findall(text))


def figures(text: str) -> frozenset[str]:
    """The numbers in `text`: 2023, 40.6, and Chinese ones before a unit (三万株 -> 3)."""
    return _figures_normed(norm(text))


@functools.lru_cache(maxsize=1024)
def _windows(passage: str) -> tuple[tuple[frozenset[str], frozenset[str]], ...]:
    """(bigrams, figures) of each sentence of the passage and each adjacent pair."""
    t = norm(passage)
    texts = [t[s:e] for s, e in split_sentences(t)] or [t]
    wins = texts + [a + b for a, b in zip(texts, texts[1:])]
    return tuple((_bigrams_normed(w), _figures_normed(w)) for w in wins)


def lexical_support(sentence: str, passage: str) -> float:
    """Share of the sentence's character bigrams found in the best window of the passage
    (one sentence or two adjacent ones), 0..1."""
    s = _bigrams(sentence)
    if not s:
        return 0.0
    return max(len(s & bis) / len(s) for bis, _ in _windows(passage))


def figures_supported(sentence: str, passage: str) -> bool:
    """Whether every number of the sentence occurs in one window of the passage."""
    need = figures(sentence)
    return not need or any(need <= figs for _, figs in _windows(passage))


def combine(lexical: float, semantic: float | None) -> float:
    if semantic is None:
        return lexical
    return COMBINED_WEIGHT * lexical + (1.0 - COMBINED_WEIGHT) * semantic


def default_threshold(with_embedder: bool) -> float:
    return COMBINED_THRESHOLD if with_embedder else LEXICAL_THRESHOLD


def check_citations(
    answer_text: str,
    passages: list[str],
    embedder=None,
    threshold: float | None = None,
) -> list[SentenceCheck]:
    """Check every sentence of `answer_text` against the passages it cites.

    `passages[i]` is passage number i + 1. `embedder` (optional) needs `embed_query(text)`
    and `embed_passages(texts)` returning unit vectors (rag.embed.embedder.Embedder does). Without
    `threshold`, the calibrated default for the chosen scoring is used.
    """
    if threshold is None:
        threshold = default_threshold(embedder is not None)
    sentences = split_answer(answer_text)
    parsed = []
    for raw in sentences:
        nums = citation_numbers(raw)
        valid = tuple(n for n in nums if 1 <= n <= len(passages))
        invalid = tuple(n for n in nums if not 1 <= n <= len(passages))
        parsed.append((raw, strip_citations(raw), valid, invalid))

    cosines: dict[tuple[int, int], float] = {}
    if embedder is not None:
        needed = sorted({n for _, text, valid, _ in parsed if text for n in valid})
        if needed:
            pvecs = embedder.embed_passages([passages[n - 1] for n in needed])
            row = {n: i for i, n in enumerate(needed)}
            for si, (_, text, valid, _) in enumerate(parsed):
                if not (valid and text):
                    continue
                q = embedder.embed_query(text)
                for n in valid:
                    cosines[si, n] = float(np.dot(pvecs[row[n]], q))

    checks = []
    for si, (raw, text, valid, invalid) in enumerate(parsed):
        best, best_score, best_lex, best_sem, figs_ok = None, 0.0, 0.0, None, False
        for n in valid:
            lex = lexical_support(text, passages[n - 1])
            sem = cosines.get((si, n))
            score = combine(lex, sem)
            ok = figures_supported(text, passages[n - 1])
            # a passage that holds the sentence's figures beats one that does not
            if best is None or (ok, score) > (figs_ok, best_score):
                best, best_score, best_lex, best_sem, figs_ok = n, score, lex, sem, ok
        supported = None if not valid else (best_score >= threshold and figs_ok)
        checks.append(
            SentenceCheck(
                text,
                raw,
                valid,
                invalid,
                round(best_score, 4),
                supported,
                best,
                round(best_lex, 4),
                None if best_sem is None else round(best_sem, 4),
                figs_ok or not valid,
            )
        )
    return checks
