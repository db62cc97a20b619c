"""Hybrid retrieval: dense and BM25 (jieba) candidates from the index's store (FAISS
files or Milvus, rag/index/store.py), fused by normalised score (default) or by
reciprocal rank. Chunks whose vectors an ingest has not filled in yet are ranked by
BM25 alone (`HybridIndex.n_embedded`).

`HybridRetriever.search()` is the typed entry point our answerers use; to put it in a
llama-index query engine, wrap it with `rag.integrations.llama_index.as_retriever`.
"""

from __future__ import annotations

import re
import time

import numpy as np

from rag.config import Settings
from rag.index.hybrid import HybridIndex
from rag.index.store import Scope
from rag.read.reader import Reader
from rag.textnorm import meta_key as _meta_key
from rag.types import NO_FILTERS, Filters, Hit, Query, SearchResult

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _meta_matches(doc: dict, where: tuple[tuple[str, str], ...]) -> bool:
    """Whether an indexed document's metadata has each (field, value) of `where`."""
    meta = doc.get("meta") or {}
    for key, want in where:
        value = meta.get(key, doc.get(key))
        if value is None or _meta_key(value) != _meta_key(want):
            return False
    return True


def rrf(rankings: list[list[int]], weights: list[float], k: int = 60) -> dict[int, float]:
    """Weighted reciprocal rank fusion: sum of w / (k + rank) over the rankings."""
    fused: dict[int, float] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        for rank, row in enumerate(ranking, start=1):
            fused[row] = fused.get(row, 0.0) + w / (k + rank)
    return fused


class HybridRetriever:
    """Dense + BM25 retrieval over a `HybridIndex`, fused by weighted RRF."""

    def __init__(self, index: HybridIndex, embedder, settings: Settings | None = None):
        self.index = index
        self.embedder = embedder
        self.settings = settings or Settings()
        self.reader = Reader(index)

    def _allowed_docs(self, f: Filters) -> list[str] | None:
        if f.empty:
            return None
        docs = self.index.docs
        pool = f.doc_ids if f.doc_ids is not None else list(docs)
        excluded = set(f.exclude_doc_ids)
        out = []
        for d in pool:
            meta = docs.get(d)
            if meta is None or d in excluded:
                continue
            date = meta.get("date") or ""
            if (f.date_from or f.date_to) and not date:
                continue  # an undated document cannot satisfy a date filter
            if f.date_from and date < f.date_from:
                continue
            if f.date_to and date[: len(f.date_to)] > f.date_to:
                continue
            if f.where and not _meta_matches(meta, f.where):
                continue
            out.append(d)
        return out

    def search(
        self, query: str | Query, top_k: int | None = None, filters: Filters | None = None
    ) -> SearchResult:
        """The `top_k` best chunks for `query`, within `filters` (none: the whole index)."""
        s = self.settings
        top_k = top_k or s.top_k
        depth = max(s.candidate_depth, top_k)
        timings: dict[str, float] = {}
        query = Query.of(query)
        allowed = self._allowed_docs(filters or NO_FILTERS)
        if allowed is not None and not allowed:
            return SearchResult(query.text, [], timings)
        q = query.normalized

        t = time.perf_counter()
        qv = self.embedder.embed_query(q)
        timings["embed_ms"] = (time.perf_counter() - t) * 1e3

        scope = Scope(filters or NO_FILTERS, allowed)
        t = time.perf_counter()
        d_rows, d_scores = self.index.store.dense(qv, depth, scope)
        timings["dense_ms"] = (time.perf_counter() - t) * 1e3

        t = time.perf_counter()
        toks = self.index.tokenize(q, normalized=True)  # as the index was segmented
        b_rows, b_scores = self.index.store.sparse(toks, depth, scope)
        timings["bm25_ms"] = (time.perf_counter() - t) * 1e3

        drank: dict[str, float] = {}
        if s.doc_bm25_weight > 0:
            t = time.perf_counter()
            drank = self._doc_ranks(toks, allowed)
            timings["doc_bm25_ms"] = (time.perf_counter() - t) * 1e3

        t = time.perf_counter()
        if s.fusion == "rrf":
            fused = rrf([list(d_rows), list(b_rows)], [s.dense_weight, s.bm25_weight], s.rrf_k)
            for rank, r in enumerate(b_rows, start=1):  # no vector yet: BM25 alone
                if r >= self.index.n_embedded:
                    fused[r] += s.dense_weight / (s.rrf_k + rank)
            if drank:  # each candidate chunk also earns its document's whole-document BM25 rank
                doc_of = self.index.doc_ids
                for r in fused:
                    dr = drank.get(doc_of[r])
                    if dr is not None:
                        fused[r] += s.doc_bm25_weight / (s.rrf_k + dr)
        else:
            fused = self._score_fusion(toks, d_rows, d_scores, b_rows, b_scores, drank)
            if s.evidence_weight or s.evidence_fit_weight:
                t_r = time.perf_counter()
                self._answer_rerank(query, fused)
                timings["rerank_ms"] = (time.perf_counter() - t_r) * 1e3
        d_info = {int(r): (i + 1, float(sc)) for i, (r, sc) in enumerate(zip(d_rows, d_scores))}
        b_info = {int(r): (i + 1, float(sc)) for i, (r, sc) in enumerate(zip(b_rows, b_scores))}
        order = sorted(fused, key=lambda r: (-fused[r], r))[:top_k]
        late = self._unstored_similarity([int(r) for r in order], qv)
        hits = []
        for r in order:
            c = self.index.chunk(int(r))
            dr, ds = d_info.get(int(r), (None, late.get(int(r))))
            br, bs = b_info.get(int(r), (None, None))
            hits.append(
                Hit(c.row, c.id, c.doc_id, c.text, c.start, c.end, fused[r], dr, ds, br, bs)
            )
        timings["fuse_ms"] = (time.perf_counter() - t) * 1e3
        return SearchResult(query.text, hits, timings)

    def _unstored_similarity(self, rows: list[int], qv: np.ndarray) -> dict[int, float]:
        """The query's similarity to the returned chunks that have no stored vector yet
        (an ingest is filling them in), embedded now: a few passages, and what the
        answerers read as a hit's dense score means the same as for the other chunks."""
        rows = [r for r in rows if r >= self.index.n_embedded]
        if not rows:
            return {}
        vecs = self.embedder.embed_passages(self.index.embed_inputs(rows))
        sims = np.asarray(vecs, np.float32) @ np.asarray(qv, np.float32).ravel()
        return {r: float(x) for r, x in zip(rows, sims)}

    def _doc_ranks(self, toks: list[str], allowed: list[str] | None) -> dict[str, float]:
        """Whole-document BM25: rank (RRF) or score over the best score (score fusion)."""
        idx = self.index
        depth = self.settings.candidate_depth
        hits = idx.doc_bm25.search(toks, depth if allowed is None else len(idx.doc_order))
        ok = None if allowed is None else set(allowed)
        pairs = [(idx.doc_order[r], float(sc)) for r, sc in zip(hits.rows, hits.scores)]
        pairs = [p for p in pairs if ok is None or p[0] in ok][:depth]
        if self.settings.fusion == "rrf":
            return {d: i for i, (d, _) in enumerate(pairs, start=1)}
        top = pairs[0][1] if pairs else 1.0
        return {d: sc / top for d, sc in pairs}

    def _score_fusion(self, toks, d_rows, d_scores, b_rows, b_scores, doc_norm) -> dict[int, float]:
        """Weighted sum of per-query normalised evidence for each candidate chunk.

        Rank fusion throws away how far apart the scores are; here dense similarity is
        min-max scaled over its candidates, BM25 is divided by its best score, and two
        lexical checks that neither side makes well join in: the IDF-weighted share of
        query terms the chunk contains, and whether it contains the query's numbers
        (years and quantities, which embeddings blur: "500米" vs "1500米"). Weights were
        chosen on the CMRC tuning split (eval/reports/fusion.md).
        """
        s = self.settings
        cands = list(dict.fromkeys([int(r) for r in d_rows] + [int(r) for r in b_rows]))
        if not cands:
            return {}
        rows = np.asarray(cands)
        dense = np.zeros(len(cands))
        if len(d_rows):  # the dense rows open `cands`, in their order
            ds = np.asarray(d_scores, float)
            dense[: len(ds)] = (ds - ds.min()) / max(float(ds.max() - ds.min()), 1e-6)
        lex = np.zeros(len(cands))
        if len(b_rows):
            pos = {r: i for i, r in enumerate(cands)}
            best = float(b_scores[0]) or 1.0
            lex[[pos[int(r)] for r in b_rows]] = np.asarray(b_scores, float) / best
        if self.index.n_embedded < len(self.index):
            # A chunk whose vector is not computed yet (a large ingest is still filling
            # them in) is judged by BM25 alone: a missing similarity is no evidence
            # against it, so its lexical score stands in for the dense one.
            no_vector = rows >= self.index.n_embedded
            dense[no_vector] = lex[no_vector]
        fused = s.dense_weight * dense + s.bm25_weight * lex
        if doc_norm:
            doc_of = self.index.doc_ids
            fused += s.doc_bm25_weight * np.array([doc_norm.get(doc_of[r], 0.0) for r in cands])
        if s.coverage_weight or s.number_weight:
            cov, num = self._term_evidence(toks, rows)
            fused += s.coverage_weight * cov + s.number_weight * num
        return {r: float(v) for r, v in zip(cands, fused)}

    def _answer_rerank(self, query: Query, fused: dict[int, float]) -> None:
        """Raise the top fused chunks by how well their best sentence answers the query.

        Similarity cannot tell a passage that answers from one that only repeats the
        question's words (a headline, last year's figure); reading the top few for a
        sentence that holds the asked kind of value can (eval/reports/fusion.md).
        """
        s = self.settings
        top = sorted(fused, key=lambda r: (-fused[r], r))[: s.evidence_depth]
        for r in top:
            c = self.index.chunk(int(r))
            date = self.index.doc_meta(c.doc_id).date
            best, fit = self.reader.evidence(query, c.text, date)
            fused[r] += s.evidence_weight * best + s.evidence_fit_weight * fit

    def _term_evidence(self, toks: list[str], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: IDF-weighted share of the query's terms present, share of its numbers."""
        bm = self.index.bm25
        toks = list(dict.fromkeys(toks))
        zeros = np.zeros(len(rows))
        if not toks:
            return zeros, zeros
        cols = [bm.vocab.get(t) for t in toks]
        idf = bm.idf(toks)
        known = [i for i, j in enumerate(cols) if j is not None]
        present = np.zeros((len(rows), len(toks)), bool)
        if known:
            w = bm.weights[:, [cols[i] for i in known]][rows]
            present[:, known] = w.toarray() > 0
        cov = present @ idf / idf.sum()
        is_num = np.array([bool(_NUMBER.fullmatch(t)) for t in toks])
        num = present[:, is_num].mean(axis=1) if is_num.any() else zeros
        return cov, num
