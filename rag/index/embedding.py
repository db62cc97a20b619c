"""Embedding an ingest's new chunks: in blocks checkpointed to disk, so that a killed
ingest resumes where it stopped, and over worker processes or Ray tasks when asked.

Every finished block of vectors is written atomically into `<index>/.embedded/` under
the hash of what was embedded. A later ingest of the same files (killed or not) finds
those vectors and embeds only the rest; the index itself is still written once, at the
end, from the chunk list, so nothing is ever added twice. The folder is removed when
the new version is live.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rag.fileio import write_atomic, write_json
from rag.index.executors import choose

CHECKPOINT_DIR = ".embedded"
# Chunks per block: one worker task and one checkpoint file (about 2 s of one core with
# int8 ONNX; 256 x 384 float32 is 384 KiB). A kill loses at most one block per worker.
BLOCK = 256
# Below this many chunks, starting worker processes (each loads the model: 2-4 s) costs
# more than it saves.
POOL_MIN_CHUNKS = 2 * BLOCK


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


class Checkpoint:
    """Vectors embedded so far by this index's ingests, by the hash of the embedded text.

    `identity` (model, backend, prefix) is recorded beside them: vectors of another
    model or prefix are thrown away, never reused.
    """

    def __init__(self, index_dir: Path, identity: dict[str, Any]):
        self.dir = Path(index_dir) / CHECKPOINT_DIR
        self.identity = identity
        self._n = 0

    def load(self) -> dict[bytes, np.ndarray]:
        """What earlier runs left (empty when none, or when it was another model's)."""
        meta = self.dir / "identity.json"
        try:
            same = json.loads(meta.read_text(encoding="utf-8")) == self.identity
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True, exist_ok=True)
            write_json(meta, self.identity)
            return {}
        have: dict[bytes, np.ndarray] = {}
        for f in sorted(self.dir.glob("block-*.npz")):
            try:
                with np.load(f) as z:
                    keys, vecs = z["keys"], z["vectors"]
            except (OSError, ValueError, KeyError, EOFError):
                continue  # unreadable: its chunks are embedded again
            have.update(zip((k.tobytes() for k in keys), vecs))
        self._n = len(list(self.dir.glob("block-*.npz")))
        return have

    def add(self, keys: list[bytes], vecs: np.ndarray) -> None:
        """Keep one block (written whole or not at all)."""
        buf = io.BytesIO()
        # raw bytes, not an "S16" array: numpy strips trailing NULs from those
        rows = np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), 16)
        np.savez(buf, keys=rows, vectors=vecs)
        write_atomic(self.dir / f"block-{os.getpid()}-{self._n:06d}.npz", (buf.getvalue(),))
        self._n += 1

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def checkpoint_for(index_dir: Path, embedder: Any) -> Checkpoint:
    return Checkpoint(
        index_dir,
        {
            "model": embedder.model_id,
            "backend": getattr(embedder, "backend_id", None),
            "passage_prefix": getattr(embedder, "passage_prefix", ""),
        },
    )


class Progress:
    """Chunks embedded, with the rate and the time left, on stderr (a tqdm bar; the UI's
    upload progress follows tqdm bars). Resumed chunks count as done from the start."""

    def __init__(self, total: int, done: int, show: bool):
        self.bar = None
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc="Embedding", unit="chunk", file=sys.stderr)  # fmt: skip

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- worker processes ---------------------------------------------------------------

# one embedder per worker process (a local pool's or a Ray worker's), by its spec
_worker_embedders: dict[str, Any] = {}


def _worker_embedder(spec: dict[str, Any]) -> Any:
    key = json.dumps(spec, sort_keys=True)
    emb = _worker_embedders.get(key)
    if emb is None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from rag.embed.embedder import Embedder

        emb = _worker_embedders[key] = Embedder(**spec)
    return emb


def _worker_start(spec: dict[str, Any]) -> None:
    _worker_embedder(spec).embed_passages(["预热"])  # load now, not in the first timed block


def _embed_block(spec: dict[str, Any], texts: list[str]) -> np.ndarray:
    """One block's vectors, in a worker: the task every executor runs."""
    return _worker_embedder(spec).embed_passages(texts)


def _blocks_in_order(
    blocks: list[list[str]], embedder: Any, workers: int, ray_address: str | None = None
) -> Iterator[np.ndarray]:
    """The vectors of every block, in order: in this process, over `workers` local
    processes when > 1, or as Ray tasks when `ray_address` names a cluster."""
    make_spec = getattr(embedder, "worker_spec", None)  # None: it embeds in this process only
    if not callable(make_spec) or (workers <= 1 and not ray_address):
        yield from (embedder.embed_passages(b) for b in blocks)
        return
    spec = make_spec(max(1, workers))
    # spawn, not fork: an onnxruntime or torch thread pool does not survive a fork
    ex = choose(ray_address, workers, "spawn", _worker_start, (spec,))
    if ex.threads_per_task:
        spec = {**spec, "threads": ex.threads_per_task}
    yield from ex.map(_embed_block, ((spec, b) for b in blocks))


def embed_chunks(
    texts: list[str],
    embedder: Any,
    index_dir: Path,
    workers: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
    ray_address: str | None = None,
) -> tuple[np.ndarray, int]:
    """(vectors of `texts` in order, how many came from an interrupted earlier run).

    Texts are embedded longest first in blocks of `BLOCK`, so that each batch pads little,
    and each block is checkpointed as it finishes.
    """
    ckpt = checkpoint_for(index_dir, embedder)
    have = ckpt.load()
    keys = [_key(t) for t in texts]
    out = np.empty((len(texts), embedder.dim), np.float32)
    todo = []
    for i, k in enumerate(keys):
        v = have.get(k)
        if v is None:
            todo.append(i)
        else:
            out[i] = v
    resumed = len(texts) - len(todo)
    if resumed:
        log(f"Resuming: {resumed} of {len(texts)} chunks were embedded by an interrupted run")
    todo.sort(key=lambda i: len(texts[i]), reverse=True)
    rows = [todo[a : a + BLOCK] for a in range(0, len(todo), BLOCK)]
    if len(todo) < POOL_MIN_CHUNKS and not ray_address:
        workers = 1
    bar = Progress(len(texts), resumed, progress)
    try:
        blocks = [[texts[i] for i in r] for r in rows]
        done = _blocks_in_order(blocks, embedder, workers, ray_address)
        for r, vecs in zip(rows, done):
            out[r] = vecs
            ckpt.add([keys[i] for i in r], vecs)
            bar.update(len(r))
    finally:
        bar.close()
    return out, resumed
