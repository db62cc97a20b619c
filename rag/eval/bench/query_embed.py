"""`python -m rag.eval.bench query_embed QUESTIONS_JSONL`: warm query-embedding latency,
int8 ONNX against torch (sentence-transformers), alternating query by query.

The embedding part of a warm query is the same at any corpus size; each question is
embedded once by each backend (no cache hits). Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from rag.embed.embedder import Embedder

    args = argv if argv is not None else sys.argv[1:]
    path, n = args[0], int(args[1]) if len(args) > 1 else 150
    with open(path, encoding="utf-8") as f:
        qs = [json.loads(line)["question"] for line in f][:n]
    emb = {"onnx": Embedder(backend="onnx"), "torch": Embedder(backend="torch")}
    for e in emb.values():
        e.warm_up()
    ms: dict[str, list[float]] = {k: [] for k in emb}
    load0 = os.getloadavg()
    for i, q in enumerate(qs):
        for k in ("onnx", "torch") if i % 2 == 0 else ("torch", "onnx"):
            t = time.perf_counter()
            emb[k].embed_query(q)
            ms[k].append(1000 * (time.perf_counter() - t))
    toks = [len(ids) for ids in emb["onnx"]._onnx_model().token_ids(["query: " + q for q in qs])]
    out: dict = {
        k: {
            "median_ms": round(float(np.median(v)), 1),
            "p95_ms": round(float(np.percentile(v, 95)), 1),
        }  # fmt: skip
        for k, v in ms.items()
    }
    out.update(
        command="python -m rag.eval.bench query_embed " + " ".join(args),
        questions=len(qs),
        median_tokens=int(np.median(toks)),
        load_start=[round(x, 1) for x in load0],
        load_end=[round(x, 1) for x in os.getloadavg()],
        torch_threads=emb["torch"].query_threads_now(),
        onnx_threads=emb["onnx"]._onnx_model().threads,
    )
    print(json.dumps(out))
    return 0
