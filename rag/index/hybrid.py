"""The persistent hybrid index (FAISS + BM25 + chunk table) and incremental ingestion.

Layout of an index directory::

    DIR/CURRENT            name of the live version folder (replaced atomically)
    DIR/.lock              held by the one ingest allowed at a time
    DIR/v-<stamp>/         manifest.json, texts.jsonl, vectors.faiss, bm25_tf.npz,
                           bm25_vocab.json and the chunk table (rag/index/table.py)

An ingest writes a complete new version folder, fsyncs it, then swaps CURRENT with
os.replace: a crash at any point leaves the previous version loadable. Nothing is pickled.

Opening reads no document and segments nothing: BM25 weights are saved precomputed, and
the manifest records the segmenter, so queries are tokenized the way the index was.
Large batches of new documents are chunked, normalised and segmented by one worker
process per core; new vectors are appended to the FAISS index when no row is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import functools
import hashlib
import importlib.util
import itertools
import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rag.config import Settings
from rag.errors import IndexSchemaError, IndexStoreError, LoadError
from rag.index.bm25 import (
    LEGACY_SEGMENTER,
    SEGMENTERS,
    BM25Index,
    TermRows,
    available_segmenter,
    count_terms,
    get_segmenter,
    segmenter_record,
)
from rag.index.table import ChunkTable
from rag.index.vectors import FaissStore
from rag.ingest.chunking import chunk_id, chunk_spans
from rag.textnorm import norm
from rag.types import Chunk, DocMeta

# 2: the chunk table moved from one chunks.json to rag/index/table.py's three files
SCHEMA_VERSION = 2
CLEANED_FORMATS = {"txt", "md", "html", "pdf", "docx"}


# --------------------------------------------------------------------------- reading
class HybridIndex:
    """One loaded, immutable version of the index."""

    def __init__(self, folder: Path, manifest: dict, table: ChunkTable, bm25: BM25Index, vectors):
        self.folder = folder
        self.manifest = manifest
        self.table = table
        self.ids: list[str] = table.ids
        self.doc_ids: list[str] = table.doc_ids
        self.starts: list[int] = table.starts
        self.ends: list[int] = table.ends
        self.texts: Sequence[str] = table.texts
        self.bm25 = bm25
        self.vectors: FaissStore = vectors
        self._doc_rows: dict[str, list[int]] | None = None

    @functools.cached_property
    def row_of(self) -> dict[str, int]:
        """Row number of every chunk id."""
        return {cid: i for i, cid in enumerate(self.ids)}

    @property
    def segmenter(self) -> str:
        """The BM25 segmenter this index was built with ("jieba" or "rjieba")."""
        return self.bm25.segmenter

    def tokenize(self, text: str, normalized: bool = False) -> list[str]:
        """BM25 tokens of `text` as this index was tokenized (use this for its queries)."""
        return self.bm25.tokenize(text, normalized)

    @classmethod
    def open(cls, index_dir: str | Path, settings: Settings | None = None) -> HybridIndex:
        """Load the live version of the index in `index_dir`."""
        settings = settings or Settings()
        folder = current_version(Path(index_dir))
        if folder is None:
            raise IndexStoreError(
                f"{index_dir}: no index here yet; build one with `rag ingest PATH --index {index_dir}`"
            )
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            if manifest.get("schema_version") != SCHEMA_VERSION:
                raise IndexSchemaError(
                    f"{folder}: index schema {manifest.get('schema_version')} is not "
                    f"{SCHEMA_VERSION}; rebuild it with `rag ingest PATH --rebuild`"
                )
            table = ChunkTable.load(folder)
            n = len(table)
            unknown = set(table.doc_order) - manifest["docs"].keys()
            if unknown:
                raise IndexStoreError(
                    f"{folder}/chunks.json: chunks of {len(unknown)} documents the manifest "
                    f"does not list (e.g. {min(unknown)!r}); rebuild it with "
                    "`rag ingest PATH --rebuild`"
                )
            if not (folder / "texts.jsonl").is_file():
                raise IndexStoreError(
                    f"{folder}/texts.jsonl is missing; rebuild it with `rag ingest PATH --rebuild`"
                )
            segmenter = manifest.get("tokenizer", {}).get("name", LEGACY_SEGMENTER)
            if segmenter not in SEGMENTERS:
                raise IndexStoreError(
                    f"{folder}/manifest.json: unknown word segmenter {segmenter!r}; "
                    "rebuild it with `rag ingest PATH --rebuild`"
                )
            if importlib.util.find_spec(segmenter) is None:
                raise IndexStoreError(
                    f"{folder}: the index was built with the {segmenter} word segmenter, which "
                    f"is not installed: pip install {segmenter} (or rebuild it with "
                    "`rag ingest PATH --rebuild`)"
                )
            bm25 = BM25Index.load(folder, settings.bm25_k1, settings.bm25_b, segmenter)
            vectors = FaissStore.load(
                folder,
                table.ids,
                table.doc_ids,
                manifest["embedding"]["dim"],
                ann_min=settings.ann_min_chunks,
                hnsw_m=settings.hnsw_m,
                ef_search=settings.hnsw_ef_search,
            )
        except IndexStoreError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise IndexStoreError(
                f"{folder}: the index is damaged or was tampered with ({type(e).__name__}: {e}); "
                "rebuild it with `rag ingest PATH --rebuild`"
            ) from None
        if len(bm25) != n:
            raise IndexStoreError(f"{folder}: BM25 has {len(bm25)} rows for {n} chunks; rebuild")
        return cls(folder, manifest, table, bm25, vectors)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def docs(self) -> dict[str, dict]:
        return self.manifest["docs"]

    def chunk(self, row: int) -> Chunk:
        try:
            text = self.texts[row]
        except ValueError as e:  # chunk_texts.bin damaged after opening: name it, say the fix
            raise IndexStoreError(f"{e}; rebuild it with `rag ingest PATH --rebuild`") from None
        return Chunk(row, self.ids[row], self.doc_ids[row], text, self.starts[row], self.ends[row])

    def doc_meta(self, doc_id: str) -> DocMeta:
        """What citations show of a document (empty for an unknown id)."""
        d = self.docs.get(doc_id, {})
        return DocMeta(
            title=d.get("title"),
            date=d.get("date"),
            author=d.get("author"),
            source_name=d.get("source_name"),
            source=d.get("source"),
        )

    @property
    def doc_order(self) -> list[str]:
        """Document ids in first-chunk order; the row order of `doc_bm25`."""
        return self.table.doc_order

    @functools.cached_property
    def doc_bm25(self) -> BM25Index:
        """BM25 over whole documents, derived from the chunk term counts (no re-segmenting)."""
        return self.bm25.grouped(self.table.doc_of_row, len(self.table.doc_order))

    def doc_rows(self, doc_id: str) -> list[int]:
        if self._doc_rows is None:
            rows: dict[str, list[int]] = {}
            for i, d in enumerate(self.doc_ids):
                rows.setdefault(d, []).append(i)
            self._doc_rows = rows
        return self._doc_rows.get(doc_id, [])

    def document_text(self, doc_id: str) -> str:
        """The whole (cleaned, original-script) text of a document, read lazily."""
        d = self.docs.get(doc_id)
        if d is None:
            raise KeyError(doc_id)
        path = self.folder / "texts.jsonl"
        try:
            with open(path, "rb") as f:
                f.seek(d["text_offset"])
                record = json.loads(f.readline())
            if record["doc_id"] != doc_id or not isinstance(record["text"], str):
                raise ValueError(f"the record at offset {d['text_offset']} is not {doc_id!r}")
            return record["text"]
        except (OSError, ValueError, KeyError, TypeError) as e:  # damaged or tampered with
            raise IndexStoreError(
                f"{path}: cannot read the text of {doc_id!r} ({type(e).__name__}: {e}); "
                "rebuild it with `rag ingest PATH --rebuild`"
            ) from None


def warm_up_segmenter(index_dir: Path, background: bool = False) -> threading.Thread | None:
    """Load the word segmenter the index in `index_dir` was built with (its dictionary
    takes up to a second), optionally in a background thread while the index opens.

    The segmenter is read from the head of the manifest (written first), so this does
    not wait for the whole manifest to be parsed; any doubt means the legacy jieba.
    """

    def run() -> None:
        m = re.search(r'"tokenizer":\s*\{\s*"name":\s*"(\w+)"', _manifest_head(index_dir))
        with contextlib.suppress(Exception):
            get_segmenter(m.group(1) if m else LEGACY_SEGMENTER)

    if not background:
        run()
        return None
    # not a daemon: a process that exits while torch or the dictionary is still loading
    # would be killed mid-C++ ("terminate called without an active exception")
    t = threading.Thread(target=run, name="rag-segmenter-warm-up", daemon=False)
    t.start()
    return t


def _manifest_head(index_dir: Path) -> str:
    """The first 4 kB of the live version's manifest ("" when unreadable): the small
    fields are written first, so they are read without parsing every document's record."""
    try:
        folder = current_version(Path(index_dir))
        if folder is None:
            return ""
        with open(folder / "manifest.json", "rb") as f:
            return f.read(4096).decode("utf-8", "ignore")
    except (OSError, ValueError):  # missing, or CURRENT is not text: the open says so
        return ""


def is_current_schema(index_dir: Path) -> bool:
    """Whether the live index was written with this version's schema (a cheap check)."""
    m = re.search(r'"schema_version":\s*(\d+)', _manifest_head(index_dir))
    return m is not None and int(m.group(1)) == SCHEMA_VERSION


def current_version(index_dir: Path) -> Path | None:
    cur = index_dir / "CURRENT"
    try:
        name = cur.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    folder = index_dir / name
    if not name or "/" in name or not (folder / "manifest.json").exists():
        raise IndexStoreError(f"{cur} points at {name!r}, which is missing; rebuild the index")
    return folder


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
    embed_seconds: float = 0.0
    vector_seconds: float = 0.0  # building or extending the FAISS index
    # CPU time of this process (all its threads) in those two steps: what the text
    # stages cost is the rest, which benchmarks report per CPU-second
    embed_cpu_seconds: float = 0.0
    vector_cpu_seconds: float = 0.0
    workers: int = 1  # processes that chunked, normalised and segmented the new documents
    index_dir: str = ""

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


@contextlib.contextmanager
def index_lock(
    index_dir: Path, wait_s: float = 30.0, log: Callable[[str], None] = print
) -> Iterator[int]:
    """One writer at a time: a second ingest waits up to `wait_s`, then refuses clearly.

    Yields the lock's file descriptor (worker processes close their inherited copy).
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(index_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise IndexStoreError(
                        f"{index_dir}: another ingest is still writing this index; "
                        "try again when it has finished"
                    ) from None
                if not told:
                    log(f"{index_dir}: another ingest is running; waiting up to {wait_s:.0f} s")
                    told = True
                time.sleep(0.2)
        yield fd
    finally:
        os.close(fd)  # closing releases the flock


def _content_hash(text: str, meta: dict, settings: Settings) -> str:
    # the text is hashed as bytes: escaping it into JSON first cost 2 CPU-s at 69k articles
    key = json.dumps(
        {"meta": meta, "chunk": [settings.chunk_size, settings.chunk_overlap]},
        ensure_ascii=False,
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(key.encode("utf-8") + b"\0" + text.encode("utf-8")).hexdigest()


def _embed_input(title: str | None, text: str) -> str:
    """What the embedder sees: the title gives a chunk its document's topic."""
    return f"{title}\n{text}" if title and not text.startswith(title) else text


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: str | bytes) -> None:
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _prepare(raw, settings: Settings) -> tuple[str, dict]:
    """Cleaned text and metadata of one loaded document."""
    from rag.ingest.clean import clean_text

    text = raw.text
    if settings.clean and raw.format in CLEANED_FORMATS:
        text = clean_text(text).text
    if not text.strip():
        raise LoadError(raw.source, "no text left after removing page clutter")
    return text, raw.meta.to_dict()


def _load(file: Path, root: Path, settings: Settings) -> str | list[tuple]:
    """A file's documents as (raw, text, meta, content hash), cleaned; or why it failed.

    A document that fails on its own is (raw, reason, None, None): its file's other
    documents still count. Plain values, so a worker process can send them back.
    """
    from rag.ingest.loaders import load_file

    try:
        raws = load_file(file, root, max_bytes=int(settings.max_file_mb * 2**20))
    except LoadError as e:
        return e.reason
    out = []
    for raw in raws:
        try:
            text, meta = _prepare(raw, settings)
        except LoadError as e:
            out.append((dataclasses.replace(raw, text=""), e.reason, None, None))
            continue
        h = _content_hash(text, meta, settings)
        out.append((dataclasses.replace(raw, text=""), text, meta, h))  # the text once
    return out


def _load_task(files: list[tuple[Path, Path]], settings: Settings) -> list:
    return [_load(f, r, settings) for f, r in files]


def _load_all(
    files: list[tuple[Path, Path]], settings: Settings, lock_fd: int | None
) -> Iterator[tuple[Path, str | list[tuple]]]:
    """`_load` of every file, in order; PDF and HTML parsing, cleaning and hashing spread
    over worker processes when the files are large enough to be worth it."""
    sizes = []
    for f, _ in files:
        try:
            sizes.append(f.stat().st_size)
        except OSError:
            sizes.append(0)  # load_file says what is wrong with it
    # about 3 bytes a character in UTF-8 Chinese; PDFs are larger for their text, and slower
    workers = _workers(settings, sum(sizes) // 3)
    batches: list[list[tuple[Path, Path]]] = []
    size = 0
    for (f, r), n in zip(files, sizes):
        if not batches or size + n > _LOAD_BYTES or len(batches[-1]) >= _LOAD_FILES:
            batches.append([])
            size = 0
        batches[-1].append((f, r))
        size += n
    results = _in_order(_load_task, [(b, settings) for b in batches], workers, None, lock_fd)
    for batch, loaded in zip(batches, results):
        yield from zip((f for f, _ in batch), loaded)


def _under(source: str, roots: list[Path]) -> bool:
    p = Path(source.split("#", 1)[0]).resolve()
    return any(p == r or r in p.parents for r in roots)


class _Segmented(NamedTuple):
    """A batch of documents cut into chunks: what the embedder sees and what BM25 counts."""

    spans: list[list[tuple[int, int]]]  # each document's chunks
    embed_inputs: list[str]  # every chunk of the batch: normalised title line + chunk text
    terms: TermRows  # one BM25 row per chunk, from its embed input


# Documents per batch (one task of a worker process), and the size of a batch (in
# characters) worth starting workers for: 2M characters (about 3,000 news articles) take
# one core about 2 s to chunk, normalise and segment, against about 0.1 s to fork them.
_TASK_DOCS = 200
_POOL_MIN_CHARS = 2_000_000
# Files per loading task: about 2 MB, or 64 files (one PDF can take seconds to parse).
_LOAD_BYTES, _LOAD_FILES = 2**21, 64


def _segment_task(task: list[tuple]) -> _Segmented:
    """Chunk, normalise and segment a batch of (title, text, size, overlap, segmenter)."""
    spans, inputs = [], []
    for title, text, size, overlap, _ in task:
        doc = [tuple(sp) for sp in chunk_spans(text, size, overlap)]
        spans.append(doc)
        inputs.extend(norm(_embed_input(title, text[s:e])) for s, e in doc)
    seg = get_segmenter(task[0][4])  # a batch is never empty; one segmenter for all
    return _Segmented(spans, inputs, count_terms(map(seg.iter_tokens, inputs)))


def _worker_start(segmenter: str | None, lock_fd: int | None) -> None:
    # A forked worker shares the parent's lock; if the parent is killed, an orphaned
    # worker must not keep the index locked.
    if lock_fd is not None:
        with contextlib.suppress(OSError):
            os.close(lock_fd)
    if segmenter is not None:
        get_segmenter(segmenter)


def _in_order(
    fn: Callable, tasks: list[tuple], workers: int, segmenter: str | None, lock_fd: int | None
) -> Iterator:
    """`fn(*task)` for every task, in order; over `workers` processes when given > 1.

    At most two tasks per worker are in flight, so results never pile up in memory.
    Forked workers inherit the loaded modules and dictionaries (start in ~0.1 s).
    """
    if workers <= 1:
        yield from (fn(*t) for t in tasks)
        return
    ctx = mp.get_context("fork")
    todo = iter(tasks)
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_start, initargs=(segmenter, lock_fd)
    ) as pool:
        pending = deque(pool.submit(fn, *t) for t in itertools.islice(todo, 2 * workers))
        while pending:
            done = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(fn, *nxt))
            yield done


def _segment_all(
    tasks: list[tuple], workers: int, segmenter: str, lock_fd: int | None = None
) -> Iterator[_Segmented]:
    """`_segment_task` for every batch of `_TASK_DOCS` tasks, in order (see `_in_order`)."""
    groups = [(tasks[i : i + _TASK_DOCS],) for i in range(0, len(tasks), _TASK_DOCS)]
    return _in_order(_segment_task, groups, workers, segmenter, lock_fd)


def spare_cores(sample_s: float = 0.15) -> float | None:
    """Cores that sit idle over the next `sample_s` seconds (Linux `/proc/stat`), or None
    where that cannot be read.

    Unlike the 1-minute load average, this does not count this process's own recent
    work: a benchmark's previous phase, or an ingest's loading stage just finished, kept
    the load average above 1.5 on two cores and sent the next stage to one process.
    """

    def idle_and_total() -> tuple[int, int]:
        with open("/proc/stat", "rb") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]  # user .. steal
        return ticks[3] + ticks[4], sum(ticks)  # idle + iowait

    try:
        idle0, total0 = idle_and_total()
        time.sleep(sample_s)
        idle1, total1 = idle_and_total()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    cores = os.cpu_count() or 1
    return min(float(cores), cores * (idle1 - idle0) / (total1 - total0))


def _workers(settings: Settings, n_chars: int) -> int:
    """Worker processes for `n_chars` of text to load or segment (1: in this process).

    `ingest_workers` 0 (auto) means one per core while the machine has at least half a
    core to spare right now (`spare_cores`; the load average where that is unreadable);
    on a machine whose cores are taken, the workers only add their overhead
    (eval/reports/bench/optimisations.md).
    """
    if n_chars < _POOL_MIN_CHARS or "fork" not in mp.get_all_start_methods():
        return 1
    if settings.ingest_workers:
        return settings.ingest_workers
    cores = os.cpu_count() or 1
    spare = spare_cores()
    if spare is None:
        try:
            spare = cores - os.getloadavg()[0]
        except OSError:
            spare = 0.0
    return cores if spare >= 0.5 else 1


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
) -> IngestReport:
    """Bring the index in `settings.index_dir` up to date with the files under `paths`.

    Unchanged documents are skipped, changed ones re-chunked and re-embedded, and with
    `prune` documents whose files are gone (under the given paths) are removed.
    `crash_hook(stage)` is called between write stages; tests use it to simulate crashes.
    """
    from rag.ingest.loaders import discover

    log = log or (lambda m: print(m, file=sys.stderr))
    t0 = time.perf_counter()
    index_dir = settings.index_path
    report = IngestReport(index_dir=str(index_dir))
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            report.results.append(FileResult(str(p), "failed", reason="no such file or folder"))

    with index_lock(index_dir, wait_s=lock_wait_s, log=log) as lock_fd:
        old = None
        if not rebuild and current_version(index_dir) is not None:
            try:
                old = HybridIndex.open(index_dir, settings)
            except IndexSchemaError:
                log(f"{index_dir}: written by another version of rag; re-indexing every document.")
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
        new_docs: dict[str, dict] = {}
        new_texts: dict[str, str] = {}
        files = discover([p for p in paths if p.exists()])
        for file, loaded in _load_all(files, settings, lock_fd):
            if isinstance(loaded, str):
                report.results.append(FileResult(str(file), "failed", reason=loaded))
                continue
            for raw, text, meta, h in loaded:
                if raw.doc_id in seen:
                    why = f"duplicate document id {raw.doc_id!r}; rename one file"
                    report.results.append(FileResult(raw.source, "failed", raw.doc_id, why))
                    continue
                if meta is None:  # `text` says why
                    report.results.append(FileResult(raw.source, "failed", raw.doc_id, text))
                    continue
                seen.add(raw.doc_id)
                prev = old_docs.get(raw.doc_id)
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
                    "_status": "updated" if prev is not None else "added",
                }
                new_texts[raw.doc_id] = text

        removed: list[str] = []
        if prune:
            roots = [p.resolve() for p in paths if p.exists()]
            for doc_id, d in old_docs.items():
                if doc_id not in seen and _under(d["source"], roots):
                    removed.append(doc_id)
                    report.results.append(FileResult(d["source"], "removed", doc_id))

        if not new_docs and not removed and old is not None:
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

        def term_rows() -> Iterator[TermRows]:  # streamed into BM25: no token lists kept
            docs_left = iter(new_docs.items())
            for batch in _segment_all(tasks, workers, segmenter, lock_fd):
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

        # 3. embed them ------------------------------------------------------------
        te, ce = time.perf_counter(), time.process_time()
        if embed_in:
            log(f"Embedding {len(embed_in)} chunks with {embedder.model_id} ...")
        new_vecs = (
            embedder.embed_passages(embed_in, show_progress=progress)
            if embed_in
            else np.zeros((0, embedder.dim), np.float32)
        )
        report.embed_seconds = time.perf_counter() - te
        report.embed_cpu_seconds = time.process_time() - ce
        report.embedded_chunks = len(embed_in)

        # 4. assemble the new version: kept rows of the old one + the new rows -----
        new_vecs = new_vecs.astype(np.float32)
        table = ChunkTable.build(ids, doc_ids, starts, ends, texts)
        if old is not None:
            table = old.table.take(keep).extend(table)
        tv, cv = time.perf_counter(), time.process_time()
        if old is not None and len(keep) == len(old) and _same_ann(old.vectors, settings):
            # nothing removed: the loaded FAISS index (this ingest's own copy) grows in place
            store = old.vectors
            store.add_vectors(new_vecs, ids, doc_ids)
        else:
            store = FaissStore(
                dim=embedder.dim,
                ann_min=settings.ann_min_chunks,
                hnsw_m=settings.hnsw_m,
                ef_search=settings.hnsw_ef_search,
            )
            kept = old.vectors.vectors(keep) if old is not None and len(keep) else None
            all_vecs = new_vecs if kept is None else np.vstack([kept, new_vecs])
            store.add_vectors(all_vecs, table.ids, table.doc_ids)
        report.vector_seconds = time.perf_counter() - tv
        report.vector_cpu_seconds = time.process_time() - cv

        docs: dict[str, dict] = {k: v for k, v in old_docs.items() if k not in drop}
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        for doc_id, d in new_docs.items():
            status = d.pop("_status")
            d["indexed_at"] = now
            docs[doc_id] = d
            report.results.append(
                FileResult(d["source"], status, doc_id, chunks=len(d["chunk_ids"]))
            )

        manifest = {
            "schema_version": SCHEMA_VERSION,
            "created": now,
            "embedding": {"model": embedder.model_id, "dim": embedder.dim},
            "chunker": {"size": settings.chunk_size, "overlap": settings.chunk_overlap},
            "tokenizer": segmenter_record(segmenter),
            "vector_index": "hnsw" if store.is_approximate else "flat",
            "n_chunks": len(table),
            "n_docs": len(docs),
            "settings": settings.to_dict(),
            "docs": docs,
        }
        _write_version(index_dir, old, manifest, table, bm25, store, new_texts, crash_hook)
        report.total_chunks, report.total_docs = len(table), len(docs)
    report.seconds = time.perf_counter() - t0
    return report


def _same_ann(store: FaissStore, settings: Settings) -> bool:
    return (store.ann_min, store.hnsw_m) == (settings.ann_min_chunks, settings.hnsw_m)


def _compatible(manifest: dict, settings: Settings, embedder) -> bool:
    built_with = manifest.get("tokenizer", {}).get("name", LEGACY_SEGMENTER)
    return (
        manifest["embedding"]["model"] == embedder.model_id
        and manifest["chunker"] == {"size": settings.chunk_size, "overlap": settings.chunk_overlap}
        and settings.tokenizer in ("auto", built_with)
    )


def _write_version(
    index_dir, old, manifest, table: ChunkTable, bm25, store, new_texts, crash_hook
) -> None:
    hook = crash_hook or (lambda stage: None)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    tmp = index_dir / f".tmp-v-{stamp}"
    final = index_dir / f"v-{stamp}"
    tmp.mkdir(parents=True)
    hook("mkdir")
    # The BM25 weights are numpy and file work that mostly runs without the interpreter
    # lock: computed and saved beside the JSON work below (10.6 -> 6.5 s at 69k articles).
    # The pool's exit waits for it, so a failure below never leaves it writing.
    with ThreadPoolExecutor(1, thread_name_prefix="rag-bm25-save") as pool:
        # whole-document BM25 (HybridIndex.doc_bm25) groups rows by document, first-chunk order
        saved = pool.submit(bm25.save, tmp, groups=(table.doc_of_row, len(table.doc_order)))
        # Document texts: copy kept ones from the old version, then the new ones.
        with open(tmp / "texts.jsonl", "wb") as f:
            for doc_id, d in manifest["docs"].items():
                text = new_texts[doc_id] if doc_id in new_texts else old.document_text(doc_id)
                d["text_offset"] = f.tell()
                f.write(
                    json.dumps({"doc_id": doc_id, "text": text}, ensure_ascii=False).encode()
                    + b"\n"
                )
            f.flush()
            os.fsync(f.fileno())
        hook("texts")
        table.save(tmp)
        hook("chunks")
        saved.result()
    hook("bm25")
    store.save(tmp)
    hook("vectors")
    # no indent: json's C encoder only runs without one (10x faster on 69k documents)
    _write(tmp / "manifest.json", json.dumps(manifest, ensure_ascii=False, default=str))
    for p in tmp.iterdir():  # np.savez / faiss do not fsync
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    _fsync_dir(tmp)
    hook("manifest")
    os.rename(tmp, final)
    _fsync_dir(index_dir)
    hook("renamed")
    _write(index_dir / "CURRENT.tmp", final.name + "\n")
    os.replace(index_dir / "CURRENT.tmp", index_dir / "CURRENT")
    _fsync_dir(index_dir)
    hook("swapped")
    _collect_garbage(index_dir, keep={final.name, old.folder.name if old else ""})


def _collect_garbage(index_dir: Path, keep: set[str]) -> None:
    """Remove versions other than the live one and the one before it (a reader may hold it)."""
    for p in index_dir.iterdir():
        if (
            p.is_dir()
            and (p.name.startswith("v-") or p.name.startswith(".tmp-v-"))
            and p.name not in keep
        ):
            shutil.rmtree(p, ignore_errors=True)


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
        "n_docs": m["n_docs"],
        "n_chunks": m["n_chunks"],
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
                report.results.append(FileResult(d, "failed", d, "no such document in the index"))
        if not drop:
            report.total_chunks, report.total_docs = len(old), len(old.docs)
            return report
        if drop == set(old.docs):
            raise ConfigError("cannot remove every document: the index needs at least one")
        keep = np.asarray([i for i, d in enumerate(old.doc_ids) if d not in drop], np.int64)
        table = old.table.take(keep)
        store = FaissStore(
            dim=old.manifest["embedding"]["dim"],
            ann_min=settings.ann_min_chunks,
            hnsw_m=settings.hnsw_m,
            ef_search=settings.hnsw_ef_search,
        )
        store.add_vectors(old.vectors.vectors(keep), table.ids, table.doc_ids)
        # copies: _write_version records new text offsets in these dicts
        docs = {k: dict(v) for k, v in old.docs.items() if k not in drop}
        manifest = {
            **{k: v for k, v in old.manifest.items() if k != "docs"},
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "vector_index": "hnsw" if store.is_approximate else "flat",
            "n_chunks": len(table),
            "n_docs": len(docs),
            "docs": docs,
        }
        _write_version(index_dir, old, manifest, table, old.bm25.select(keep), store, {}, None)
        for d in sorted(drop):
            report.results.append(FileResult(old.docs[d]["source"], "removed", d))
        report.total_chunks, report.total_docs = len(table), len(docs)
    report.seconds = time.perf_counter() - t0
    return report
