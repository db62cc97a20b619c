"""Retrieval and extractive-answer quality on a converted QA set, fast to repeat.

    rag eval convert --from cmrc ../shared/data/cmrc2018/cmrc2018_dev.json --out /tmp/cmrc
    rag ingest /tmp/cmrc/corpus.jsonl --index /tmp/cmrc-index
    rag eval tune quality /tmp/cmrc/questions.jsonl --index /tmp/cmrc-index

Prints Recall@1/5/10, Hit@1/5/10 (any gold document in the top k: what the issue's
tables call R@k when a question has several gold passages, as in RGB) and MRR@10 by gold
document (a hit is any chunk of a gold document), answer containment and mean answer length, and warm latency. Query vectors
are cached next to the questions file (`.qvec.npy`) so that experiments with fusion
settings (`--set rrf_k=30 --set dense_weight=1.5`) do not re-embed the questions.
The full `rag eval run` harness computes the same metrics with confidence intervals.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]

from rag.config import Settings  # noqa: E402
from rag.eval.metrics import containment, hit_at_k, mrr_at_k, recall_at_k  # noqa: E402
from rag.system import load_system, make_embedder  # noqa: E402
from rag.textnorm import norm  # noqa: E402


def _parse_sets(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        k, _, v = p.partition("=")
        for cast in (int, float):
            try:
                v = cast(v)
                break
            except ValueError:
                continue
        out[k] = v
    return out


def cached_query_vectors(questions: list[str], embedder, path: Path) -> dict[str, np.ndarray]:
    key = hashlib.sha1(("\n".join(questions) + embedder.model_id).encode()).hexdigest()[:12]
    f = path.with_suffix(f".{key}.qvec.npy")
    if f.exists():
        vecs = np.load(f)
    else:
        vecs = embedder.embed_queries([norm(q) for q in questions], show_progress=True)
        np.save(f, vecs)
    return {norm(q): v for q, v in zip(questions, vecs)}


def system_with_cached_queries(questions: list[str], path: Path, settings: Settings, embedder=None):
    """The system over `settings.index_dir`, its embedder answering `questions` from the
    vectors cached beside `path` (any other query is embedded as usual)."""
    embedder = embedder or make_embedder(settings)
    qvec = cached_query_vectors(questions, embedder, path)
    real = embedder.embed_query
    embedder.embed_query = lambda q: qvec[q] if q in qvec else real(q)
    return load_system(settings, embedder=embedder)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("questions")
    ap.add_argument("--index", required=True)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--set", action="append", default=[], help="setting=value (repeatable)")
    ap.add_argument("--no-answer", action="store_true", help="retrieval metrics only")
    ap.add_argument("--json", help="write the metrics to this file")
    args = ap.parse_args()

    rows = [json.loads(line) for line in open(args.questions, encoding="utf-8")]
    rows = [r for r in rows if r.get("answerable", True)][: args.limit]
    settings = Settings(index_dir=args.index).replace(**_parse_sets(args.set))
    system = system_with_cached_queries(
        [r["question"] for r in rows], Path(args.questions), settings
    )
    ks = (1, 5, 10)
    rec = {k: [] for k in ks}
    hit = {k: [] for k in ks}
    mrr, cont, chars, lat, refused = [], [], [], [], []
    for r in rows:
        t = time.perf_counter()
        if args.no_answer:
            hits = system.retriever.search(r["question"], top_k=10).hits
        else:
            system.settings = settings
            res = system.retriever.search(r["question"], top_k=10)
            hits = res.hits
            ans = system.answerer.compose(r["question"], hits[: settings.top_k])
            refused.append(ans.refused)
            cont.append(containment(ans.text, r["answers"]) if not ans.refused else 0.0)
            chars.append(0 if ans.refused else sum(len(s.text) for s in ans.sentences))
        lat.append((time.perf_counter() - t) * 1e3)
        ranked = list(dict.fromkeys(h.doc_id for h in hits))
        for k in ks:
            rec[k].append(recall_at_k(ranked, r["gold_doc_ids"], k))
            hit[k].append(hit_at_k(ranked, r["gold_doc_ids"], k))
        mrr.append(mrr_at_k(ranked, r["gold_doc_ids"], 10))
    m = {f"recall@{k}": float(np.mean(v)) for k, v in rec.items()}
    m.update({f"hit@{k}": float(np.mean(v)) for k, v in hit.items()})
    m["mrr@10"] = float(np.mean(mrr))
    if cont:
        m["containment"] = float(np.mean(cont))
        m["answer_chars"] = float(np.mean(chars))
        m["refused"] = float(np.mean(refused))
    m["latency_p50_ms"] = float(np.percentile(lat, 50))
    m["n"] = len(rows)
    m["settings"] = _parse_sets(args.set)
    print(json.dumps(m, ensure_ascii=False))
    if args.json:
        Path(args.json).write_text(json.dumps(m, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
