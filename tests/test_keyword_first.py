"""A large ingest is searchable by keyword before its vectors exist (rag/index/build.py):
the chunk table and BM25 go live first, the vectors follow as the next version, in the
same `rag ingest` run, in the background after an upload, or in the next run after a kill.

Sheets are made here with openpyxl; the model, FAISS and milvus-lite are the real ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli_process
from test_office_files import make_xlsx

from rag.config import Settings
from rag.index.build import fill_vectors, ingest
from rag.index.embedding import CHECKPOINT_DIR
from rag.index.hybrid import HybridIndex
from rag.index.versions import current_version

pytestmark = pytest.mark.slow  # embeds thousands of sheet rows with the real model

REPO = Path(__file__).resolve().parents[1]
NOTICE = "市政府召开常务会议研究部署城市更新工作。会议强调要统筹推进老旧小区改造和历史街区保护。"


def _quiet(msg: str) -> None:
    pass


def _row_query(index: HybridIndex, street: str) -> tuple[int, str]:
    """The row holding `street`'s cells, and its text as a query."""
    [row] = [r for r in range(len(index)) if f"：{street}｜" in index.texts[r]]
    line = next(x for x in index.texts[row].split("\n") if street in x)
    return row, line


def _assert_complete(index: HybridIndex, index_dir: Path) -> None:
    assert index.n_embedded == len(index)
    assert "n_embedded" not in index.manifest
    assert len(set(index.ids)) == len(index.ids)  # nothing written twice
    assert len(index.vectors) == len(index)
    assert not (index_dir / CHECKPOINT_DIR).exists()


def test_a_10000_row_sheet_is_answered_before_its_vectors_exist(tmp_path, embedder):
    from rag.system import load_system

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notice.txt").write_text(f"城市更新通知\n\n{NOTICE}", encoding="utf-8")
    s = Settings(index_dir=str(tmp_path / "index"))
    ingest([docs], s, embedder=embedder, progress=False, log=_quiet)  # embedded as usual
    make_xlsx(docs / "big.xlsx", extra_rows=10_000)

    said: list[str] = []
    report = ingest([docs], s, embedder=embedder, progress=False, log=said.append, embed_later=True)
    assert report.count("added") == 1 and report.count("unchanged") == 1, report.results
    assert report.deferred_chunks == report.pending_chunks > 1_000
    assert any("已可检索" in m for m in said), said
    index = HybridIndex.open(s.index_path, s)
    assert index.n_embedded == 1  # the notice; every sheet row is found by BM25 alone
    assert len(index.vectors) == 1 and len(index) == 1 + report.pending_chunks
    pending = report.pending_chunks

    system = load_system(s, embedder=embedder)
    ans = system.ask("街道09999的预算金额是多少？")
    assert not ans.refused and "预算金额（万元）：29997" in ans.sentences[0].text, ans.text
    first = next(c for c in ans.citations if c.n == ans.sentences[0].citation)
    assert first.location == "工作表“预算” 第10004行"
    # the embedded document is still found by meaning
    ans = system.ask("会议强调要统筹推进什么？")
    assert not ans.refused and "老旧小区改造" in ans.text, ans.text

    report = fill_vectors(s, embedder=embedder, progress=False, log=_quiet)
    assert report.embedded_chunks == pending and report.pending_chunks == 0
    system.reload()
    index = system.index
    _assert_complete(index, s.index_path)
    row, line = _row_query(index, "街道07321")
    rows, _ = index.store.dense(embedder.embed_query(line), 10)
    assert row in rows.tolist()  # dense search now finds sheet rows too
    hit = system.retriever.search("街道09999的预算金额是多少？").hits[0]
    assert "街道09999" in hit.text and hit.dense_rank is not None


def test_milvus_takes_the_rows_first_and_their_vectors_after(tmp_path, embedder):
    """Milvus needs a vector in every entity: rows go in with placeholders, which dense
    search skips, and are rewritten whole (upserts) with their vectors; no duplicates."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notice.txt").write_text(f"城市更新通知\n\n{NOTICE}", encoding="utf-8")
    s = Settings(index_dir=str(tmp_path / "kb"), store=str(tmp_path / "m.db"), keyword_first_chunks=10)  # fmt: skip
    ingest([docs], s, embedder=embedder, progress=False, log=_quiet)
    make_xlsx(docs / "big.xlsx", extra_rows=400)
    report = ingest([docs], s, embedder=embedder, progress=False, log=_quiet, embed_later=True)
    assert report.pending_chunks >= 10
    index = HybridIndex.open(s.index_path, s)
    assert index.store.kind == "milvus" and index.n_embedded == 1
    assert index.vectors.count() == len(index)  # every row, with its BM25 part
    row, line = _row_query(index, "街道00321")
    qv = embedder.embed_query(line)
    rows, _ = index.store.dense(qv, 20)
    assert rows.tolist() == [0]  # only the notice has a vector
    rows, _ = index.store.sparse(index.tokenize(line), 5)
    assert rows[0] == row

    fill_vectors(s, embedder=embedder, progress=False, log=_quiet)
    index = HybridIndex.open(s.index_path, s)
    _assert_complete(index, s.index_path)
    assert index.vectors.count() == len(index)
    rows, _ = index.store.dense(qv, 10)
    assert row in rows.tolist()


def test_removing_a_document_while_vectors_are_pending(tmp_path, embedder):
    from rag.index.build import remove_documents

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notice.txt").write_text(f"城市更新通知\n\n{NOTICE}", encoding="utf-8")
    s = Settings(index_dir=str(tmp_path / "index"), keyword_first_chunks=10)
    ingest([docs], s, embedder=embedder, progress=False, log=_quiet)
    make_xlsx(docs / "big.xlsx", extra_rows=100)
    ingest([docs], s, embedder=embedder, progress=False, log=_quiet, embed_later=True)
    remove_documents(["notice"], s, log=_quiet)
    index = HybridIndex.open(s.index_path, s)
    assert set(index.docs) == {"big"} and index.n_embedded == 0 and len(index.vectors) == 0
    fill_vectors(s, embedder=embedder, progress=False, log=_quiet)
    _assert_complete(HybridIndex.open(s.index_path, s), s.index_path)


def _cli(*args: str) -> subprocess.Popen:
    return cli_process(*args)


def test_an_ingest_killed_while_filling_vectors_is_completed_by_the_next(tmp_path):
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    make_xlsx(docs / "big.xlsx", extra_rows=6_000)  # about 750 chunks: three blocks
    first = _cli("ingest", str(docs), "--index", str(index_dir))
    ckpt = index_dir / CHECKPOINT_DIR
    deadline = time.monotonic() + 900
    while current_version(index_dir) is None or not list(ckpt.glob("block-*.npz")):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no block was checkpointed in time"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # searchable already, vectors half done
    first.wait()

    s = Settings(index_dir=str(index_dir))
    index = HybridIndex.open(index_dir, s)
    assert 0 == index.n_embedded < len(index)
    ask = _cli("ask", "街道01234的预算金额是多少？", "--index", str(index_dir))
    out, err = ask.communicate(timeout=600)
    assert ask.returncode == 0 and "预算金额（万元）：3702" in out, (out, err)

    second = _cli("ingest", str(docs), "--index", str(index_dir))
    out, err = second.communicate(timeout=1800)
    assert second.returncode == 0, err
    assert "unchanged 1" in out and "resumed" in out, (out, err)
    _assert_complete(HybridIndex.open(index_dir, s), index_dir)


def test_an_upload_is_answered_at_once_and_embedded_in_the_background(tmp_path, embedder):
    from rag.serve.ui.library import Library
    from rag.system import load_system

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notice.txt").write_text(f"城市更新通知\n\n{NOTICE}", encoding="utf-8")
    s = Settings(index_dir=str(tmp_path / "data" / "index"), keyword_first_chunks=10)
    ingest([docs], s, embedder=embedder, progress=False, log=_quiet)
    system = load_system(s, embedder=embedder)
    library = Library(system, tmp_path / "data" / "uploads", tmp_path / "data" / "feedback.jsonl")
    assert library.filling is None  # nothing was pending at start
    sheet = make_xlsx(tmp_path / "big.xlsx", extra_rows=400)

    [result] = library.add_files([(sheet, "预算.xlsx")], log=_quiet)
    assert result.status == "added", result
    filling = library.filling
    assert filling is not None  # the vectors were left to a background thread
    ans = library.system.ask("街道00321的预算金额是多少？")
    assert not ans.refused and "预算金额（万元）：963" in ans.sentences[0].text, ans.text
    filling.join(timeout=900)
    assert not filling.is_alive()
    index = library.index
    _assert_complete(index, s.index_path)
    row, line = _row_query(index, "街道00321")
    assert row in index.store.dense(embedder.embed_query(line), 10).rows.tolist()


def _list_json(index_dir: Path) -> dict[str, dict]:
    """`rag list --json`, in its own process: {doc_id: document}."""
    out = cli_process("list", "--index", str(index_dir), "--json").communicate(timeout=300)
    docs = json.loads(out[0])["documents"]
    return {d["doc_id"]: d for d in docs}


def test_every_document_list_says_whose_vectors_are_pending_or_failed(
    tmp_path, embedder, monkeypatch, caplog
):
    """Pending vectors show as "向量计算中（done/total）" in the page's list, `rag list
    --json` and the documents API alike; a background fill that fails (another process
    holds the index's write lock) shows why there, is logged, and the next try mends it."""
    from rag.index.fill_status import FILL_FAILED
    from rag.serve.passages import documents
    from rag.serve.ui.library import DOC_HEADERS, Library, document_rows
    from rag.system import load_system

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notice.txt").write_text(f"城市更新通知\n\n{NOTICE}", encoding="utf-8")
    s = Settings(index_dir=str(tmp_path / "data" / "index"), keyword_first_chunks=10)
    ingest([docs], s, embedder=embedder, progress=False, log=_quiet)
    make_xlsx(docs / "big.xlsx", extra_rows=400)
    report = ingest([docs], s, embedder=embedder, progress=False, log=_quiet, embed_later=True)
    n = report.pending_chunks
    assert n >= 10
    system = load_system(s, embedder=embedder)
    rows = {r.doc_id: r for r in document_rows(system.index)}
    assert rows["big"].status == f"向量计算中（0/{n:,}）" and rows["notice"].status == "就绪"
    assert len(rows["big"].shown()) == len(DOC_HEADERS) and rows["big"].shown()[-1] == rows["big"].status  # fmt: skip
    listed = _list_json(s.index_path)
    assert listed["big"]["status"] == rows["big"].status and listed["big"]["embedded_chunks"] == 0
    assert listed["notice"]["status"] == "就绪" and listed["notice"]["embedded_chunks"] == 1

    # another process holds the index's write lock while the background fill runs
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
         str(s.index_path / ".lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(Library, "fill_lock_wait_s", 1.0)
        with caplog.at_level("WARNING", logger="rag.serve.ui.library"):
            library = Library(system, tmp_path / "data" / "uploads", tmp_path / "data" / "f.jsonl")
            library.filling.join(timeout=600)
        assert not library.filling.is_alive()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    failed = (
        f"向量计算失败：另一个程序正在写入这个知识库的索引，将在下次上传或重启时重试"
        f"（已完成0/{n:,}）"
    )
    assert {r.doc_id: r.status for r in library.documents()}["big"] == failed
    assert {d.doc_id: d.status for d in documents(library)}["big"] == failed  # the API's
    assert _list_json(s.index_path)["big"]["status"] == failed  # another process's view
    [record] = [r for r in caplog.records if r.name == "rag.serve.ui.library"]
    assert record.levelname == "WARNING" and "另一个程序正在写入" in record.getMessage()
    # still answered by keyword meanwhile
    ans = library.system.ask("街道00321的预算金额是多少？")
    assert not ans.refused and "预算金额（万元）：963" in ans.sentences[0].text, ans.text

    library.fill_in_background().join(timeout=600)  # the lock is free: the retry mends it
    _assert_complete(library.index, s.index_path)
    assert not (s.index_path / FILL_FAILED).exists()
    assert {r.status for r in library.documents()} == {"就绪"}
    assert {d["status"] for d in _list_json(s.index_path).values()} == {"就绪"}
