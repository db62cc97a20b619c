"""Any JSON-lines question file, with its field names given on the command line.

    rag eval convert --from jsonl qa.jsonl --out DIR --question-field q --answer-field a \
        --context-field ctx [--id-field id] [--title-field t]

A field name may be a dotted path (`meta.question`). The answer is a string, a list of
alternatives, or a list of `{text: ...}`; an empty answer makes the question
unanswerable (its context stays in the corpus, as the near miss it was asked against).
The context is a passage or a list of passages; each becomes a corpus record with an id
from its text's hash, so a passage shared by several questions is indexed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.eval.sources.common import Record, Skips, Source, content_id, read_records, text_of

_MISSING = object()


@dataclass(frozen=True)
class Fields:
    """Which field of a record holds what."""

    question: str = "question"
    answer: str = "answer"
    context: str = "context"
    id: str | None = None
    title: str | None = None


def _get(rec: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(rec, dict) or part not in rec:
            return _MISSING
        rec = rec[part]
    return rec


def _answers(value: Any) -> list[str] | None:
    if value is None:
        return []
    if text_of(value) is not None:
        value = [value]
    if not isinstance(value, list):
        return None
    out = []
    for a in value:
        if isinstance(a, dict):
            a = a.get("text")
        t = text_of(a)
        if t is None:
            return None
        if t:
            out.append(t)
    return list(dict.fromkeys(out))


def read_jsonl(path: Path, fields: Fields) -> Source:
    skips = Skips()
    corpus: dict[str, Record] = {}
    questions: list[Record] = []
    for n, (where, rec) in enumerate(read_records(path, "jsonl", skips)):
        if not isinstance(rec, dict):
            skips.add("not a JSON object", where)
            continue
        values = {f: _get(rec, name) for f, name in vars(fields).items() if name}
        missing = [
            getattr(fields, f) for f in ("question", "answer", "context") if values[f] is _MISSING
        ]
        if missing:
            skips.add(f"lacks {', '.join(missing)}", where)
            continue
        question = text_of(values["question"])
        if not question:
            skips.add("empty question", where)
            continue
        answers = _answers(values["answer"])
        if answers is None:
            skips.add(f"{fields.answer} is not text or a list of texts", where)
            continue
        ctx = values["context"]
        passages = [ctx] if isinstance(ctx, str) else ctx
        if not isinstance(passages, list) or not all(isinstance(p, str) for p in passages):
            skips.add(f"{fields.context} is not text or a list of texts", where)
            continue
        passages = [p for p in passages if p.strip()]
        if not passages:
            skips.add("empty context", where)
            continue
        title = text_of(values.get("title")) if "title" in values else ""
        own: dict[str, str] = {}  # id -> passage, deduplicated in order
        for p in passages:
            pid = content_id("doc-", p)
            corpus.setdefault(pid, {"id": pid, "title": title or "", "text": p})
            own.setdefault(pid, p)
        ids = list(own)
        qid = values.get("id", _MISSING)
        qid = str(qid) if qid is not _MISSING and qid is not None else f"q{n}"
        if answers:
            # gold: the passages that hold an answer, else (an abstractive answer) all of them
            holding = [i for i, p in own.items() if any(a in p for a in answers)]
            gold = holding or ids
        else:
            gold = []
        q: Record = {
            "id": qid,
            "question": question,
            "answers": answers,
            "answerable": bool(answers),
            "gold_doc_ids": gold,
        }
        if ids != gold:
            q["context_doc_ids"] = ids
        questions.append(q)
    return Source(questions, list(corpus.values()), skips)
