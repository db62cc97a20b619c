"""The answerability cross-encoder: what it reads, that its ONNX export computes what the
trained torch model does, that it tells an answer from a near miss, and that the
refusal model uses it (or, switched off, the lexical fit)."""

from __future__ import annotations

import numpy as np
import pytest

from rag.config import Settings
from rag.read.answerability import WINDOW_CHARS, shared, trained, window
from rag.read.extractive import ANSWERS, ExtractiveAnswerer, refusal_model

needs_model = pytest.mark.skipif(
    trained() is None, reason="this checkout ships no answerability model"
)


def test_the_window_is_the_quoted_sentence_with_its_surroundings():
    doc = "甲" * 500 + "黄某于2015年3月2日死亡。" + "乙" * 500
    start = doc.index("黄某")
    end = start + len("黄某于2015年3月2日死亡。")
    w = window(doc, start, end, "判决书")
    assert w.startswith("《判决书》")
    assert "黄某于2015年3月2日死亡。" in w
    assert len(w) == len("《判决书》") + WINDOW_CHARS
    # more of what follows than of what comes before: answers tend to follow the names
    body = w.removeprefix("《判决书》")
    assert body.index("黄某") < body.count("乙")
    # at the document's edges the window shifts instead of shrinking
    assert window(doc, 0, 3) == doc[:WINDOW_CHARS]
    assert window(doc, len(doc) - 3, len(doc)) == doc[-WINDOW_CHARS:]
    assert window("短文。", 0, 3) == "短文。"


@pytest.fixture(scope="module")
def scorer():
    model = shared(Settings().cache_path)
    assert model is not None
    return model


@needs_model
def test_the_onnx_export_scores_as_the_trained_torch_model_does(scorer):
    import torch
    from transformers import AutoTokenizer

    from rag.eval.tuning.train_answerability import pair_classifier
    from rag.read.answerability import DELTA, MAX_TOKENS

    pairs = [
        ("黄某的死亡原因是什么？", "经审理查明：黄某于2015年3月2日因交通事故死亡，原告系其子女。"),
        ("崂山区2023年计划投资多少？", "崂山区2023年计划完成投资156亿元，比上年增长12%。" * 8),
        ("被告何时归还借款？", "原告与被告系朋友关系，2016年被告向原告借款5万元。"),
    ]
    got = scorer.scores(pairs)
    base = scorer.base_folder
    tok = AutoTokenizer.from_pretrained(base)
    model = pair_classifier(base).eval()
    with np.load(DELTA) as z:
        state = {k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files}
    model.load_state_dict(state, strict=False)
    enc = tok(
        [q for q, _ in pairs],
        [w for _, w in pairs],
        truncation="only_second",
        max_length=MAX_TOKENS,
        padding=True,
        return_tensors="pt",
    )
    # the same token ids as the fast tokenizer of transformers used in training
    ids = [e.ids for e in scorer._tok.encode_batch(pairs)]
    assert ids == [row[: len(i)] for row, i in zip(enc["input_ids"].tolist(), ids)]
    with torch.no_grad():
        want = torch.softmax(model(**enc), -1)[:, 1].tolist()
    # int8 weights: close, not equal
    assert np.max(np.abs(np.array(got) - np.array(want))) < 0.06, (got, want)


@needs_model
def test_it_tells_the_asked_fact_from_a_passage_that_only_names_its_subjects(scorer):
    cases = [
        (
            "黄某的死亡原因是什么？",
            "经审理查明：黄某于2015年3月2日因交通事故抢救无效死亡，原告系其子女。",
            "经审理查明：黄某于2015年3月2日死亡，原告系其子女，被告系其配偶。",
        ),
        (
            "被告向原告借款多少元？",
            "2016年5月，被告向原告借款50000元，约定年底归还，至今未还。",
            "原告与被告系多年朋友，2016年5月双方因借款发生纠纷，至今未能解决。",
        ),
        (
            "原告的车辆在哪里被撞？",
            "2017年4月3日，被告驾驶货车在107国道与原告的车辆相撞，造成车辆损坏。",
            "2017年4月3日，被告驾驶货车与原告的车辆相撞，原告车辆损坏，花费修理费3200元。",
        ),
    ]
    for q, answers, misses in cases:
        yes, no = scorer.scores([(q, answers), (q, misses)])
        assert yes > no, (q, yes, no)


@needs_model
def test_the_refusal_model_reads_it_and_can_do_without(corpus_system):
    retriever = corpus_system.retriever
    on = ExtractiveAnswerer(retriever, retriever.settings.replace(answerability_model=True))
    off = ExtractiveAnswerer(retriever, retriever.settings.replace(answerability_model=False))
    assert ANSWERS in on.model["features"]
    assert off.model == refusal_model(False) and ANSWERS not in off.model["features"]
    q = "崂山区2023年计划完成投资多少？"
    hits = retriever.search(q).hits
    _, best = on.select(q, hits)
    f_on, f_off = on.features(q, hits, best), off.features(q, hits, best)
    assert 0.0 <= f_on[ANSWERS] <= 1.0 and ANSWERS not in f_off
    assert {k: v for k, v in f_on.items() if k != ANSWERS} == f_off
    for a in (on, off):
        ans = a.answer(q)
        assert not ans.refused and "156亿元" in ans.text
