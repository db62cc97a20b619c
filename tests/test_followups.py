"""Follow-ups told apart (rag/read/followup.py) and their harness (rag/eval/followups.py).

Real jieba throughout; the chat-path tests ask the real system over corpus/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.errors import ConfigError
from rag.eval.followups import load_turns, run_followups, wilson
from rag.read.followup import ChatSession, Turn, carry_over, is_follow_up, read_question
from rag.serve.cli import main

REPO = Path(__file__).resolve().parent.parent
DATASET = REPO / "eval" / "datasets" / "followups.jsonl"
LAOSHAN = "崂山区2023年计划完成投资多少？"


def _session_after(*questions: str) -> ChatSession:
    """A chat session whose history is `questions`, each rewritten as the chat would."""
    s = ChatSession(system=None)
    for q in questions:
        s.history.append(Turn(q, s.rewrite(q), ""))
    return s


# ------------------------------------------------------------------ the decision
@pytest.mark.parametrize(
    "question",
    [
        "李瑞玲是谁？",
        "张元升是什么职务？",
        "魏建民在开班仪式上讲了什么？",
        "王国杰说了什么？",
        "赵一德是谁？",
    ],
)
def test_a_standalone_question_with_a_persons_name_is_not_rewritten(question):
    assert read_question(question).subject is not None and not is_follow_up(question)
    session = _session_after(LAOSHAN)
    assert session.rewrite(question) == question
    assert carry_over(question, LAOSHAN) == question


def test_what_about_another_place_carries_the_previous_quantity_not_the_previous_place():
    rewritten = _session_after(LAOSHAN).rewrite("那威海呢？")
    assert rewritten == "2023 计划 完成 投资：那威海呢？"
    after_projects = carry_over("那威海呢？", "崂山区2023年重点推进多少个城市更新项目？")
    assert "城市更新" in after_projects and "崂山" not in after_projects


def test_what_about_another_year_keeps_the_place_and_drops_the_old_year():
    rewritten = carry_over("那2023年呢？", "崂山区2022年的投资完成率是多少？")
    assert rewritten == "崂山区 投资 完成率：那2023年呢？"


@pytest.mark.parametrize(
    ("question", "follow_up"),
    [
        # names its subject, even beside a word that points back
        ("此次精致城市论坛由谁主办？", False),
        ("精致城市论坛这次的办会预算是多少？", False),  # 这次 refers to what it named
        ("选北京做对标城市,主要是想学它哪方面？", False),  # so does 它
        ("南海新区那位已经参加过三期培训的学员是谁？", False),
        ("“最多跑一次”改革是什么？", False),  # a quoted name
        ("城市更新是什么意思？", False),  # one proper-noun word (nz)
        # leans on the turn before
        ("这位主任是谁？", True),
        ("那个项目什么时候完工？", True),
        ("这次研修班为期几天？", True),
        ("当时是谁主持的？", True),
        ("第二个方面是什么？", True),
        ("还有吗？", True),
        ("他们是哪个单位的？", True),
        ("具体有哪些做法？", True),
    ],
)
def test_standalone_and_elliptical_questions_told_apart(question, follow_up):
    assert is_follow_up(question) is follow_up, read_question(question)


def test_a_follow_up_of_a_follow_up_keeps_the_first_subject():
    s = _session_after("中原区研修班是几月几号开班的？", "几点开始？", "哪家报社报道的？")
    assert s.history[-1].rewritten.startswith("中原区 研修班")
    assert "中原区" in s.rewrite("记者是谁？")


def test_a_quoted_name_is_carried_whole():
    rewritten = carry_over("其中精细管理讲了什么？", "李瑞玲在发布会上讲的“六个精”是哪六个？")
    assert "六个精" in rewritten and rewritten.endswith("：其中精细管理讲了什么？")


# ------------------------------------------------------------------ the data set
def test_the_data_set_is_as_described_and_the_decision_meets_the_goal(tmp_path):
    turns = load_turns(DATASET)
    follow = sum(t.follow_up for t in turns)
    conversations = {t.conversation for t in turns}
    held_out = {t.conversation for t in turns if t.split == "heldout"}
    assert len(turns) >= 80 and abs(follow - (len(turns) - follow)) <= 0.1 * len(turns)
    assert all(t.should_contain for t in turns if t.follow_up)
    assert 0.2 <= len(held_out) / len(conversations) <= 0.3
    summary = run_followups(DATASET, tmp_path)
    assert summary.metrics["dev"]["accuracy"] >= 0.95
    assert summary.metrics["heldout"]["accuracy"] >= 0.95


# ------------------------------------------------------------------ the harness
SMALL = [
    {"conversation": "a", "turn": 1, "question": LAOSHAN, "follow_up": False},
    {
        "conversation": "a",
        "turn": 2,
        "question": "那威海呢？",
        "follow_up": True,
        "rewrite_should_contain": ["投资", "威海"],
        "rewrite_should_not_contain": ["崂山"],
    },
    {"conversation": "a", "turn": 3, "question": "李瑞玲是谁？", "follow_up": False},
    {
        "conversation": "b",
        "turn": 1,
        "question": "威海改造了多少个老旧小区？",
        "follow_up": False,
        "split": "heldout",
    },
    # labelled a follow-up on purpose: it names its subject, so the system disagrees
    {
        "conversation": "b",
        "turn": 2,
        "question": "口袋公园建了多少处？",
        "follow_up": True,
        "rewrite_should_contain": ["威海"],
        "split": "heldout",
    },
]


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_the_command_reports_the_right_figures(tmp_path, capsys):
    data = _write(tmp_path / "turns.jsonl", SMALL)
    out = tmp_path / "report"
    assert main(["eval", "followups", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "all: 5 turns, accuracy 0.800" in printed
    assert (
        "dev: 3 turns, accuracy 1.000" in printed and "heldout: 2 turns, accuracy 0.500" in printed
    )
    saved = json.loads((out / "metrics.json").read_text("utf-8"))
    m = saved["metrics"]["all"]
    assert (m["accuracy"], m["follow_up_precision"], m["follow_up_recall"]) == (0.8, 1.0, 0.5)
    assert m["confusion"] == {"tp": 1, "fp": 0, "fn": 1, "tn": 3}
    assert m["rewrite_carries_terms"] == 0.5 and m["rewrite_keeps_out_terms"] == 1.0
    assert m["standalone_unchanged"] == 1.0 and m["accuracy_ci95"] == list(wilson(4, 5))
    assert [(x["conversation"], x["turn"], x["why"]) for x in saved["misses"]] == [
        ("b", 2, "read as standalone")
    ]
    report = (out / "report.md").read_text("utf-8")
    assert "| heldout | b/2 | 口袋公园建了多少处？ |" in report and "0.800 [" in report
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text("utf-8").splitlines()]
    assert rows[1]["rewritten"] == "2023 计划 完成 投资：那威海呢？"


def test_one_split_only(tmp_path, capsys):
    data = _write(tmp_path / "turns.jsonl", SMALL)
    assert main(["eval", "followups", str(data), "--out", str(tmp_path), "--split", "dev"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("dev: 3 turns, accuracy 1.000") and "heldout" not in printed


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{**SMALL[0], "turn": 2, "follow_up": False}], "turn 2 out of order"),
        ([{**SMALL[0], "follow_up": True}], "a first turn cannot be a follow-up"),
        (
            [SMALL[0], {**SMALL[2], "turn": 2, "follow_up": "yes"}],
            "follow_up must be true or false",
        ),
    ],
)
def test_a_malformed_data_set_names_the_line(tmp_path, rows, message):
    data = _write(tmp_path / "turns.jsonl", rows)
    with pytest.raises(ConfigError, match=message) as e:
        load_turns(data)
    assert f"{data}:{len(rows)}:" in str(e.value)
    assert main(["eval", "followups", str(data), "--out", str(tmp_path / "r")]) == 2


# ------------------------------------------------------------------ through the real chat
def test_the_chat_asks_a_new_subject_as_it_is_and_shows_a_rewrite(corpus_system):
    session = ChatSession(corpus_system)
    session.ask(LAOSHAN)
    who = session.ask("李瑞玲是谁？")
    assert who.rewritten_question == "李瑞玲是谁？"  # not read in the light of 崂山
    assert who.citations and who.citations[0].doc_id == "weihai-jingzhi-forum-2023"
    assert "李瑞玲" in who.text
    session.reset()
    session.ask(LAOSHAN)
    then = session.ask("那威海呢？")
    shown = then.to_json()  # what `rag chat --json` prints
    assert shown["question"] == "那威海呢？"
    assert shown["rewritten_question"] == "2023 计划 完成 投资：那威海呢？"


def test_an_llm_rewrite_that_still_leans_on_the_turn_before_is_not_used():
    # the local model often echoes an elliptical question: searched as it is, it has no
    # subject, so the session carries the key terms instead (eval/reports/followups/llm)
    from rag.read.followup import ChatSession, Turn, carry_over

    previous = "威海改造了多少个老旧小区？"
    for reply in ("它被称为什么？", "还有吗？"):
        session = ChatSession(None, rewriter=lambda q, h, r=reply: r)
        session.history.append(Turn(previous, previous, ""))
        assert session.rewrite(reply) == carry_over(reply, previous)
    session = ChatSession(None, rewriter=lambda q, h: "威海加装了多少部电梯？")
    session.history.append(Turn(previous, previous, ""))
    assert session.rewrite("还有加装电梯呢？") == "威海加装了多少部电梯？"
