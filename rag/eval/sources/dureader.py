"""DuReader-style retrieval sets (JSON lines), in either of Baidu's two shapes.

- DuReader 2.0 (search / zhidao): `{question_id, question, question_type, documents:
  [{title, paragraphs: [...], is_selected}], answers: [...]}`. Each document is one
  corpus record (its paragraphs joined), id from its text's hash; the gold documents are
  those with `is_selected`; the others stay in `context_doc_ids` as the question's own
  hard distractors. `answers` are free-written human answers, kept as alternatives, so
  F1 is the fairer answer score here than containment.
- DuReader-retrieval (`dev.json`): `{question_id, question, answer_paragraphs:
  [{paragraph_id, paragraph_text}]}`. Each answer paragraph is a corpus record with its
  own `paragraph_id`; there are no answer strings, so the questions are retrieval-only
  (`answers: []`, answer metrics do not apply). The 8M-passage collection is not read:
  add distractors from another corpus when retrieval should be harder.
"""

from __future__ import annotations

from pathlib import Path

from rag.eval.sources.common import Record, Skips, Source, content_id, read_records, text_of


def read_dureader(path: Path) -> Source:
    skips = Skips()
    corpus: dict[str, Record] = {}
    questions: list[Record] = []
    for where, rec in read_records(path, "dureader", skips):
        if not isinstance(rec, dict):
            skips.add("not a JSON object", where)
            continue
        question = text_of(rec.get("question"))
        if not question:
            skips.add("empty question", where)
            continue
        qid = str(rec.get("question_id") if rec.get("question_id") is not None else where)
        if isinstance(rec.get("answer_paragraphs"), list):
            q = _retrieval_question(rec, qid, question, corpus, skips, where)
        elif isinstance(rec.get("documents"), list):
            q = _reading_question(rec, qid, question, corpus, skips, where)
        else:
            skips.add("lacks documents or answer_paragraphs", where)
            continue
        if q is not None:
            questions.append(q)
    return Source(questions, list(corpus.values()), skips)


def _retrieval_question(
    rec: Record, qid: str, question: str, corpus: dict[str, Record], skips: Skips, where: str
) -> Record | None:
    gold = []
    for p in rec["answer_paragraphs"]:
        text = text_of(p.get("paragraph_text")) if isinstance(p, dict) else None
        if not text:
            continue
        pid = str(p.get("paragraph_id") or content_id("du-", text))
        corpus.setdefault(pid, {"id": pid, "title": "", "text": text})
        gold.append(pid)
    if not gold:
        skips.add("no answer paragraph with text", f"{where} ({qid})")
        return None
    return {
        "id": qid,
        "question": question,
        "answers": [],
        "answerable": True,
        "gold_doc_ids": list(dict.fromkeys(gold)),
    }


def _reading_question(
    rec: Record, qid: str, question: str, corpus: dict[str, Record], skips: Skips, where: str
) -> Record | None:
    gold, own = [], []
    for doc in rec["documents"]:
        if not isinstance(doc, dict):
            continue
        paras = [t for p in doc.get("paragraphs") or () if (t := text_of(p))]
        if not paras:
            continue
        text = "\n".join(paras)
        did = content_id("du-", text)
        corpus.setdefault(did, {"id": did, "title": text_of(doc.get("title")) or "", "text": text})
        own.append(did)
        if doc.get("is_selected") is True:
            gold.append(did)
    if not gold:
        skips.add("no selected document", f"{where} ({qid})")
        return None
    answers = [a for x in rec.get("answers") or () if (a := text_of(x))]
    q: Record = {
        "id": qid,
        "question": question,
        "answers": list(dict.fromkeys(answers)),
        "answerable": True,
        "gold_doc_ids": list(dict.fromkeys(gold)),
        "context_doc_ids": list(dict.fromkeys(own)),
    }
    if text_of(rec.get("question_type")):
        q["type"] = str(rec["question_type"]).lower()
    return q
