"""Exact versus approximate vector search on the same vectors: recall@10 and latency.

Compares FAISS exact inner-product search with HNSW (the store's approximate index,
at several efSearch) and IVF-Flat (at several nprobe), one query at a time as serving
does, on the vectors of our largest index (hashed bigrams: lexical neighbourhoods) and
on as many random unit vectors (no neighbourhoods at all: the hardest case). The
recommendation is the fastest setting whose recall@10 is at least `min_recall`.
Run as `python -m rag.eval.bench.ann ann PARAMS OUT`.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np

from rag.eval.bench import measure
from rag.eval.bench.phases import _settings, main

K = 10


def _search_all(index, queries: np.ndarray, k: int = K) -> tuple[np.ndarray, list[float]]:
    rows, ms = [], []
    for q in queries:
        t = time.perf_counter()
        _, r = index.search(q.reshape(1, -1), k)
        ms.append((time.perf_counter() - t) * 1e3)
        rows.append(r[0])
    return np.asarray(rows), ms


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the exact top-k that the approximate top-k found."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def compare(vecs: np.ndarray, queries: np.ndarray, p: dict) -> dict[str, Any]:
    import faiss

    n, d = vecs.shape
    out: dict[str, Any] = {"n": n, "dim": d, "queries": len(queries), "rows": []}
    flat = faiss.IndexFlatIP(d)
    flat.add(vecs)
    truth, ms = _search_all(flat, queries)
    out["rows"].append(
        {"index": "flat (exact)", "build_s": 0.0, "recall@10": 1.0, "ms": measure.summary(ms)}
    )

    for m in p.get("hnsw_m", [32]):
        t = time.perf_counter()
        h = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        h.hnsw.efConstruction = p.get("ef_construction", 80)
        h.add(vecs)
        build = time.perf_counter() - t
        for ef in p.get("ef_search", [32, 64, 128, 256]):
            h.hnsw.efSearch = ef
            found, ms = _search_all(h, queries)
            out["rows"].append({
                "index": f"HNSW M={m} efSearch={ef}", "build_s": round(build, 2),
                "recall@10": round(recall_at_k(found, truth), 4), "ms": measure.summary(ms),
            })  # fmt: skip
        del h

    nlist = p.get("nlist") or max(16, int(4 * math.sqrt(n)))
    t = time.perf_counter()
    quant = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = vecs[np.random.default_rng(0).permutation(n)[: min(n, 40 * nlist)]]
    ivf.train(sample)
    ivf.add(vecs)
    build = time.perf_counter() - t
    for nprobe in p.get("nprobe", [8, 16, 32, 64]):
        ivf.nprobe = nprobe
        found, ms = _search_all(ivf, queries)
        out["rows"].append({
            "index": f"IVF-Flat nlist={nlist} nprobe={nprobe}", "build_s": round(build, 2),
            "recall@10": round(recall_at_k(found, truth), 4), "ms": measure.summary(ms),
        })  # fmt: skip
    ok = [r for r in out["rows"][1:] if r["recall@10"] >= p.get("min_recall", 0.95)]
    best = min(ok, key=lambda r: r["ms"]["median"]) if ok else None
    out["recommended"] = (
        best["index"] if best else "flat (exact): no approximate setting reached the recall"
    )
    return out


def phase_ann(p: dict) -> dict:
    from rag.eval.bench.surrogate import hashed_bigrams
    from rag.index.hybrid import HybridIndex
    from rag.textnorm import norm

    idx = HybridIndex.open(p["index_dir"], _settings(p["index_dir"]))
    vecs = np.ascontiguousarray(idx.vectors.vectors(), np.float32)
    n, d = vecs.shape
    del idx
    qv = hashed_bigrams([norm(q) for q in p["queries"]], d)
    out: dict[str, Any] = {"min_recall": p.get("min_recall", 0.95)}
    out["hash"] = compare(vecs, qv, p)
    if p.get("random", True):
        rng = np.random.default_rng(1)
        rv = rng.standard_normal((n, d), dtype=np.float32)
        rv /= np.linalg.norm(rv, axis=1, keepdims=True)
        rq = rng.standard_normal((len(qv), d), dtype=np.float32)
        rq /= np.linalg.norm(rq, axis=1, keepdims=True)
        del vecs
        out["random"] = compare(rv, rq, p)
    out["peak_rss"] = measure.peak_rss()
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], {"ann": phase_ann}))
