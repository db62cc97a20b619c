"""Measure a generator on a question set, per question: what the LLM wrote and what was
shown (its checked answer, a refusal, or the extractive fallback), citation validity,
supported share, refusal, containment, first-token and total latency, tokens/s.

    python -m rag.eval.bench.llm QUESTIONS.jsonl --index DIR --model FILE --out rows.jsonl

`rag eval run` scores the shown answers like any other answerer; this adds what only an
LLM run has (eval/reports/llm/report.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from rag.config import Settings
from rag.eval.metrics import bootstrap_ci, containment, rgb_correct


def correct(text: str, q: dict) -> bool:
    """Does `text` hold the answer: one of `answers`, or for RGB every item of
    `answer_items` by one of its synonyms (RGB's `answers` are not alternatives)."""
    if q.get("answer_items"):
        return rgb_correct(text, q["answer_items"]) == 1.0
    return containment(text, q.get("answers", [])) == 1.0


def measure(system, q: dict) -> dict:
    """One question through the system's LLM answerer, as one row of figures."""
    t0 = time.perf_counter()
    pieces: list[str] = []
    final = None
    for item in system.answerer.stream(q["question"]):
        if isinstance(item, str):
            pieces.append(item)
        else:
            final = item
    wall = time.perf_counter() - t0
    raw = "".join(pieces)
    t = final.timings_ms
    # the answerer's own checks of the model's text (Answer.generation); none when the
    # model was not asked or failed before its text was complete
    g = final.generation or {}
    gen_s = (t.get("generate_ms", 0) - t.get("first_token_ms", 0)) / 1e3
    if final.refused:
        shown = "refusal"
    elif g:
        shown = g["shown"]
    else:
        shown = "fallback" if (final.notice or "").startswith("大模型") else "extractive"
    return {
        "id": q["id"],
        "question": q["question"],
        "answerable": q["answerable"],
        "answers": q.get("answers", []),
        "raw": raw,
        "answer": final.text,
        "notice": final.notice,
        "shown": shown,
        "refused": bool(final.refused),
        "contains": bool(not final.refused and correct(final.text, q)),
        "raw_contains": correct(raw, q),
        "cited_sentences": g.get("cited_sentences", 0),
        "valid_citations": g.get("valid_citations", 0),
        "sentences": g.get("sentences", 0),
        "supported": g.get("supported", 0),
        "first_token_ms": t.get("first_token_ms"),
        "total_ms": wall * 1e3,
        "tokens": len(pieces),
        "tokens_per_s": (len(pieces) - 1) / gen_s if gen_s > 0 and len(pieces) > 1 else None,
    }


def measure_extractive(system, q: dict) -> dict:
    """The same question answered by the extractive answerer, for the paired comparison."""
    t0 = time.perf_counter()
    ans = system.answerer.answer(q["question"])
    return {
        "id": q["id"],
        "answerable": q["answerable"],
        "answer": ans.text,
        "shown": "refusal" if ans.refused else "extractive",
        "refused": bool(ans.refused),
        "contains": bool(not ans.refused and correct(ans.text, q)),
        "supported": sum(1 for x in ans.sentences if x.supported),
        "sentences": len(ans.sentences),
        "total_ms": (time.perf_counter() - t0) * 1e3,
    }


def summary(rows: list[dict]) -> dict:
    """Aggregates of one run's rows (answerable and unanswerable questions apart)."""
    ans = [r for r in rows if r["answerable"]]
    una = [r for r in rows if not r["answerable"]]
    llm = [r for r in rows if "raw" in r]

    def share(xs, key):
        return sum(1 for r in xs if r[key]) / len(xs) if xs else None

    def median(xs):
        xs = sorted(x for x in xs if x is not None)
        return xs[len(xs) // 2] if xs else None

    out = {
        "questions": len(rows),
        "answerable": len(ans),
        "containment": share(ans, "contains"),
        "false_refusal": share(ans, "refused"),
        "refusal_unanswerable": share(una, "refused"),
        "supported_share": sum(r["supported"] for r in rows)
        / max(sum(r["sentences"] for r in rows), 1),
        "total_s_median": median([r["total_ms"] / 1e3 for r in rows]),
    }
    if llm:
        out.update(
            {
                "shown": {
                    k: sum(r["shown"] == k for r in llm)
                    for k in ("llm", "fallback", "refusal", "extractive")
                },
                "citation_validity": sum(r["valid_citations"] for r in llm)
                / max(sum(r["cited_sentences"] for r in llm), 1),
                "raw_containment": share(ans, "raw_contains"),
                "first_token_s_median": median([(r["first_token_ms"] or 0) / 1e3 for r in llm]),
                "tokens_per_s_median": median([r["tokens_per_s"] for r in llm]),
            }
        )
    return out


def paired(a: list[dict], b: list[dict], key: str = "contains") -> dict:
    """mean(b[key]) - mean(a[key]) on the ids both runs asked, with its paired
    bootstrap 95% interval (the questions resampled, both answers kept together)."""
    by = {r["id"]: r for r in a}
    d = [float(r[key]) - float(by[r["id"]][key]) for r in b if r["id"] in by]
    if not d:
        return {"n": 0, "diff": None, "ci95": None}
    return {"n": len(d), "diff": sum(d) / len(d), "ci95": bootstrap_ci(d, n_resamples=2000)}


def sample(qs: list[dict], answerable: int, unanswerable: int, seed: int) -> list[dict]:
    """A seeded sample of each kind, in the file's order, so the extractive run and the
    LLM run of the same arguments ask the same questions."""
    import random

    rng = random.Random(seed)
    picked: set[str] = set()
    for want, n in ((True, answerable), (False, unanswerable)):
        pool = [q["id"] for q in qs if bool(q["answerable"]) == want]
        if n > len(pool):
            raise SystemExit(f"only {len(pool)} questions with answerable={want}, asked {n}")
        picked.update(rng.sample(pool, n))
    return [q for q in qs if q["id"] in picked]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rag.eval.bench.llm")
    p.add_argument("questions")
    p.add_argument("--index", required=True)
    p.add_argument("--model", required=True, help="GGUF file")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int)
    p.add_argument("--ids", help="comma-separated question ids (instead of --limit)")
    p.add_argument(
        "--answerable", type=int, help="a seeded sample of this many answerable questions"
    )
    p.add_argument(
        "--unanswerable", type=int, help="a seeded sample of this many unanswerable questions"
    )
    p.add_argument("--within", type=int, help="sample only among the first N questions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sentences", type=int, default=-1, help="context sentences; 0: whole")
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--extractive", action="store_true", help="the extractive answerer instead")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from rag.system import load_system

    s = Settings(
        index_dir=args.index,
        llm="extractive" if args.extractive else "llamacpp",
        llm_model_path=args.model,
        llm_temperature=0.0,
        llm_max_tokens=args.max_tokens,
        llm_timeout_s=600.0,
    )
    system = load_system(s)
    if args.sentences >= 0 and not args.extractive:
        system.answerer.context_sentences = args.sentences or None
    qs = [json.loads(line) for line in open(args.questions, encoding="utf-8") if line.strip()]
    if args.ids:
        want = args.ids.split(",")
        qs = [q for q in qs if q["id"] in want]
    qs = qs[: args.limit] if args.limit else qs
    if args.answerable is not None or args.unanswerable is not None:
        qs = sample(qs[: args.within], args.answerable or 0, args.unanswerable or 0, args.seed)
    out = Path(args.out)
    done = {json.loads(x)["id"] for x in out.open()} if out.exists() else set()
    with out.open("a", encoding="utf-8") as f:
        for q in qs:
            if q["id"] in done:
                continue
            row = (measure_extractive if args.extractive else measure)(system, q)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            print(row["id"], row["shown"], row["contains"], round(row["total_ms"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
