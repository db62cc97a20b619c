"""Query latency of the two stores on the same chunks: FAISS + BM25 files vs milvus-lite.

`python -m rag.eval.bench stores [--sizes 10000,100000] [--queries 200] [--out DIR]`

Synthetic chunks (the issue allows them): unit dense vectors of the model's width (384)
and term counts drawn from a Zipf law over a 200,000-term vocabulary (about 90 distinct
terms a chunk, as our 300-character chunks have), in 20 chunks a document, dated over
four years. Both stores are built from the same arrays (the Milvus one as `rag index
copy` does), then asked the same queries one at a time as serving does, alternating
FAISS and Milvus query by query so that the machine's other load falls on both alike.
Three calls per store: dense top 50, BM25 top 50 (eight query terms), and dense top 50
within a date filter that keeps a quarter of the documents. Only the store calls are
timed: embedding the question and the fusion cost the same on both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rag.eval.bench import measure

DIM, VOCAB, TERMS, PER_DOC, DEPTH = 384, 200_000, 90, 20, 50
DATES = [f"{y}-{m:02d}-01" for y in range(2020, 2024) for m in range(1, 13)]


def synthetic(n: int, seed: int = 0) -> dict[str, Any]:
    """Vectors, term counts, ids and documents of `n` chunks."""
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cols = (rng.zipf(1.3, size=(n, TERMS)) - 1) % VOCAB
    rows = np.repeat(np.arange(n), TERMS)
    tf = sp.csr_matrix((np.ones(n * TERMS, np.float32), (rows, cols.ravel())), shape=(n, VOCAB))
    tf.sum_duplicates()
    n_docs = (n + PER_DOC - 1) // PER_DOC
    doc_ids = [f"d{i // PER_DOC}" for i in range(n)]
    docs = {f"d{j}": {"date": DATES[j % len(DATES)], "meta": {}} for j in range(n_docs)}
    return {"vecs": vecs, "tf": tf, "ids": [f"c{i}" for i in range(n)], "doc_ids": doc_ids,
            "docs": docs}  # fmt: skip


def faiss_store(data: dict[str, Any], ann_min: int):
    """The embedded store over `data` (exact below `ann_min` chunks, HNSW from there),
    its BM25 index and chunk table, and the seconds FAISS took to index the vectors."""
    from rag.index.bm25 import BM25Index
    from rag.index.store import LocalStore
    from rag.index.table import ChunkTable
    from rag.index.vectors import FaissStore

    vocab = {f"t{j}": j for j in range(VOCAB)}
    bm25 = BM25Index(data["tf"], vocab)
    n = len(data["ids"])
    table = ChunkTable.build(data["ids"], data["doc_ids"], [0] * n, [0] * n, [""] * n)
    rows_of: dict[str, list[int]] = {}
    for i, d in enumerate(data["doc_ids"]):
        rows_of.setdefault(d, []).append(i)
    faiss = FaissStore(DIM, ann_min=ann_min)
    t = time.perf_counter()
    faiss.add_vectors(data["vecs"], table.ids, table.doc_ids)
    faiss_s = time.perf_counter() - t
    return LocalStore(faiss, bm25, lambda d: rows_of.get(d, [])), bm25, table, faiss_s


def milvus_store(data: dict[str, Any], bm25, table, db: str, ann_min: int, rows: int | None = None):
    """A milvus-lite collection written from the same arrays (as `rag index copy` does),
    and the seconds the writes took. `rows`: only the first so many (a write-rate probe
    for a size too large to load whole)."""
    from rag.index.milvus import MilvusStore

    n = len(table.ids)
    t = time.perf_counter()
    milvus = MilvusStore.create(db, "rag_bench", DIM, n_rows=n, ann_min=ann_min, replace=True)
    terms = bm25.term_part(np.arange(n if rows is None else min(rows, n)))
    for a in range(0, terms.shape[0], 5000):
        b = min(a + 5000, terms.shape[0])
        milvus.write(table.ids[a:b], table.doc_ids[a:b], data["vecs"][a:b], terms[a:b],
                     data["docs"], fresh=True)  # fmt: skip
    milvus.client.flush("rag_bench")
    milvus.bind(table.ids, {c: i for i, c in enumerate(table.ids)}, bm25)
    return milvus, time.perf_counter() - t


def _stores(data: dict[str, Any], db: str, ann_min: int):
    local, bm25, table, faiss_s = faiss_store(data, ann_min)
    milvus, milvus_s = milvus_store(data, bm25, table, db, ann_min)
    n = len(table.ids)
    return local, milvus, {"faiss_build_s": round(faiss_s, 2), "milvus_write_s": round(milvus_s, 2),
                           "milvus_rows_per_s": round(n / milvus_s, 1)}  # fmt: skip


def _queries(n_queries: int, docs: dict[str, dict], seed: int = 1):
    from rag.index.store import Scope
    from rag.types import Filters

    rng = np.random.default_rng(seed)
    qv = rng.standard_normal((n_queries, DIM), dtype=np.float32)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    # mid-frequency terms, as a question's content words are
    toks = [[f"t{j}" for j in rng.integers(10, 5000, size=8)] for _ in range(n_queries)]
    f = Filters(date_from="2023-01")  # the last of four years: a quarter of the documents
    allowed = [d for d, r in docs.items() if r["date"] >= "2023-01"]
    return qv, toks, Scope(f, allowed)


def calls(qv: np.ndarray, toks: list[list[str]], scope) -> dict[str, Any]:
    """The three store calls timed, by name: `call(store, query number)`."""
    return {
        "dense": lambda s, i: s.dense(qv[i], DEPTH),
        "bm25": lambda s, i: s.sparse(toks[i], DEPTH),
        "dense_filtered": lambda s, i: s.dense(qv[i], DEPTH, scope),
    }


def time_calls(stores: dict[str, Any], timed: dict[str, Any], n_queries: int) -> dict[str, Any]:
    """Milliseconds of each call on each store, the stores asked alternately query by
    query (so the machine's other load falls on all alike), after five warm-up queries;
    with two stores, how often their top-10 scores agree."""
    out: dict[str, Any] = {}
    for name, call in timed.items():
        for s in stores.values():  # warm-up
            for i in range(5):
                call(s, i)
        ms: dict[str, list[float]] = {label: [] for label in stores}
        same = 0
        for i in range(n_queries):
            got = {}
            for label, s in stores.items():
                t = time.perf_counter()
                got[label] = call(s, i)
                ms[label].append((time.perf_counter() - t) * 1e3)
            if len(got) == 2:
                # by score: synthetic chunks tie often, and the stores break ties differently
                f, m = (g.scores[:10] for g in got.values())
                same += int(len(f) == len(m) and np.allclose(f, m, rtol=1e-4, atol=1e-5))
        out[name] = {k: measure.summary(v) for k, v in ms.items()}
        if len(stores) == 2:
            out[name]["same_top10"] = round(same / n_queries, 3)
    return out


def measure_size(n: int, n_queries: int, work: Path, ann_min: int) -> dict[str, Any]:
    data = synthetic(n)
    local, milvus, build = _stores(data, str(work / f"bench-{n}.db"), ann_min)
    qv, toks, scope = _queries(n_queries, data["docs"])
    out: dict[str, Any] = {"n_chunks": n, "n_docs": len(data["docs"]), **build,
                           "load_start": measure.loadavg()}  # fmt: skip
    out.update(time_calls({"faiss": local, "milvus": milvus}, calls(qv, toks, scope), n_queries))
    out["load_end"] = measure.loadavg()
    out["peak_rss"] = measure.peak_rss()
    return out


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Query latency: FAISS + BM25 files vs milvus-lite",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; shared with other sessions' work "
        "(load averages below), so absolute figures are high and noisy; the two stores "
        "were asked alternately, query by query, so the comparison is paired.  ",
        f"Versions: pymilvus {results['versions']['pymilvus']}, milvus-lite "
        f"{results['versions']['milvus_lite']}, faiss {results['versions']['faiss']}; "
        f"commit {str(results['git'].get('commit', '?'))[:10]}.",
        "",
        "Synthetic chunks (rag/eval/bench/stores.py): 384-dim unit vectors, Zipf term counts "
        "over 200k terms, 20 chunks a document. Milliseconds per store call, "
        f"{results['queries']} queries, top {DEPTH}.",
        "",
        "| chunks | call | FAISS p50 | FAISS p95 | milvus-lite p50 | milvus-lite p95 | "
        "same top-10 scores | load (start→end) |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["sizes"]:
        for call in ("dense", "bm25", "dense_filtered"):
            f, m = r[call]["faiss"], r[call]["milvus"]
            load = f"{r['load_start'][0]:.1f}→{r['load_end'][0]:.1f}"
            lines.append(
                f"| {r['n_chunks']:,} | {call} | {f['median']:.2f} | {f['p95']:.2f} | "
                f"{m['median']:.2f} | {m['p95']:.2f} | {r[call]['same_top10']:.0%} | {load} |"
            )
    lines += ["", "| chunks | FAISS build s | milvus-lite write s | milvus-lite rows/s |",
              "|---:|---:|---:|---:|"]  # fmt: skip
    for r in results["sizes"]:
        lines.append(
            f"| {r['n_chunks']:,} | {r['faiss_build_s']} | {r['milvus_write_s']} | "
            f"{r['milvus_rows_per_s']:,} |"
        )
    notes = Path(results["out"]) / "latency_notes.md"  # what a person read off the figures
    if notes.is_file():
        lines += ["", notes.read_text(encoding="utf-8").strip()]
    return "\n".join(lines) + "\n"


def store_versions() -> dict[str, str]:
    """The versions of the stores' libraries, written into every store benchmark's results."""
    import faiss
    import milvus_lite
    import pymilvus

    return {
        "pymilvus": pymilvus.__version__,
        "milvus_lite": milvus_lite.__version__,
        "faiss": faiss.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rag.eval.bench stores", description=__doc__)
    ap.add_argument("--sizes", default="10000,100000", help="chunk counts, comma-separated")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ann-min", type=int, default=200_000, help="as Settings.ann_min_chunks")
    ap.add_argument("--out", default="eval/reports/milvus", help="report folder")
    ap.add_argument("--work", default=None, help="where the .db files go (default: a temp dir)")
    ap.add_argument("--report-only", action="store_true", help="re-render report from json")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "latency.json"
    if args.report_only:
        results = json.loads(path.read_text(encoding="utf-8"))
    else:
        command = "python -m rag.eval.bench stores " + " ".join(argv or sys.argv[1:])
        results = {
            "command": command.strip(),
            "out": str(out),
            "queries": args.queries,
            "machine": measure.machine(),
            "git": measure.git_state(),
            "versions": store_versions(),
            "sizes": [],
        }
        with tempfile.TemporaryDirectory(dir=args.work) as work:
            for n in (int(x) for x in args.sizes.split(",")):
                print(f"stores: {n:,} chunks ...", file=sys.stderr, flush=True)
                results["sizes"].append(measure_size(n, args.queries, Path(work), args.ann_min))
                path.write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / "latency.md").write_text(render(results), encoding="utf-8")
    print(f"report: {out / 'latency.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
