"""The index folder on disk: which version is live (CURRENT), the one-writer lock,
writing a complete version atomically, and removing old ones."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rag.errors import IndexLockedError, IndexStoreError
from rag.fileio import fsync_dir, write_text_atomic

# 2: the chunk table moved from one chunks.json to rag/index/table.py's three files
from rag.index.table import ChunkTable
from rag.index.vectors import VECTORS_FILE

SCHEMA_VERSION = 2


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
                    raise IndexLockedError(
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


def _write_version(
    index_dir,
    old,
    manifest,
    table: ChunkTable,
    bm25,
    store,
    new_texts,
    crash_hook,
    vectors_only: bool = False,
) -> None:
    """Write `manifest`, the catalogue and `store`'s vectors as a new version, then make
    it live. `vectors_only`: the catalogue (texts, chunk table, BM25) is `old`'s as it
    is, and only the vectors changed (rag/index/build.py's fill): its files are linked
    into the new folder rather than written again (versions never change once written)."""
    hook = crash_hook or (lambda stage: None)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    tmp = index_dir / f".tmp-v-{stamp}"
    final = index_dir / f"v-{stamp}"
    tmp.mkdir(parents=True)
    hook("mkdir")
    if vectors_only:
        _link_catalogue(old.folder, tmp)
    else:
        _write_catalogue(tmp, old, manifest, table, bm25, new_texts, hook)
    hook("bm25")
    store.save(tmp)
    hook("vectors")
    # no indent: json's C encoder only runs without one (10x faster on 69k documents)
    write_text_atomic(tmp / "manifest.json", json.dumps(manifest, ensure_ascii=False, default=str))
    for p in tmp.iterdir():  # np.savez / faiss do not fsync
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    fsync_dir(tmp)
    hook("manifest")
    os.rename(tmp, final)
    fsync_dir(index_dir)
    hook("renamed")
    write_text_atomic(index_dir / "CURRENT", final.name + "\n", durable=True)
    hook("swapped")
    _collect_garbage(index_dir, keep={final.name, old.folder.name if old else ""})


def _link_catalogue(src: Path, dest: Path) -> None:
    """Every file of version `src` but its manifest and vectors, hard-linked into `dest`."""
    for p in src.iterdir():
        if p.name in ("manifest.json", VECTORS_FILE) or not p.is_file():
            continue
        try:
            os.link(p, dest / p.name)
        except OSError:  # a file system without hard links
            shutil.copy2(p, dest / p.name)


def _write_catalogue(tmp: Path, old, manifest, table: ChunkTable, bm25, new_texts, hook) -> None:
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


def tidy_versions(index_dir: Path) -> None:
    """Remove what a killed ingest left behind, when a later one has nothing to write.

    A run killed after swapping CURRENT but before collecting garbage leaves old versions
    (and earlier killed runs' .tmp folders); the next run that finds nothing changed must
    still clear them. Keeps the live version and the newest one before it. Call under the
    index lock.
    """
    live = current_version(index_dir)
    if live is None:
        return
    older = sorted(
        p.name for p in index_dir.iterdir() if p.name.startswith("v-") and p.name < live.name
    )
    _collect_garbage(index_dir, keep={live.name, older[-1] if older else ""})


def _collect_garbage(index_dir: Path, keep: set[str]) -> None:
    """Remove versions other than the live one and the one before it (a reader may hold it)."""
    for p in index_dir.iterdir():
        if (
            p.is_dir()
            and (p.name.startswith("v-") or p.name.startswith(".tmp-v-"))
            and p.name not in keep
        ):
            shutil.rmtree(p, ignore_errors=True)
