"""Paragraph-based reading-comprehension sets: CMRC 2018 (original format), SQuAD v1 / v2, DRCD, CAIL2019.

One corpus record per paragraph; each answerable question's gold document is its own
paragraph. An unanswerable question (SQuAD v2 `is_impossible`) keeps its paragraph in the
corpus and names it in `context_doc_ids`, so a small corpus for `--limit` still holds
the near miss it was asked against.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rag.eval.sources.common import Record, Skips, Source, bad, load_json, structure_error, text_of

# YES/NO judgements (CAIL2019 writes them as is_impossible with the text "YES" or "NO"):
# the answerers quote passages and do not judge, so these are left out, and counted
YES_NO = frozenset({"YES", "NO"})
YES_NO_REASON = "yes/no judgement (the answerers quote passages, they do not judge)"

_BARE_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def clean_answers(raw: Iterable[Any], context: str) -> list[str]:
    """Answer strings, stripped and deduplicated in order.

    CMRC's dev file carries spreadsheet artefacts among its human answers (39764.0 for
    "2008年11月12日", 147.0 for "147位"); a bare number that does not occur in the
    paragraph is one, and is dropped unless nothing else is left.
    """
    answers = list(dict.fromkeys(s for a in raw if (s := text_of(a))))
    kept = [a for a in answers if not (_BARE_NUMBER.fullmatch(a) and a not in context)]
    return kept or answers


def impossible(value: Any) -> bool:
    """SQuAD v2's is_impossible: a boolean, or (CAIL2019) the string "true"/"false"."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _yes_no(qa: Record) -> bool:
    texts = {
        str(a.get("text", "")).strip().upper()
        for a in qa.get("answers") or ()
        if isinstance(a, dict)
    }
    return bool(texts) and texts <= YES_NO


def read_cmrc(path: Path) -> Source:
    data = load_json(path, "cmrc")
    if not (isinstance(data, list) and data and all(isinstance(p, dict) for p in data)):
        raise bad(path, "cmrc", "not a list of paragraph objects")
    skips = Skips()
    corpus: list[Record] = []
    questions: list[Record] = []
    seen: set[str] = set()
    for n, para in enumerate(data):
        try:
            pid, text, qas = str(para["context_id"]), para["context_text"], para["qas"]
            if not isinstance(text, str) or not text.strip():
                raise TypeError("context_text is not text")
            if not isinstance(qas, list):
                raise TypeError("qas is not a list")
        except (KeyError, TypeError) as e:
            skips.add(f"paragraph: {structure_error(e)}", f"paragraph {n}")
            continue
        if pid in seen:
            skips.add("paragraph id occurs twice", f"paragraph {n} ({pid})")
            continue
        seen.add(pid)
        corpus.append({"id": pid, "title": para.get("title", ""), "text": text})
        for qi, qa in enumerate(qas):
            where = f"paragraph {n} ({pid}) question {qi}"
            try:
                qid = str(qa["query_id"])
                question = text_of(qa["query_text"])
                answers = clean_answers(qa["answers"], text)
            except (KeyError, TypeError, AttributeError) as e:
                skips.add(structure_error(e), where)
                continue
            if not question:
                skips.add("empty question", f"{where} ({qid})")
                continue
            if not answers:
                skips.add("no answer", f"{where} ({qid})")
                continue
            questions.append(
                {
                    "id": qid,
                    "question": question,
                    "answers": answers,
                    "answerable": True,
                    "gold_doc_ids": [pid],
                }
            )
    return Source(questions, corpus, skips)


def read_squad(path: Path, kind: str) -> Source:
    """SQuAD v1 (`squad`, `drcd`) or v2 (`squad2`, `cail`).

    v1 has no unanswerable questions: one marked `is_impossible` there is skipped, with
    the hint to read the file as `squad2`.
    """
    data = load_json(path, kind)
    if not (isinstance(data, dict) and isinstance(data.get("data"), list)):
        raise bad(path, kind, 'no top-level "data" list')
    v2 = kind in ("squad2", "cail")
    skips = Skips()
    corpus: list[Record] = []
    questions: list[Record] = []
    seen: set[str] = set()
    for ai, article in enumerate(data["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            skips.add("article without a paragraphs list", f"article {ai}")
            continue
        for pi, para in enumerate(paragraphs):
            where = f"article {ai} paragraph {pi}"
            if not isinstance(para, dict) or not isinstance(para.get("context"), str):
                skips.add("paragraph without a context text", where)
                continue
            pid = str(para.get("id") or f"{ai}-{pi}")
            if pid in seen:
                skips.add("paragraph id occurs twice", f"{where} ({pid})")
                continue
            seen.add(pid)
            text = para["context"]
            corpus.append({"id": pid, "title": article.get("title", ""), "text": text})
            for qi, qa in enumerate(para.get("qas") or ()):
                q = _squad_question(qa, pid, qi, text, v2, skips, f"{where} question {qi}")
                if q is not None:
                    questions.append(q)
    return Source(questions, corpus, skips)


def _squad_question(
    qa: Any, pid: str, qi: int, text: str, v2: bool, skips: Skips, where: str
) -> Record | None:
    if not isinstance(qa, dict):
        skips.add("question is not an object", where)
        return None
    qid = str(qa.get("id") or f"{pid}-q{qi}")
    where = f"{where} ({qid})"
    question = text_of(qa.get("question"))
    if not question:
        skips.add("empty question", where)
        return None
    if _yes_no(qa):
        skips.add(YES_NO_REASON, where)
        return None
    raw = qa.get("answers")
    spans = (
        [a.get("text") if isinstance(a, dict) else a for a in raw or ()]
        if isinstance(raw, list)
        else []
    )
    if impossible(qa.get("is_impossible", False)) and v2 and any(text_of(t) for t in spans):
        # CAIL2019 marks 218 questions is_impossible "true" and still gives three human
        # spans ("原告向哪个法院提起了诉讼？" -> "驻马店市中级法院"): the spans are kept
        skips.flag("is_impossible but answers given: kept as answerable", where)
    elif impossible(qa.get("is_impossible", False)):
        if not v2:
            skips.add("marked is_impossible in a SQuAD v1 file (--from squad2 keeps it)", where)
            return None
        return {
            "id": qid,
            "question": question,
            "answers": [],
            "answerable": False,
            "gold_doc_ids": [],
            "context_doc_ids": [pid],
        }
    if not isinstance(raw, list):
        skips.add("answers is not a list", where)
        return None
    answers = clean_answers(spans, text)
    if not answers:
        skips.add("no answer", where)
        return None
    return {
        "id": qid,
        "question": question,
        "answers": answers,
        "answerable": True,
        "gold_doc_ids": [pid],
    }
