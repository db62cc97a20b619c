"""RGB (chen700564/RGB) Chinese sets: `zh_refine`, `zh_int` (integration) and `zh_fact` (counterfactual).

Each line is `{id, query, answer, positive, negative}`:

- `zh_refine`: `positive` is a list of passages; `answer` a list of items, each a string
  or a list of synonyms, all items required.
- `zh_int`: the answer has several items drawn from different documents; `positive` is
  a list of lists, one group of passages per item. The groups are flattened: every
  positive passage is gold.
- `zh_fact`: `answer` is the true fact, `fakeanswer` the false one the documents state;
  `positive_wrong` are the passages rewritten to carry the false fact. The corpus gets
  `positive_wrong` and `negative` (not the true `positive`): the documents contain
  false facts, and `false_answers` records what repeating them would look like.

The corpus is every passage of the file, deduplicated by exact text, with an id from the
text's hash. `context_doc_ids` lists all of a question's own passages (positive and
negative), which `--limit` keeps in its small corpus.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.eval.metrics import normalize_answer
from rag.eval.sources.common import Record, Skips, Source, bad, content_id, read_records, text_of

FIELDS = ("id", "query", "answer", "positive", "negative")


def rgb_id(text: str) -> str:
    return content_id("rgb-", text)


def answer_items(value: Any) -> list[list[str]] | None:
    """RGB's answer as items of synonyms: "70" -> [["70"]], ["a", ["b", "c"]] -> [["a"], ["b", "c"]].

    None when an item is neither text nor a list of texts, or is empty.
    """
    if text_of(value) is not None:
        value = [value]
    if not isinstance(value, list) or not value:
        return None
    items = []
    for it in value:
        syn = [text_of(s) for s in (it if isinstance(it, list) else [it])]
        if not syn or any(s is None for s in syn):
            return None
        syn = [s for s in syn if s]
        if not syn:
            return None
        items.append(list(dict.fromkeys(syn)))
    return items


def _passages(value: Any) -> list[str] | None:
    """A list of passages, or (zh_int) a list of lists of passages, flattened."""
    if not isinstance(value, list):
        return None
    out = []
    for p in value:
        group = p if isinstance(p, list) else [p]
        for t in group:
            if not isinstance(t, str):
                return None
            if t.strip():
                out.append(t)
    return out


def read_rgb(path: Path, refusal_fraction: float, seed: int, limit: int | None = None) -> Source:
    """Read any of the three RGB files (told apart per record by their fields).

    With `refusal_fraction` > 0, that share of the questions become refusal questions:
    their positives and every passage containing any synonym of any of their answer
    items leave the corpus. See `pick_refusals` for how they are chosen.
    """
    skips = Skips()
    texts: dict[str, str] = {}  # text -> id, in order of first appearance
    questions: list[Record] = []
    for where, rec in read_records(path, "rgb", skips):
        if not isinstance(rec, dict):
            skips.add("not a JSON object", where)
            continue
        missing = [k for k in FIELDS if k not in rec]
        if missing:
            skips.add(f"lacks {', '.join(missing)}", where)
            continue
        query = text_of(rec["query"])
        if not query:
            skips.add("empty question", where)
            continue
        items = answer_items(rec["answer"])
        if items is None:
            skips.add("empty or malformed answer", where)
            continue
        fact = "positive_wrong" in rec or "fakeanswer" in rec
        positive = _passages(rec["positive_wrong"] if fact else rec["positive"])
        negative = _passages(rec["negative"])
        if positive is None or negative is None:
            skips.add("a passage is not text", where)
            continue
        if not positive:
            skips.add("no positive passage", where)
            continue
        false_items = answer_items(rec.get("fakeanswer")) if fact else None
        if fact and false_items is None:
            skips.add("counterfactual record without a fakeanswer", where)
            continue
        for t in [*positive, *negative]:
            texts.setdefault(t, rgb_id(t))
        gold = list(dict.fromkeys(texts[t] for t in positive))
        q: Record = {
            "id": str(rec["id"]),
            "question": query,
            "answers": [it[0] for it in items],
            "answer_items": items,
            "answerable": True,
            "gold_doc_ids": gold,
            "context_doc_ids": list(dict.fromkeys([*gold, *(texts[t] for t in negative)])),
        }
        if fact:
            q["false_answers"] = [s for it in false_items for s in it]
            q["type"] = "counterfactual"
        elif isinstance(rec["positive"][0], list):
            q["type"] = "integration"
        questions.append(q)
    if len(set(texts.values())) != len(texts):
        raise bad(path, "rgb", "two different passages share a 12-digit content hash")
    if not questions:
        return Source([], [], skips)
    questions = questions[:limit]

    removed: set[str] = set()
    if refusal_fraction > 0:
        chosen, removed = pick_refusals(questions, texts, refusal_fraction, seed)
        for i in chosen:
            q = questions[i]
            q["original_answers"] = q.pop("answers")
            q["original_answer_items"] = q.pop("answer_items")
            q["original_gold_doc_ids"] = q["gold_doc_ids"]
            q.update(answers=[], answerable=False, gold_doc_ids=[], type="refusal")
        for q in questions:
            q["gold_doc_ids"] = [d for d in q["gold_doc_ids"] if d not in removed]
            q["context_doc_ids"] = [d for d in q["context_doc_ids"] if d not in removed]
    corpus = [{"id": i, "title": "", "text": t} for t, i in texts.items() if i not in removed]
    return Source(questions, corpus, skips)


def pick_refusals(
    questions: list[Record], texts: dict[str, str], fraction: float, seed: int
) -> tuple[list[int], set[str]]:
    """Choose the refusal questions and the passages to remove with them.

    Candidates are visited in a seeded random order. A candidate is taken unless its
    removal would leave some other, still answerable question without any positive
    passage: short answers ("中国", "10") occur in thousands of passages, and taking
    such a question would empty the corpus for a third of the others. A candidate
    passed over is tried again once others have been taken (their questions no
    longer need their positives), until enough are taken or none can be.
    """
    want = max(1, round(fraction * len(questions)))
    norm_texts = [(tid, normalize_answer(t)) for t, tid in texts.items()]
    gold = [set(q["gold_doc_ids"]) for q in questions]

    def removal(i: int) -> set[str]:
        synonyms = [s for item in questions[i]["answer_items"] for s in map(normalize_answer, item)]
        return gold[i] | {tid for tid, nt in norm_texts if any(s and s in nt for s in synonyms)}

    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    removals: dict[int, set[str]] = {}
    chosen: set[int] = set()
    removed: set[str] = set()
    progress = True
    while progress and len(chosen) < want:
        progress = False
        for i in order:
            if len(chosen) == want:
                break
            if i in chosen:
                continue
            trial = removed | removals.setdefault(i, removal(i))
            others = (j for j in range(len(questions)) if j != i and j not in chosen and gold[j])
            if all(gold[j] - trial for j in others):
                chosen.add(i)
                removed = trial
                progress = True
    if len(chosen) < want:
        raise ConfigError(
            f"--refusal-fraction {fraction}: only {len(chosen)} of {want} questions can become "
            "refusal questions without removing every positive passage of another question; "
            "use a smaller fraction"
        )
    return sorted(chosen), removed
