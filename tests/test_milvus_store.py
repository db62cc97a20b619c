"""The Milvus store (rag/index/milvus.py) on real milvus-lite files: it finds what the
FAISS store finds, pushes filters down, follows updates and deletions, and an index
moves into it without re-embedding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import ConfigError, IndexStoreError
from rag.index.build import ingest, remove_documents
from rag.index.copy import copy_index
from rag.index.hybrid import HybridIndex
from rag.index.milvus import milvus_filter
from rag.index.store import Scope
from rag.search.retriever import HybridRetriever
from rag.types import Filters

pytest.importorskip("milvus_lite")

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "崂山区城市更新部署了多少个项目？",
    "威海建成地下综合管廊多少公里？",
    "中原区干部在哪所大学参加研修班？",
    "西溪湿地的管理经验",
    "全市计划改造老旧小区多少个？",
    "老旧小区改造资金以哪一级财政为主？",
]


def _notice(number: str, body: str) -> str:
    return "\n".join(
        [
            number,
            "青岛市人民政府关于进一步推进城市更新工作的通知",
            "各区、市人民政府，市政府各部门，市直各单位：",
            body,
            "特此通知。",
            "青岛市人民政府",
            "2023年3月5日" if "2023" in number else "2024年2月1日",
        ]
    )


def _docs(root: Path) -> Path:
    """The repository's corpus (dated news, traditional and simplified) and three notices
    with a 发文字号 and an issuer."""
    docs = root / "docs"
    shutil.copytree(REPO / "corpus", docs)
    (docs / "a.txt").write_text(
        _notice("青政发〔2023〕5号", "2023年全市计划改造老旧小区350个，惠及居民4.2万户。"),
        encoding="utf-8",
    )
    (docs / "b.txt").write_text(
        _notice("青政发〔2024〕2号", "2024年全市计划改造老旧小区420个，惠及居民5.1万户。"),
        encoding="utf-8",
    )
    (docs / "c.txt").write_text(
        "关于老旧小区改造资金的说明\n老旧小区改造资金以区级财政为主。\n青岛市财政局\n2024年1月8日",
        encoding="utf-8",
    )
    return docs


def _quiet(m: str) -> None:
    pass


@pytest.fixture(scope="module")
def stores(tmp_path_factory, embedder):
    """The same documents in a FAISS index, ingested into milvus-lite, and copied there."""
    root = tmp_path_factory.mktemp("milvus")
    docs = _docs(root)
    faiss = Settings(index_dir=str(root / "faiss"))
    milvus = Settings(index_dir=str(root / "ingested"), store=str(root / "kb.db"))
    for s in (faiss, milvus):
        report = ingest([docs], s, embedder=embedder, progress=False, log=_quiet)
        assert report.count("added") == 8, report.results
    copy_index(root / "faiss", str(root / "kb.db"), out=root / "copied", log=_quiet)
    return {
        "root": root,
        "docs": docs,
        "db": str(root / "kb.db"),
        **{
            name: HybridRetriever(HybridIndex.open(root / name), embedder, Settings())
            for name in ("faiss", "ingested", "copied")
        },
    }


def _top(retriever, question: str, filters: Filters | None = None, k: int = 5):
    return [h.chunk_id for h in retriever.search(question, top_k=k, filters=filters).hits]


def test_both_milvus_indexes_keep_their_vectors_in_the_collection(stores):
    for name in ("ingested", "copied"):
        idx = stores[name].index
        assert idx.store.kind == "milvus"
        assert idx.manifest["store"]["uri"] == str(Path(stores["db"]).resolve())
        assert not (idx.folder / "vectors.faiss").exists()
        assert idx.vectors.count() == len(idx) == len(stores["faiss"].index)
    assert stores["ingested"].index.vectors.collection == "rag_ingested"
    assert stores["copied"].index.vectors.collection == "rag_copied"


@pytest.mark.parametrize("name", ["ingested", "copied"])
def test_milvus_finds_the_same_chunks_as_faiss(stores, name):
    faiss, milvus = stores["faiss"], stores[name]
    for q in QUESTIONS:
        assert _top(milvus, q) == _top(faiss, q), q
        a, b = faiss.search(q, top_k=5).hits, milvus.search(q, top_k=5).hits
        assert [(h.dense_rank, h.bm25_rank) for h in a] == [(h.dense_rank, h.bm25_rank) for h in b]
        for x, y in zip(a, b):
            assert y.score == pytest.approx(x.score, abs=1e-4)
            assert y.bm25_score == pytest.approx(x.bm25_score, rel=1e-4, abs=1e-5)


def test_the_copy_has_the_faiss_vectors_themselves(stores):
    import numpy as np

    faiss, copied = stores["faiss"].index, stores["copied"].index
    rows = np.arange(0, len(faiss), 3)
    assert np.array_equal(copied.vectors.vectors(rows), faiss.vectors.vectors(rows))


FILTERS = [
    Filters(doc_ids=("a", "c")),
    Filters(exclude_doc_ids=("a", "b")),
    Filters(date_from="2023-03"),
    Filters(date_to="2023"),
    Filters(date_from="2023-02-07", date_to="2023-02-07"),
    Filters(where={"doc_number": "青政发[2023]5号"}),
    Filters(where={"issuer": "青岛市财政局"}),
    Filters(where={"issuer": "青岛市人民政府", "doc_number": "青政发〔2024〕2号"}),
    Filters(where={"source_name": "青岛财经日报"}),  # no column: through the catalogue
]


@pytest.mark.parametrize("f", FILTERS, ids=[str(i) for i in range(len(FILTERS))])
def test_filters_give_the_documents_faiss_gives(stores, f):
    faiss, milvus = stores["faiss"], stores["ingested"]
    found = set()
    for q in QUESTIONS:
        want = faiss.search(q, top_k=10, filters=f).hits
        got = milvus.search(q, top_k=10, filters=f).hits
        assert [h.chunk_id for h in got] == [h.chunk_id for h in want], (q, f)
        found |= {h.doc_id for h in got}
    assert found  # every filter here keeps some document


def test_the_filters_are_in_the_milvus_expression():
    f = Filters(
        doc_ids=("a", 'x"y'),
        exclude_doc_ids=("b",),
        date_from="2023-03",
        date_to="2024",
        where={"doc_number": "青政发[2023]5号", "issuer": "青岛市 财政局"},
    )
    assert milvus_filter(Scope(f, ["a"])) == (
        'doc_id in ["a", "x\\"y"] and doc_id not in ["b"] and date != "" and '
        'date >= "2023-03" and date <= "2024~" and doc_number == "青政发(2023)5号" and '
        'issuer == "青岛市财政局"'
    )
    # a field without a column is tested on the catalogue: its allowed documents go down
    assert milvus_filter(Scope(Filters(where={"author": "李倚慰"}), ["laoshan"])) == (
        'doc_id in ["laoshan"]'
    )
    assert milvus_filter(Scope()) == ""


def test_an_answer_within_a_number_quotes_only_that_notice(stores, embedder):
    from rag.system import load_system

    system = load_system(Settings(index_dir=str(stores["root"] / "ingested")), embedder=embedder)
    ans = system.ask(
        "全市计划改造老旧小区多少个？", filters=Filters(where={"doc_number": "青政发〔2024〕2号"})
    )
    assert not ans.refused and "420个" in ans.sentences[0].text, ans.text
    assert {c.doc_id for c in ans.citations} == {"b"}


def test_updates_and_removals_leave_no_stale_rows(tmp_path, embedder):
    docs = _docs(tmp_path)
    s = Settings(index_dir=str(tmp_path / "kb"), store=str(tmp_path / "up.db"))
    ingest([docs], s, embedder=embedder, progress=False, log=_quiet)
    (docs / "b.txt").write_text(
        _notice("青政发〔2024〕2号", "2024年全市计划改造老旧小区480个，惠及居民6万户。"),
        encoding="utf-8",
    )
    report = ingest([docs], s, embedder=embedder, progress=False, log=_quiet)
    assert report.count("updated") == 1 and report.count("unchanged") == 7
    idx = HybridIndex.open(s.index_path, s)
    assert idx.vectors.count() == len(idx)  # the old chunks of b are gone
    r = HybridRetriever(idx, embedder, Settings())
    top = r.search("全市计划改造老旧小区多少个？", top_k=3).hits
    assert any("480个" in h.text for h in top) and not any("420个" in h.text for h in top)

    remove_documents(["b", "c"], s, log=_quiet)
    idx = HybridIndex.open(s.index_path, s)
    assert idx.vectors.doc_ids() == set(idx.docs) and not {"b", "c"} & set(idx.docs)
    assert idx.vectors.count() == len(idx)
    r = HybridRetriever(idx, embedder, Settings())
    assert {h.doc_id for h in r.search("老旧小区改造", top_k=10).hits} <= set(idx.docs) - {"b", "c"}

    (docs / "a.txt").unlink()  # pruned like a removal
    report = ingest([docs], s, embedder=embedder, progress=False, log=_quiet, prune=True)
    assert (report.count("removed"), report.count("added")) == (1, 2)  # a; b and c again
    idx = HybridIndex.open(s.index_path, s)
    assert idx.vectors.count() == len(idx) and "a" not in idx.vectors.doc_ids()


def test_bm25_scores_stay_those_of_the_whole_corpus_after_incremental_ingests(tmp_path, embedder):
    # Rows written by an earlier ingest carry that corpus's mean passage length; once
    # long documents join, a stale norm would score old and new rows on different scales.
    docs = _docs(tmp_path)
    first = tmp_path / "first"
    first.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):  # short notices only
        (docs / name).rename(first / name)
    s = Settings(index_dir=str(tmp_path / "kb"), store=str(tmp_path / "drift.db"))
    ingest([first], s, embedder=embedder, progress=False, log=_quiet)
    before = HybridIndex.open(s.index_path, s).bm25.avgdl
    ingest([first, docs], s, embedder=embedder, progress=False, log=_quiet)  # + the articles
    idx = HybridIndex.open(s.index_path, s)
    assert idx.bm25.avgdl > 2 * before  # the mean moved far past SPARSE_DRIFT
    assert idx.manifest["store"]["avgdl"] == pytest.approx(idx.bm25.avgdl)
    for q in ("全市计划改造老旧小区多少个？", "老旧小区改造资金", "崂山区城市更新项目投资"):
        tokens = idx.tokenize(q)
        milvus = idx.vectors.sparse(tokens, 10)
        local = idx.bm25.search(tokens, 10)
        got = dict(zip(milvus.rows.tolist(), milvus.scores.tolist()))
        want = dict(zip(local.rows.tolist(), local.scores.tolist()))
        assert got.keys() == want.keys(), q
        assert all(got[r] == pytest.approx(want[r], rel=1e-4) for r in want), q


def test_a_crash_before_the_swap_leaves_the_old_version_answering(tmp_path, embedder):
    docs = _docs(tmp_path)
    s = Settings(index_dir=str(tmp_path / "kb"), store=str(tmp_path / "crash.db"))
    ingest([docs], s, embedder=embedder, progress=False, log=_quiet)
    (docs / "b.txt").write_text(
        _notice("青政发〔2024〕2号", "2024年全市计划改造老旧小区480个，惠及居民6万户。"),
        encoding="utf-8",
    )

    def killed(stage: str) -> None:
        if stage == "manifest":  # Milvus has the new rows, CURRENT still the old version
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        ingest([docs], s, embedder=embedder, progress=False, log=_quiet, crash_hook=killed)
    idx = HybridIndex.open(s.index_path, s)
    assert idx.vectors.count() > len(idx)  # b's new rows are there, unknown to this version
    top = HybridRetriever(idx, embedder, Settings()).search("全市计划改造老旧小区多少个？", 10).hits
    assert any("420个" in h.text for h in top) and not any("480个" in h.text for h in top)
    assert {h.chunk_id for h in top} <= set(idx.ids)

    report = ingest([docs], s, embedder=embedder, progress=False, log=_quiet)
    assert report.count("updated") == 1
    idx = HybridIndex.open(s.index_path, s)
    assert idx.vectors.count() == len(idx)


def test_a_new_index_does_not_take_over_another_ones_collection(tmp_path, embedder):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "n.txt").write_text("一段新的文字。", encoding="utf-8")
    db = str(tmp_path / "shared.db")
    first = Settings(index_dir=str(tmp_path / "one" / "index"), store=db)
    ingest([tmp_path / "x"], first, embedder=embedder, progress=False, log=_quiet)
    # another fresh folder named "index": the same knowledge base name, rag_index
    second = Settings(index_dir=str(tmp_path / "two" / "index"), store=db)
    with pytest.raises(IndexStoreError, match="rag_index"):
        ingest([tmp_path / "x"], second, embedder=embedder, progress=False, log=_quiet)
    idx = HybridIndex.open(first.index_path, first)
    assert idx.vectors.count() == len(idx) == 1


def test_the_cli_copies_and_asks(stores, capsys):
    from rag.serve.cli import main

    root = stores["root"]
    out, db = root / "cli-copy", str(root / "cli.db")
    assert (
        main(["index", "copy", "--from", str(root / "faiss"), "--to", db, "--index", str(out)]) == 0
    )
    assert "未重新计算向量" in capsys.readouterr().out
    assert main(["info", "--index", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["store"]["kind"] == "milvus" and info["store"]["collection"].startswith(
        "rag_cli_copy_"
    )
    q = "威海建成地下综合管廊多少公里？"
    assert main(["ask", q, "--index", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert "40.6" in d["answer"] and d["citations"]
    # the same again, naming the store, and within a document and dates
    assert main(["ask", q, "--index", str(out), "--store", db, "--json", "--doc", "a"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {c["doc_id"] for c in d["citations"]} <= {"a"}
    # user mistakes: one line, exit status 2
    assert main(["ask", q, "--index", str(root / "faiss"), "--store", db]) == 2
    assert "rag index copy" in capsys.readouterr().err
    assert main(["index", "copy", "--from", str(root / "faiss"), "--to", "faiss"]) == 2
    assert main(["index", "copy", "--from", str(out), "--to", db]) == 2
    err = capsys.readouterr().err
    assert "Milvus" in err and "Traceback" not in err
    assert main(["ask", q, "--index", str(out), "--store", "ftp://x"]) == 2
    assert "store" in capsys.readouterr().err


def test_a_milvus_lite_file_another_process_holds_is_refused_clearly(tmp_path):
    import subprocess
    import sys

    from rag.index.milvus import client

    db = tmp_path / "held.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pymilvus import MilvusClient; "
         f"MilvusClient({str(db)!r}); print('open', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(IndexStoreError, match="只能由一个进程打开"):
            client(str(db))
    finally:
        holder.kill()
        holder.wait()


def test_every_knowledge_base_name_makes_a_valid_collection_name():
    import re

    from rag.index.milvus import collection_name

    assert collection_name("idx_cmrc") == "rag_idx_cmrc"
    names = {collection_name(kb) for kb in ("cli-copy", "cli_copy", "青岛", "青岛市", "a b")}
    assert len(names) == 5 and all(re.fullmatch(r"rag_[A-Za-z0-9_]+", n) for n in names)
    assert collection_name("cli-copy").startswith("rag_cli_copy_")


def test_the_store_setting_is_checked():
    assert Settings(store="x.db").store == "x.db"
    assert Settings(store="http://milvus:19530").store.startswith("http")
    with pytest.raises(ConfigError, match="store"):
        Settings(store="milvus.sqlite")


def test_the_store_benchmark_asks_both_stores_the_same_and_they_agree(tmp_path):
    from rag.eval.bench.stores import measure_size

    r = measure_size(400, 6, tmp_path, ann_min=200_000)
    assert r["n_chunks"] == 400 and r["n_docs"] == 20
    for call in ("dense", "bm25", "dense_filtered"):
        assert r[call]["faiss"]["n"] == r[call]["milvus"]["n"] == 6
        assert r[call]["same_top10"] == 1.0, call
