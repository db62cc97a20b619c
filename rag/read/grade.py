"""What an answer says of itself: how sure it is (高/中/低, and why, in words) and the
exact span that answers (the figure with its unit, the date, the name, the place).

One implementation for every answerer: the extractive one and the LLM one both call
`grade` on their finished `Answer`.
"""

from __future__ import annotations

import re

from rag.ingest.tables import CELL_SEP
from rag.read.constraints import tag
from rag.read.reader import answer_type, asked_cell, cell_reading, question_slot
from rag.textnorm import norm
from rag.types import Answer

HIGH, MID, LOW = "高", "中", "低"

CONFLICT = "文档之间不一致："  # how an answer opens when documents disagree on the value

# P(answerable) of the refusal model (rag/read/refusal_model.json) at and above which an
# answer is 高 / 中; below MID_AT it is 低 though given (it passed the refusal threshold)
HIGH_AT, MID_AT = 0.75, 0.4

_KIND_WORDS = {
    "number": "所问的数值",
    "date": "所问的日期",
    "person": "所问的人名",
    "place": "所问的地点",
}

# a number with its unit: 156亿元, 40.6公里, 150多名, 30%
_FIGURE = re.compile(
    r"[0-9一二三四五六七八九十百千万亿两半.,]+\s*(?:多|余)?\s*(?:[万亿千百]\s*)*"
    r"(?:平方公里|平方米|公里|千米|公顷|亿元|万元|美元|个百分点|人次|[%％元米亩吨人名位个项次年天座条部处家种届期岁层套辆所篇场户栋间台件倍]|)"
)
_DATE_SPAN = re.compile(
    r"(?:\d{4}|[一二三四五六七八九〇零]{4})\s*年(?:\s*\d{1,2}\s*月(?:\s*\d{1,2}\s*日)?)?"
    r"|\d{1,2}\s*月\s*\d{1,2}\s*日|\d{1,2}\s*月"
)
_ENTITY_TAGS = {"person": ("PER", "nr"), "place": ("LOC", "ns")}


def short_answer(question: str, sentence: str) -> str | None:
    """The span of `sentence` that answers `question`, when the question asks for a
    figure, a date, a person or a place and the sentence holds one; else None."""
    qn = norm(question)
    kind = answer_type(qn, normalized=True)
    if CELL_SEP in sentence:  # a table row: the cell whose header the question names
        return _cell(qn, sentence)
    if kind == "number":
        slot = question_slot(qn, normalized=True)
        if slot is not None:
            m = slot.search(norm(sentence))
            if m and m.group().strip(" ,."):
                return _original(sentence, m.group().strip(" ,."))
        return _first(_FIGURE, sentence, qn, need_digit=True)
    if kind == "date":
        return _first(_DATE_SPAN, sentence, qn)
    if kind in _ENTITY_TAGS:
        tags = _ENTITY_TAGS[kind]
        for word, t, _src in tag(sentence):
            if t in tags and len(word) >= 2 and norm(word) not in qn:
                return word
    return None


def _first(pattern: re.Pattern, sentence: str, qn: str, need_digit: bool = False) -> str | None:
    for m in pattern.finditer(sentence):
        span = m.group().strip(" ,.")
        if not span or (need_digit and not re.search(r"[0-9一二三四五六七八九十百千万两半]", span)):
            continue
        if norm(span) in qn:  # the question's own year is not the answer
            continue
        return span
    return None


def _original(sentence: str, normalized_span: str) -> str:
    """`normalized_span` as `sentence` writes it (full-width digits, traditional script)."""
    target = re.sub(r"\s+", "", normalized_span)
    ns = norm(sentence)
    at = ns.find(target)
    if at >= 0 and len(ns) == len(sentence):  # the usual case: norm kept every offset
        return sentence[at : at + len(target)]
    for i in range(len(sentence)):
        for j in range(i + 1, min(len(sentence), i + len(target) * 2 + 4) + 1):
            if re.sub(r"\s+", "", norm(sentence[i:j])) == target:
                return sentence[i:j]
    return normalized_span


def _cell(qn: str, row: str) -> str | None:
    """The value of the row's cell whose header shares most with the question, with its
    column's unit ("42602.1万元")."""
    cell = asked_cell(qn, row)
    return cell_reading(cell) if cell else None


def grade(ans: Answer) -> Answer:
    """Set `ans.confidence_level`, `confidence_reason` and `short_answer` (in place),
    unless the answerer already said them (a refusal for an unmet constraint)."""
    if not ans.confidence_level:
        ans.confidence_level, ans.confidence_reason = _level(ans)
    if ans.short_answer is None and not ans.refused and ans.sentences:
        ans.short_answer = short_answer(ans.question, ans.sentences[0].text)
    return ans


def _level(ans: Answer) -> tuple[str, str]:
    if ans.refused:
        return LOW, "文档中没有找到足以回答这个问题的内容"
    if ans.text.startswith(CONFLICT):
        return LOW, "所引文档对所问的数值说法不同"
    unsupported = [s for s in ans.sentences if s.supported is False]
    if unsupported:
        return LOW, "回答中有句子在所引段落里找不到依据"
    caveats = []
    if any(c.ocr for c in ans.citations):
        caveats.append("引文来自扫描件的文字识别，可能有识别错误")
    if any(c.flags for c in ans.citations):
        caveats.append("所引段落含有可疑的指令或自带的引用标记")
    c = ans.confidence
    kind = _KIND_WORDS.get(answer_type(ans.question))
    if c >= HIGH_AT and not caveats:
        what = f"和{kind}" if kind else ""
        return HIGH, f"引用的句子包含问题的关键词{what}"
    if c >= MID_AT:
        return MID, "；".join(caveats) or "引用与问题的关键词部分重合，请对照原文确认"
    return LOW, "；".join(caveats + ["引用与问题的关联较弱，请核对原文"])


__all__ = ["grade", "short_answer", "HIGH", "MID", "LOW"]
