"""Near-miss refusal examples from a converted QA set: the asked fact cut out of its passage.

For every other paragraph, one question is chosen and every sentence of the paragraph
that contains one of its gold answers is deleted. The paragraph keeps its topic, names
and the rest of its facts, so retrieval still finds it, but it no longer answers that
question: the case a clerk meets when the documents talk about a project but not about
its budget. Those questions are written as unanswerable; the first question of each
untouched paragraph is written as answerable.

    rag eval tune make_nearmiss /tmp/exp/cmrc --out /tmp/exp/cmrc_nearmiss
    rag ingest /tmp/exp/cmrc_nearmiss/corpus.jsonl --index /tmp/exp/idx_cmrc_nearmiss

The output is the calibration set `rag/eval/tuning/calibrate_refusal.py` reads (its `answerable`
flags are used as they are).

With `--distractors N` it writes a retrieval set instead: for each of the first N
questions, a copy of its paragraph with the answer cut out joins the corpus as a
distractor (the whole original corpus stays). The question's gold documents are its
paragraph and any copy that still holds its answer. It is the hard case RGB is full
of (a passage on the same subject that lacks only the answer), built without reading
RGB; `rag/eval/tuning/tune_rerank.py` tunes the answer-aware rerank on it.

    rag eval tune make_nearmiss /tmp/exp/cmrc --distractors 800 --out /tmp/exp/cmrc_hn
    cp -r /tmp/exp/idx_cmrc /tmp/exp/idx_cmrc_hn   # or ingest corpus.jsonl as well
    rag ingest /tmp/exp/cmrc_hn/distractors.jsonl --index /tmp/exp/idx_cmrc_hn
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

from rag.ingest.chunking import split_sentences  # noqa: E402


def cut_answer(text: str, answers: list[str]) -> str | None:
    """`text` without the sentences holding any answer; None if too little would remain."""
    spans = split_sentences(text)
    keep = [
        text[s.start : s.end] for s in spans if not any(a in text[s.start : s.end] for a in answers)
    ]
    if len(keep) < 2 or len(keep) == len(spans) or sum(map(len, keep)) < 0.4 * len(text):
        return None
    return "".join(keep)


def distractors(docs: list[dict], questions: list[dict]) -> tuple[list[dict], list[dict]]:
    """Answer-less copies of each question's paragraph, and the questions with their gold
    documents widened to every copy that still holds one of their answers."""
    by_id = {d["id"]: d for d in docs}
    made: list[dict] = []
    copies: dict[str, list[dict]] = {}  # paragraph id -> its copies
    for q in questions:
        d = by_id[q["gold_doc_ids"][0]]
        text = cut_answer(d["text"], [a for a in q["answers"] if a])
        if text is not None:
            made.append({**d, "id": f"{d['id']}-CUT-{q['id']}", "text": text})
            copies.setdefault(d["id"], []).append(made[-1])
    out = []
    for q in questions:
        para = q["gold_doc_ids"][0]
        still = [
            m["id"] for m in copies.get(para, []) if any(a and a in m["text"] for a in q["answers"])
        ]
        out.append({**q, "gold_doc_ids": [para, *still]})
    return made, out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("converted", help="a folder with corpus.jsonl and questions.jsonl")
    ap.add_argument("--out", required=True)
    ap.add_argument("--distractors", type=int, metavar="N", help="a retrieval set (see above)")
    args = ap.parse_args()
    src, out = Path(args.converted), Path(args.out)
    docs = [json.loads(x) for x in open(src / "corpus.jsonl", encoding="utf-8")]
    if args.distractors:
        rows = [json.loads(x) for x in open(src / "questions.jsonl", encoding="utf-8")]
        rows = [q for q in rows if q.get("answerable", True) and len(q["gold_doc_ids"]) == 1]
        made, qs = distractors(docs, rows[: args.distractors])
        out.mkdir(parents=True, exist_ok=True)
        for name, items in (("distractors.jsonl", made), ("questions.jsonl", qs)):
            with open(out / name, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in items)
        print(f"{len(qs)} questions, {len(made)} distractors")
        return
    by_doc: dict[str, list[dict]] = {}
    for line in open(src / "questions.jsonl", encoding="utf-8"):
        q = json.loads(line)
        if q.get("answerable", True) and len(q["gold_doc_ids"]) == 1:
            by_doc.setdefault(q["gold_doc_ids"][0], []).append(q)
    out.mkdir(parents=True, exist_ok=True)
    questions, cut = [], 0
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            qs = by_doc.get(d["id"], [])
            if i % 2 == 0:  # near miss: the first question whose answer can be cut out
                for q in qs:
                    text = cut_answer(d["text"], [a for a in q["answers"] if a])
                    if text is not None:
                        d = {**d, "text": text}
                        questions.append({**q, "answerable": False, "answers": []})
                        cut += 1
                        break
            elif qs:
                questions.append(qs[0])
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(out / "questions.jsonl", "w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    print(f"{len(docs)} passages, {cut} cut; {len(questions)} questions, {cut} unanswerable")


if __name__ == "__main__":
    main()
