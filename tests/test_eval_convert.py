import argparse
import json
import os
import re
from pathlib import Path

import pytest

from rag.errors import ConfigError
from rag.eval.convert import ConvertStats, add_convert_args, convert, run_convert
from rag.eval.metrics import normalize_answer

# ../shared/data beside the checkout; RAG_SHARED_DATA for a checkout elsewhere (a worktree)
DATA = Path(
    os.environ.get("RAG_SHARED_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
CMRC = DATA / "cmrc2018" / "cmrc2018_dev.json"
CMRC_SQUAD = DATA / "cmrc2018" / "cmrc2018_dev.squad.json"
DRCD = DATA / "drcd" / "DRCD_dev.json"
RGB = DATA / "rgb_zh" / "zh_refine.json"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _check_consistent(out: Path) -> tuple[list[dict], list[dict]]:
    questions, corpus = _read(out / "questions.jsonl"), _read(out / "corpus.jsonl")
    ids = [c["id"] for c in corpus]
    assert len(ids) == len(set(ids))
    assert len({q["id"] for q in questions}) == len(questions)
    known = set(ids)
    for q in questions:
        assert set(q["gold_doc_ids"]) <= known
        assert q["answerable"] == bool(q["answers"])
        assert all(isinstance(a, str) and a for a in q["answers"])
    assert all(set(c) >= {"id", "title", "text"} and c["text"] for c in corpus)
    assert not list(out.glob("*.tmp"))
    return questions, corpus


# ---------------------------------------------------------------- real data sets


@needs_data
def test_cmrc_original(tmp_path):
    stats = convert("cmrc", CMRC, tmp_path)
    assert stats == ConvertStats(3219, 3219, 0, 848, tmp_path)
    questions, corpus = _check_consistent(tmp_path)
    assert corpus[0]["id"] == "DEV_0" and corpus[0]["title"] == "战国无双3"
    first = questions[0]
    assert first == {
        "id": "DEV_0_QUERY_0",
        "question": "《战国无双3》是由哪两个公司合作开发的？",
        "answers": ["光荣和ω-force"],
        "answerable": True,
        "gold_doc_ids": ["DEV_0"],
    }
    by_id = {q["id"]: q for q in questions}
    # spreadsheet artefacts among the human answers are dropped, real numbers kept
    assert by_id["DEV_10_QUERY_2"]["answers"] == ["2008年11月12日中超联赛与山东鲁能的比赛中"]
    assert by_id["DEV_72_QUERY_1"]["answers"] == ["147位"]
    assert by_id["DEV_158_QUERY_2"]["answers"] == ["4.9"]
    assert all(q["question"] == q["question"].strip() for q in questions)


@needs_data
def test_cmrc_squad_file_gives_the_same_data_set(tmp_path):
    convert("cmrc", CMRC, tmp_path / "orig")
    stats = convert("squad", CMRC_SQUAD, tmp_path / "squad")
    assert (stats.questions, stats.corpus_records) == (3219, 848)
    for name in ("questions.jsonl", "corpus.jsonl"):
        assert (tmp_path / "orig" / name).read_bytes() == (tmp_path / "squad" / name).read_bytes()


@needs_data
def test_drcd(tmp_path):
    stats = convert("squad", DRCD, tmp_path)
    assert (stats.questions, stats.answerable, stats.corpus_records) == (3524, 3524, 1000)
    questions, corpus = _check_consistent(tmp_path)
    text = {c["id"]: c["text"] for c in corpus}
    assert all(re.fullmatch(r"\d+-\d+", c["id"]) for c in corpus)
    assert questions[0]["id"] == "1147-5-1" and questions[0]["gold_doc_ids"] == ["1147-5"]
    assert questions[0]["answers"] == ["歐洲"]  # traditional script kept as is
    for q in questions:  # DRCD answers are spans of their paragraph
        assert all(a in text[q["gold_doc_ids"][0]] for a in q["answers"])


@needs_data
def test_rgb(tmp_path):
    stats = convert("rgb", RGB, tmp_path)
    assert (stats.questions, stats.answerable, stats.corpus_records) == (300, 300, 7337)
    questions, corpus = _check_consistent(tmp_path)
    assert all(re.fullmatch(r"rgb-[0-9a-f]{12}", c["id"]) and c["title"] == "" for c in corpus)
    by_id = {q["id"]: q for q in questions}
    assert by_id["10"]["answer_items"] == [["1313851", "131万"]]
    assert by_id["10"]["answers"] == ["1313851"]
    assert by_id["34"]["answer_items"] == [["张丹"], ["张昊"]]
    assert by_id["34"]["answers"] == ["张丹", "张昊"]
    raw = json.loads(RGB.read_text(encoding="utf-8").splitlines()[0])
    text = {c["id"]: c["text"] for c in corpus}
    assert [text[d] for d in by_id["0"]["gold_doc_ids"]] == list(dict.fromkeys(raw["positive"]))


@pytest.mark.slow
@needs_data
def test_rgb_refusal_subset_on_real_data(tmp_path):
    stats = convert("rgb", RGB, tmp_path / "a", refusal_fraction=0.2, seed=0)
    assert (stats.questions, stats.answerable, stats.unanswerable) == (300, 240, 60)
    questions, corpus = _check_consistent(tmp_path / "a")
    assert stats.corpus_records == len(corpus) < 7337
    texts = [normalize_answer(c["text"]) for c in corpus]
    corpus_ids = {c["id"] for c in corpus}
    for q in questions:
        if q["answerable"]:
            assert q["gold_doc_ids"], q["id"]  # every answerable question keeps a positive
            continue
        assert q["type"] == "refusal" and q["gold_doc_ids"] == [] and q["answers"] == []
        assert q["original_answers"] and not set(q["original_gold_doc_ids"]) & corpus_ids
        for item in q["original_answer_items"]:
            for syn in map(normalize_answer, item):
                assert not any(syn in t for t in texts), (q["id"], syn)

    # deterministic by seed; another seed picks other questions
    convert("rgb", RGB, tmp_path / "b", refusal_fraction=0.2, seed=0)
    assert (tmp_path / "a" / "questions.jsonl").read_bytes() == (
        tmp_path / "b" / "questions.jsonl"
    ).read_bytes()
    convert("rgb", RGB, tmp_path / "c", refusal_fraction=0.2, seed=1)
    refusals = lambda d: {q["id"] for q in _read(d / "questions.jsonl") if not q["answerable"]}  # noqa: E731
    assert refusals(tmp_path / "a") != refusals(tmp_path / "c")


@needs_data
def test_limit_keeps_the_whole_corpus(tmp_path):
    stats = convert("cmrc", CMRC, tmp_path, limit=10)
    assert (stats.questions, stats.corpus_records) == (10, 848)
    assert [q["id"] for q in _read(tmp_path / "questions.jsonl")][:2] == [
        "DEV_0_QUERY_0",
        "DEV_0_QUERY_1",
    ]


# ---------------------------------------------------------------- synthetic files


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _squad2(tmp_path: Path) -> Path:
    return _write_json(
        tmp_path / "squad2.json",
        {
            "version": "v2.0",
            "data": [
                {
                    "title": "青岛",
                    "paragraphs": [
                        {
                            "context": "崂山区位于青岛市东部。",
                            "qas": [
                                {
                                    "id": "a1",
                                    "question": "崂山区在青岛哪里？ ",
                                    "answers": [
                                        {"text": "东部", "answer_start": 7},
                                        {"text": "东部", "answer_start": 7},
                                        {"text": "青岛市东部", "answer_start": 5},
                                    ],
                                    "is_impossible": False,
                                },
                                {
                                    "id": "a2",
                                    "question": "崂山区有多少人口？",
                                    "answers": [],
                                    "plausible_answers": [{"text": "东部", "answer_start": 7}],
                                    "is_impossible": True,
                                },
                            ],
                        },
                        {
                            "context": "威海市位于山东半岛东端。",
                            "qas": [
                                {
                                    "id": "b1",
                                    "question": "威海在哪里？",
                                    "answers": [{"text": "山东半岛东端", "answer_start": 5}],
                                }
                            ],
                        },
                    ],
                }
            ],
        },
    )


def test_squad2_unanswerables(tmp_path):
    stats = convert("squad2", _squad2(tmp_path), tmp_path / "out")
    assert stats == ConvertStats(3, 2, 1, 2, tmp_path / "out")
    questions, corpus = _check_consistent(tmp_path / "out")
    assert corpus == [
        {"id": "0-0", "title": "青岛", "text": "崂山区位于青岛市东部。"},
        {"id": "0-1", "title": "青岛", "text": "威海市位于山东半岛东端。"},
    ]
    assert questions == [
        {
            "id": "a1",
            "question": "崂山区在青岛哪里？",
            "answers": ["东部", "青岛市东部"],
            "answerable": True,
            "gold_doc_ids": ["0-0"],
        },
        {
            "id": "a2",
            "question": "崂山区有多少人口？",
            "answers": [],
            "answerable": False,
            "gold_doc_ids": [],
            "context_doc_ids": ["0-0"],  # its paragraph: the near miss --limit keeps
        },
        {
            "id": "b1",
            "question": "威海在哪里？",
            "answers": ["山东半岛东端"],
            "answerable": True,
            "gold_doc_ids": ["0-1"],
        },
    ]


def test_squad_v1_skips_unanswerable_questions_and_says_so(tmp_path):
    stats = convert("squad", _squad2(tmp_path), tmp_path / "out")
    assert (stats.questions, stats.unanswerable) == (2, 0)
    reason = "marked is_impossible in a SQuAD v1 file (--from squad2 keeps it)"
    assert stats.skipped == ((reason, 1),)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text(encoding="utf-8"))
    assert meta["skipped"] == {reason: 1} and meta["skipped_total"] == 1
    assert meta["skipped_examples"] == [
        {"where": "article 0 paragraph 0 question 1 (a2)", "reason": reason}
    ]


def _rgb_lines(tmp_path: Path) -> Path:
    records = [
        {
            "id": 0,
            "query": "崂山区在哪个城市",
            "answer": ["青岛"],
            "positive": ["崂山区隶属青岛市。", "崂山区是青岛的一个区。"],
            "negative": ["威海市是山东省的地级市。"],
        },
        {
            "id": 1,
            "query": "威海哪年开始精致城市培训",
            "answer": [["2019年", "二〇一九年"]],
            "positive": ["威海自2019年起开展精致城市培训。"],
            # a leak: another question's negative that holds this answer, traditional script
            "negative": ["崂山区隶属青岛市。", "據報道，威海自二〇一九年起每年舉辦培訓。"],
        },
        {
            "id": 2,
            "query": "精致城市论坛合办方",
            "answer": ["联合国人居署"],
            "positive": ["论坛由威海市政府与联合国人居署共同主办。"],
            "negative": ["威海市是山东省的地级市。"],
        },
    ]
    path = tmp_path / "rgb.json"
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8"
    )
    return path


def test_rgb_synthetic_corpus_is_deduplicated(tmp_path):
    stats = convert("rgb", _rgb_lines(tmp_path), tmp_path / "out")
    assert stats == ConvertStats(3, 3, 0, 6, tmp_path / "out")
    questions, corpus = _check_consistent(tmp_path / "out")
    assert [c["text"] for c in corpus][:3] == [
        "崂山区隶属青岛市。",
        "崂山区是青岛的一个区。",
        "威海市是山东省的地级市。",
    ]
    assert questions[1]["answer_items"] == [["2019年", "二〇一九年"]]
    assert questions[1]["answers"] == ["2019年"]


def test_rgb_refusal_removes_every_passage_with_the_answer(tmp_path):
    for seed in range(6):
        out = tmp_path / f"s{seed}"
        stats = convert("rgb", _rgb_lines(tmp_path), out, refusal_fraction=0.3, seed=seed)
        assert (stats.answerable, stats.unanswerable) == (2, 1)
        questions, corpus = _check_consistent(out)
        refused = [q for q in questions if not q["answerable"]]
        texts = [c["text"] for c in corpus]
        if refused[0]["id"] == "1":
            # its positive and the traditional-script leak are gone
            assert not any("威海自" in t or "威海自" in normalize_answer(t) for t in texts)
            assert len(corpus) == 4
        assert refused[0]["original_answers"] and refused[0]["type"] == "refusal"
        assert all(q["gold_doc_ids"] for q in questions if q["answerable"])
        assert not any(
            normalize_answer(s) in normalize_answer(t)
            for item in refused[0]["original_answer_items"]
            for s in item
            for t in texts
        )


def test_rgb_refusal_spares_other_questions_only_positives(tmp_path):
    records = [
        {"id": 0, "query": "哪国", "answer": ["中国"], "positive": ["中国获胜。"], "negative": []},
        # question 1's only positive holds "中国": question 0 can never be a refusal
        {
            "id": 1,
            "query": "谁夺冠",
            "answer": ["夺冠"],
            "positive": ["中国队夺冠了。"],
            "negative": [],
        },
    ]
    path = tmp_path / "rgb.json"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    for seed in range(5):
        convert("rgb", path, tmp_path / "out", refusal_fraction=0.5, seed=seed)
        questions = _read(tmp_path / "out" / "questions.jsonl")
        assert [q["answerable"] for q in questions] == [True, False]
    # all of them at once is allowed: question 0 can follow once question 1 is taken
    stats = convert("rgb", path, tmp_path / "all", refusal_fraction=1.0)
    assert (stats.unanswerable, stats.corpus_records) == (2, 0)


def test_rgb_refusal_fraction_that_cannot_be_met(tmp_path):
    records = [
        {"id": i, "query": f"问{i}", "answer": ["中国"], "positive": [f"中国{i}"], "negative": []}
        for i in range(4)
    ]
    path = tmp_path / "rgb.json"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    with pytest.raises(ConfigError, match="smaller fraction"):
        convert("rgb", path, tmp_path / "out", refusal_fraction=0.5)


# ---------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.json: file not found \(expected CMRC"):
        convert("cmrc", tmp_path / "nope.json", tmp_path / "out")
    with pytest.raises(ConfigError, match="file not found"):
        convert("rgb", tmp_path / "nope.json", tmp_path / "out")


def test_wrong_formats_name_the_file_and_suggest_the_kind(tmp_path):
    rgb = _rgb_lines(tmp_path)
    with pytest.raises(ConfigError) as e:
        convert("cmrc", rgb, tmp_path / "out")
    assert str(rgb) in str(e.value) and "--from rgb" in str(e.value)
    assert "expected CMRC 2018 JSON" in str(e.value)

    squad = _squad2(tmp_path)
    with pytest.raises(ConfigError, match="not a list of paragraph objects.*--from squad"):
        convert("cmrc", squad, tmp_path / "out")
    with pytest.raises(
        ConfigError,
        match="no usable question .*line 1: lacks id, query, answer, positive, negative",
    ):
        convert("rgb", squad, tmp_path / "out")

    cmrc_like = _write_json(
        tmp_path / "cmrc.json",
        [{"context_id": "D0", "title": "t", "context_text": "x", "qas": []}],
    )
    with pytest.raises(ConfigError, match='no top-level "data" list.*--from cmrc'):
        convert("squad", cmrc_like, tmp_path / "out")

    broken = _write_json(tmp_path / "broken.json", [{"context_id": "D0", "qas": []}])
    with pytest.raises(
        ConfigError,
        match="no usable question .*paragraph 0: paragraph: missing field 'context_text'",
    ):
        convert("cmrc", broken, tmp_path / "out")

    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.json: not a single JSON document"):
        convert("squad2", tmp_path / "bad.json", tmp_path / "out")


def test_bad_options(tmp_path):
    squad = _squad2(tmp_path)
    with pytest.raises(ConfigError, match="rgb only"):
        convert("squad2", squad, tmp_path / "out", refusal_fraction=0.2)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        convert("rgb", squad, tmp_path / "out", refusal_fraction=1.5)
    with pytest.raises(ConfigError, match="--limit"):
        convert("squad2", squad, tmp_path / "out", limit=0)
    with pytest.raises(ConfigError, match="unknown data set kind 'hotpot'"):
        convert("hotpot", squad, tmp_path / "out")


def test_failed_conversion_leaves_existing_output_alone(tmp_path):
    out = tmp_path / "out"
    convert("squad2", _squad2(tmp_path), out)
    before = (out / "questions.jsonl").read_bytes()
    with pytest.raises(ConfigError):
        convert("cmrc", _squad2(tmp_path), out)
    assert (out / "questions.jsonl").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["corpus.jsonl", "meta.json", "questions.jsonl"]


def test_cli_helpers(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="rag eval convert")
    add_convert_args(parser)
    args = parser.parse_args(
        ["--from", "rgb", str(_rgb_lines(tmp_path)), "--out", str(tmp_path / "o")]
        + ["--refusal-fraction", "0.3", "--seed", "2", "--limit", "3"]
    )
    assert (args.kind, args.refusal_fraction, args.seed, args.limit) == ("rgb", 0.3, 2, 3)
    stats = run_convert(args)
    assert (stats.questions, stats.unanswerable) == (3, 1)
    assert "3 questions (2 answerable, 1 unanswerable)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["--from", "hotpot", "x", "--out", "y"])


def test_cail2019_shape_string_flags_and_yes_no(tmp_path):
    # CAIL2019 reading comprehension: is_impossible as the strings "true"/"false", and
    # YES/NO judgements written as is_impossible "true" with the text YES or NO
    path = tmp_path / "cail.json"
    ctx = "经审理查明:原告刘x0与被告刘x1原系夫妻关系,生育一子刘×3(2002年9月24日出生)。刘x1未到庭参加诉讼。"
    path.write_text(
        json.dumps(
            {
                "version": "1.0",
                "data": [
                    {
                        "caseid": "1",
                        "paragraphs": [
                            {
                                "context": ctx,
                                "casename": "变更抚养关系纠纷",
                                "qas": [
                                    {"id": "1_1", "is_impossible": "false", "question": "刘×3什么时候出生？",
                                     "answers": [{"answer_start": 36, "text": "2002年9月24日"}] * 3},
                                    {"id": "1_2", "is_impossible": "true", "question": "刘x1为什么没有到庭？",
                                     "answers": [{"answer_start": -1, "text": ""}] * 3},
                                    {"id": "1_3", "is_impossible": "true", "question": "刘x1是否参加诉讼？",
                                     "answers": [{"answer_start": -1, "text": "NO"}] * 3},
                                ],
                            }
                        ],
                    }
                ],
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )  # fmt: skip
    stats = convert("squad2", path, tmp_path / "out")
    assert (stats.questions, stats.answerable, stats.unanswerable) == (2, 1, 1)
    assert stats.skipped == (
        ("yes/no judgement (the answerers quote passages, they do not judge)", 1),
    )
    qs = {q["id"]: q for q in map(json.loads, (tmp_path / "out" / "questions.jsonl").open())}
    assert qs["1_1"]["answerable"] and qs["1_1"]["answers"] == ["2002年9月24日"]
    assert not qs["1_2"]["answerable"] and "1_3" not in qs


# ---------------------------------------------------------------- every shape, broken records too


def _lines(path: Path, records) -> Path:
    path.write_text(
        "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records
        ),
        encoding="utf-8",
    )
    return path


def test_cmrc_empty_question_is_skipped_not_fatal(tmp_path):
    # CMRC 2018 trial holds records whose question is empty: they once stopped a whole run
    path = _write_json(
        tmp_path / "cmrc.json",
        [
            {
                "context_id": "TRIAL_0",
                "title": "青岛",
                "context_text": "崂山区位于青岛市东部，面积389平方公里。",
                "qas": [
                    {"query_id": "TRIAL_0_QUERY_0", "query_text": "崂山区面积多大？", "answers": ["389平方公里"]},
                    {"query_id": "TRIAL_0_QUERY_1", "query_text": "", "answers": ["东部"]},
                    {"query_id": "TRIAL_0_QUERY_2", "query_text": "  ", "answers": ["东部"]},
                    {"query_id": "TRIAL_0_QUERY_3", "answers": ["东部"]},
                ],
            },
            {"context_id": "TRIAL_1", "title": "x", "qas": []},
        ],
    )  # fmt: skip
    stats = convert("cmrc", path, tmp_path / "out")
    assert (stats.questions, stats.corpus_records) == (1, 1)
    assert dict(stats.skipped) == {
        "empty question": 2,
        "missing field 'query_text'": 1,
        "paragraph: missing field 'context_text'": 1,
    }
    meta = json.loads((tmp_path / "out" / "meta.json").read_text(encoding="utf-8"))
    assert meta["skipped_total"] == 4 and meta["kind"] == "cmrc"
    assert {
        "where": "paragraph 0 (TRIAL_0) question 1 (TRIAL_0_QUERY_1)",
        "reason": "empty question",
    } in meta["skipped_examples"]
    # what was written loads without a complaint
    from rag.eval.questions import load_questions

    assert [q.id for q in load_questions(tmp_path / "out")] == ["TRIAL_0_QUERY_0"]


def test_rgb_zh_int_lists_of_lists(tmp_path):
    # zh_int's real shape (chen700564/RGB data/zh_int.json): positive is one list of
    # passages per answer item; an answer item may itself be a list of synonyms.
    # This file once crashed with "'list' object has no attribute 'encode'".
    p1 = ["据报道，第七届立法会议员宣誓仪式于2022年1月3日举行。", "1月3日上午，90位议员宣誓。"]
    p2 = ["行政长官指明2022年1月12日为首次会议日期。"]
    path = _lines(
        tmp_path / "zh_int.json",
        [
            {"id": 0, "query": "立法会宣誓仪式及首次会议的时间", "answer": ["1月3日", ["1月12日", "一月十二日"]],
             "asnwer1": ["1月3日"], "answer2": ["1月12日"], "positive": [p1, p2],
             "negative": ["立法会主席选举在1月10日举行。", p1[0]]},
            {"id": 1, "query": "", "answer": ["x"], "positive": [["y"]], "negative": []},
            {"id": 2, "query": "空答案", "answer": [], "positive": [["y"]], "negative": []},
            '{"id": 3, "query": "cut off by a dow',
            {"id": 4, "query": "坏段落", "answer": ["a"], "positive": [[7]], "negative": []},
        ],
    )  # fmt: skip
    stats = convert("rgb", path, tmp_path / "out")
    assert (stats.questions, stats.corpus_records) == (1, 4)
    assert dict(stats.skipped) == {
        "empty question": 1,
        "empty or malformed answer": 1,
        "a passage is not text": 1,
        "not JSON (Unterminated string starting at)": 1,
    }
    (q,) = _read(tmp_path / "out" / "questions.jsonl")
    assert q["answer_items"] == [["1月3日"], ["1月12日", "一月十二日"]]
    assert q["type"] == "integration" and len(q["gold_doc_ids"]) == 3
    assert set(q["gold_doc_ids"]) < set(q["context_doc_ids"])  # plus its negative
    # correct only when every item is matched by one of its alternatives
    from rag.eval.metrics import rgb_correct

    assert rgb_correct("宣誓在1月3日，首次会议在一月十二日。", q["answer_items"]) == 1.0
    assert rgb_correct("宣誓在1月3日。", q["answer_items"]) == 0.0


def test_rgb_zh_fact_keeps_the_false_documents_and_the_false_answer(tmp_path):
    # zh_fact's real shape: answer and fakeanswer are strings; positive_wrong carries the
    # false fact, positive the true one
    path = _lines(
        tmp_path / "zh_fact.json",
        [
            {"id": 0, "query": "香港第六届立法会选举有多少个议席？", "answer": "70", "fakeanswer": "170",
             "positive_wrong": ["第六届立法会共有170个议席。", "建制派在总共170个议席中获得41席。"],
             "positive": ["第六届立法会共有70个议席。", "建制派在总共70个议席中获得41席。"],
             "negative": ["功能界别共选举产生30个议席。"]},
            {"id": 1, "query": "没有假答案", "answer": "1", "positive_wrong": ["2"], "positive": ["1"],
             "negative": []},
        ],
    )  # fmt: skip
    stats = convert("rgb", path, tmp_path / "out")
    assert stats.questions == 1 and dict(stats.skipped) == {
        "counterfactual record without a fakeanswer": 1
    }
    (q,) = _read(tmp_path / "out" / "questions.jsonl")
    corpus = {c["id"]: c["text"] for c in _read(tmp_path / "out" / "corpus.jsonl")}
    assert q["type"] == "counterfactual" and q["false_answers"] == ["170"]
    assert q["answers"] == ["70"] and q["answer_items"] == [["70"]]
    assert sorted(corpus[d] for d in q["gold_doc_ids"]) == sorted(
        ["第六届立法会共有170个议席。", "建制派在总共170个议席中获得41席。"]
    )
    assert not any("共有70个" in t for t in corpus.values())  # the true documents stay out


def test_cail2019_with_broken_records(tmp_path):
    ctx = "经审理查明:原告刘x0与被告刘x1原系夫妻关系,生育一子刘×3(2002年9月24日出生)。"
    path = _write_json(
        tmp_path / "cail.json",
        {"version": "1.0", "data": [
            {"caseid": "1", "paragraphs": [{"context": ctx, "casename": "变更抚养关系纠纷", "qas": [
                {"id": "1_1", "is_impossible": "false", "question": "刘×3什么时候出生？",
                 "answers": [{"answer_start": 36, "text": "2002年9月24日"}] * 3},
                {"id": "1_2", "is_impossible": "true", "question": "刘x1的职业是什么？",
                 "answers": [{"answer_start": -1, "text": ""}] * 3},
                {"id": "1_3", "is_impossible": "false", "question": "原告与被告是否为夫妻？",
                 "answers": [{"answer_start": -1, "text": "YES"}] * 3},
                {"id": "1_4", "is_impossible": "false", "question": "", "answers": []},
                {"id": "1_5", "is_impossible": "false", "question": "空答案？", "answers": []},
            ]}]},
            {"caseid": "2"},
        ]},
    )  # fmt: skip
    stats = convert("cail", path, tmp_path / "out")
    assert (stats.questions, stats.answerable, stats.unanswerable) == (2, 1, 1)
    assert dict(stats.skipped) == {
        "yes/no judgement (the answerers quote passages, they do not judge)": 1,
        "empty question": 1,
        "no answer": 1,
        "article without a paragraphs list": 1,
    }
    qs = {q["id"]: q for q in _read(tmp_path / "out" / "questions.jsonl")}
    assert qs["1_2"]["context_doc_ids"] == ["0-0"] and qs["1_2"]["gold_doc_ids"] == []


def test_dureader_both_shapes(tmp_path):
    path = _lines(
        tmp_path / "dureader.json",
        [
            # DuReader 2.0 (search / zhidao)
            {"question_id": 186358, "question_type": "DESCRIPTION", "question": "上海迪士尼可以带吃的进去吗",
             "documents": [
                 {"title": "上海迪士尼能带吃的吗", "paragraphs": ["可以带零食进园。", "不能带酒精饮料。"], "is_selected": True},
                 {"title": "迪士尼攻略", "paragraphs": ["门票399元。"], "is_selected": False},
             ],
             "answers": ["可以，但不能带酒精饮料。"], "yesno_answers": [], "fact_or_opinion": "FACT"},
            # DuReader-retrieval (dev.json)
            {"question_id": "edb58f525bd14724d6f490722fa8a657", "question": "微信分享链接打开app",
             "answer_paragraphs": [{"paragraph_id": "5bc347ff17d488f1704e2893c9e8ecfa",
                                    "paragraph_text": "在微信中打开链接后选择在浏览器打开即可唤起app。"}]},
            {"question_id": 2, "question": "没有选中的文档", "documents": [{"paragraphs": ["x"], "is_selected": False}]},
            {"question_id": 3, "question": "", "answer_paragraphs": []},
        ],
    )  # fmt: skip
    stats = convert("dureader", path, tmp_path / "out")
    assert (stats.questions, stats.corpus_records) == (2, 4)
    assert dict(stats.skipped) == {"no selected document": 1, "empty question": 1}
    qs = {q["id"]: q for q in _read(tmp_path / "out" / "questions.jsonl")}
    corpus = {c["id"]: c for c in _read(tmp_path / "out" / "corpus.jsonl")}
    read = qs["186358"]
    assert read["type"] == "description" and read["answers"] == ["可以，但不能带酒精饮料。"]
    assert corpus[read["gold_doc_ids"][0]]["text"] == "可以带零食进园。\n不能带酒精饮料。"
    assert len(read["context_doc_ids"]) == 2  # the unselected document: a hard distractor
    ret = qs["edb58f525bd14724d6f490722fa8a657"]
    assert ret["gold_doc_ids"] == ["5bc347ff17d488f1704e2893c9e8ecfa"]
    assert ret["answers"] == [] and ret["answerable"]  # retrieval only


def test_generic_jsonl_with_named_fields(tmp_path, capsys):
    path = _lines(
        tmp_path / "qa.jsonl",
        [
            {"qid": "a", "q": "威海管廊多长？", "a": ["40.6公里", "40.6km"], "ctx": ["威海建成管廊40.6公里。", "无关段落。"]},
            {"qid": "b", "q": "崂山区人口？", "a": [], "ctx": "崂山区位于青岛东部。"},
            {"qid": "c", "q": "嵌套", "a": {"x": 1}, "ctx": "y"},
            {"qid": "d", "q": "缺上下文", "a": "z"},
            {"qid": "e", "q": "", "a": "z", "ctx": "z"},
        ],
    )  # fmt: skip
    parser = argparse.ArgumentParser()
    add_convert_args(parser)
    args = parser.parse_args(
        ["--from", "jsonl", str(path), "--out", str(tmp_path / "out"), "--question-field", "q",
         "--answer-field", "a", "--context-field", "ctx", "--id-field", "qid"]
    )  # fmt: skip
    stats = run_convert(args)
    assert (stats.questions, stats.answerable, stats.unanswerable, stats.corpus_records) == (
        2,
        1,
        1,
        3,
    )
    assert dict(stats.skipped) == {
        "a is not text or a list of texts": 1,
        "lacks ctx": 1,
        "empty question": 1,
    }
    out = capsys.readouterr().out
    assert "left out 1 (lacks ctx)" in out and "meta.json" in out
    questions, corpus = _check_consistent(tmp_path / "out")
    text = {c["id"]: c["text"] for c in corpus}
    a, b = questions
    assert a["answers"] == ["40.6公里", "40.6km"] and [text[d] for d in a["gold_doc_ids"]] == [
        "威海建成管廊40.6公里。"
    ]
    assert len(a["context_doc_ids"]) == 2
    assert not b["answerable"] and [text[d] for d in b["context_doc_ids"]] == [
        "崂山区位于青岛东部。"
    ]
