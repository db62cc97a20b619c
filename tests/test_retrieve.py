"""Score fusion (the default) and rank fusion over real indexes: the number and coverage
evidence, the setting's validation, and recall on the hand-written questions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO

from rag.config import Settings
from rag.errors import ConfigError
from rag.index.build import ingest
from rag.system import load_system

SKATING = [
    {
        "id": "m500",
        "title": "",
        "text": "北京冬奥会速度滑冰男子500米比赛，高亭宇获得金牌，打破奥运纪录。",
    },
    {
        "id": "m1500",
        "title": "",
        "text": "北京冬奥会速度滑冰男子1500米比赛，荷兰选手内斯获得金牌，打破奥运纪录。",
    },
    {"id": "weather", "title": "", "text": "今天北京天气晴朗，最高气温五度，适合户外活动。"},
]


def _system_over(docs: list[dict], root, embedder):
    """A real index of `docs` (one JSONL file) under `root`, opened as the app opens it."""
    corpus = root / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in docs), "utf-8")
    s = Settings(index_dir=str(root / "index"))
    ingest([corpus], s, embedder=embedder, progress=False, log=lambda m: None)
    return load_system(s, embedder=embedder)


@pytest.fixture(scope="module")
def skating(tmp_path_factory, embedder):
    return _system_over(SKATING, tmp_path_factory.mktemp("skating"), embedder)


def test_numbers_in_the_query_must_match_whole_numbers_in_the_chunk(skating):
    r = skating.retriever
    rows = np.arange(len(r.index))
    toks = r.index.tokenize("男子500米速度滑冰金牌是谁", normalized=True)
    _, num = r._term_evidence(toks, rows)
    by_doc = {r.index.doc_ids[i]: num[i] for i in rows}
    assert by_doc == {"m500": 1.0, "m1500": 0.0, "weather": 0.0}  # 500 is not inside 1500
    hits = r.search("男子500米速度滑冰金牌是谁", top_k=2).hits
    assert hits[0].doc_id == "m500"
    assert hits[0].score > hits[1].score


def test_coverage_is_the_idf_weighted_share_of_query_words(skating):
    r = skating.retriever
    rows = np.arange(len(r.index))
    cov, num = r._term_evidence(r.index.tokenize("北京天气", normalized=True), rows)
    by_doc = {r.index.doc_ids[i]: cov[i] for i in rows}
    assert by_doc["weather"] == pytest.approx(1.0)  # both words present
    assert 0.0 < by_doc["m500"] < 1.0  # 北京 only
    assert not num.any()  # no numbers asked: no number evidence


def test_fusion_setting_is_checked():
    with pytest.raises(ConfigError, match="fusion"):
        Settings(fusion="max")
    with pytest.raises(ConfigError, match="evidence_depth"):
        Settings().replace(evidence_depth=-1)


@pytest.mark.parametrize("fusion", ["score", "rrf"])
def test_every_answerable_corpus_question_finds_a_gold_document_in_the_top_5(corpus_system, fusion):
    retriever = corpus_system.retriever
    old = retriever.settings
    retriever.settings = old.replace(fusion=fusion)
    try:
        rows = [
            json.loads(x) for x in open(REPO / "eval/datasets/corpus_qa.jsonl", encoding="utf-8")
        ]
        missed = []
        for row in (r for r in rows if r["answerable"]):
            hits = retriever.search(row["question"], top_k=5).hits
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            if not set(row["gold_doc_ids"]) & {h.doc_id for h in hits}:
                missed.append(row["id"])
        assert missed == []
    finally:
        retriever.settings = old


# ------------------------------------------------------------------ answer-aware rerank
CEREMONY = [
    {"id": "headline", "title": "", "text": "2022年北京冬奥会开幕式现场观众人数公布。"},
    {
        "id": "answer",
        "title": "",
        "text": "北京冬奥会开幕式2月4日晚在国家体育场举行，现场约有1.5万名观众。",
    },
    {"id": "weather", "title": "", "text": "今天北京天气晴朗，最高气温五度，适合户外活动。"},
]


@pytest.fixture(scope="module")
def ceremony(tmp_path_factory, embedder):
    return _system_over(CEREMONY, tmp_path_factory.mktemp("ceremony"), embedder)


def test_a_passage_that_answers_outranks_a_headline_that_only_repeats_the_question(ceremony):
    r = ceremony.retriever
    q = "北京冬奥会开幕式现场有多少观众"
    plain = r.settings.replace(evidence_weight=0.0, evidence_fit_weight=0.0)
    default = r.settings
    try:
        r.settings = plain
        before = {h.doc_id: h.score for h in r.search(q, top_k=3).hits}
        r.settings = default
        hits = r.search(q, top_k=3).hits
    finally:
        r.settings = default
    # by similarity alone the headline wins: it holds every word of the question
    assert max(before, key=before.get) == "headline"
    assert hits[0].doc_id == "answer"
    # the rerank adds exactly the weighted evidence of each passage's best sentences
    for h in hits:
        best, fit = r.reader.evidence(q, h.text, None)
        want = before[h.doc_id] + default.evidence_weight * best + default.evidence_fit_weight * fit
        assert h.score == pytest.approx(want)
    ans = {h.doc_id: r.reader.evidence(q, h.text, None) for h in hits}
    assert ans["answer"][1] > 0.0  # 1.5万名观众: a count of people, as asked
    assert ans["headline"][1] == 0.0  # no number at all: nothing fits


def test_the_reader_scores_verbatim_sentences_once_per_question(ceremony):
    reader = ceremony.retriever.reader
    text = CEREMONY[1]["text"]
    q = "开幕式在哪里举行，有多少观众？"
    first = reader.sentences(q, text)
    assert first and all(text[s.start : s.end] == s.text for s in first)
    assert reader.sentences(q, text) is first  # the answerer reuses the rerank's reading
    assert not reader.fits(q, "开幕式在国家体育场举行。", 0.0, None)  # a number question
    assert reader.fits("2022年开幕式有多少观众", "2022年开幕式有1.5万名观众。", 2.0, None)
    assert not reader.fits("2022年开幕式有多少观众", "2021年的开幕式有1万名观众。", 2.0, None)


def test_the_reader_gives_each_thread_its_own_question(ceremony):
    from concurrent.futures import ThreadPoolExecutor

    reader = ceremony.retriever.reader
    questions = ["开幕式有多少观众", "开幕式在哪里举行", "开幕式是哪一天", "北京天气怎么样"]
    texts = [d["text"] for d in CEREMONY]
    serial = {(q, t): reader.sentences(q, t) for q in questions for t in texts}
    reader._cache.clear()
    pairs = [(q, t) for _ in range(25) for q in questions for t in texts]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda p: reader.sentences(*p), pairs))
    assert all(g == serial[p] for g, p in zip(got, pairs, strict=True))
