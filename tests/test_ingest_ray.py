"""`rag ingest --ray ADDRESS`: loading, segmenting and embedding as tasks on a real Ray
cluster (a head started by the test with `ray start --head`, two CPUs, no dashboard),
into a FAISS folder and into milvus-lite: the same chunks and vectors as an ingest on
this machine, and a run killed mid-embedding that the next run continues without
duplicating chunks (rag/index/executors.py)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port
from test_ingest_workers import _ingest, _write_corpus

from rag.config import Settings
from rag.index.embedding import BLOCK, CHECKPOINT_DIR

pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # embeds a few thousand chunks with the real model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head of two CPUs, this test's own. Its environment lacks PYTHONPATH on
    purpose: its workers import this checkout's `rag` only if the driver ships it (the
    runtime env's py_modules), as a cluster's nodes would have to."""
    from rag.eval.bench.ray_ingest import local_head

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with local_head(cpus=2, env=env) as address:
        yield address


def _open(index: Path, store: str = "faiss"):
    from rag.index.hybrid import HybridIndex

    return HybridIndex.open(index, Settings(index_dir=str(index), store=store))


def test_ray_ingest_gives_the_local_chunks_in_faiss_and_milvus(
    tmp_path: Path, embedder, ray_head: str
) -> None:
    from rag.index.build import ingest

    corpus = tmp_path / "corpus"
    _write_corpus(corpus, 40)
    local = tmp_path / "local"
    ingest([corpus], Settings(index_dir=str(local)), embedder=embedder, progress=False,
           log=lambda m: None)  # fmt: skip
    ref = _open(local)

    # in this process, through the library, as `rag serve`'s uploads would: no
    # --workers, so one task per CPU of the cluster (2)
    faiss_dir = tmp_path / "ray-faiss"
    report = ingest([corpus], Settings(index_dir=str(faiss_dir), ray_address=ray_head),
                    embedder=embedder, progress=False, log=lambda m: None)  # fmt: skip
    assert report.count("added") == 40 and report.workers == 2
    # through the CLI, into milvus-lite
    db = tmp_path / "kb.db"
    milvus_dir = tmp_path / "ray-milvus"
    proc = _ingest(corpus, milvus_dir, "--ray", ray_head, "--quiet", "--store", str(db))
    out, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, err
    assert "added 40" in out, out
    for index, store in ((faiss_dir, "faiss"), (milvus_dir, str(db))):
        got = _open(index, store)
        assert got.store.kind == ("faiss" if store == "faiss" else "milvus")
        assert list(got.table.ids) == list(ref.table.ids)
        assert list(got.table.texts) == list(ref.table.texts)
        assert {d: r["chunk_ids"] for d, r in got.docs.items()} == {
            d: r["chunk_ids"] for d, r in ref.docs.items()
        }
        # the same vectors, embedded in Ray's worker processes (one thread each)
        cos = (got.vectors.vectors() * ref.vectors.vectors()).sum(1)
        assert cos.min() >= 0.999, cos.min()
        assert not (index / CHECKPOINT_DIR).exists()
    assert _open(milvus_dir, str(db)).vectors.count() == len(ref)


def test_killed_ray_ingest_resumes_without_duplicating_chunks(
    tmp_path: Path, ray_head: str
) -> None:
    corpus, index, db = tmp_path / "corpus", tmp_path / "index", tmp_path / "kb.db"
    _write_corpus(corpus, 200)
    # one task at a time: a kill after the first block leaves most of the work undone
    first = _ingest(corpus, index, "--ray", ray_head, "--workers", "1", "--store", str(db))
    ckpt = index / CHECKPOINT_DIR
    deadline = time.monotonic() + 900
    while not list(ckpt.glob("block-*.npz")):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no block was checkpointed in time"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    # it died while embedding: before writing any version, or (at least
    # `keyword_first_chunks` to embed, rag/index/build.py) after the one BM25 alone searches
    # (read from its manifest: opening it would hold milvus-lite's lock on kb.db)
    if (index / "CURRENT").exists():
        version = index / (index / "CURRENT").read_text().strip()
        manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["n_embedded"] < manifest["n_chunks"]

    second = _ingest(corpus, index, "--ray", ray_head, "--store", str(db), "--quiet")
    out, err = second.communicate(timeout=1800)
    assert second.returncode == 0, err
    resumed = int(out.split("resumed ")[1].split()[0])
    assert resumed >= BLOCK  # the checkpointed block was not embedded again
    assert not ckpt.exists()

    idx = _open(index, str(db))
    ids = list(idx.table.ids)
    assert len(ids) == len(set(ids)) and len(idx.docs) == 200
    assert len(ids) > 4 * BLOCK  # several blocks: the kill came mid-embedding
    assert idx.vectors.count() == len(ids)  # nothing twice in the collection either
    norms = np.linalg.norm(idx.vectors.vectors(), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-3)  # every row holds a real (unit) vector


def test_unreachable_ray_cluster_is_one_line_on_stderr(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    _write_corpus(corpus, 1)
    proc = _ingest(corpus, tmp_path / "index", "--ray", f"127.0.0.1:{free_port()}")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, (out, err)
    assert "--ray" in err and "Traceback" not in err
