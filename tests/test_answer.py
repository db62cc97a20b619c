"""The offline default over the real corpus: hybrid retrieval (script-blind, filtered,
fused in order) and the extractive answerer (verbatim cited quotes, the asked kind of
value, refusal when the documents do not say)."""

from __future__ import annotations

import json

import pytest

from rag.read.extractive import REFUSAL
from rag.read.reader import (
    answer_type,
    question_slot,
    question_unit,
    type_match,
    year_conflict,
    year_untied,
)
from rag.search.retriever import HybridRetriever
from rag.textnorm import norm, without_glosses
from rag.types import Filters

LAOSHAN = "laoshan-urban-renewal-2023"  # the traditional-script document
FORUM = "weihai-jingzhi-forum-2023"
TRAINING = "weihai-jingzhi-training-2022"
ZHONGYUAN = "zhongyuan-zhejiang-training"  # undated


# ------------------------------------------------------------------ retrieval
@pytest.mark.parametrize("query", ["崂山区城市更新动员大会", "嶗山區城市更新動員大會"])
def test_either_script_finds_the_traditional_document(corpus_system, query):
    hits = corpus_system.retriever.search(query, top_k=3).hits
    assert hits[0].doc_id == LAOSHAN
    assert hits[0].dense_rank is not None and hits[0].bm25_rank is not None


def test_filters_by_document_date_and_exclusion(corpus_system):
    r = corpus_system.retriever
    q = "精致城市建设专题培训班"
    only = r.search(q, top_k=10, filters=Filters(doc_ids=[FORUM])).hits
    assert only and {h.doc_id for h in only} == {FORUM}
    dated = r.search(q, top_k=10, filters=Filters(date_from="2023-01-01", date_to="2023")).hits
    assert dated and {h.doc_id for h in dated} <= {FORUM, LAOSHAN}
    # an undated document never satisfies a date filter
    assert ZHONGYUAN not in {
        h.doc_id for h in r.search("中原区研修班", filters=Filters(date_to="2030")).hits
    }
    hidden = r.search(q, top_k=10, filters=Filters(exclude_doc_ids=[TRAINING])).hits
    assert hidden and TRAINING not in {h.doc_id for h in hidden}
    assert r.search(q, filters=Filters(doc_ids=["no-such-document"])).hits == []


@pytest.mark.parametrize("fusion", ["score", "rrf"])
def test_hits_come_in_fused_order_with_each_methods_ranks(corpus_settings, corpus_system, fusion):
    s = corpus_settings.replace(fusion=fusion)
    r = HybridRetriever(corpus_system.index, corpus_system.retriever.embedder, s)
    hits = r.search("威海累计建成了多少公里地下综合管廊", top_k=8).hits
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert len({h.chunk_id for h in hits}) == len(hits)  # deduplicated
    assert all(h.dense_rank or h.bm25_rank for h in hits)
    if fusion == "rrf":  # the fused score is exactly the weighted reciprocal-rank sum
        for h in hits:
            want = sum(
                w / (s.rrf_k + rank)
                for rank, w in ((h.dense_rank, s.dense_weight), (h.bm25_rank, s.bm25_weight))
                if rank is not None
            )
            doc_part = h.score - want
            assert 0.0 <= doc_part <= s.doc_bm25_weight / (s.rrf_k + 1) + 1e-12


# ------------------------------------------------------------------ question analysis
def test_number_questions_know_the_kind_of_value_they_ask_for():
    def fills(question: str, sentence: str) -> bool:
        return type_match("number", norm(sentence), question_slot(question)) >= 1.0

    assert fills("办会预算是多少?", "论坛预算为300万元")
    assert not fills("办会预算是多少?", "本次论坛有4个特点")
    assert fills("结业考试通过率是多少?", "通过率达到98.5%")
    assert not fills("结业考试通过率是多少?", "共有30多位学员参加")
    assert fills("学员大概有多少人?", "参加本次研修班的30多位成员")
    assert fills("崂山区常住人口有多少?", "常住人口约54万人")
    assert not fills("崂山区常住人口有多少?", "重点推进了194个项目")
    assert fills("完成投资多少钱?", "年度計劃完成投資156億元")  # traditional, normalised
    assert fills("推倒重来了多少内容?", "对三分之一的内容推倒重来")
    assert question_unit("一共办几天?") == "天"
    assert question_unit("这几年有多少城建口的党员干部出去学习过?") is None  # 这几年: an idiom
    assert answer_type("是哪两个部门一起牵头主办的?") == "list"  # names, not a count


def test_a_question_about_one_year_is_not_answered_about_another():
    q = "2022年那一期培训班有多少名学员?"
    assert year_conflict(q, "从2019年开始,威海150多名干部先后走出去")
    assert not year_conflict(q, "2022年8月,嘉兴这一期共有48名学员")
    assert not year_conflict(q, "共有48名学员参加")  # names no year: no conflict
    # 今年 / 去年 are read from the document's date
    assert year_conflict("2022年实际完成投资多少?", "今年计划完成投资156亿元", "2023-02-07")
    assert not year_conflict("2022年完成投资多少?", "去年完成投资150亿元", "2023-02-07")
    assert year_untied("2020年去了哪个城市?", "从2019年开始走进北京、厦门", "2022-08-29")
    assert not year_untied("2022年去了哪个城市?", "培训班在嘉兴开班", "2022-08-29")


# ------------------------------------------------------------------ answers
@pytest.mark.parametrize(
    "question, value",
    [
        ("威海地下综合管廊一共建了多长?", "40.6公里"),
        ("西溪湿地保留了多少个鱼塘?", "109个"),
        ("崂山今年城市更新建设攻坚项目计划完成投资多少钱?", "156億元"),
        ("威海市城市管理案件处置率是多少?", "99.7%"),
    ],
)
def test_a_number_question_quotes_the_sentence_with_the_number(corpus_system, question, value):
    ans = corpus_system.answerer.answer(question)
    assert not ans.refused, ans.text
    assert value in ans.sentences[0].text  # the best sentence comes first


def test_every_quote_is_verbatim_and_inside_its_cited_passage(corpus_system):
    index = corpus_system.index
    questions = [
        "威海从哪年开始组织干部出去参加精致城市建设专题培训的?",
        "崂山区城市更新动员大会是谁主持的?",
        "代表团在杭州跟哪个区签了友好城区协议?",
        "中原区这次综合素质提升研修班一共办几天?",
    ]
    for q in questions:
        ans = corpus_system.answerer.answer(q)
        assert not ans.refused, q
        by_n = {c.n: c for c in ans.citations}
        assert ans.text == "".join(f"{s.text}[{s.citation}]" for s in ans.sentences)
        for s in ans.sentences:
            c = by_n[s.citation]
            assert c.start <= s.start < s.end <= c.end, (q, s, c)
            # verbatim, but for a page's pinyin glosses (區(qū))
            assert without_glosses(c.text[s.start - c.start : s.end - c.start]) == s.text
            assert without_glosses(index.document_text(c.doc_id)[s.start : s.end]) == s.text
            assert (s.start, s.end) in c.quotes
        assert sum(len(s.text) for s in ans.sentences) <= corpus_system.settings.answer_max_chars


def test_a_sentence_that_asks_is_never_quoted_as_an_answer(corpus_system):
    def asks(text: str) -> bool:
        return text.rstrip('”’"').endswith(("?", "？"))

    for q in ["为何一年一期从未间断?", "联合国人居署为什么联合主办精致城市论坛?"]:
        hits = corpus_system.retriever.search(q).hits
        assert any("?" in h.text or "？" in h.text for h in hits)  # a question is within reach
        cands, _ = corpus_system.answerer.select(q, hits)
        assert cands and not any(asks(c.text) for c in cands)
        ans = corpus_system.answerer.answer(q)
        assert not any(asks(s.text) for s in ans.sentences)


@pytest.mark.parametrize(
    "question",
    [
        "威海精致城市论坛的门票多少钱?",  # the forum is there, no price
        "中原区研修班学员的平均年龄是多少岁?",  # the class is there, no ages
    ],
)
def test_a_near_miss_is_refused_with_the_closest_passages(corpus_system, question):
    ans = corpus_system.answerer.answer(question)
    assert ans.refused and ans.text == REFUSAL
    assert ans.sentences == []
    assert 1 <= len(ans.citations) <= 3 and "可能相关" in ans.notice


def test_a_wrong_year_is_refused_saying_which_year_is_missing(corpus_system):
    # no document speaks of 2020: refused, and what is there instead is marked as such
    ans = corpus_system.answerer.answer("2020年威海的精致城市培训班去了哪个城市?")
    assert ans.refused and ans.text.startswith("文档中没有找到与“2020年”相符的答案。")
    assert "2020" not in "".join(s.text for s in ans.sentences)
    assert ans.confidence_level == "低" and "2020年" in ans.confidence_reason


@pytest.mark.parametrize(
    "question", ["北京冬奥会吉祥物叫什么?", "苹果公司的CEO是谁?", "如何申请公积金贷款?"]
)
def test_an_off_topic_question_is_refused(corpus_system, question):
    ans = corpus_system.answerer.answer(question)
    assert ans.refused and ans.text == REFUSAL


# ------------------------------------------------------------------ calibration data
def test_near_miss_builder_cuts_every_sentence_with_the_answer():
    from rag.eval.tuning.make_nearmiss import cut_answer

    text = "广茂铁路是广东的铁路。全长364.6公里。共有47个车站。它连接广州和茂名。"
    cut = cut_answer(text, ["364.6公里"])
    assert cut == "广茂铁路是广东的铁路。共有47个车站。它连接广州和茂名。"
    assert cut_answer(text, ["不在文中"]) is None  # nothing to cut: not a near miss
    assert cut_answer("全长364.6公里。共有47个车站。", ["364.6公里"]) is None  # too little left


def test_distractors_are_answerless_copies_and_widen_only_to_copies_with_the_answer():
    from rag.eval.tuning.make_nearmiss import distractors

    text = "广茂铁路是广东的铁路。全长364.6公里。共有47个车站。它连接广州和茂名。"
    docs = [{"id": "P", "title": "广茂铁路", "text": text}]
    qs = [
        {
            "id": "q1",
            "question": "广茂铁路全长多少公里？",
            "answers": ["364.6公里"],
            "gold_doc_ids": ["P"],
        },
        {
            "id": "q2",
            "question": "广茂铁路有几个车站？",
            "answers": ["47个"],
            "gold_doc_ids": ["P"],
        },
    ]
    made, out = distractors(docs, qs)
    assert [m["id"] for m in made] == ["P-CUT-q1", "P-CUT-q2"]
    assert "364.6" not in made[0]["text"] and "47个" not in made[1]["text"]
    assert made[0]["title"] == "广茂铁路"
    # q1's answer survives in the copy cut for q2, so that copy is a right answer for q1
    assert out[0]["gold_doc_ids"] == ["P", "P-CUT-q2"]
    assert out[1]["gold_doc_ids"] == ["P", "P-CUT-q1"]


def test_the_near_miss_builder_runs_as_a_harness_subcommand(tmp_path, capsys):
    from rag.serve.cli import main

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    text = "广茂铁路是广东的铁路。全长364.6公里。共有47个车站。它连接广州和茂名。"
    (src / "corpus.jsonl").write_text(
        json.dumps({"id": "P", "title": "广茂铁路", "text": text}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    q = {"id": "q1", "question": "广茂铁路全长多少公里？", "answers": ["364.6公里"],
         "gold_doc_ids": ["P"]}  # fmt: skip
    (src / "questions.jsonl").write_text(json.dumps(q, ensure_ascii=False) + "\n", "utf-8")
    assert main(["eval", "tune", "make_nearmiss", str(src), "--out", str(out)]) == 0
    corpus = [json.loads(x) for x in (out / "corpus.jsonl").read_text("utf-8").splitlines()]
    rows = [json.loads(x) for x in (out / "questions.jsonl").read_text("utf-8").splitlines()]
    assert "364.6" not in corpus[0]["text"] and rows[0]["answerable"] is False
    assert "1 passages, 1 cut" in capsys.readouterr().out


def test_answers_never_show_pinyin_glosses(corpus_system, corpus_settings):
    """The Laoshan article is in traditional script with pinyin after some characters
    (嶗山區(qū)); the answer quotes it without them, its markers still link, and an LLM
    is shown the passages without them too."""
    import re

    from rag.llm.prompts import Passage, build_messages
    from rag.serve.ui.render import marker_spans

    gloss = re.compile(r"[\u3400-\u9fff][(（][a-zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜü]{1,7}[)）]")
    ans = corpus_system.ask("崂山区2023年计划完成投资多少？")
    assert not ans.refused and "156" in ans.text
    source = corpus_system.index.document_text(ans.citations[0].doc_id)
    assert gloss.search(source)  # the document itself keeps them (the source view shows it)
    assert not gloss.search(ans.text) and not any(gloss.search(s.text) for s in ans.sentences)
    assert len(marker_spans(ans)) == len(ans.sentences)
    assert ans.short_answer and ans.short_answer in ans.text
    from rag.serve.ui.render import render_answer

    html = render_answer(ans, 0)  # the answer and its citation cards
    assert "156" in html and not gloss.search(html)
    import io

    from rag.serve.cli import print_answer

    printed = io.StringIO()
    print_answer(ans, as_json=False, out=printed)  # what `rag ask` prints
    assert "156" in printed.getvalue() and not gloss.search(printed.getvalue())
    hit = ans.retrieved[0]
    [_, (_, user)] = build_messages(
        ans.question, [Passage(1, "嶗山區", "", hit.text)], corpus_settings
    )
    assert gloss.search(hit.text) and not gloss.search(user)
