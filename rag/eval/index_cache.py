"""The evaluation index cache: one index per corpus and index settings, built once and reused."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import ConfigError

# Settings that decide what the index holds: a change means another cached index.
_INDEX_SETTINGS = (
    "chunk_size",
    "chunk_overlap",
    "clean",
    "max_file_mb",
    "passage_prefix",
    "ann_min_chunks",
    "hnsw_m",
)


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def corpus_fingerprint(path: str | Path) -> str:
    """SHA-256 of a corpus file's bytes, or of a folder's file names and bytes.

    Hidden files are left out (as the loader does), except `.ragignore`, which changes
    what is indexed.
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        _hash_file(h, p)
        return h.hexdigest()
    files = sorted(
        f
        for f in p.rglob("*")
        if f.is_file()
        and (
            f.name == ".ragignore"
            or not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
    )
    for f in files:
        h.update(f.relative_to(p).as_posix().encode("utf-8") + b"\0")
        _hash_file(h, f)
        h.update(b"\0")
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    _hash_file(h, path)
    return h.hexdigest()


@dataclass(frozen=True)
class IndexInfo:
    """The index a run used: where, whether it was reused, and how big it is."""

    dir: Path
    key: str | None  # cache key; None for an index named with --index
    reused: bool  # True: found in the cache, not ingested
    build_seconds: float
    n_docs: int
    n_chunks: int
    failed: int  # corpus records the loader rejected


def index_cache_key(
    corpus: Path, settings: Settings, embed_model_id: str, embed_backend: str | None = None
) -> str:
    from rag.index.versions import SCHEMA_VERSION

    parts = {
        "corpus": corpus_fingerprint(corpus),
        "embed_model": embed_model_id,
        # an evaluation measures one backend's vectors: ONNX and torch indexes are not shared
        **({"embed_backend": embed_backend} if embed_backend else {}),
        "schema": SCHEMA_VERSION,
        **{k: getattr(settings, k) for k in _INDEX_SETTINGS},
        # a Milvus index is another cached index; FAISS ones keep the keys they had
        **({"store": settings.store} if settings.store != "faiss" else {}),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def ensure_index(
    corpus: Path,
    settings: Settings,
    embedder: Any,
    *,
    index_dir: str | Path | None = None,
    index_root: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> IndexInfo:
    """An index of `corpus`: reused from the cache when the key matches, else built.

    The cache lives in `index_root` (default `<cache_dir>/eval-index/`), one folder per
    key. A cached index with a CURRENT version is opened as is, without reading the
    corpus again. With `index_dir`, that folder is used and brought up to date by an
    (incremental) ingest instead.
    """
    from rag.index.build import ingest
    from rag.index.hybrid import HybridIndex
    from rag.index.versions import current_version

    key = None
    if index_dir is None:
        key = index_cache_key(
            corpus, settings, embedder.model_id, getattr(embedder, "backend_id", None)
        )
        root = Path(index_root) if index_root is not None else settings.cache_path / "eval-index"
        target = root / key
    else:
        target = Path(index_dir)
    s = settings.replace(index_dir=str(target))
    failed = 0
    t0 = time.perf_counter()
    reused = key is not None and current_version(target) is not None
    if reused:
        log(f"Reusing the cached index {target}")
    else:
        log(f"Indexing {corpus} into {target} ...")
        report = ingest([corpus], s, embedder=embedder, progress=progress, log=log)
        failed = report.count("failed")
        if not report.ingested_anything:
            reasons = "; ".join(f"{r.source}: {r.reason}" for r in report.results[:3])
            raise ConfigError(f"{corpus}: nothing could be indexed ({reasons})")
        if failed:
            log(f"warning: {failed} corpus item(s) could not be indexed")
    idx = HybridIndex.open(target, s)
    return IndexInfo(target, key, reused, time.perf_counter() - t0, len(idx.docs), len(idx), failed)
