"""What an answer says of itself: how sure it is (高/中/低, and why, in words) and the
exact span that answers (found by `rag.read.span.short_answer`).

One implementation for every answerer: the extractive one and the LLM one both call
`grade` on their finished `Answer`.
"""

from __future__ import annotations

from rag.read.reader import answer_type
from rag.read.span import short_answer
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
