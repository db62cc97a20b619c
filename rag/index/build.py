"""Incremental ingestion: files in, a new index version out (or documents removed).
Only what changed is re-chunked and re-embedded; a crash leaves the old version live."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Settings
from rag.errors import IndexSchemaError
from rag.index.bm25 import BM25Index
from rag.index.embedding import checkpoint_for, embed_chunks
from rag.index.executors import connect_ray, ray_workers
from rag.index.fill_status import clear_failure

# 2: the chunk table moved from one chunks.json to rag/index/table.py's three files
from rag.index.hybrid import HybridIndex
from rag.index.segment import LEGACY_SEGMENTER, TermRows, available_segmenter, segmenter_record
from rag.index.store import FAISS, store_kind
from rag.index.table import ChunkTable
from rag.index.vectors import FaissStore
from rag.index.versions import (
    SCHEMA_VERSION,
    _write_version,
    current_version,
    index_lock,
    tidy_versions,
)
from rag.index.workers import _load_all, _segment_all, _workers
from rag.ingest.chunking import chunk_id
from rag.ingest.planted import planted_spans


# --------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class FileResult:
    source: str
    status: str  # added | updated | unchanged | failed | removed
    doc_id: str = ""
    reason: str = ""
    chunks: int = 0


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    total_chunks: int = 0
    total_docs: int = 0
    embedded_chunks: int = 0
    resumed_chunks: int = (
        0  # of those, embedded by an interrupted earlier run (rag/index/embedding.py)
    )
    embed_seconds: float = 0.0
    vector_seconds: float = 0.0  # building or extending the FAISS index
    # CPU time of this process (all its threads) in those two steps: what the text
    # stages cost is the rest, which benchmarks report per CPU-second
    embed_cpu_seconds: float = 0.0
    vector_cpu_seconds: float = 0.0
    workers: int = 1  # processes (or Ray tasks at once) that chunked, normalised and segmented
    index_dir: str = ""
    # from the start until the new chunks could be found (by keyword at least)
    searchable_seconds: float = 0.0
    # chunks published before their vectors (`Settings.keyword_first_chunks`), and of
    # the index's chunks those still without one when the call returned (only with
    # `ingest(embed_later=True)`, or when the embedder failed)
    deferred_chunks: int = 0
    pending_chunks: int = 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ingested_anything(self) -> bool:
        return any(r.status in ("added", "updated", "unchanged") for r in self.results)

    def summary(self) -> str:
        parts = [
            f"{s} {self.count(s)}" for s in ("added", "updated", "unchanged", "removed", "failed")
        ]
        return (
            f"{', '.join(parts)} | index: {self.total_docs} documents, {self.total_chunks} chunks "
            f"in {self.index_dir} ({self.seconds:.1f} s)"
        )


def _same_file(doc: dict, source: str) -> bool:
    """Whether the indexed `doc` was loaded from the file `source` names."""
    here = Path(source.split("#", 1)[0]).resolve()
    return Path(doc["source"].split("#", 1)[0]).resolve() == here


def _under(source: str, roots: list[Path]) -> bool:
    p = Path(source.split("#", 1)[0]).resolve()
    return any(p == r or r in p.parents for r in roots)


def ingest(
    paths: Iterable[str | Path],
    settings: Settings,
    embedder=None,
    prune: bool = False,
    rebuild: bool = False,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
    crash_hook: Callable[[str], None] | None = None,
    lock_wait_s: float = 30.0,
    replace_others: bool = True,
    embed_later: bool = False,
) -> IngestReport:
    """Bring the index in `settings.index_dir` up to date with the files under `paths`.

    Unchanged documents are skipped, changed ones re-chunked and re-embedded, and with
    `prune` documents whose files are gone (under the given paths) are removed. Without
    `replace_others` (uploads), a document whose id is already held by a document from
    another file is refused rather than replaced.
    When at least `settings.keyword_first_chunks` chunks need vectors, a version
    whose new chunks only BM25 finds is made live first (a 10,000-row sheet is
    searchable in seconds, its vectors take minutes); their vectors are then computed
    and published as the next version (`fill_vectors`), in this call, or, with
    `embed_later`, left for the caller to fill in (the UI does it in the background).
    A run stopped in between leaves a working index that the next ingest completes.
    `crash_hook(stage)` is called between write stages; tests use it to simulate crashes.
    """
    from rag.ingest.discover import discover

    log = log or (lambda m: print(m, file=sys.stderr))
    t0 = time.perf_counter()
    index_dir = settings.index_path
    report = IngestReport(index_dir=str(index_dir))
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            report.results.append(
                FileResult(str(p), "failed", reason="找不到文件或文件夹：请确认路径是否正确")
            )

    lock = index_lock(index_dir, wait_s=lock_wait_s, log=log)
    with lock as lock_fd, connect_ray(settings.ray_address):
        old = None
        if not rebuild and current_version(index_dir) is not None:
            try:
                old = HybridIndex.open(index_dir, settings)
            except IndexSchemaError:
                log(f"{index_dir}: written by another version of rag; re-indexing every document.")
        # a Milvus index stays in its collection, even when every document is re-indexed
        milvus = old.vectors if old is not None and old.store.kind != FAISS else None
        if embedder is None:
            from rag.embed.embedder import Embedder  # heavy: only when none is given

            embedder = Embedder.from_settings(settings)
        old_docs: dict[str, dict] = dict(old.docs) if old else {}
        if old is not None and not _compatible(old.manifest, settings, embedder):
            log(
                "Embedding model, chunking or tokenizer settings changed: "
                "re-indexing every document."
            )
            old_docs, old = {}, None
        # an index keeps the segmenter it was built with, so old and new rows match
        segmenter = old.segmenter if old is not None else available_segmenter(settings.tokenizer)

        # 1. load, clean, compare -------------------------------------------------
        seen: set[str] = set()
        sources: set[str] = set()  # the files (and records) loaded under some id
        new_docs: dict[str, dict] = {}
        new_texts: dict[str, str] = {}
        files = discover([p for p in paths if p.exists()])
        for file, loaded in _load_all(files, settings, lock_fd):
            if isinstance(loaded, str):
                report.results.append(FileResult(str(file), "failed", reason=loaded))
                continue
            for raw, text, meta, h in loaded:
                if raw.doc_id in seen:
                    why = f"文档编号 {raw.doc_id!r} 与另一个文件重复：请给其中一个文件改名"
                    report.results.append(FileResult(raw.source, "failed", raw.doc_id, why))
                    continue
                if meta is None:  # `text` says why
                    report.results.append(FileResult(raw.source, "failed", raw.doc_id, text))
                    continue
                seen.add(raw.doc_id)
                sources.add(raw.source)
                prev = old_docs.get(raw.doc_id)
                if prev is not None and not replace_others and not _same_file(prev, raw.source):
                    why = (
                        f"知识库中已有编号相同的文档《{prev.get('title') or raw.doc_id}》，"
                        "它来自其他来源，上传的文件不能替换它"
                    )
                    report.results.append(FileResult(raw.source, "failed", raw.doc_id, why))
                    continue
                if prev is not None and prev["content_hash"] == h:
                    report.results.append(
                        FileResult(
                            raw.source, "unchanged", raw.doc_id, chunks=len(prev["chunk_ids"])
                        )
                    )
                    continue
                new_docs[raw.doc_id] = {
                    "source": raw.source,
                    "format": raw.format,
                    "encoding": raw.encoding,
                    "file_hash": raw.file_hash,
                    "content_hash": h,
                    "title": meta.get("title") or raw.doc_id,
                    "date": meta.get("date"),
                    "author": meta.get("author"),
                    "source_name": meta.get("source_name"),
                    "meta": meta,
                    "n_chars": len(text),
                    "planted": planted_spans(text),
                    "_status": "updated" if prev is not None else "added",
                }
                new_texts[raw.doc_id] = text

        removed: list[str] = []
        roots = [p.resolve() for p in paths if p.exists()] if prune else []
        for doc_id, d in old_docs.items():
            # gone, or the same file now under another id (a.pdf beside a new a.docx)
            if doc_id not in seen and (d["source"] in sources or _under(d["source"], roots)):
                removed.append(doc_id)
                report.results.append(FileResult(d["source"], "removed", doc_id))

        if not new_docs and not removed and old is not None:
            tidy_versions(index_dir)
            report.pending_chunks = len(old) - old.n_embedded
            if report.pending_chunks and not embed_later:  # an earlier run left them
                _fill(index_dir, settings, embedder, report, log, progress, crash_hook)
            report.total_chunks, report.total_docs = len(old), len(old.docs)
            report.seconds = time.perf_counter() - t0
            return report
        if not new_docs and not removed and old is None and not seen:
            report.seconds = time.perf_counter() - t0
            return report

        # 2. chunk, normalise, segment the new and changed documents -------------
        drop = set(new_docs) | set(removed)
        if old is not None:
            keep = np.asarray([i for i, d in enumerate(old.doc_ids) if d not in drop], np.int64)
            bm25 = old.bm25.select(keep) if len(keep) < len(old) else old.bm25
        else:
            keep = np.zeros(0, np.int64)
            bm25 = BM25Index.empty(settings.bm25_k1, settings.bm25_b, segmenter)
        ids, doc_ids, starts, ends, texts, embed_in = [], [], [], [], [], []
        size, overlap = settings.chunk_size, settings.chunk_overlap
        # the title helps the embedding; a record id standing in for one does not
        titles = [
            None if d["meta"].get("title_is_id") else d["meta"].get("title")
            for d in new_docs.values()
        ]
        tasks = [(t, new_texts[k], size, overlap, segmenter) for t, k in zip(titles, new_docs)]
        workers = report.workers = _workers(settings, sum(len(t[1]) for t in tasks))
        if settings.ray_address:  # as many tasks at once as asked, else every CPU there
            workers = settings.ingest_workers
            report.workers = ray_workers(workers)

        def term_rows() -> Iterator[TermRows]:  # streamed into BM25: no token lists kept
            docs_left = iter(new_docs.items())
            for batch in _segment_all(tasks, workers, segmenter, lock_fd, settings.ray_address):
                for spans, (doc_id, d) in zip(batch.spans, docs_left):
                    text = new_texts[doc_id]
                    cids = []
                    for s, e in spans:
                        t = text[s:e]
                        cids.append(chunk_id(doc_id, s, e, t))
                        starts.append(s)
                        ends.append(e)
                        texts.append(t)
                    ids.extend(cids)
                    doc_ids.extend([doc_id] * len(cids))
                    d["chunk_ids"] = cids
                embed_in.extend(batch.embed_inputs)
                yield batch.terms

        bm25 = bm25.add_rows(term_rows())
        if len(ids) != len(embed_in) or any("chunk_ids" not in d for d in new_docs.values()):
            raise RuntimeError("segmenting lost documents")  # a bug, never the user's input

        # 3. which rows have vectors, and the vectors of the rest, now or later ------
        docs: dict[str, dict] = {k: v for k, v in old_docs.items() if k not in drop}
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        for doc_id, d in new_docs.items():
            status = d.pop("_status")
            d["indexed_at"] = now
            docs[doc_id] = d
            report.results.append(
                FileResult(d["source"], status, doc_id, chunks=len(d["chunk_ids"]))
            )
        table = ChunkTable.build(ids, doc_ids, starts, ends, texts)
        done = 0  # leading rows of the new table whose vectors exist
        if old is not None:
            table = old.table.take(keep).extend(table)
            # kept rows stay in order, so the old version's embedded rows still lead
            done = int(np.searchsorted(keep, old.n_embedded))
        todo = (old.embed_inputs(keep[done:]) if old is not None else []) + embed_in
        later = 0 < settings.keyword_first_chunks <= len(todo)
        vecs = None if later else _embed(todo, embedder, index_dir, settings, report, log, progress)
        tv, cv = time.perf_counter(), time.process_time()
        store = _vector_store(settings, index_dir, embedder.dim, old, keep, done, table, bm25, vecs, docs, milvus)  # fmt: skip
        report.vector_seconds = time.perf_counter() - tv
        report.vector_cpu_seconds = time.process_time() - cv
        embedded = done if vecs is None else len(table)

        # 4. write the new version: kept rows of the old one + the new rows -----------
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "created": now,
            "embedding": {
                "model": embedder.model_id,
                "dim": embedder.dim,
                "backends": _backends(old.manifest if old is not None else None, embedder),
            },
            "chunker": {"size": settings.chunk_size, "overlap": settings.chunk_overlap},
            "tokenizer": segmenter_record(segmenter),
            "vector_index": "hnsw" if store.is_approximate else "flat",
            **_store_record(store),
            "n_chunks": len(table),
            # rows from here on are found by BM25 alone until `_fill` gives them vectors
            **({"n_embedded": embedded} if embedded < len(table) else {}),
            "n_docs": len(docs),
            "settings": settings.to_dict(),
            "docs": docs,
        }
        _write_version(index_dir, old, manifest, table, bm25, store, new_texts, crash_hook)
        if store.kind != FAISS and old is not None:  # now unreachable from the live version
            store.delete_docs(drop, keep_ids=ids)
        report.searchable_seconds = time.perf_counter() - t0
        if later:
            report.deferred_chunks = report.pending_chunks = len(todo)
            log(
                f"已可检索：{len(table)} 个分块可按关键词查到（用时 {report.searchable_seconds:.1f} 秒）；"
                f"其中 {len(todo)} 个的向量稍后补算，补算完成前只按关键词检索"
            )
            if not embed_later:
                _fill(index_dir, settings, embedder, report, log, progress, crash_hook)
        else:
            checkpoint_for(index_dir, embedder).clear()  # the vectors are in the live version
        report.total_chunks, report.total_docs = len(table), len(docs)
    report.seconds = time.perf_counter() - t0
    return report


def _embed(
    texts: list[str], embedder, index_dir: Path, settings: Settings, report, log, progress
) -> np.ndarray:
    """The vectors of `texts` (checkpointed, rag/index/embedding.py), timed into `report`."""
    if not texts:
        return np.zeros((0, embedder.dim), np.float32)
    te, ce = time.perf_counter(), time.process_time()
    log(f"Embedding {len(texts)} chunks with {embedder.model_id} ...")
    vecs, resumed = embed_chunks(
        texts, embedder, index_dir, _embed_workers(settings), progress, log, settings.ray_address
    )
    report.embed_seconds += time.perf_counter() - te
    report.embed_cpu_seconds += time.process_time() - ce
    report.embedded_chunks += len(texts)
    report.resumed_chunks += resumed
    return vecs.astype(np.float32)


def _vector_store(
    settings: Settings,
    index_dir: Path,
    dim: int,
    old: HybridIndex | None,
    keep: np.ndarray,
    done: int,
    table: ChunkTable,
    bm25: BM25Index,
    vecs: np.ndarray | None,
    docs: dict[str, dict],
    milvus,
):
    """The new version's vectors: the old version's for its `done` kept embedded rows,
    then `vecs` for the rest of `table` (None: not computed yet)."""
    if milvus is not None or store_kind(settings.store) != FAISS:
        fresh = old is None
        store = milvus if milvus is not None and not fresh else None
        store = store or _new_collection(settings, index_dir, dim, len(table), milvus)
        rows = np.arange(done, len(table))
        if vecs is None:
            vecs = _placeholders(old, table.ids[done:], dim)
        if not fresh:  # the kept rows' length norm, if this ingest moved the mean
            store.realign_sparse(table.ids[:done], bm25, np.arange(done))
        sparse = store.sparse_rows(bm25, rows)
        store.write(table.ids[done:], table.doc_ids[done:], vecs, sparse, docs, fresh=fresh)
        return store
    vecs = np.zeros((0, dim), np.float32) if vecs is None else vecs
    if old is not None and len(keep) == len(old) and _same_ann(old.vectors, settings):
        # nothing removed: the loaded FAISS index (this ingest's own copy) grows in place
        store = old.vectors
        store.add_vectors(vecs, table.ids[done : done + len(vecs)], table.doc_ids[done : done + len(vecs)])  # fmt: skip
        return store
    store = FaissStore(
        dim=dim,
        ann_min=settings.ann_min_chunks,
        hnsw_m=settings.hnsw_m,
        ef_search=settings.hnsw_ef_search,
    )
    kept = old.vectors.vectors(keep[:done]) if old is not None and done else None
    all_vecs = vecs if kept is None else np.vstack([kept, vecs])
    store.add_vectors(all_vecs, table.ids[: len(all_vecs)], table.doc_ids[: len(all_vecs)])
    return store


def _placeholders(old: HybridIndex | None, ids: list[str], dim: int) -> np.ndarray:
    """Stand-in vectors for Milvus rows not embedded yet (an entity needs its vector):
    zeros, or the vector the live version already has under that chunk id, so that the
    version still live while this one is written never sees a vector of its own zeroed."""
    out = np.zeros((len(ids), dim), np.float32)
    if old is None:
        return out
    have = [(i, old.row_of[c]) for i, c in enumerate(ids) if old.row_of.get(c, len(old)) < old.n_embedded]  # fmt: skip
    if have:
        at, rows = zip(*have)
        out[list(at)] = old.vectors.vectors(np.asarray(rows, np.int64))
    return out


def fill_vectors(
    settings: Settings,
    embedder=None,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
    crash_hook: Callable[[str], None] | None = None,
    lock_wait_s: float = 30.0,
) -> IngestReport:
    """Compute the vectors an ingest left for later (`ingest(..., embed_later=True)`, or
    a run that was stopped) and make them live: a new version with the same catalogue.

    Until then those chunks are found by BM25 alone. Embedding is checkpointed, so a
    stopped fill resumes; nothing is done when every row has its vector.
    """
    log = log or (lambda m: print(m, file=sys.stderr))
    t0 = time.perf_counter()
    index_dir = settings.index_path
    report = IngestReport(index_dir=str(index_dir))
    with index_lock(index_dir, wait_s=lock_wait_s, log=log), connect_ray(settings.ray_address):
        if embedder is None:
            from rag.embed.embedder import Embedder

            embedder = Embedder.from_settings(settings)
        _fill(index_dir, settings, embedder, report, log, progress, crash_hook)
    report.seconds = time.perf_counter() - t0
    return report


def _fill(index_dir: Path, settings: Settings, embedder, report, log, progress, crash_hook) -> None:
    """`fill_vectors` under the index lock (held by the caller)."""
    idx = HybridIndex.open(index_dir, settings)
    done, n = idx.n_embedded, len(idx)
    report.total_chunks, report.total_docs = n, len(idx.docs)
    if done == n:
        report.pending_chunks = 0
        clear_failure(index_dir)
        return
    if idx.manifest["embedding"]["model"] != embedder.model_id:
        raise IndexSchemaError(
            f"{index_dir}：索引的向量模型是 {idx.manifest['embedding']['model']}，"
            f"不能用 {embedder.model_id} 补算；请用原模型，或 rag ingest --rebuild 重建"
        )
    rows = np.arange(done, n)
    vecs = _embed(idx.embed_inputs(rows), embedder, index_dir, settings, report, log, progress)
    tv, cv = time.perf_counter(), time.process_time()
    store = idx.vectors
    ids, doc_ids = idx.ids[done:], idx.doc_ids[done:]
    if store.kind != FAISS:  # upserts: each entity rewritten whole, now with its vector
        store.write(ids, doc_ids, vecs, store.sparse_rows(idx.bm25, rows), idx.docs)
    elif _same_ann(store, settings):
        store.add_vectors(vecs, ids, doc_ids)  # this process's copy of the loaded index
    else:
        kept = store.vectors()
        store = FaissStore(
            dim=embedder.dim,
            ann_min=settings.ann_min_chunks,
            hnsw_m=settings.hnsw_m,
            ef_search=settings.hnsw_ef_search,
        )
        store.add_vectors(np.vstack([kept, vecs]), idx.ids, idx.doc_ids)
    report.vector_seconds += time.perf_counter() - tv
    report.vector_cpu_seconds += time.process_time() - cv
    manifest = {k: v for k, v in idx.manifest.items() if k != "n_embedded"}
    manifest.update(
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        vector_index="hnsw" if store.is_approximate else "flat",
        **_store_record(store),
    )
    manifest["embedding"] = {
        **manifest["embedding"],
        "backends": _backends(idx.manifest, embedder),
    }
    _write_version(index_dir, idx, manifest, idx.table, idx.bm25, store, {}, crash_hook, True)
    checkpoint_for(index_dir, embedder).clear()  # the vectors are in the live version
    clear_failure(index_dir)  # an earlier background fill's failure is mended
    report.pending_chunks = 0
    log(f"向量已补全：{n - done} 个分块现在也可按语义检索")


def _new_collection(settings: Settings, index_dir: Path, dim: int, n_rows: int, old=None):
    """The Milvus collection a new index writes to: the old index's (re-indexed), else
    the knowledge base named after the index folder at `settings.store`."""
    from rag.index.milvus import MilvusStore, collection_name

    return MilvusStore.create(
        old.uri if old is not None else settings.store,
        old.collection if old is not None else collection_name(index_dir.resolve().name),
        dim,
        n_rows=n_rows,
        ann_min=settings.ann_min_chunks,
        hnsw_m=settings.hnsw_m,
        ef_search=settings.hnsw_ef_search,
        replace=old is not None or current_version(index_dir) is not None,
    )


def _store_record(store) -> dict[str, Any]:
    """The manifest's "store" entry: none for FAISS files (so their manifests are as before)."""
    return {} if store.kind == FAISS else {"store": store.record()}


def _backends(old_manifest: dict | None, embedder) -> list[str]:
    """Which backends embedded the index's vectors ("onnx-int8", "torch").

    Both are the same model's vectors: int8 ONNX agrees with float32 torch to cosine
    >= 0.99 and gives the same recall@1 (eval/reports/onnx/), so an index built with one
    is searched with the other, and a later ingest may add to it. The record says what
    happened, for reports and for anyone who wants one backend throughout.
    """
    had = (old_manifest or {}).get("embedding", {}).get("backends", [])
    this = getattr(embedder, "backend_id", None)
    return sorted(set(had) | ({this} if this else set()))


def _embed_workers(settings: Settings) -> int:
    """Embedding processes: `ingest_workers` when set (`rag ingest --workers N`), else one
    process whose onnxruntime or torch threads use every core; on a Ray cluster, that
    many tasks at once, else (0) one per CPU of the cluster."""
    if settings.ray_address:
        return settings.ingest_workers
    return max(1, settings.ingest_workers)


def _same_ann(store: FaissStore, settings: Settings) -> bool:
    return (store.ann_min, store.hnsw_m) == (settings.ann_min_chunks, settings.hnsw_m)


def _compatible(manifest: dict, settings: Settings, embedder) -> bool:
    built_with = manifest.get("tokenizer", {}).get("name", LEGACY_SEGMENTER)
    return (
        manifest["embedding"]["model"] == embedder.model_id
        and manifest["chunker"] == {"size": settings.chunk_size, "overlap": settings.chunk_overlap}
        and settings.tokenizer in ("auto", built_with)
    )


def index_info(index_dir: str | Path) -> dict[str, Any]:
    """A small summary for `rag info` and the UI."""
    idx = HybridIndex.open(index_dir)
    m = idx.manifest
    return {
        "index_dir": str(index_dir),
        "version": idx.folder.name,
        "embedding": m["embedding"],
        "chunker": m["chunker"],
        "vector_index": m["vector_index"],
        "store": m.get("store", {"kind": FAISS}),
        "n_docs": m["n_docs"],
        "n_chunks": m["n_chunks"],
        "n_embedded": idx.n_embedded,  # the rest are found by keyword until filled in
    }


def remove_documents(
    doc_ids: Iterable[str], settings: Settings, log: Callable[[str], None] | None = None
) -> IngestReport:
    """Write a new index version without `doc_ids`; return an IngestReport of what happened.

    The files are left alone (a corpus document can be removed without deleting it).
    Nothing is re-embedded: the kept rows' vectors are copied. Like `ingest`, it holds the
    index lock and swaps the new version in atomically. Refuses to remove every document,
    since an empty index cannot answer anything.
    """
    from rag.errors import ConfigError

    doc_ids = list(doc_ids)
    t0 = time.perf_counter()
    index_dir = settings.index_path
    report = IngestReport(index_dir=str(index_dir))
    with index_lock(index_dir, log=log or (lambda m: print(m, file=sys.stderr))):
        old = HybridIndex.open(index_dir, settings)
        drop = {d for d in doc_ids if d in old.docs}
        for d in doc_ids:
            if d not in old.docs:
                report.results.append(FileResult(d, "failed", d, "知识库中没有这个文档"))
        if not drop:
            report.total_chunks, report.total_docs = len(old), len(old.docs)
            return report
        if drop == set(old.docs):
            raise ConfigError("不能删除全部文档：知识库至少要保留一个文档。")
        keep = np.asarray([i for i, d in enumerate(old.doc_ids) if d not in drop], np.int64)
        table = old.table.take(keep)
        done = int(np.searchsorted(keep, old.n_embedded))  # kept rows that have vectors
        if old.store.kind != FAISS:  # the kept rows stay where they are
            store = old.vectors
        else:
            store = FaissStore(
                dim=old.manifest["embedding"]["dim"],
                ann_min=settings.ann_min_chunks,
                hnsw_m=settings.hnsw_m,
                ef_search=settings.hnsw_ef_search,
            )
            store.add_vectors(old.vectors.vectors(keep[:done]), table.ids[:done], table.doc_ids[:done])  # fmt: skip
        # copies: _write_version records new text offsets in these dicts
        docs = {k: dict(v) for k, v in old.docs.items() if k not in drop}
        manifest = {
            **{k: v for k, v in old.manifest.items() if k not in ("docs", "n_embedded")},
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "vector_index": "hnsw" if store.is_approximate else "flat",
            "n_chunks": len(table),
            **({"n_embedded": done} if done < len(table) else {}),
            "n_docs": len(docs),
            "docs": docs,
        }
        _write_version(index_dir, old, manifest, table, old.bm25.select(keep), store, {}, None)
        if store.kind != FAISS:
            store.delete_docs(drop)
        for d in sorted(drop):
            report.results.append(FileResult(old.docs[d]["source"], "removed", d))
        report.total_chunks, report.total_docs = len(table), len(docs)
    report.seconds = time.perf_counter() - t0
    return report
