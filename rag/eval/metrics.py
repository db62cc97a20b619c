"""Evaluation metrics: small pure functions for one question, and `aggregate` over many.

Retrieval metrics follow sentence-transformers' `InformationRetrievalEvaluator` exactly
(binary relevance by gold document id), so our figures can be compared with anything
reported by it. Answer metrics follow the CMRC 2018 official evaluation (exact match and
an F1 over CJK characters and whole English words), after the project's one text
normalisation (`rag.textnorm.norm`: traditional -> simplified, full-width -> half-width,
lower case), so "嶗山區" matches "崂山区" and "２０２３" matches "2023".

Undefined values (a citation precision when nothing was cited, a rate over zero
questions) are `None`, never NaN: reports are JSON, and `None` there says "not
applicable" where NaN would read as a broken number.
"""

from __future__ import annotations

import difflib
import functools
import math
import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from rag.textnorm import norm

# ---------------------------------------------------------------- retrieval


def _top_unique(ranked: Iterable[str], k: int) -> list[str]:
    """The first k distinct ids; a repeated id (several chunks of one doc) counts once."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    out: list[str] = []
    seen: set[str] = set()
    for doc_id in ranked:
        if doc_id not in seen:
            seen.add(doc_id)
            out.append(doc_id)
            if len(out) == k:
                break
    return out


def _gold_set(gold: Iterable[str]) -> set[str]:
    gold_set = set(gold)
    if not gold_set:
        raise ValueError(
            "gold is empty: retrieval metrics are defined only for questions with gold ids"
        )
    return gold_set


def recall_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Fraction of the gold ids found among the top k distinct retrieved ids.

    The same definition as sentence-transformers' "recall@k". With one gold id
    (CMRC, DRCD) it equals `hit_at_k`.

    >>> recall_at_k(["a", "x", "b"], ["a", "b"], 2)
    0.5
    """
    gold_set = _gold_set(gold)
    return sum(1 for d in _top_unique(ranked, k) if d in gold_set) / len(gold_set)


def hit_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """1.0 if any gold id is among the top k distinct retrieved ids (ST's "accuracy@k")."""
    gold_set = _gold_set(gold)
    return 1.0 if any(d in gold_set for d in _top_unique(ranked, k)) else 0.0


def mrr_at_k(ranked: Sequence[str], gold: Iterable[str], k: int = 10) -> float:
    """Reciprocal rank of the first gold id within the top k, else 0.0."""
    gold_set = _gold_set(gold)
    for rank, d in enumerate(_top_unique(ranked, k), start=1):
        if d in gold_set:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], gold: Iterable[str], k: int = 10) -> float:
    """Binary-relevance nDCG@k, as sentence-transformers computes it.

    DCG sums 1/log2(rank + 1) over the gold ids in the top k; the ideal DCG puts
    min(len(gold), k) gold ids first.
    """
    gold_set = _gold_set(gold)
    dcg = sum(
        1.0 / math.log2(rank + 1)
        for rank, d in enumerate(_top_unique(ranked, k), start=1)
        if d in gold_set
    )
    idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold_set), k) + 1))
    return dcg / idcg


# ---------------------------------------------------------------- answers

_ASCII_PUNCT = frozenset(string.punctuation)


@functools.lru_cache(maxsize=1 << 16)  # per character; metrics see the same few thousand
def _is_punct(c: str) -> bool:
    return c in _ASCII_PUNCT or unicodedata.category(c).startswith("P")


@functools.lru_cache(maxsize=1 << 16)
def _is_wide(c: str) -> bool:
    # CJK ideographs, kana, hangul: one token per character, as in CMRC's evaluation.
    return unicodedata.east_asian_width(c) in ("W", "F")


def answer_tokens(s: str) -> list[str]:
    """Normalised tokens of `s`: each CJK character alone, runs of other letters and
    digits as words; punctuation (CJK and ASCII) and white space dropped.

    Inside a number a decimal point is kept and a thousands comma dropped, so "4.9"
    stays one token (not "49") and "1,000" reads as "1000".

    >>> answer_tokens("2023年 iPhone SE，")
    ['2023', '年', 'iphone', 'se']
    """
    text = norm(s or "")
    tokens: list[str] = []
    word: list[str] = []
    last = len(text) - 1
    for i, c in enumerate(text):
        if c in ".," and 0 < i < last and text[i - 1].isdecimal() and text[i + 1].isdecimal():
            if c == ".":
                word.append(c)
            continue
        if c.isspace() or _is_punct(c) or _is_wide(c):
            if word:
                tokens.append("".join(word))
                word = []
            if _is_wide(c) and not _is_punct(c):
                tokens.append(c)
            continue
        word.append(c)
    if word:
        tokens.append("".join(word))
    return tokens


def normalize_answer(s: str) -> str:
    """`rag.textnorm.norm`, then without punctuation (CJK and ASCII) and white space.

    >>> normalize_answer("嶗山區， ２０２３年！")
    '崂山区2023年'
    """
    return "".join(answer_tokens(s))


def _norm_golds(golds: Iterable[str]) -> list[str]:
    return [g for g in (normalize_answer(x) for x in golds) if g]


def exact_match(pred: str, golds: Iterable[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0.

    Golds that normalise to nothing are ignored; no golds at all scores 0.0.
    """
    p = normalize_answer(pred)
    return 1.0 if any(p == g for g in _norm_golds(golds)) else 0.0


def char_f1(pred: str, golds: Iterable[str]) -> float:
    """CMRC 2018's F1, the maximum over the gold answers.

    Both sides are split by `answer_tokens` (each CJK character a token, English words
    and numbers kept whole); the overlap is the longest common *contiguous* run of
    tokens, as in the official `cmrc2018_evaluate.py` (not SQuAD's bag of tokens).

    >>> round(char_f1("北京天安门", ["北京"]), 4)
    0.5714
    """
    p = answer_tokens(pred)
    best = 0.0
    if not p:
        return best
    for gold in golds:
        g = answer_tokens(gold)
        if not g:
            continue
        matcher = difflib.SequenceMatcher(None, g, p, autojunk=False)
        common = matcher.find_longest_match(0, len(g), 0, len(p)).size
        if common:
            precision, recall = common / len(p), common / len(g)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def containment(pred: str, golds: Iterable[str]) -> float:
    """1.0 if any normalised gold answer is a substring of the normalised prediction.

    The lenient score for generated answers, which wrap the span in a sentence.
    """
    p = normalize_answer(pred)
    return 1.0 if any(g in p for g in _norm_golds(golds)) else 0.0


def _synonyms(item: str | Sequence[str]) -> list[str]:
    return [item] if isinstance(item, str) else [str(x) for x in item]


def rgb_correct(pred: str, answer_items: Sequence[str | Sequence[str]]) -> float:
    """RGB's accuracy: 1.0 if every answer item has at least one synonym in `pred`.

    An item is a string or a list of synonyms (`[["B站", "哔哩哔哩"], "2023"]`); the
    comparison is on normalised text. No items scores 0.0.
    """
    if not answer_items:
        return 0.0
    p = normalize_answer(pred)
    return (
        1.0
        if all(any(s in p for s in _norm_golds(_synonyms(item))) for item in answer_items)
        else 0.0
    )


def answer_chars(pred: str) -> int:
    """Length of the answer in characters, white space not counted (a verbosity measure)."""
    return sum(1 for c in pred or "" if not c.isspace())


# ---------------------------------------------------------------- grounding


def supported_share(sentence_flags: Sequence[bool]) -> float | None:
    """Share of the answer's sentences judged supported by their cited passages.

    None for an answer with no sentences (a refusal): there is nothing to judge.
    """
    if not sentence_flags:
        return None
    return sum(1 for f in sentence_flags if f) / len(sentence_flags)


def citation_precision(
    cited_ids: Iterable[str], gold_ids: Iterable[str], supporting_ids: Iterable[str]
) -> float | None:
    """Share of the distinct cited passages that are gold or support the sentence citing them.

    None when nothing is cited: an uncited answer is not precise or imprecise, and
    scoring it 0 or 1 would mix citation quality with refusal or answer style; the
    aggregate averages over answers that cite something.
    """
    cited = set(cited_ids)
    if not cited:
        return None
    good = set(gold_ids) | set(supporting_ids)
    return len(cited & good) / len(cited)


def citation_recall(cited_doc_ids: Iterable[str], gold_doc_ids: Iterable[str]) -> float | None:
    """Share of the gold documents that the answer cites; None without gold documents."""
    gold = set(gold_doc_ids)
    if not gold:
        return None
    return len(gold & set(cited_doc_ids)) / len(gold)


# ---------------------------------------------------------------- refusal


def refusal_rates(rows: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """`refusal_rate`: refused among unanswerable rows (higher is better);
    `false_refusal_rate`: refused among answerable rows (lower is better).

    Each is None when there is no row of its kind. Rows need `answerable` and `refused`.
    """
    rows = list(rows)
    unans = [bool(r.get("refused")) for r in rows if not r.get("answerable")]
    ans = [bool(r.get("refused")) for r in rows if r.get("answerable")]
    return {
        "refusal_rate": sum(unans) / len(unans) if unans else None,
        "false_refusal_rate": sum(ans) / len(ans) if ans else None,
    }


# ---------------------------------------------------------------- statistics


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation as numpy's default); None if empty."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        return None
    return float(np.percentile(arr, q))


def bootstrap_ci(
    values: Sequence[float],
    stat: Callable[[np.ndarray], float] = np.mean,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `stat(values)`, deterministic by `seed`.

    Resamples the questions with replacement `n_resamples` times and returns the
    alpha/2 and 1 - alpha/2 quantiles of the statistic, so two systems evaluated on
    the same questions can be told apart from noise.
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(n_resamples, arr.size))
    stats = np.array([stat(arr[row]) for row in idx], dtype=float)
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


# ---------------------------------------------------------------- aggregate


def _generated(row: Mapping[str, Any]) -> bool:
    """The runner asked for an answer (a retrieval-only run leaves `answer` None)."""
    return row.get("answer") is not None or bool(row.get("refused"))


def aggregate(
    rows: Sequence[Mapping[str, Any]],
    ks: Sequence[int] = (1, 3, 5, 10),
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Aggregate per-question rows into one flat dict of metrics plus 95% intervals.

    Each row is a dict:

    - `question_id` (str), `answerable` (bool), `refused` (bool)
    - `retrieved_doc_ids`: doc ids in rank order (repeats allowed, counted once)
    - `gold_doc_ids`: list of doc ids
    - `answer`: the answer text, or None when only retrieval was run
    - `answers`: gold answer strings (alternatives); optional `answer_items`: RGB items
      (each a string or a list of synonyms, all items required)
    - `sentence_supported`: one bool per answer sentence
    - `cited_doc_ids`: doc ids the answer cites; `cited_supporting`: those of them
      judged to support the sentence that cites them
    - `timings_ms`: {"retrieve": ms, "generate": ms, "total": ms}

    Which questions each metric averages over:

    - recall@k, hit@k, mrr@10, ndcg@10: answerable rows with gold ids.
    - em, f1, containment, rgb_correct (rows with `answer_items`), citation_recall:
      answerable rows that were answered or refused; a refusal scores 0.
    - short_em, short_f1: the same rows, scoring `span` (the short answer, else the
      first quoted sentence) instead of the whole answer.
    - answer_chars, supported_share, citation_precision: rows answered, not refused
      (supported_share: with at least one sentence; citation_precision: citing something).
    - refusal_rate: unanswerable rows; false_refusal_rate: answerable rows.
    - latency_p50_ms / latency_p95_ms: `timings_ms["total"]` of every row that has it.

    A metric with no qualifying row is None. `ci95[key]` is the bootstrap 95% interval
    of each mean-type metric ([low, high], or None), `n` the number of rows.
    """
    per: dict[str, list[float]] = {}

    with_gold = [r for r in rows if r.get("answerable") and r.get("gold_doc_ids")]
    for k in ks:
        per[f"recall@{k}"] = [
            recall_at_k(r.get("retrieved_doc_ids") or [], r["gold_doc_ids"], k) for r in with_gold
        ]
    for k in ks:
        per[f"hit@{k}"] = [
            hit_at_k(r.get("retrieved_doc_ids") or [], r["gold_doc_ids"], k) for r in with_gold
        ]
    per["mrr@10"] = [
        mrr_at_k(r.get("retrieved_doc_ids") or [], r["gold_doc_ids"]) for r in with_gold
    ]
    per["ndcg@10"] = [
        ndcg_at_k(r.get("retrieved_doc_ids") or [], r["gold_doc_ids"]) for r in with_gold
    ]

    generated = [r for r in rows if _generated(r)]
    answerable = [r for r in generated if r.get("answerable")]
    answered = [r for r in generated if not r.get("refused")]
    # answer metrics need gold answer text; retrieval-only questions have none
    with_text = [r for r in answerable if r.get("answers") or r.get("answer_items")]

    def scored(fn: Callable[[str, Any], float], key: str, subset: Sequence[Mapping]) -> list:
        return [0.0 if r.get("refused") else fn(r.get("answer") or "", r[key]) for r in subset]

    per["em"] = scored(exact_match, "answers", with_text)
    per["f1"] = scored(char_f1, "answers", with_text)
    per["containment"] = scored(containment, "answers", with_text)
    # the span that answers, as reading-comprehension sets score it: the answer's
    # short_answer, else its first quoted sentence (rows without either are left out)
    spans = [r for r in with_text if r.get("refused") or r.get("span") is not None]
    per["short_em"] = [
        0.0 if r.get("refused") else exact_match(r["span"], r["answers"]) for r in spans
    ]
    per["short_f1"] = [0.0 if r.get("refused") else char_f1(r["span"], r["answers"]) for r in spans]
    per["rgb_correct"] = scored(
        rgb_correct, "answer_items", [r for r in answerable if r.get("answer_items")]
    )
    # counterfactual documents (RGB zh_fact): the share of answers repeating the false
    # fact the documents state; a refusal repeats nothing
    per["repeats_false"] = scored(
        containment, "false_answers", [r for r in generated if r.get("false_answers")]
    )
    per["answer_chars"] = [float(answer_chars(r.get("answer") or "")) for r in answered]
    per["supported_share"] = [
        s for r in answered if (s := supported_share(r.get("sentence_supported") or [])) is not None
    ]
    per["citation_precision"] = [
        p
        for r in answered
        if (
            p := citation_precision(
                r.get("cited_doc_ids") or [],
                r.get("gold_doc_ids") or [],
                r.get("cited_supporting") or [],
            )
        )
        is not None
    ]
    per["citation_recall"] = [
        0.0
        if r.get("refused")
        else citation_recall(r.get("cited_doc_ids") or [], r["gold_doc_ids"])
        for r in answerable
        if r.get("gold_doc_ids")
    ]
    per["refusal_rate"] = [
        float(bool(r.get("refused"))) for r in generated if not r.get("answerable")
    ]
    per["false_refusal_rate"] = [float(bool(r.get("refused"))) for r in answerable]

    out: dict[str, Any] = {key: float(np.mean(v)) if v else None for key, v in per.items()}
    totals = [
        float(t["total"])
        for r in rows
        if isinstance(t := r.get("timings_ms"), Mapping) and t.get("total") is not None
    ]
    out["latency_p50_ms"] = percentile(totals, 50)
    out["latency_p95_ms"] = percentile(totals, 95)
    out.update(generation_figures(rows))
    out["n"] = len(rows)
    out["n_answerable"] = sum(1 for r in rows if r.get("answerable"))
    out["n_unanswerable"] = len(rows) - out["n_answerable"]
    out["ci95"] = {
        key: list(bootstrap_ci(v, n_resamples=n_resamples, seed=seed)) if v else None
        for key, v in per.items()
    }
    return out


def generation_figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What only a run with an LLM has (rows with `generation`): citation validity (the
    model's cited sentences whose [n] exists and supports them), what was shown, first
    token and tokens/s; empty for the extractive answerer."""
    gen = [r for r in rows if isinstance(r.get("generation"), Mapping)]
    if not gen:
        return {}
    cited = sum(r["generation"]["cited_sentences"] for r in gen)
    first, rates = [], []
    for r in gen:
        t = r.get("timings_ms") or {}
        if t.get("first_token") is not None:
            first.append(float(t["first_token"]))
            n, span = r["generation"]["tokens"], float(t.get("generate", 0)) - t["first_token"]
            if n > 1 and span > 0:
                rates.append((n - 1) / span * 1e3)
    return {
        "citation_validity": sum(r["generation"]["valid_citations"] for r in gen) / cited
        if cited
        else None,
        "shown_llm": sum(r["generation"]["shown"] == "llm" for r in gen) / len(gen),
        "shown_fallback": sum(r["generation"]["shown"] == "fallback" for r in gen) / len(gen),
        "first_token_p50_ms": percentile(first, 50),
        "tokens_per_s_p50": percentile(rates, 50),
    }


# ---------------------------------------------------------------- paired tests


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for paired yes/no outcomes.

    `b`: questions right in A and wrong in B; `c`: wrong in A and right in B. Under
    "no difference" each discordant question is a fair coin, so the p-value is the
    two-sided binomial tail of min(b, c) in b + c trials (1.0 when nothing changed).

    >>> round(mcnemar_exact(1, 9), 4)
    0.0215
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got {b}, {c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)
