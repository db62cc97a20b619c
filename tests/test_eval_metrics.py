import math
import random

import numpy as np
import pytest

from rag.eval.metrics import (
    aggregate,
    answer_chars,
    answer_tokens,
    bootstrap_ci,
    char_f1,
    citation_precision,
    citation_recall,
    containment,
    exact_match,
    hit_at_k,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    percentile,
    recall_at_k,
    refusal_rates,
    rgb_correct,
    supported_share,
)

# ---------------------------------------------------------------- retrieval


def _st_evaluator_class():
    try:
        from sentence_transformers.sentence_transformer.evaluation import (
            InformationRetrievalEvaluator,
        )
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.evaluation import InformationRetrievalEvaluator
    return InformationRetrievalEvaluator


@pytest.mark.slow
def test_retrieval_metrics_match_sentence_transformers():
    rng = random.Random(7)
    corpus_ids = [f"c{i}" for i in range(200)]
    queries, relevant, rankings = {}, {}, {}
    for q in range(30):
        qid = f"q{q}"
        queries[qid] = f"query {q}"
        gold = set(rng.sample(corpus_ids, rng.randint(1, 3)))
        relevant[qid] = gold
        # random ranking of 20 distinct ids, half of the time seeded with gold ids
        pool = rng.sample(corpus_ids, 20)
        if q % 2 == 0:
            pool[rng.randrange(20)] = next(iter(gold))
            pool = list(dict.fromkeys(pool))
        rankings[qid] = pool

    cls = _st_evaluator_class()
    ks = [1, 3, 5, 10]
    evaluator = cls(
        queries,
        {c: c for c in corpus_ids},
        relevant,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=ks,
        precision_recall_at_k=ks,
        map_at_k=[10],
        write_csv=False,
    )
    results = [
        [{"corpus_id": c, "score": float(len(ranking) - i)} for i, c in enumerate(ranking)]
        for ranking in (rankings[qid] for qid in evaluator.queries_ids)
    ]
    st = evaluator.compute_metrics(results)

    # our functions get each ranking with repeats sprinkled in: they must count once
    def ours(qid):
        r = rankings[qid]
        return [x for c in r for x in (c, c)]

    ids = list(queries)
    for k in ks:
        assert np.mean([recall_at_k(ours(q), relevant[q], k) for q in ids]) == pytest.approx(
            st["recall@k"][k], abs=1e-12
        )
        assert np.mean([hit_at_k(ours(q), relevant[q], k) for q in ids]) == pytest.approx(
            st["accuracy@k"][k], abs=1e-12
        )
    assert np.mean([mrr_at_k(ours(q), relevant[q], 10) for q in ids]) == pytest.approx(
        st["mrr@k"][10], abs=1e-12
    )
    assert np.mean([ndcg_at_k(ours(q), relevant[q], 10) for q in ids]) == pytest.approx(
        st["ndcg@k"][10], abs=1e-12
    )
    # the problem is not degenerate: some hits, some misses
    assert 0 < st["recall@k"][10] < 1


def test_retrieval_metrics_by_hand():
    ranked = ["d2", "d2", "d1", "d3", "d9"]
    assert recall_at_k(ranked, ["d1", "d3"], 1) == 0.0
    assert recall_at_k(ranked, ["d1", "d3"], 2) == 0.5  # d2 counts once, d1 is second
    assert recall_at_k(ranked, ["d1", "d3"], 3) == 1.0
    assert hit_at_k(ranked, ["d3"], 2) == 0.0
    assert hit_at_k(ranked, ["d3"], 3) == 1.0
    assert mrr_at_k(ranked, ["d1"]) == 0.5
    assert mrr_at_k(ranked, ["d1"], k=1) == 0.0
    assert ndcg_at_k(ranked, ["d1"]) == pytest.approx(1 / math.log2(3))
    # two gold: ideal is both at the top
    assert ndcg_at_k(["a", "b"], ["a", "b"]) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "a"], ["a", "b"]) == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )


def test_retrieval_metrics_reject_empty_gold_and_bad_k():
    with pytest.raises(ValueError, match="gold is empty"):
        recall_at_k(["a"], [], 5)
    with pytest.raises(ValueError, match="k must be"):
        mrr_at_k(["a"], ["a"], 0)


# ---------------------------------------------------------------- answers


def test_normalisation_folds_script_width_punctuation_and_space():
    assert normalize_answer("嶗山區") == "崂山区"
    assert normalize_answer("２０２３年") == "2023年"
    assert normalize_answer("《三体》， 刘慈欣！") == "三体刘慈欣"
    assert normalize_answer("New York!") == "newyork"
    assert normalize_answer("4.9亿") == "4.9亿"
    assert normalize_answer("1,000元") == "1000元"
    assert answer_tokens("澳洲总理 Anthony Albanese。") == [
        "澳",
        "洲",
        "总",
        "理",
        "anthony",
        "albanese",
    ]


def test_exact_match():
    assert exact_match("嶗山區", ["崂山区"]) == 1.0
    assert exact_match("２０２３", ["2023"]) == 1.0
    assert exact_match("ＡＢＣ公司", ["abc公司"]) == 1.0
    assert exact_match("“光荣和ω-force”。", ["光荣和ω-force"]) == 1.0
    assert exact_match("光荣", ["光荣和ω-force", "光荣"]) == 1.0  # max over golds
    assert exact_match("光荣", ["光荣和ω-force"]) == 0.0
    assert exact_match("4.9", ["49"]) == 0.0
    assert exact_match("", ["！"]) == 0.0  # a gold that normalises to nothing is ignored
    assert exact_match("北京", []) == 0.0


def test_char_f1_cmrc_style():
    # CMRC: 2 of 5 predicted chars, all of the gold
    assert char_f1("北京天安门", ["北京"]) == pytest.approx(2 * 0.4 * 1 / 1.4)
    # English words are single tokens: 2 of 6 tokens, not 15 of 19 characters
    assert char_f1("澳洲总理Anthony Albanese", ["Anthony Albanese"]) == pytest.approx(
        2 * (1 / 3) / (4 / 3)
    )
    assert char_f1("the Anthony Albanese government", ["anthony albanese"]) == pytest.approx(2 / 3)
    # the overlap is the longest common contiguous run, not a bag of characters
    assert char_f1("门安天京北", ["北京天安门"]) == pytest.approx(0.2)
    # normalisation before tokenising; max over golds
    assert char_f1("嶗山區。", ["青岛", "崂山区"]) == 1.0
    assert char_f1("由光荣和ω-force开发", ["光荣和ω-force"]) == pytest.approx(
        2 * (5 / 8) * 1 / (5 / 8 + 1)
    )
    assert char_f1("", ["北京"]) == 0.0
    assert char_f1("上海", ["北京"]) == 0.0


def _reference_cmrc_f1(pred: list[str], gold: list[str]) -> float:
    # The dynamic programme of CMRC 2018's find_lcs, independent of difflib.
    m = [[0] * (len(pred) + 1) for _ in range(len(gold) + 1)]
    best = 0
    for i, g in enumerate(gold):
        for j, p in enumerate(pred):
            if g == p:
                m[i + 1][j + 1] = m[i][j] + 1
                best = max(best, m[i + 1][j + 1])
    if best == 0:
        return 0.0
    precision, recall = best / len(pred), best / len(gold)
    return 2 * precision * recall / (precision + recall)


def test_char_f1_matches_cmrc_longest_common_substring():
    rng = random.Random(3)
    alphabet = list("北京上海天安门") + ["ab", "cd"]
    for _ in range(300):
        pred = [rng.choice(alphabet) for _ in range(rng.randint(1, 30))]
        gold = [rng.choice(alphabet) for _ in range(rng.randint(1, 6))]
        joined = lambda toks: " ".join(toks)  # noqa: E731 - spaces keep "ab" "cd" apart
        assert char_f1(joined(pred), [joined(gold)]) == pytest.approx(
            _reference_cmrc_f1(pred, gold)
        )


def test_containment():
    assert containment("答案是：嶗山區。", ["崂山区"]) == 1.0
    assert containment("约为２０２３年", ["2023年"]) == 1.0
    assert containment("在上海举办", ["北京", "上海"]) == 1.0
    assert containment("在上海举办", ["北京"]) == 0.0
    assert containment("任何回答", ["。"]) == 0.0


def test_rgb_correct_with_synonyms():
    items = [["B站", "哔哩哔哩"]]
    assert rgb_correct("是哔哩哔哩。", items) == 1.0
    assert rgb_correct("是b站", items) == 1.0
    assert rgb_correct("是优酷", items) == 0.0
    two = ["张丹", "张昊"]  # both items required
    assert rgb_correct("张丹和张昊", two) == 1.0
    assert rgb_correct("张丹", two) == 0.0
    name = [["安东尼·阿尔巴内斯", "Anthony Albanese"]]
    assert rgb_correct("总理是安东尼・阿尔巴内斯", name) == 1.0  # a different middle dot
    assert rgb_correct("prime minister ANTHONY ALBANESE", name) == 1.0
    assert rgb_correct("SE3", [["SE 3", "新一代iPhone SE"]]) == 1.0
    assert rgb_correct("什么都对", []) == 0.0


def test_answer_chars():
    assert answer_chars("北京 天安门\n") == 5
    assert answer_chars("") == 0


# ---------------------------------------------------------------- grounding, refusal


def test_grounding_metrics():
    assert supported_share([True, False, True, True]) == 0.75
    assert supported_share([]) is None
    # d1 cited twice counts once; d1 is gold, d3 supports, d2 neither
    assert citation_precision(["d1", "d2", "d3", "d1"], ["d1"], ["d3"]) == pytest.approx(2 / 3)
    assert citation_precision([], ["d1"], []) is None
    assert citation_recall(["d1", "d5"], ["d1", "d2"]) == 0.5
    assert citation_recall(["d1"], []) is None


def test_refusal_rates():
    rows = [
        {"answerable": False, "refused": True},
        {"answerable": False, "refused": False},
        {"answerable": False, "refused": True},
        {"answerable": True, "refused": True},
        {"answerable": True, "refused": False},
        {"answerable": True, "refused": False},
        {"answerable": True, "refused": False},
    ]
    assert refusal_rates(rows) == {"refusal_rate": 2 / 3, "false_refusal_rate": 0.25}
    assert refusal_rates(iter(rows[3:])) == {"refusal_rate": None, "false_refusal_rate": 0.25}


# ---------------------------------------------------------------- statistics


def test_percentile():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50.5
    assert percentile([100, 200, 300, 400], 95) == pytest.approx(385.0)
    assert percentile([], 50) is None


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    rng = np.random.default_rng(1)
    values = (rng.random(300) < 0.6).astype(float)
    low, high = bootstrap_ci(values, seed=5)
    assert low < values.mean() < high
    assert 0.4 < low and high < 0.8 and high - low < 0.15
    assert bootstrap_ci(values, seed=5) == (low, high)
    assert bootstrap_ci(values, seed=6) != (low, high)
    assert bootstrap_ci([0.3], seed=0) == (0.3, 0.3)
    med_low, med_high = bootstrap_ci(list(range(100)), stat=np.median, n_resamples=200)
    assert med_low < 49.5 < med_high
    with pytest.raises(ValueError):
        bootstrap_ci([])


# ---------------------------------------------------------------- aggregate


def _rows():
    return [
        {
            "question_id": "q1",
            "answerable": True,
            "refused": False,
            "retrieved_doc_ids": ["d2", "d1", "d1", "d3"],
            "gold_doc_ids": ["d1"],
            "answer": "崂山区",
            "answers": ["嶗山區"],
            "sentence_supported": [True, False],
            "cited_doc_ids": ["d1", "d5"],
            "cited_supporting": [],
            "timings_ms": {"retrieve": 20, "generate": 80, "total": 100},
        },
        {
            "question_id": "q2",
            "answerable": True,
            "refused": True,
            "retrieved_doc_ids": ["d5", "d6"],
            "gold_doc_ids": ["d4"],
            "answer": "资料中没有北京的相关信息",
            "answers": ["北京"],
            "sentence_supported": [],
            "cited_doc_ids": [],
            "cited_supporting": [],
            "timings_ms": {"retrieve": 20, "generate": 280, "total": 300},
        },
        {
            "question_id": "q3",
            "answerable": False,
            "refused": True,
            "retrieved_doc_ids": ["d7"],
            "gold_doc_ids": [],
            "answer": "资料中没有相关信息",
            "answers": [],
            "sentence_supported": [],
            "cited_doc_ids": [],
            "cited_supporting": [],
            "timings_ms": {"retrieve": 20, "generate": 180, "total": 200},
        },
        {
            "question_id": "q4",
            "answerable": False,
            "refused": False,
            "retrieved_doc_ids": ["d7"],
            "gold_doc_ids": [],
            "answer": "是2023 年",
            "answers": [],
            "sentence_supported": [True],
            "cited_doc_ids": ["d7"],
            "cited_supporting": ["d7"],
            "timings_ms": {"retrieve": 20, "generate": 380, "total": 400},
        },
    ]


def test_aggregate_by_hand():
    out = aggregate(_rows())
    expected = {
        "recall@1": 0.0,
        "recall@3": 0.5,
        "recall@5": 0.5,
        "recall@10": 0.5,
        "mrr@10": 0.25,
        "ndcg@10": (1 / math.log2(3)) / 2,
        "em": 0.5,  # q2's refusal scores 0 although its text contains 北京
        "f1": 0.5,
        "containment": 0.5,
        "answer_chars": 4.5,  # q1 and q4, refusals not counted
        "supported_share": 0.75,
        "citation_precision": 0.75,
        "citation_recall": 0.5,
        "refusal_rate": 0.5,
        "false_refusal_rate": 0.5,
        "latency_p50_ms": 250.0,
        "latency_p95_ms": 385.0,
    }
    for key, value in expected.items():
        assert out[key] == pytest.approx(value), key
    assert out["rgb_correct"] is None
    assert (out["n"], out["n_answerable"], out["n_unanswerable"]) == (4, 2, 2)
    low, high = out["ci95"]["em"]
    assert low <= 0.5 <= high
    assert out["ci95"]["rgb_correct"] is None
    assert "latency_p50_ms" not in out["ci95"]
    assert aggregate(_rows()) == out  # deterministic


def test_aggregate_rgb_items_and_retrieval_only_rows():
    rows = _rows()[:2]
    rows[0]["answer_items"] = [["崂山区", "崂山"]]
    rows[1]["answer_items"] = [["北京"]]
    assert aggregate(rows)["rgb_correct"] == 0.5  # the refusal scores 0

    retrieval_only = [{**r, "answer": None, "refused": False} for r in _rows()]
    out = aggregate(retrieval_only, ks=(1, 3))
    assert out["recall@3"] == 0.5 and "recall@5" not in out
    assert out["em"] is None and out["refusal_rate"] is None and out["citation_recall"] is None
    assert out["ci95"]["recall@3"] is not None


def test_short_answer_em_and_f1_score_the_span_not_the_sentence():
    from rag.eval.metrics import aggregate

    base = {
        "answerable": True,
        "gold_doc_ids": ["d"],
        "retrieved_doc_ids": ["d"],
        "answers": ["156亿元"],
    }
    rows = [
        {**base, "question_id": "a", "refused": False, "answer": "今年计划完成投资156亿元。[1]", "span": "156亿元"},
        {**base, "question_id": "b", "refused": False, "answer": "重点推进196个项目。[1]", "span": "196个"},
        {**base, "question_id": "c", "refused": True, "answer": "根据现有文档无法回答这个问题。", "span": None},
        {**base, "question_id": "d", "refused": False, "answer": "旧的结果行。[1]"},  # no span: left out
    ]  # fmt: skip
    m = aggregate(rows, n_resamples=10)
    assert m["short_em"] == pytest.approx(1 / 3)
    assert m["em"] == 0.0  # the whole sentence never matches exactly
    assert 0 < m["short_f1"] < 1 and m["short_f1"] > m["f1"]


def test_refusal_tradeoff_curve_refuses_more_as_the_threshold_rises():
    from rag.eval.tuning.tradeoff import curve

    rows = [
        {"answerable": False, "refused": True, "confidence": 0.9},  # refused by a rule
        {"answerable": False, "refused": False, "confidence": 0.3},
        {"answerable": True, "refused": False, "confidence": 0.8, "metrics": {"containment": 1.0}},
        {"answerable": True, "refused": False, "confidence": 0.4, "metrics": {"containment": 0.0}},
    ]
    a, b, c = curve(rows, np.array([0.2, 0.5, 0.85]))
    assert (a["refusal"], a["false_refusal"], a["containment"]) == (0.5, 0.0, 0.5)
    assert (b["refusal"], b["false_refusal"], b["containment"]) == (1.0, 0.5, 0.5)
    assert (c["refusal"], c["false_refusal"], c["containment"]) == (1.0, 1.0, 0.0)
