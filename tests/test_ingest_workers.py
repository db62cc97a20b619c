"""`rag ingest --workers N`: embedding over worker processes, and an ingest killed
mid-run (a real subprocess, SIGKILL) that the next run continues without duplicating
chunks (rag/index/embedding.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_process

from rag.config import Settings
from rag.index.embedding import BLOCK, CHECKPOINT_DIR

pytestmark = pytest.mark.slow  # embeds about a thousand chunks with the real model

REPO = Path(__file__).resolve().parents[1]
CLAUSES = [
    "市政府召开常务会议研究部署城市更新工作",
    "会议强调要统筹推进老旧小区改造和历史街区保护",
    "全区累计完成基础设施投资超过一百二十亿元",
    "地铁新线将于年底开通运营并与既有线路换乘",
    "生态保护区森林覆盖率达到百分之八十五以上",
    "企业研发中心聚集了金融科技和文化旅游产业",
    "下一步将加快推进国际化创新型城区建设",
    "群众的获得感幸福感和安全感不断提升",
]


def _write_corpus(folder: Path, n_docs: int) -> None:
    """Documents of distinct sentences (numbered, so that no two chunks are the same)."""
    folder.mkdir()
    for d in range(n_docs):
        sents = [f"第{d}号文件第{s}条：{CLAUSES[(d + s) % len(CLAUSES)]}。" for s in range(48)]
        (folder / f"doc{d:03d}.txt").write_text(f"通知{d}\n\n" + "".join(sents), encoding="utf-8")


def _ingest(corpus: Path, index: Path, *extra: str) -> subprocess.Popen:
    return cli_process("ingest", str(corpus), "--index", str(index), *extra)


def test_killed_ingest_resumes_without_duplicating_chunks(tmp_path: Path, embedder) -> None:
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    _write_corpus(corpus, 100)
    first = _ingest(corpus, index, "--workers", "2")
    ckpt = index / CHECKPOINT_DIR
    deadline = time.monotonic() + 900
    while not list(ckpt.glob("block-*.npz")):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no block was checkpointed in time"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the CLI and its worker processes, mid-run
    first.wait()
    # it died while embedding: before writing any version, or (at least
    # `keyword_first_chunks` to embed, rag/index/build.py) after the one whose chunks only
    # BM25 finds
    from rag.index.hybrid import HybridIndex

    if (index / "CURRENT").exists():
        live = HybridIndex.open(index, Settings(index_dir=str(index)))
        assert live.n_embedded < len(live)
    blocks = len(list(ckpt.glob("block-*.npz")))
    assert blocks >= 1

    second = _ingest(corpus, index, "--workers", "2", "--quiet")
    out, err = second.communicate(timeout=1800)
    assert second.returncode == 0, err
    assert "resumed" in out, out
    resumed = int(out.split("resumed ")[1].split()[0])
    assert resumed >= BLOCK  # at least the checkpointed block was not embedded again
    assert not ckpt.exists()  # removed once the version is live

    idx = HybridIndex.open(index, Settings(index_dir=str(index)))
    ids = list(idx.table.ids)
    assert len(ids) == len(set(ids))  # no chunk twice
    assert len(idx.docs) == 100
    assert len(ids) == sum(len(d["chunk_ids"]) for d in idx.docs.values())
    assert len(ids) > 2 * BLOCK  # the corpus was large enough to be cut into blocks
    # every row holds its own chunk's vector (resumed and new ones alike): compare a
    # sample with a fresh embedding of the same text
    rows = np.linspace(0, len(ids) - 1, 24).astype(int)
    stored = idx.vectors.vectors(rows)
    from rag.index.workers import _embed_input
    from rag.textnorm import norm

    metas = [idx.docs[idx.table.doc_ids[int(r)]]["meta"] for r in rows]
    fresh = embedder.embed_passages(
        [
            norm(
                _embed_input(
                    None if m.get("title_is_id") else m.get("title"), idx.table.texts[int(r)]
                )
            )  # fmt: skip
            for m, r in zip(metas, rows)
        ]
    )
    cos = (stored * fresh).sum(1)
    assert cos.min() >= 0.99, cos.round(4)

    # the same files again: nothing to embed, nothing changes
    third = _ingest(corpus, index, "--quiet")
    out, err = third.communicate(timeout=600)
    assert third.returncode == 0, err
    assert "unchanged 100" in out and "embedded" not in out


def test_workers_must_be_positive(tmp_path: Path) -> None:
    proc = _ingest(tmp_path, tmp_path / "index", "--workers", "0")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "--workers" in err and "Traceback" not in err
