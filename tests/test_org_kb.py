"""Knowledge bases in one home: the registry and `rag kb`, an old single index adopted
as `default`, and several knowledge bases searched at once with citations naming theirs."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from org_home import HANGZHOU, HR_DOCS, LAOSHAN, PLAN_DOCS, REPO, make_home

from rag.config import Settings
from rag.errors import ConfigError, IndexStoreError, NotFoundError
from rag.org.kbs import KnowledgeBases
from rag.serve.cli import main


@pytest.fixture(scope="module")
def home(tmp_path_factory, embedder) -> Settings:
    return make_home(tmp_path_factory.mktemp("org-kb"), embedder)


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_home_holds_the_default_index_and_index_dir_still_overrides_it(tmp_path):
    s = Settings(home=str(tmp_path / "h"), index_dir="")
    assert s.index_path == tmp_path / "h" / "index"
    assert Settings(home=str(tmp_path / "h"), index_dir=str(tmp_path / "x")).index_path == (
        tmp_path / "x"
    )


def test_a_single_index_from_before_becomes_the_knowledge_base_default(tmp_path, corpus_settings):
    home = tmp_path / "old-home"
    shutil.copytree(corpus_settings.index_path, home / "index")  # .rag/index of an old install
    s = Settings(home=str(home), index_dir="")
    kbs = KnowledgeBases(s).list()
    assert [(kb.name, kb.folder, kb.built) for kb in kbs] == [("default", home / "index", True)]
    from rag.system import Embedders, load_kb_system

    embedders = Embedders(s, {s.embed_model: _embedder_of(corpus_settings)})
    ans = load_kb_system(s, ["default"], embedders=embedders).ask(LAOSHAN)
    assert not ans.refused and {c.kb for c in ans.citations} == {"default"}


def _embedder_of(settings):
    from rag.system import make_embedder

    return make_embedder(settings)


def test_kb_create_list_rename_delete_through_the_cli(tmp_path, capsys, monkeypatch):
    h = str(tmp_path / "home")
    code, out, _ = _run(capsys, "kb", "create", "规划局", "--home", h, "--embed-model", "m-1")
    assert code == 0 and "规划局" in out
    assert _run(capsys, "kb", "create", "hr", "--home", h)[0] == 0
    code, out, _ = _run(capsys, "kb", "list", "--home", h, "--json")
    rows = json.loads(out)
    assert [(r["name"], r["documents"], r["embed_model"]) for r in rows] == [
        ("hr", 0, Settings().embed_model),
        ("规划局", 0, "m-1"),
    ]
    code, _, err = _run(capsys, "kb", "create", "hr", "--home", h)
    assert code == 2 and "已存在" in err and "Traceback" not in err
    code, _, err = _run(capsys, "kb", "create", "a/b", "--home", h)
    assert code == 2 and "不可用" in err

    assert _run(capsys, "kb", "rename", "hr", "人事处", "--home", h)[0] == 0
    assert (tmp_path / "home" / "kb" / "人事处").is_dir()
    assert not (tmp_path / "home" / "kb" / "hr").exists()

    # no terminal to confirm on: refused, nothing lost
    monkeypatch.setattr("sys.stdin", open("/dev/null"))
    code, _, err = _run(capsys, "kb", "delete", "人事处", "--home", h)
    assert code == 2 and "--yes" in err
    assert (tmp_path / "home" / "kb" / "人事处").is_dir()
    assert _run(capsys, "kb", "delete", "人事处", "--home", h, "--yes")[0] == 0
    assert not (tmp_path / "home" / "kb" / "人事处").exists()
    code, out, _ = _run(capsys, "kb", "list", "--home", h, "--json")
    assert [r["name"] for r in json.loads(out)] == ["规划局"]
    code, _, err = _run(capsys, "kb", "delete", "人事处", "--home", h, "--yes")
    assert code == 2 and "没有名为“人事处”的知识库" in err


def test_renaming_keeps_the_grants_and_deleting_drops_them(tmp_path):
    from rag.org.accounts import Accounts

    s = Settings(home=str(tmp_path / "h"), index_dir="")
    KnowledgeBases(s).create("a")
    accounts = Accounts(s)
    accounts.add("li", "reader", ["a"])
    KnowledgeBases(s).rename("a", "b")
    assert accounts.get("li").kbs == ("b",)
    KnowledgeBases(s).delete("b")
    assert accounts.get("li").kbs == ()
    with sqlite3.connect(tmp_path / "h" / "org.db") as con:
        assert con.execute("SELECT COUNT(*) FROM grants").fetchone()[0] == 0


def test_an_empty_knowledge_base_cannot_be_asked_yet(tmp_path):
    from rag.system import load_kb_system

    s = Settings(home=str(tmp_path / "h"), index_dir="")
    KnowledgeBases(s).create("empty")
    with pytest.raises(IndexStoreError, match="还没有文档"):
        load_kb_system(s, ["empty"])
    with pytest.raises(NotFoundError):
        load_kb_system(s, ["nope"])
    with pytest.raises(ConfigError):
        KnowledgeBases(s).rename("empty", "default")


def test_ingest_into_a_knowledge_base_through_the_cli(tmp_path, capsys):
    h = str(tmp_path / "home")
    src = tmp_path / "src"
    src.mkdir()
    for f in (REPO / "corpus").glob("laoshan-urban-renewal-2023.*"):
        shutil.copy(f, src / f.name)
    code, _, err = _run(capsys, "ingest", str(src), "--kb", "plan", "--home", h, "--quiet")
    assert code == 2 and "rag kb create plan" in err  # only `default` is made on first use
    assert _run(capsys, "kb", "create", "plan", "--home", h)[0] == 0
    code, out, _ = _run(capsys, "ingest", str(src), "--kb", "plan", "--home", h, "--quiet")
    assert code == 0 and "added 1" in out and str(tmp_path / "home" / "kb" / "plan") in out
    code, out, _ = _run(capsys, "kb", "list", "--home", h, "--json")
    assert json.loads(out)[0]["documents"] == 1


# ------------------------------------------------------------------ several at once
def _system(home, names, embedder):
    from rag.system import Embedders, load_kb_system

    return load_kb_system(home, names, embedders=Embedders(home, {home.embed_model: embedder}))


def test_one_knowledge_base_answers_from_its_own_documents_only(home, embedder):
    for names, question, docs in ((["plan"], LAOSHAN, PLAN_DOCS), (["hr"], HANGZHOU, HR_DOCS)):
        ans = _system(home, names, embedder).ask(question)
        assert not ans.refused
        assert {c.kb for c in ans.citations} == set(names)
        assert {h.doc_id for h in ans.retrieved} <= set(docs)


def test_several_knowledge_bases_are_searched_at_once_and_citations_name_theirs(home, embedder):
    system = _system(home, ["plan", "hr"], embedder)
    assert system.kbs == ("plan", "hr")
    for question, kb, docs in ((LAOSHAN, "plan", PLAN_DOCS), (HANGZHOU, "hr", HR_DOCS)):
        ans = system.ask(question)
        assert not ans.refused, ans.text
        assert {c.kb for c in ans.citations} == {kb}
        assert {c.doc_id for c in ans.citations} <= {f"{kb}/{d}" for d in docs}
        # both knowledge bases were searched: the other's passages are among the hits
        assert {h.kb for h in ans.retrieved} == {"plan", "hr"}
        for h in ans.retrieved:
            assert h.doc_id.startswith(h.kb + "/") and h.chunk_id.startswith(h.kb + "/")
    laoshan = system.ask(LAOSHAN)
    assert "156" in laoshan.text


def test_the_fused_hits_are_the_rrf_of_each_knowledge_bases_own_ranking(home, embedder):
    from rag.search.retriever import rrf

    both = _system(home, ["plan", "hr"], embedder)
    alone = {n: _system(home, [n], embedder).retriever for n in ("plan", "hr")}
    res = both.retriever.search(LAOSHAN, top_k=4)
    ranks = {n: [f"{n}/{h.chunk_id}" for h in r.search(LAOSHAN, top_k=4).hits]
             for n, r in alone.items()}  # fmt: skip
    ids = [c for n in ranks for c in ranks[n]]
    fused = rrf([[ids.index(c) for c in ranks[n]] for n in ranks], [1.0, 1.0], home.rrf_k)
    assert sorted(round(h.score, 9) for h in res.hits) == sorted(
        round(v, 9) for v in sorted(fused.values(), reverse=True)[:4]
    )
    assert len(res.hits) == 4


def test_a_doc_filter_names_the_knowledge_base(home, embedder):
    from rag.types import Filters

    system = _system(home, ["plan", "hr"], embedder)
    res = system.retriever.search(LAOSHAN, filters=Filters(doc_ids=["hr/" + HR_DOCS[0]]))
    assert res.hits and {h.doc_id for h in res.hits} == {"hr/" + HR_DOCS[0]}


def test_rag_ask_with_two_kbs_prints_each_citations_knowledge_base(home, capsys):
    code, out, err = _run(capsys, "ask", LAOSHAN, "--kb", "plan", "--kb", "hr", "--home",
                          home.home, "--json")  # fmt: skip
    assert code == 0, err
    ans = json.loads(out)
    assert ans["citations"] and {c["kb"] for c in ans["citations"]} == {"plan"}
    code, out, err = _run(capsys, "ask", HANGZHOU, "--kb", "plan", "--kb", "hr", "--home",
                          home.home)  # fmt: skip
    assert code == 0 and "〔知识库 hr〕" in out and "〔知识库 plan〕" not in out
    assert "记录编号" in err


def test_a_one_knowledge_base_system_reads_and_writes_its_own_folder(home, embedder):
    system = _system(home, ["hr"], embedder)
    assert system.settings.index_path == KnowledgeBases(home).get("hr").folder
    system.reload()  # after an ingest: the same knowledge base, opened again
    assert system.index.folder.parent == KnowledgeBases(home).get("hr").folder
    assert {h.kb for h in system.retriever.search(HANGZHOU).hits} == {"hr"}


def test_an_llm_answer_over_two_knowledge_bases_cites_each_passage_with_its_own(home, embedder):
    """The LLM answerer reads passages of both knowledge bases through the fused view
    (titles, planted-text checks, citations) and its citations name theirs."""
    import re

    pytest.importorskip("llama_index.llms.openai_like")
    from fake_openai import FakeOpenAI, Reply

    from rag.ingest.chunking import split_sentences
    from rag.system import Embedders, load_kb_system

    passage = re.compile(r'<passage id="(\d+)"[^>]*>\n(.*?)\n</passage>', re.S)

    def quote_all(body: dict) -> str:  # the first sentence of every passage, cited
        out = []
        for n, text in passage.findall(body["messages"][-1]["content"]):
            s, e = max(split_sentences(text), key=lambda sp: sp[1] - sp[0])
            out.append(f"{text[s:e].rstrip('。！？')}[{n}]。")
        return "".join(out)

    with FakeOpenAI() as srv:
        srv.script(Reply(quote_all))
        s = home.replace(llm="openai", llm_model="fake", llm_base_url=srv.base_url,
                         llm_timeout_s=30.0, llm_retries=0)  # fmt: skip
        system = load_kb_system(
            s, ["plan", "hr"], embedders=Embedders(s, {s.embed_model: embedder})
        )
        ans = system.ask("城市建设有哪些经验和做法？", top_k=4)
    assert ans.generator == "openai:fake" and not ans.refused, ans.notice
    assert {c.kb for c in ans.citations} == {"plan", "hr"}
    for c in ans.citations:
        assert c.doc_id.startswith(c.kb + "/")
        docs = PLAN_DOCS if c.kb == "plan" else HR_DOCS
        assert c.doc_id.split("/", 1)[1] in docs and c.title


def test_asking_a_home_without_default_names_its_knowledge_bases(home, capsys):
    code, _, err = _run(capsys, "ask", LAOSHAN, "--home", home.home)
    assert (
        code == 2
        and err == f"rag: {home.home} 没有知识库“default”；请用 --kb NAME 选择：hr、plan\n"
    )
