"""Choose the answer-aware rerank's weights (`evidence_*` settings) and show what they do.

For every question of every set, the fused candidates are scored once without the
rerank, and the reader's evidence (best sentence, best fitting sentence) is computed
for the top `--depth` of them. Every grid setting then costs only arithmetic. The
chosen setting maximises the sum of R@1 + MRR@10 (by document) over the `--dev` sets;
the other sets are shown but never used to choose. `--cv NAME` also reports a 2-fold
estimate for one development set: choose on one half of it (plus the other dev sets),
measure on the other half.

    rag eval tune tune_rerank \\
        --set hn=/tmp/exp/cmrc_hn/questions.jsonl:/tmp/exp/idx_cmrc_hn \\
        --set cmrc_tune=/tmp/exp/cmrc/questions.jsonl:/tmp/exp/idx_cmrc:800 \\
        --set cmrc=/tmp/exp/cmrc/questions.jsonl:/tmp/exp/idx_cmrc \\
        --set drcd=/tmp/exp/drcd/questions.jsonl:/tmp/exp/idx_drcd \\
        --set rgb=/tmp/exp/rgb/questions.jsonl:/tmp/exp/idx_rgb \\
        --dev hn,cmrc_tune,rgb --cv rgb

`hn` is CMRC with answer-less copies of the gold paragraphs (`make_nearmiss.py
--distractors`). Query vectors come from quality.py's cache. The result for the
shipped defaults is in eval/reports/fusion.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]

from rag.config import Settings  # noqa: E402
from rag.eval.tuning.quality import system_with_cached_queries  # noqa: E402
from rag.system import make_embedder  # noqa: E402

DEPTHS = (5, 10)
BEST_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
FIT_WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)


def collect(questions: str, index: str, limit: int | None, depth: int, embedder) -> list[dict]:
    """Per question: fused candidates without the rerank, and evidence for the top ones."""
    rows = [json.loads(x) for x in open(questions, encoding="utf-8")]
    rows = [r for r in rows if r.get("answerable", True)][:limit]
    settings = Settings(index_dir=index).replace(evidence_weight=0.0, evidence_fit_weight=0.0)
    texts = [r["question"] for r in rows]
    system = system_with_cached_queries(texts, Path(questions), settings, embedder)
    retriever, idx = system.retriever, system.retriever.index
    out = []
    for r in rows:
        hits = retriever.search(r["question"], top_k=settings.candidate_depth).hits
        ev = [
            retriever.reader.evidence(r["question"], h.text, idx.doc_meta(h.doc_id).get("date"))
            for h in hits[:depth]
        ]
        out.append(
            {
                "docs": [h.doc_id for h in hits],
                "base": np.array([h.score for h in hits]),
                "ev": np.array(ev).reshape(-1, 2),
                "gold": set(r["gold_doc_ids"]),
            }
        )
    return out


def measure(data: list[dict], depth: int, w_best: float, w_fit: float) -> tuple[float, float]:
    """R@1 and MRR@10 over documents with the rerank applied to the top `depth`."""
    r1, mrr = [], []
    for q in data:
        s = q["base"].copy()
        n = min(depth, len(q["ev"]))
        s[:n] += w_best * q["ev"][:n, 0] + w_fit * q["ev"][:n, 1]
        docs = list(dict.fromkeys(q["docs"][i] for i in np.argsort(-s, kind="stable")))[:10]
        first = next((k for k, d in enumerate(docs, 1) if d in q["gold"]), None)
        r1.append(first == 1)
        mrr.append(1.0 / first if first else 0.0)
    return float(np.mean(r1)), float(np.mean(mrr))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--set", action="append", required=True, help="NAME=QUESTIONS:INDEX[:LIMIT]")
    ap.add_argument("--dev", required=True, help="comma-separated set names that choose")
    ap.add_argument("--cv", help="a dev set to also estimate by 2-fold selection")
    args = ap.parse_args()
    sets: dict[str, list[dict]] = {}
    embedder = make_embedder(Settings())  # one model for every set
    for spec in args.set:
        name, rest = spec.split("=", 1)
        parts = rest.split(":")
        limit = int(parts[2]) if len(parts) > 2 else None
        sets[name] = collect(parts[0], parts[1], limit, max(DEPTHS), embedder)
        print(f"{name}: {len(sets[name])} questions", file=sys.stderr)
    dev = args.dev.split(",")
    grid = list(itertools.product(DEPTHS, BEST_WEIGHTS, FIT_WEIGHTS))
    cache: dict[tuple, tuple[float, float]] = {}

    def m(name: str, data: list[dict], g: tuple) -> tuple[float, float]:
        if (name, g) not in cache:
            cache[(name, g)] = measure(data, *g)
        return cache[(name, g)]

    def objective(g: tuple, names: list[str], extra: dict[str, list[dict]] | None = None) -> float:
        total = sum(sum(m(n, sets[n], g)) for n in names)
        return total + sum(sum(m(n, d, g)) for n, d in (extra or {}).items())

    ranked = sorted(grid, key=lambda g: -objective(g, dev))
    names = list(sets)
    print("| depth | best sentence | fitting sentence | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    off = (10, 0.0, 0.0)
    for g in [off, *ranked[:10]]:
        cells = " | ".join("{:.3f} / {:.3f}".format(*m(n, sets[n], g)) for n in names)
        print(f"| {g[0]} | {g[1]} | {g[2]} | {cells} |")
    print(
        f"\nchosen on {'+'.join(dev)}: depth {ranked[0][0]}, weights {ranked[0][1]} / {ranked[0][2]}"
    )
    if args.cv:
        others = [n for n in dev if n != args.cv]
        data = sets[args.cv]
        halves = [data[0::2], data[1::2]]
        scores = []
        for i in (0, 1):
            fit_on = {f"{args.cv}/{i}": halves[i]}
            g = max(grid, key=lambda g: objective(g, others, fit_on))
            scores.append(m(f"{args.cv}/{1 - i}", halves[1 - i], g))
            print(f"{args.cv}: chosen on half {i}: {g}; on half {1 - i}: %.3f / %.3f" % scores[-1])
        print(f"{args.cv} 2-fold estimate: R@1 %.3f, MRR@10 %.3f" % tuple(np.mean(scores, axis=0)))


if __name__ == "__main__":
    main()
