"""Ingestion into the persistent index: incremental cases, bad input, atomicity, locking."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time

import numpy as np
import pytest

from rag.config import Settings
from rag.errors import IndexStoreError
from rag.index.build import ingest
from rag.index.hybrid import HybridIndex
from rag.index.versions import index_lock
from rag.ingest.loaders import EMPTY_REASON
from rag.serve.cli import main

DOCS = {
    "renewal.txt": (
        "utf-8",
        "崂山区召开城市更新动员大会。会议部署了196个重点项目，年度计划投资156亿元。",
    ),
    "weihai.txt": ("gbk", "威海累计建成地下综合管廊40.6公里。海绵城市78.6平方公里。"),
    "notes.md": ("utf-8", "# 西溪湿地\n\n西溪湿地公园坚持生态优先、最小干预的原则。"),
}


def write_docs(folder, docs=DOCS):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (enc, text) in docs.items():
        (folder / name).write_bytes(text.encode(enc))


def quiet(**kw):
    return {"progress": False, "log": lambda m: None, **kw}


@pytest.fixture()
def settings(tmp_path):
    return Settings(index_dir=str(tmp_path / "index"), chunk_size=60)


def statuses(report):
    return {r.source.split("/")[-1]: (r.status, r.reason) for r in report.results}


def test_first_ingest_adds_and_reports_bad_files(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    write_docs(docs)
    (docs / "empty.txt").write_bytes(b"")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 20)
    (docs / "table.numbers").write_bytes(b"PK\x03\x04 not really")
    report = ingest([docs], settings, embedder=embedder, **quiet())
    st = statuses(report)
    assert st["renewal.txt"][0] == st["weihai.txt"][0] == st["notes.md"][0] == "added"
    assert st["empty.txt"] == ("failed", EMPTY_REASON)
    assert st["binary.txt"][0] == "failed" and "二进制" in st["binary.txt"][1]
    assert st["table.numbers"][0] == "failed" and "不支持的文件类型" in st["table.numbers"][1]
    idx = HybridIndex.open(settings.index_path, settings)
    assert set(idx.docs) == {"renewal", "weihai", "notes"}
    assert idx.docs["weihai"]["encoding"] == "gb18030"
    # every chunk is an exact slice of its document's original text
    for row in range(len(idx)):
        c = idx.chunk(row)
        assert idx.document_text(c.doc_id)[c.start : c.end] == c.text


def test_second_run_skips_unchanged_then_updates_and_prunes(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    write_docs(docs)
    first = ingest([docs], settings, embedder=embedder, **quiet())
    assert first.embedded_chunks > 0
    again = ingest([docs], settings, embedder=embedder, **quiet())
    assert again.count("unchanged") == 3 and again.embedded_chunks == 0
    version = HybridIndex.open(settings.index_path).folder
    assert HybridIndex.open(settings.index_path).folder == version  # nothing rewritten

    (docs / "renewal.txt").write_text("崂山区今年重点推进张村河片区安置区建设。", encoding="utf-8")
    (docs / "notes.md").unlink()
    upd = ingest([docs], settings, embedder=embedder, **quiet(prune=True))
    st = statuses(upd)
    assert st["renewal.txt"][0] == "updated"
    assert st["weihai.txt"][0] == "unchanged"
    assert st["notes.md"][0] == "removed"
    idx = HybridIndex.open(settings.index_path, settings)
    assert set(idx.docs) == {"renewal", "weihai"}
    assert all("196" not in t for t in idx.texts)  # old chunks of the updated doc are gone
    assert len(idx.vectors) == len(idx) == len(idx.bm25)
    assert upd.embedded_chunks == len(idx.docs["renewal"]["chunk_ids"])  # only the changed doc


def test_without_prune_deleted_files_stay(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    write_docs(docs)
    ingest([docs], settings, embedder=embedder, **quiet())
    (docs / "notes.md").unlink()
    ingest([docs], settings, embedder=embedder, **quiet())
    assert "notes" in HybridIndex.open(settings.index_path).docs


class Crash(Exception):
    pass


@pytest.mark.parametrize(
    "stage", ["mkdir", "texts", "chunks", "bm25", "vectors", "manifest", "renamed"]
)
def test_crash_at_any_stage_leaves_previous_index_loadable(tmp_path, settings, embedder, stage):
    docs = tmp_path / "docs"
    write_docs(docs)
    ingest([docs], settings, embedder=embedder, **quiet())
    before = HybridIndex.open(settings.index_path, settings)
    (docs / "extra.txt").write_text("杭州钱江新城的地下空间利用很有特色。", encoding="utf-8")

    def hook(s):
        if s == stage:
            raise Crash(s)

    with pytest.raises(Crash):
        ingest([docs], settings, embedder=embedder, **quiet(crash_hook=hook))
    after = HybridIndex.open(settings.index_path, settings)
    assert after.folder == before.folder and set(after.docs) == set(before.docs)
    # re-running finishes the job and clears the half-written version
    done = ingest([docs], settings, embedder=embedder, **quiet())
    assert statuses(done)["extra.txt"][0] == "added"
    assert not [p for p in settings.index_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_run_killed_after_the_swap_is_tidied_by_the_next_run_with_nothing_to_do(
    tmp_path, settings, embedder
):
    # Found by the SIGKILL test in CI: a run stopped between swapping CURRENT and
    # collecting garbage left old versions, and a later run with no changes never
    # cleared them.
    docs = tmp_path / "docs"
    write_docs(docs)
    for crashed_at in ("mkdir", "swapped"):  # a half-written .tmp, then an uncollected swap
        (docs / f"extra-{crashed_at}.txt").write_text(
            f"杭州钱江新城的地下空间利用很有特色（{crashed_at}）。", encoding="utf-8"
        )

        def hook(s, crashed_at=crashed_at):
            if s == crashed_at:
                raise Crash(s)

        with pytest.raises(Crash):
            ingest([docs], settings, embedder=embedder, **quiet(crash_hook=hook))
    names = [p.name for p in settings.index_path.iterdir()]
    assert [n for n in names if n.startswith(".tmp-")]
    done = ingest([docs], settings, embedder=embedder, **quiet())
    assert {s for s, _ in statuses(done).values()} == {"unchanged"}
    names = [p.name for p in settings.index_path.iterdir()]
    assert not [n for n in names if n.startswith(".tmp-")], names
    assert len([n for n in names if n.startswith("v-")]) <= 2, names
    live = HybridIndex.open(settings.index_path, settings)
    assert any(d["source"].endswith("extra-swapped.txt") for d in live.docs.values())


def _hold_lock(path, ready, release):
    from pathlib import Path

    with index_lock(Path(path), log=lambda m: None):
        ready.set()
        release.wait(30)


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    write_docs(docs)
    ready, release = mp.Event(), mp.Event()
    holder = mp.Process(target=_hold_lock, args=(str(settings.index_path), ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        t = time.monotonic()
        with pytest.raises(IndexStoreError, match="another ingest"):
            ingest([docs], settings, embedder=embedder, **quiet(lock_wait_s=1.0))
        assert time.monotonic() - t >= 1.0
    finally:
        release.set()
        holder.join(10)
    assert ingest([docs], settings, embedder=embedder, **quiet()).count("added") == 3


def test_tampered_index_fails_clearly(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    write_docs(docs)
    ingest([docs], settings, embedder=embedder, **quiet())
    folder = HybridIndex.open(settings.index_path).folder
    (folder / "vectors.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(IndexStoreError, match="vector index|damaged"):
        HybridIndex.open(settings.index_path, settings)
    (folder / "chunks.json").write_text(json.dumps({"ids": ["x"], "doc_ids": []}))
    with pytest.raises(IndexStoreError):
        HybridIndex.open(settings.index_path, settings)


def test_an_index_from_another_version_is_rebuilt_by_ingest(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    write_docs(docs)
    ingest([docs], settings, embedder=embedder, **quiet())
    folder = HybridIndex.open(settings.index_path).folder
    m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    m["schema_version"] = 1  # what rag wrote before the chunk table left chunks.json
    (folder / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(IndexStoreError, match="schema 1 is not 2; rebuild"):
        HybridIndex.open(settings.index_path, settings)
    said = []
    report = ingest([docs], settings, embedder=embedder, progress=False, log=said.append)
    assert report.count("added") == 3 and any("another version" in m for m in said), said
    idx = HybridIndex.open(settings.index_path, settings)
    assert idx.folder != folder and set(idx.docs) == {"renewal", "weihai", "notes"}


def test_missing_index_says_how_to_build_one(tmp_path):
    with pytest.raises(IndexStoreError, match="rag ingest"):
        HybridIndex.open(tmp_path / "nothing")


def test_cli_exit_status(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    (bad / "x.bin").write_bytes(b"\x00\x01")
    idx = str(tmp_path / "index")
    assert main(["ingest", str(bad), "--index", idx, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"empty.txt: {EMPTY_REASON}" in err and "x.bin" in err
    good = tmp_path / "good"
    write_docs(good, {"a.txt": ("utf-8", "城市更新要让群众得实惠。")})
    assert main(["ingest", str(good), str(bad), "--index", idx, "--quiet"]) == 0
    assert main(["ingest", str(tmp_path / "missing"), "--index", idx, "--quiet"]) == 2
    assert main(["ask", "城市更新", "--index", str(tmp_path / "none")]) == 2
    assert "rag ingest" in capsys.readouterr().err


# --------------------------------------------------------------------------- speed-ups
def _rows(idx):
    inverse = {j: w for w, j in idx.bm25.vocab.items()}
    tf = idx.bm25.tf
    return [
        (idx.ids[r], {inverse[j]: v for j, v in zip(tf[r].indices, tf[r].data)})
        for r in range(len(idx))
    ]


def test_index_records_its_segmenter_and_an_old_index_keeps_jieba(tmp_path, settings, embedder):
    from rag.index.segment import available_segmenter

    docs = tmp_path / "docs"
    write_docs(docs)
    ingest([docs], settings, embedder=embedder, **quiet())
    idx = HybridIndex.open(settings.index_path, settings)
    assert idx.manifest["tokenizer"]["name"] == idx.segmenter == available_segmenter()
    assert idx.tokenize("崂山区城市更新") == idx.bm25.tokenize("崂山区城市更新")

    # an index from before the segmenter was recorded was built with jieba, and keeps it
    m_path = idx.folder / "manifest.json"
    m = json.loads(m_path.read_text(encoding="utf-8"))
    del m["tokenizer"]
    m_path.write_text(json.dumps(m, ensure_ascii=False), encoding="utf-8")
    old = HybridIndex.open(settings.index_path, settings)
    assert old.segmenter == "jieba"
    (docs / "extra.txt").write_text("杭州钱江新城的地下空间利用很有特色。", encoding="utf-8")
    report = ingest([docs], settings, embedder=embedder, **quiet())
    assert report.count("added") == 1 and report.count("unchanged") == 3
    new = HybridIndex.open(settings.index_path, settings)
    assert new.manifest["tokenizer"]["name"] == new.segmenter == "jieba"
    assert new.bm25.vocab.keys() >= old.bm25.vocab.keys()

    # asking for another segmenter re-indexes everything with it
    again = ingest([docs], settings.replace(tokenizer="rjieba"), embedder=embedder, **quiet())
    if available_segmenter() == "rjieba":
        assert again.count("added") == 4
        assert HybridIndex.open(settings.index_path, settings).segmenter == "rjieba"


def test_adding_documents_appends_rows_and_vectors(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    write_docs(docs)
    ingest([docs], settings.replace(ann_min_chunks=2), embedder=embedder, **quiet())
    before = HybridIndex.open(settings.index_path, settings.replace(ann_min_chunks=2))
    assert before.vectors.is_approximate  # HNSW from 2 chunks on
    (docs / "extra.txt").write_text("杭州钱江新城的地下空间利用很有特色。", encoding="utf-8")
    report = ingest([docs], settings.replace(ann_min_chunks=2), embedder=embedder, **quiet())
    assert report.count("added") == 1 and report.vector_seconds >= 0
    after = HybridIndex.open(settings.index_path, settings.replace(ann_min_chunks=2))
    n = len(before)
    assert after.ids[:n] == before.ids and len(after) > n  # old rows first, unchanged
    np.testing.assert_array_equal(after.vectors.vectors()[:n], before.vectors.vectors())
    assert after.vectors.is_approximate and len(after.vectors) == len(after) == len(after.bm25)
    new_row = after.doc_rows("extra")[0]
    q = embedder.embed_query("钱江新城的地下空间")
    assert new_row in after.vectors.search(q, 3)[0]
    assert _rows(after)[:n] == _rows(before)


def test_auto_workers_stay_in_process_while_every_core_is_busy():
    import subprocess

    from rag.index.workers import _workers, spare_cores

    big = 10**9  # characters: far above the size worth starting workers for
    cores = os.cpu_count() or 1
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)  # every core taken by another process
        spare = spare_cores(0.3)
        assert spare is not None and 0 <= spare < 0.5, spare
        assert _workers(Settings(ingest_workers=0), big) == 1
        assert _workers(Settings(ingest_workers=3), big) == 3  # a number forces it
    finally:
        for p in spin:
            p.kill()
            p.wait()
    assert _workers(Settings(ingest_workers=0), 1000) == 1  # too small to be worth it


def test_worker_processes_build_the_same_index(tmp_path, embedder, monkeypatch):
    import rag.index.workers

    docs = tmp_path / "docs"
    many = {f"d{i}.txt": ("utf-8", f"第{i}篇：崂山区召开城市更新动员大会，部署{i}个重点项目。" * 3) for i in range(30)}  # fmt: skip
    write_docs(docs, {**DOCS, **many})
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really a PDF")
    (docs / "sub").mkdir()
    (docs / "sub" / "d3.txt").write_bytes(b"")  # an empty file among the loading tasks
    monkeypatch.setattr(
        rag.index.workers, "_POOL_MIN_CHARS", 0
    )  # a small batch goes to the pool too
    monkeypatch.setattr(rag.index.workers, "_TASK_DOCS", 4)  # several tasks per worker, in order
    monkeypatch.setattr(rag.index.workers, "_LOAD_FILES", 3)  # and files loaded in several tasks
    built = {}
    for workers in (1, 2):
        s = Settings(
            index_dir=str(tmp_path / f"index-{workers}"), chunk_size=60, ingest_workers=workers
        )
        report = ingest([docs], s, embedder=embedder, **quiet())
        assert report.count("added") == 33 and report.workers == workers
        failed = {r.source.split("/")[-1]: r.reason for r in report.results if r.status == "failed"}
        assert set(failed) == {"broken.pdf", "d3.txt"} and failed["d3.txt"] == EMPTY_REASON
        built[workers] = HybridIndex.open(s.index_path, s)
    one, two = built[1], built[2]
    assert (
        one.ids == two.ids
        and list(one.texts) == list(two.texts)
        and one.bm25.vocab == two.bm25.vocab
    )
    assert _rows(one) == _rows(two)
    np.testing.assert_allclose(one.vectors.vectors(), two.vectors.vectors(), atol=1e-6)
