"""Loading, cleaning, chunking and segmenting documents in worker processes, one per
idle core, for ingestion."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from rag.config import Settings
from rag.errors import LoadError
from rag.index.executors import choose
from rag.index.segment import TermRows, count_terms, get_segmenter

# 2: the chunk table moved from one chunks.json to rag/index/table.py's three files
from rag.ingest.chunking import chunk_spans
from rag.textnorm import norm

# Clutter rules are for text that may be a web scrape; office files, PDFs, spreadsheets
# and slides are read as they are (a table of whole numbers is not a page-view counter)
CLEANED_FORMATS = {"txt", "md", "html"}


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


def embed_title(doc: dict) -> str | None:
    """The title prepended to a document's chunks for embedding, from its manifest
    record: the title helps the embedding, a record id standing in for one does not."""
    meta = doc.get("meta") or {}
    return None if meta.get("title_is_id") else meta.get("title")


def embed_text(title: str | None, chunk: str) -> str:
    """The normalised text a chunk is embedded (and BM25-segmented) as. Vectors filled
    in after an ingest (rag/index/build.py) are computed from the same text, so they and
    their checkpoint keys are those a one-pass ingest would have made."""
    return norm(_embed_input(title, chunk))


def _prepare(raw, settings: Settings) -> tuple[str, dict]:
    """Cleaned text and metadata of one loaded document."""
    from rag.ingest.clean import clean_text, relocate

    text, meta = raw.text, raw.meta.to_dict()
    if settings.clean and raw.format in CLEANED_FORMATS:
        cleaned = clean_text(text)
        text = cleaned.text
        if meta.get("locations"):  # heading paths, recorded on the text before cleaning
            meta["locations"] = relocate(raw.text, cleaned, meta["locations"])
    if not text.strip():
        raise LoadError(
            raw.source,
            "去掉网页杂项后没有剩下正文：请确认文件里有正文，或用 rag ingest --explain 查看清理了什么",
        )
    return text, meta


def _load(file: Path, root: Path, settings: Settings) -> str | list[tuple]:
    """A file's documents as (raw, text, meta, content hash), cleaned; or why it failed.

    A document that fails on its own is (raw, reason, None, None): its file's other
    documents still count. Plain values, so a worker process can send them back.
    """
    from rag.ingest.loaders import load_file

    try:
        raws = load_file(file, root, max_bytes=int(settings.max_file_mb * 2**20), ocr=settings.ocr)
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
    from rag.ingest.ocr import cached_in

    with cached_in(settings.cache_path / "ocr"):  # a scanned page is read once
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
    if settings.ray_address:  # as many tasks at once as asked, else every CPU there
        workers = settings.ingest_workers
    batches: list[list[tuple[Path, Path]]] = []
    size = 0
    for (f, r), n in zip(files, sizes):
        if not batches or size + n > _LOAD_BYTES or len(batches[-1]) >= _LOAD_FILES:
            batches.append([])
            size = 0
        batches[-1].append((f, r))
        size += n
    tasks = [(b, settings) for b in batches]
    results = _in_order(_load_task, tasks, workers, None, lock_fd, settings.ray_address)
    for batch, loaded in zip(batches, results):
        yield from zip((f for f, _ in batch), loaded)


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
        inputs.extend(embed_text(title, text[s:e]) for s, e in doc)
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
    fn: Callable,
    tasks: list[tuple],
    workers: int,
    segmenter: str | None,
    lock_fd: int | None,
    ray_address: str | None = None,
) -> Iterator:
    """`fn(*task)` for every task, in order: as Ray tasks when `ray_address` names a
    cluster, else over `workers` forked processes when > 1 (they inherit the loaded
    modules and dictionaries, and start in ~0.1 s). See rag/index/executors.py."""
    ex = choose(ray_address, workers, "fork", _worker_start, (segmenter, lock_fd))
    return ex.map(fn, tasks)


def _segment_all(
    tasks: list[tuple],
    workers: int,
    segmenter: str,
    lock_fd: int | None = None,
    ray_address: str | None = None,
) -> Iterator[_Segmented]:
    """`_segment_task` for every batch of `_TASK_DOCS` tasks, in order (see `_in_order`)."""
    groups = [(tasks[i : i + _TASK_DOCS],) for i in range(0, len(tasks), _TASK_DOCS)]
    return _in_order(_segment_task, groups, workers, segmenter, lock_fd, ray_address)


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
