"""Component timings behind ingestion, start-up and BM25 search, for the optimisation notes.

`python -m rag.eval.bench.parts INDEX_DIR [N_QUERIES]` times each step of opening an index
(every file's parse, the BM25 weights) and two ways of scoring BM25 (the current
sparse column slice and sum, and the column-by-column scatter add proposed in
bench/README.md), checking that both give the same scores.
`python -m rag.eval.bench.parts --ingest CORPUS_DIR [N_ARTICLES]` times the ingestion stages on
the first articles: normalising (`normalize(...).text` and the faster `norm`, checked
equal), segmenting (jieba, and rjieba when importable, token lists compared), chunking,
BM25 counting.
Both print JSON; times are CPU seconds (see `_t`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from rag.eval.bench import measure


def _t(f):
    """Result and CPU seconds of `f()`: every step here is single-threaded, so its CPU time
    is what an idle machine's clock would show, whatever else the machine is running."""
    t = time.process_time()
    out = f()
    return out, round(time.process_time() - t, 6)


def scatter_scores(weights, cols: list[int], n: int) -> np.ndarray:
    """BM25 scores by adding each query column's entries into one dense vector.

    Row indices are unique within a CSC column, so a fancy-indexed += is exact.
    """
    scores = np.zeros(n, np.float32)
    for j in cols:
        a, b = weights.indptr[j], weights.indptr[j + 1]
        scores[weights.indices[a:b]] += weights.data[a:b]
    return scores


def ingest_parts(corpus_dir: str, n: int) -> dict:
    """CPU seconds of each ingestion stage on the first `n` articles, before and after the
    optimisations (eval/reports/bench/optimisations.md), checking the outputs are the same."""
    from rag.index.bm25 import BM25Index
    from rag.index.segment import count_terms, get_segmenter
    from rag.ingest.chunking import chunk_spans
    from rag.textnorm import norm, normalize

    texts: list[str] = []
    for shard in sorted(Path(corpus_dir).glob("*.jsonl")):
        with open(shard, encoding="utf-8") as f:
            texts += [json.loads(x)["text"] for x in f]
        if len(texts) >= n:
            break
    texts = texts[:n]
    out: dict = {"articles": len(texts), "chars": sum(map(len, texts))}
    spans, out["chunk_spans_s"] = _t(lambda: [chunk_spans(t, 300, 1) for t in texts])
    chunks = [t[a:b] for t, sp in zip(texts, spans) for a, b in sp]
    out["chunks"], out["chunk_chars"] = len(chunks), sum(map(len, chunks))
    slow, out["normalize_text_s"] = _t(lambda: [normalize(c).text for c in chunks])
    normed, out["norm_s"] = _t(lambda: [norm(c) for c in chunks])
    out["norm_same"] = sum(a == b for a, b in zip(slow, normed)) / max(len(chunks), 1)
    seg = {}
    for name in ("jieba", "rjieba"):
        try:
            (s := get_segmenter(name)).tokens("预热")
        except ImportError:
            out[f"{name}_tokenize_s"] = None
            continue
        seg[name], out[f"{name}_tokenize_s"] = _t(lambda s=s: [s.tokens(c) for c in normed])
        # the rjieba segmenter caches each word's expansion: a second pass shows the
        # cost once the cache is warm (as it is after the first few thousand articles)
        _, out[f"{name}_tokenize_again_s"] = _t(lambda s=s: [s.tokens(c) for c in normed])
    if len(seg) == 2:
        same = sum(a == b for a, b in zip(seg["jieba"], seg["rjieba"]))
        out["rjieba_same_token_lists"] = round(same / max(len(normed), 1), 4)
    toks = next(iter(seg.values()))
    _, out["bm25_add_s"] = _t(lambda: BM25Index.empty().add(toks))
    step = 200 * 3  # about one worker batch of chunks
    blocks, out["count_terms_s"] = _t(
        lambda: [count_terms(toks[i : i + step]) for i in range(0, len(toks), step)]
    )
    _, out["bm25_add_rows_s"] = _t(lambda: BM25Index.empty().add_rows(blocks))
    return out


def parts(index_dir: str, queries: list[str]) -> dict:
    import faiss
    import scipy.sparse as sp

    from rag.index.bm25 import BM25Index
    from rag.index.table import ChunkTable
    from rag.index.versions import current_version

    folder = current_version(Path(index_dir))
    out: dict = {"index": str(folder), "files": measure.folder_bytes(folder)}
    read = {}
    for name in ("manifest.json", "bm25_vocab.json"):
        text, s1 = _t(lambda name=name: (folder / name).read_text(encoding="utf-8"))
        _, s2 = _t(lambda text=text: json.loads(text))
        read[name] = {"read_s": s1, "parse_s": s2}
    _, read["chunk table"] = _t(lambda: ChunkTable.load(folder))
    seg = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("tokenizer", {})
    out["segmenter"] = seg.get("name", "jieba")
    _, read["bm25_tf.npz"] = _t(lambda: BM25Index.load(folder, segmenter=out["segmenter"]))
    _, read["vectors.faiss"] = _t(lambda: faiss.read_index(str(folder / "vectors.faiss")))
    out["open"] = read
    bm = BM25Index.load(folder, segmenter=out["segmenter"])
    _, out["bm25_weights_s"] = _t(lambda: bm.weights)
    _, out["bm25_df_s"] = _t(lambda: bm.df)
    n = len(bm)
    w = bm.weights
    cur, new, tok = [], [], []
    for q in queries:
        toks, s = _t(lambda q=q: bm.tokenize(q))
        tok.append(s * 1e3)
        cols = sorted({bm.vocab[x] for x in toks if x in bm.vocab})
        if not cols:
            continue
        a, s = _t(lambda cols=cols: np.asarray(w[:, cols].sum(axis=1)).ravel())
        cur.append(s * 1e3)
        b, s = _t(lambda cols=cols: scatter_scores(w, cols, n))
        new.append(s * 1e3)
        assert np.allclose(a, b, rtol=1e-5, atol=1e-6), "scatter scores differ"
    out["bm25_rows"] = n
    out["bm25_nnz"] = int(bm.tf.nnz)
    out["bm25_vocab"] = len(bm.vocab)
    out["query_tokenize_ms"] = measure.summary(tok)
    out["bm25_column_slice_sum_ms"] = measure.summary(cur)
    out["bm25_scatter_add_ms"] = measure.summary(new)
    out["weights_format"] = type(w).__name__ if not sp.issparse(w) else w.format
    return out


if __name__ == "__main__":
    from rag.eval.bench import corpus

    args = sys.argv[1:]
    if args[0] == "--ingest":
        n = int(args[2]) if len(args) > 2 else 1000
        print(json.dumps(ingest_parts(args[1], n), indent=1))
        sys.exit(0)
    n_queries = int(args[1]) if len(args) > 1 else 100
    qs = corpus.make_queries(corpus.read_articles(corpus.DEFAULT_SOURCE, limit=1000), n_queries)
    print(json.dumps(parts(args[0], qs), ensure_ascii=False, indent=1))
