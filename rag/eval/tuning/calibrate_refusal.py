"""Fit the extractive answerer's refusal model on data other than corpus_qa.

For each calibration set, answerable questions are asked normally (label: answer) and,
when `hide` is set, asked again with their gold documents and every document of the
same title hidden from retrieval (label: refuse) -- the documents then lack the answer.
`hidepara` hides only the gold paragraph: the rest of the article stays, so the
negatives are near misses (same topic and names, not the asked fact), the hard case.
`offtopic` asks a set's questions of another set's index (CMRC's questions of the
corpus/ index: a clerk asking about something the documents never cover), all labelled
refuse. Sets whose questions carry `answerable: false` are used as is: RGB's refusal
variant, or the near misses of `rag/eval/tuning/make_nearmiss.py` (the answer's sentences cut out
of the gold paragraph, the rest kept). Questions that the answer-type rule already refuses (no
sentence within reach holds a value of the asked kind, `ExtractiveAnswerer._fitting`)
are counted in the report but left out of the fit. A logistic regression over the
answerer's evidence features is fitted, and the threshold is the highest refusal
probability that keeps false refusals within the target.

    rag eval tune make_nearmiss /tmp/exp/cmrc --out /tmp/exp/cmrc_nearmiss
    rag ingest /tmp/exp/cmrc_nearmiss/corpus.jsonl --index /tmp/exp/idx_cmrc_nearmiss
    rag ingest corpus/ --index /tmp/idx_corpus
    rag eval tune calibrate_refusal --max-false-refusal 0.02 \
        --set cmrc:/tmp/exp/cmrc/questions.jsonl:/tmp/exp/idx_cmrc:hide:800 \
        --set cmrc_nearmiss:/tmp/exp/cmrc_nearmiss/questions.jsonl:/tmp/exp/idx_cmrc_nearmiss \
        --set cmrc_on_corpus:/tmp/exp/cmrc/questions.jsonl:/tmp/idx_corpus:offtopic:300 \
        --set corpus_qa_odd:eval/datasets/corpus_qa.jsonl:/tmp/idx_corpus:::odd \
        --check corpus_qa_even:eval/datasets/corpus_qa.jsonl:/tmp/idx_corpus:::even \
        --check rgb_on_corpus:/tmp/exp/rgb/questions.jsonl:/tmp/idx_corpus:offtopic

writes rag/refusal_model.json and eval/reports/refusal_calibration.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]

from rag.config import Settings  # noqa: E402
from rag.read.answerability import trained  # noqa: E402
from rag.read.extractive import ANSWERS  # noqa: E402

LEXICAL = ["dense_top", "coverage", "missing_idf", "type_ok", "bm25_top1", "coverage_top3"]
FEATURES = LEXICAL + [ANSWERS]  # the cross-encoder's P(the evidence answers)


def features_for(system, question: str, exclude_doc_ids=()) -> list[float] | None:
    from rag.types import Filters

    res = system.retriever.search(question, filters=Filters(exclude_doc_ids=tuple(exclude_doc_ids)))
    _, best = system.answerer.select(question, res.hits)
    f = system.answerer.features(question, res.hits, best, answers=True)
    # None: no sentence can answer (no value of the asked kind); refused before the model
    return [f[k] for k in FEATURES] if f else None


def collect(spec: str, embedder):
    name, qpath, index_dir, mode, limit, half = (spec.split(":") + ["", "", ""])[:6]
    rows = [json.loads(line) for line in open(qpath, encoding="utf-8")]
    rows = rows[: int(limit)] if limit else rows
    if half in ("odd", "even"):  # calibrate on one half of a set, keep the other held out
        rows = [r for i, r in enumerate(rows) if (i % 2 == 0) == (half == "odd")]
    if mode == "unseen":  # only documents the cross-encoder was not trained on
        meta = trained()
        unseen = set(meta.meta.get("validation_docs") or []) if meta else set()
        rows = [
            r
            for r in rows
            if set(r.get("gold_doc_ids") or r.get("context_doc_ids") or []) <= unseen
        ]
        rows = [r for r in rows if r.get("gold_doc_ids") or r.get("context_doc_ids")]
    # batch-embed the questions once (cached beside the questions file)
    from rag.eval.tuning.quality import system_with_cached_queries  # rag/eval/tuning/quality.py

    questions = [r["question"] for r in rows]
    system = system_with_cached_queries(
        questions, Path(qpath), Settings(index_dir=index_dir), embedder
    )
    titles: dict[str, list[str]] = {}
    for d, meta in system.index.docs.items():
        titles.setdefault(meta.get("title") or d, []).append(d)
    nan = [float("nan")] * len(FEATURES)  # refused by the answer-type rule, before the model
    X, y = [], []
    for i, r in enumerate(rows):
        f = features_for(system, r["question"])
        X.append(nan if f is None else f)
        # "offtopic": another set's questions asked of this index, which cannot answer them
        y.append(1 if r.get("answerable", True) and mode != "offtopic" else 0)
        if mode in ("hide", "hidepara") and r.get("answerable", True):
            hidden = set(r["gold_doc_ids"])
            if mode == "hide":  # the whole article: an off-topic negative
                for g in r["gold_doc_ids"]:
                    hidden.update(titles.get(system.index.docs.get(g, {}).get("title") or g, []))
            # "hidepara": only the gold paragraph, its siblings stay: a near-miss negative
            f = features_for(system, r["question"], exclude_doc_ids=sorted(hidden))
            X.append(nan if f is None else f)
            y.append(0)
        if i % 100 == 0:
            print(f"{name}: {i}/{len(rows)}", file=sys.stderr)
    return name, np.asarray(X), np.asarray(y)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--set",
        action="append",
        required=True,
        help="NAME:QUESTIONS:INDEX[:hide|hidepara|offtopic|unseen][:LIMIT][:odd|even]",
    )
    ap.add_argument("--max-false-refusal", type=float, default=0.08)
    ap.add_argument("--out-model", default=str(REPO / "rag" / "read" / "refusal_model.json"))
    ap.add_argument(
        "--out-report", default=str(REPO / "eval" / "reports" / "refusal_calibration.md")
    )
    ap.add_argument(
        "--check",
        action="append",
        default=[],
        help="a held-out set, same format as --set: reported, never fitted",
    )
    ap.add_argument("--features-cache", help="also save every set's features to this .npz")
    args = ap.parse_args()

    from rag.system import make_embedder

    embedder = make_embedder(Settings())
    sets = [collect(s, embedder) for s in args.set]
    checks = [collect(s, embedder) for s in args.check]
    if args.features_cache:  # refits without asking every question again
        np.savez(args.features_cache, **{f"set:{n}": x for n, x, _ in sets}, **{f"y:{n}": y for n, _, y in sets}, **{f"check:{n}": x for n, x, _ in checks}, **{f"ycheck:{n}": y for n, _, y in checks})  # fmt: skip
    full = _fit(sets, FEATURES, args.max_false_refusal)
    lexical = _fit(sets, LEXICAL, args.max_false_refusal)
    model = full[0] | {"without_answerability": lexical[0]}
    model["made_by"] = "rag eval tune calibrate_refusal " + " ".join(sys.argv[1:])
    Path(args.out_model).write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")

    lines = [
        "# Refusal calibration (extractive answerer)",
        "",
        "Command:",
        "",
        "```",
        f"rag eval tune calibrate_refusal --max-false-refusal {args.max_false_refusal} "
        + " ".join([f"--set {s}" for s in args.set] + [f"--check {s}" for s in args.check]),
        "```",
        "",
        "Negatives are answerable questions asked again with their gold documents (and every",
        "document of the same title) hidden, `offtopic` sets (one set's questions asked of",
        "another's index), and sets that carry `answerable: false` (the CMRC near misses of",
        "`rag/eval/tuning/make_nearmiss.py`: the answer's sentences cut out of the gold paragraph;",
        "CAIL2019's unanswerable questions, `unseen`: only the documents the answerability",
        "cross-encoder was not trained on). Of corpus_qa only the odd-numbered half is used;",
        "the even half is the held-out check. Questions the answer-type rule refuses (no",
        "sentence within reach holds a date or number of the asked kind, or one names",
        "another year) are counted below but left out of the fit.",
        "",
        "Two fits: with the cross-encoder's `answers` feature (rag/read/answerability.py, the",
        "default) and without it (`answerability_model = false`, or a checkout without the",
        "model). Each threshold on P(answerable) is chosen so that at most "
        f"{args.max_false_refusal:.0%} of answerable calibration questions are refused "
        "(each set weighs the same).",
        "",
    ]
    for title, (m, clf, cols) in (("With the answerability model", full), ("Lexical features only", lexical)):  # fmt: skip
        lines += [
            f"## {title}",
            "",
            f"Logistic regression over {', '.join(cols)}; threshold {m['threshold']:.3f}.",
            "",
            "| set | examples | refused by the rule (answerable / not) "
            "| answerable refused (false refusal) | unanswerable refused |",
            "|---|---|---|---|---|",
        ]
        for (n, Xs, ys), held_out in [(x, False) for x in sets] + [(x, True) for x in checks]:
            Xs = Xs[:, [FEATURES.index(c) for c in cols]]
            ruled = np.isnan(Xs).any(axis=1)
            ps = np.where(ruled, -1.0, clf.predict_proba(np.nan_to_num(Xs))[:, 1])
            fr = int(np.sum(ps[ys == 1] < m["threshold"]))
            rr = int(np.sum(ps[ys == 0] < m["threshold"]))
            npos, nneg = int((ys == 1).sum()), int((ys == 0).sum())
            label = f"{n} (held out)" if held_out else n
            lines.append(
                f"| {label} | {len(ys)} | {int(ruled[ys == 1].sum())} / {int(ruled[ys == 0].sum())} "
                f"| {fr}/{npos} = {fr / max(npos, 1):.3f} "
                f"| {rr}/{nneg} = {rr / max(nneg, 1):.3f} |"
            )
        lines += [
            "",
            "Coefficients: " + ", ".join(f"{f} {c:+.3f}" for f, c in zip(cols, m["coef"])),
            f"Intercept: {m['intercept']:+.3f}",
            "",
        ]
    Path(args.out_report).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


def _fit(sets, cols: list[str], max_false_refusal: float):
    """(model as refusal_model.json holds it, the fitted classifier, its columns)."""
    from sklearn.linear_model import LogisticRegression

    at = [FEATURES.index(c) for c in cols]
    X = np.vstack([s[1][:, at] for s in sets])
    y = np.concatenate([s[2] for s in sets])
    # each set weighs the same in the fit, however many questions it has
    w = np.concatenate([np.full(len(s[2]), len(y) / (len(sets) * len(s[2]))) for s in sets])
    fitted = ~np.isnan(X).any(axis=1)  # the model sees only what the rule let through
    X, y, w = X[fitted], y[fitted], w[fitted]
    clf = LogisticRegression(C=1.0, max_iter=1000).fit(X, y, sample_weight=w)
    p = clf.predict_proba(X)[:, 1]
    # the highest threshold whose weighted false-refusal rate stays within the target
    order = np.argsort(p[y == 1])
    pos, wpos = p[y == 1][order], w[y == 1][order]
    cum = np.cumsum(wpos) / wpos.sum()
    threshold = float(pos[np.searchsorted(cum, max_false_refusal)]) if len(pos) else 0.5
    model = {
        "features": cols,
        "coef": [round(float(c), 5) for c in clf.coef_[0]],
        "intercept": round(float(clf.intercept_[0]), 5),
        "threshold": round(threshold, 5),
        "fitted_on": [f"{n} ({len(yy)} examples, {int(yy.sum())} answerable)" for n, _, yy in sets],
        "max_false_refusal": max_false_refusal,
    }
    return model, clf, cols


if __name__ == "__main__":
    main()
