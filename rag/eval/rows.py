"""Per-question result rows and their aggregates: the metrics of one answered question, outcomes, types, summaries."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.eval import metrics as M
from rag.eval.questions import Question

KS = (1, 3, 5, 10)


RETRIEVAL_DEPTH = 30  # chunks searched for the retrieval metrics; ranks documents to 10


def _distinct(ids: Iterable[str], k: int) -> list[str]:
    return list(dict.fromkeys(ids))[:k]


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def has_gold_answer(row: Mapping[str, Any]) -> bool:
    """The question has gold answer text (retrieval-only sets such as DuReader-retrieval
    have gold documents but no answer strings: answer metrics do not apply to them)."""
    return bool(row.get("answers") or row.get("answer_items"))


def is_correct(row: Mapping[str, Any]) -> bool | None:
    """The row's outcome: an answerable question answered with the gold answer contained
    (every RGB item, when the question has `answer_items`), or an unanswerable one refused.
    None for an answerable question without gold answer text (nothing to judge by)."""
    if not row.get("answerable"):
        return bool(row.get("refused"))
    if not has_gold_answer(row):
        return None
    if row.get("refused"):
        return False
    answer = row.get("answer") or ""
    if row.get("answer_items"):
        return M.rgb_correct(answer, row["answer_items"]) == 1.0
    return M.containment(answer, row.get("answers") or []) == 1.0


def row_metrics(row: Mapping[str, Any], ks: Sequence[int] = KS) -> dict[str, Any]:
    """Per-question metrics of one result row (None where a metric does not apply)."""
    m: dict[str, Any] = {}
    gold = row.get("gold_doc_ids") or []
    ranked = row.get("retrieved_doc_ids") or []
    if row.get("answerable") and gold:
        for k in ks:
            m[f"recall@{k}"] = _r(M.recall_at_k(ranked, gold, k))
        m["mrr@10"] = _r(M.mrr_at_k(ranked, gold, 10))
        m["ndcg@10"] = _r(M.ndcg_at_k(ranked, gold, 10))
    answer = "" if row.get("refused") else row.get("answer") or ""
    if row.get("false_answers"):
        # counterfactual documents: did the answer repeat their false fact?
        m["repeats_false"] = M.containment(answer, row["false_answers"])
    if row.get("answerable") and has_gold_answer(row):
        golds = row.get("answers") or []
        m["em"] = M.exact_match(answer, golds)
        m["f1"] = _r(M.char_f1(answer, golds))
        m["containment"] = M.containment(answer, golds)
        if row.get("refused") or row.get("span") is not None:
            span = "" if row.get("refused") else row["span"]
            m["short_em"] = M.exact_match(span, golds)
            m["short_f1"] = _r(M.char_f1(span, golds))
        if row.get("answer_items"):
            m["rgb_correct"] = M.rgb_correct(answer, row["answer_items"])
    if row.get("answerable") and gold:
        m["citation_recall"] = _r(M.citation_recall(row.get("cited_doc_ids") or [], gold))
    if not row.get("refused"):
        m["answer_chars"] = M.answer_chars(answer)
        m["supported_share"] = _r(M.supported_share(row.get("sentence_supported") or []))
        m["citation_precision"] = _r(
            M.citation_precision(
                row.get("cited_doc_ids") or [], gold, row.get("cited_supporting") or []
            )
        )
    m["correct"] = is_correct(row)
    return m


def _timings(t: Mapping[str, float], wall_ms: float) -> dict[str, float]:
    def get(*names: str) -> float | None:
        return next((float(t[n]) for n in names if t.get(n) is not None), None)

    out = {
        "embed": get("embed_ms", "embed"),
        "retrieve": get("retrieve_ms", "retrieve"),
        "first_token": get("first_token_ms", "first_token"),
        "generate": get("generate_ms", "generate"),
        "total": get("total_ms", "total") or wall_ms,
    }
    return {k: round(v, 1) for k, v in out.items() if v is not None}


def make_row(
    q: Question,
    ans: Any,
    deep_hits: Sequence[Any],
    wall_ms: float,
    ks: Sequence[int] = KS,
    judge: Any = None,
) -> dict[str, Any]:
    """One compact result row: the answer, what it cites, what was retrieved, the metrics.

    Passage texts are not stored (ids and scores are; the texts are in the index), so a
    3,000-question run stays a few megabytes.
    """
    refused = bool(ans.refused)
    cited = [] if refused else list(ans.citations)
    row: dict[str, Any] = {
        "question_id": q.id,
        "question": q.question,
        **({"type": q.type} if q.type else {}),
        "answerable": q.answerable,
        "gold_doc_ids": list(q.gold_doc_ids),
        "answers": list(q.answers),
    }
    if q.answer_items:
        row["answer_items"] = [list(it) for it in q.answer_items]
    if q.false_answers:
        row["false_answers"] = list(q.false_answers)
    if ans.rewritten_question and ans.rewritten_question != q.question:
        row["rewritten_question"] = ans.rewritten_question
    row.update(
        {
            "answer": ans.text,
            "short_answer": getattr(ans, "short_answer", None),
            # the sentence the short answer is taken from, so a span rule can be
            # re-scored on stored rows without asking again
            "first_quote": None if refused or not ans.sentences else ans.sentences[0].text,
            # what short_em / short_f1 score: the short answer, else the first quote
            "span": None
            if refused
            else (
                getattr(ans, "short_answer", None)
                or (ans.sentences[0].text if ans.sentences else None)
            ),
            "refused": refused,
            "confidence": _r(ans.confidence),
            "citations": [[c.n, c.chunk_id] for c in cited],
            "cited_doc_ids": _distinct((c.doc_id for c in cited), len(cited)),
            # Only a judge could say that a cited passage supports its sentence; without
            # one, `cited_supporting` stays empty and citation precision counts gold ones.
            "sentence_supported": []
            if refused
            else [bool(s.supported) for s in ans.sentences if s.supported is not None],
            "retrieved": [[h.chunk_id, round(float(h.score), 4)] for h in ans.retrieved],
            "retrieved_doc_ids": _distinct((h.doc_id for h in deep_hits), max(ks)),
            "timings_ms": _timings(ans.timings_ms, wall_ms),
        }
    )
    if getattr(ans, "generation", None):  # an LLM wrote (or tried to write) the answer
        row["generation"] = dict(ans.generation)
    if judge is not None and not refused:
        verdict = judge.judge(
            q.question, ans.text, [c.text for c in cited], list(q.answers) or None
        )
        row["judge"] = verdict.to_json()
    row["metrics"] = row_metrics(row, ks)
    return row


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a results file; a line cut short by an interruption (even inside a
    multi-byte character) is dropped."""
    rows = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return rows
    for line in data.splitlines():
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(row, dict) and "question_id" in row:
            rows.append(row)
    return rows


def _dump(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def outcome(row: Mapping[str, Any]) -> bool | None:
    """`is_correct(row)`, read from the row's stored metrics when they have it
    (None: an answerable question without gold answer text)."""
    stored = (row.get("metrics") or {}).get("correct")
    return bool(stored) if stored is not None else is_correct(row)


def row_value(row: Mapping[str, Any], key: str) -> float | None:
    """One question's value of a metric, from its stored `metrics` (computed if absent).

    `hit@k` is read as recall@k > 0; `refusal_rate` / `false_refusal_rate` as the
    refusal of an unanswerable / answerable question. None where the metric does not apply.
    """
    if key in ("refusal_rate", "false_refusal_rate"):
        applies = bool(row.get("answerable")) == (key == "false_refusal_rate")
        return float(bool(row.get("refused"))) if applies else None
    if key == "correct":
        o = outcome(row)
        return None if o is None else float(o)
    m = row.get("metrics")
    if m is None:
        m = row_metrics(row)
    if key.startswith("hit@"):
        r = m.get("recall@" + key[4:])
        return None if r is None else float(r > 0)
    v = m.get(key)
    return None if v is None else float(v)


def summarize(
    rows: Sequence[Mapping[str, Any]], ks: Sequence[int] = KS, n_resamples: int = 1000
) -> dict[str, Any]:
    """`metrics.aggregate` plus the share correct (`correct`) and the judge's scores."""
    out = M.aggregate(rows, ks, n_resamples=n_resamples)
    ci = out.pop("ci95")
    extra: dict[str, list[float]] = {
        "correct": [float(o) for r in rows if (o := outcome(r)) is not None],
        "judge_faithfulness": [],
        "judge_correctness": [],
    }
    judge_errors = 0
    for r in rows:
        j = r.get("judge")
        if not j:
            continue
        if j.get("error"):
            judge_errors += 1
            continue
        if j.get("faithfulness") is not None:
            extra["judge_faithfulness"].append(float(j["faithfulness"]))
        if r.get("answerable") and j.get("correct") is not None:
            extra["judge_correctness"].append(float(bool(j["correct"])))
    for key, v in extra.items():
        out[key] = float(np.mean(v)) if v else None
        ci[key] = list(M.bootstrap_ci(v, n_resamples=n_resamples)) if v else None
    if any(r.get("judge") for r in rows):
        out["judge_errors"] = judge_errors
    out["ci95"] = ci
    return out


def row_type(row: Mapping[str, Any]) -> str:
    """The break-down group: the data set's `type`, else the answerer's question type."""
    if row.get("type"):
        return str(row["type"])
    if not row.get("answerable"):
        return "unanswerable"
    from rag.read.reader import answer_type

    return answer_type(row.get("question") or "")


TYPE_KEYS = (
    "recall@5",
    "hit@5",
    "mrr@10",
    "em",
    "f1",
    "short_em",
    "short_f1",
    "containment",
    "rgb_correct",
    "repeats_false",
    "correct",
    "refusal_rate",
    "false_refusal_rate",
)


def by_type(rows: Sequence[Mapping[str, Any]], n_resamples: int = 200) -> dict[str, Any]:
    """Per question type, largest group first: `n` and the mean of each of `TYPE_KEYS`
    with its bootstrap interval, from the rows' stored per-question metrics."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(row_type(r), []).append(r)
    out: dict[str, Any] = {}
    for t, g in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        entry: dict[str, Any] = {"n": len(g)}
        ci: dict[str, Any] = {}
        for key in TYPE_KEYS:
            vals = [v for r in g if (v := row_value(r, key)) is not None]
            entry[key] = float(np.mean(vals)) if vals else None
            ci[key] = list(M.bootstrap_ci(vals, n_resamples=n_resamples)) if vals else None
        entry["ci95"] = ci
        out[t] = entry
    return out
