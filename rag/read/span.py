"""The exact span of a quoted sentence that answers a question: the figure with its
unit, the date, the name, the place, or whatever fills the question's gap.

- Every question but a why-question is aligned with the sentence (`_aligned`): its
  question word (什么, 哪个, 谁, 多少, 如何……) splits it into the words before and
  after the gap, and the span of the sentence that those words frame best, nearest
  words counting most, is the answer. "西溪湿地位于杭州市什么区？" over
  "西溪湿地位于杭州市西湖区……" gives 西湖区.
- A question that asks for a figure, a date or a person takes the first such thing
  (`_typed`) inside that span, else in the sentence; a place takes the span first (LAC's
  first place name is often only the country of a longer address).
- A why-question takes the reason the sentence gives (由于……, 为了……, ……所以).
- A table row gives the cell whose header the question names.

None when nothing answers: a yes/no question, a sentence that only repeats the
question, or one that the question's words do not frame. Measured in
eval/reports/trust/short_answer.md.
"""

from __future__ import annotations

import re

from rag.ingest.tables import CELL_SEP
from rag.read.constraints import tag
from rag.read.reader import answer_type, asked_cell, cell_reading, question_slot
from rag.textnorm import norm, normalize

# a number with its unit: 156亿元, 40.6公里, 150多名, 30%, 65-70厘米, 100至400公尺;
# not the digits of a name or a plate (庞x0, 晋A12345)
_AMOUNT = r"(?<![a-zA-Z×*&#\d.,])[0-9一二三四五六七八九十百千万亿两半.,]+\s*(?:多|余)?\s*(?:[万亿千百]\s*)*"
_UNIT = "|".join(
    sorted(
        "平方公里 平方米 平方英里 公里 千米 公尺 公分 厘米 毫米 英里 英尺 公顷 公斤 千克 亿元 万元 美元"
        " 港元 日元 欧元 英镑 个百分点 人次 小时 分钟 地球日 mb gb kb".split(),
        key=len,
        reverse=True,
    )
    + [
        "[%％元米亩吨克人名位个项次年天座条部处家种届期岁层套辆所篇场户栋间台件倍颗组集页枚只头匹首张话章秒分]"
    ]
)
_UNIT_AT = re.compile(_UNIT)
_FIGURE = re.compile(rf"{_AMOUNT}(?:\s*[-~～至到]\s*{_AMOUNT})?(?:{_UNIT}|)")
_FIGURE_WITH_UNIT = re.compile(rf"{_AMOUNT}(?:\s*[-~～至到]\s*{_AMOUNT})?(?:{_UNIT})")
# what a question asks an amount of money of, when it does not say 元
_MONEY = re.compile(r"费|金|款|钱|价|资|额|赔偿|罚")
# a date: 2019年5月, 5月12日, and a reign's year with the western one, 天启五年（1625年）
_MONTH = r"(?:\s*(?:\d{1,2}|[正一二三四五六七八九十]{1,3})\s*月(?:\s*\d{1,2}\s*日)?)?"
_ERA = r"[\u4e00-\u9fff]{2}(?:元|[一二三四五六七八九十]{1,3}|\d{1,3})\s*年\s*[(（]\s*前?\d{1,4}\s*年\s*[)）]"
_DATE_SPAN = re.compile(
    rf"(?:{_ERA}|前\d{{1,4}}\s*年|(?:\d{{4}}|[一二三四五六七八九〇零]{{4}})\s*年){_MONTH}"
    r"|\d{1,2}\s*月\s*\d{1,2}\s*日|\d{1,2}\s*月"
)
_FEW = re.compile(r"哪[两二三四五六七八九十]|哪几")
_ENTITY_TAGS = {"person": ("PER", "nr"), "place": ("LOC", "ns")}


def short_answer(question: str, sentence: str) -> str | None:
    """The span of `sentence` that answers `question`, as `sentence` writes it; None
    when no span answers (the question asks yes or no, or the sentence only repeats
    the question)."""
    qn = norm(question)
    if CELL_SEP in sentence:  # a table row: the cell whose header the question names
        return _cell(qn, sentence)
    kind = answer_type(qn, normalized=True)
    if kind == "reason":
        return _reason(sentence)
    if kind == "list" and not _FEW.search(qn):  # 哪些/有什么: the items run on past
        return None  # any frame, the sentence is them; 哪两个公司 asks for two names
    gap = _aligned(qn, sentence)
    if kind == "place":  # a place is more than LAC's first name: 澳洲维多利亚州墨尔本
        return gap or _typed(qn, kind, sentence)
    # a figure, date or name inside the gap first: the sentence may hold several
    return (gap and _typed(qn, kind, gap)) or _typed(qn, kind, sentence) or gap


def _typed(qn: str, kind: str, sentence: str) -> str | None:
    """The first figure, date, person or place of `sentence` the question does not
    name, for a question of that kind."""
    if kind == "number":
        slot = question_slot(qn, normalized=True)
        if slot is not None:
            ns = norm(sentence)
            m = slot.search(ns)
            if m and m.group().strip(" ,."):
                # with the range and unit the slot's pattern leaves out: 30~270公尺
                f = _FIGURE.match(ns, m.start())
                found = f.group() if f and f.end() > m.end() else m.group()
                return _original(sentence, found.strip(" ,."))
        m = re.search(r"(?:多少|几)(.*)", qn)
        unit = _asked_unit(m.group(1)) if m else None
        if unit is None and _MONEY.search(qn):  # 多少保险费, 赔偿多少: an amount in 元
            unit = "元"
        if unit:  # 共33话 answers 多少话, not the 2009年 before it
            pattern = re.compile(rf"{_AMOUNT}(?:\s*[-~～至到]\s*{_AMOUNT})?{re.escape(unit)}")
            found = _first(pattern, sentence, qn, need_digit=True)
            if found:
                return found
        # a figure with a unit before a bare number
        return _first(_FIGURE_WITH_UNIT, sentence, qn, need_digit=True) or _first(
            _FIGURE, sentence, qn, need_digit=True
        )
    if kind == "date":
        return _first(_DATE_SPAN, sentence, qn)
    if kind in _ENTITY_TAGS:
        tags = _ENTITY_TAGS[kind]
        for word, t, _src in tag(sentence):
            if t in tags and len(word) >= 2 and norm(word) not in qn:
                return word
    return None


# the question word: where the answer's gap is. Longest first; 为何 asks why (no span)
_QWORD = re.compile(
    r"什么样的?|什么时候|什么|啥|谁|多少|怎样|怎么样|怎么|如何|多[大长高远久重宽深]"
    r"|哪(?:一|几|两|[二三四五六七八九十])?(?:个|些|种|位|年|里|儿|家|条|部|所|支|队|国|次|天|份|座|本|首|项|门|类)?"
    r"|(?<!为)何(?:时|地|处|人|种|年|者)?|几(?:个|种|位|年|次|天)?"
)
# a question that asks yes or no has no span to mark
_YES_NO = re.compile(r"是否|有无|有没有|能否|可否|是不是|吗[？?]?$")
_ASKS_AFTER = re.compile(r"(?:是|为|叫|指|有)$")  # "乔许·哈却森的职业是？": the gap is at the end
_QTAIL = re.compile(r"[\s？?。！!,，、：:；;呢呀啊]+$")  # not 么: 什么 ends questions
_CLAUSE_END = re.compile(r"[，,；;。！!？?：:]")
_PLACE_CUE = re.compile(
    r"位于|地处|坐落于|坐落在|出生于|出生在|生于|原址|分布于|分布在|产于|来自|籍贯|原籍|设于|建于"
)
# a question for another name, and where a sentence gives one
_NAMING = re.compile(
    r"(?:又|也|还|亦|俗|别|原|本|简|曾|旧|通|学|英文)(?:可以)?(?:被)?(?:称|叫|名|译)(?:作|做|为|成)?(?:是)?$|(?:别名|原名|简称|俗称|旧称|字|号)(?:是|为)?$"
)
_NAME_CUE = re.compile(
    r"(?:又|也|亦|俗|别|原|本|简|曾|旧|通)(?:称|名|叫|译)(?:作|做|为)?|别名|字|号"
)
# what may stand at the edge of a gap without being part of the answer (not 和/及/将:
# they open names, 和平, 将军)
_EDGE = "是为的了在于由被，,、：:；;。.！!？?“”\"'「」『』（）() "
_MAX_SPAN = 40
_SAME_FROM, _SAME_TO = "为系乃叫名做", "是是是称称作"


def _aligned(qn: str, sentence: str) -> str | None:
    """The part of `sentence` that stands where the question word stands in `qn`."""
    if _YES_NO.search(qn):
        return None
    q = _QTAIL.sub("", qn)
    m = _QWORD.search(q)
    if m:
        left, right = q[: m.start()], q[m.end() :]
    elif _ASKS_AFTER.search(q):
        left, right = q, ""
    else:
        return None
    nz = normalize(sentence)
    ns = nz.text
    opens = []
    if answer_type(q, normalized=True) == "place":  # 位于……, 生于……: where a place follows
        opens = [c.end() for c in _PLACE_CUE.finditer(ns)]
    elif _NAMING.search(left):  # 又叫什么: 又称……, 别名……, 字……
        opens = [c.end() for c in _NAME_CUE.finditer(ns)]
    found = _best_gap(left, right, ns, opens)
    head = _head(m.group() if m else "", right, q)
    if found is None:
        return None
    start, end = found
    if head and ns.startswith(head, end):  # 什么区 is answered by 西湖区, 多少公里 by 61公里
        end += len(head)
    if ns.startswith("(", start):  # the subject's gloss: 尚恩·菲南（Shane Filan），
        close = ns.find(")", start, end)
        if close > 0:
            start = close + 1
    start, end = _trim(ns, start, end)
    span = ns[start:end]
    if not span or span in qn:
        return None
    a, b = nz.span(start, end)
    return sentence[a:b]


def _trim(ns: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) without the particles and punctuation at its edges, but with the
    bracket that closes one it opens: 天启五年（1625年）."""
    while start < end and ns[start] in _EDGE:
        start += 1
    while end > start and ns[end - 1] in _EDGE:
        opener = _OPENER.get(ns[end - 1])
        if opener and opener in ns[start : end - 1]:
            break
        end -= 1
    return start, end


_OPENER = {")": "(", "」": "「", "』": "『", "”": "“"}


def _asked_unit(after_qword: str) -> str | None:
    """The unit a 多少/几 question asks in: 多少公分 -> 公分, 几话 -> 话."""
    m = _UNIT_AT.match(after_qword)
    return m.group() if m else None


_DETERMINER = re.compile(r"^(?:什么|啥|哪|何种|多少|几)")


def _head(qword: str, right: str, q: str) -> str | None:
    """The word after a question word that the answer carries too: the unit after
    多少/几, the noun after 什么/哪个."""
    if not right or not _DETERMINER.match(qword):
        return None
    if qword.startswith(("多少", "几")):
        return _asked_unit(right)
    words = tag(right)
    if not words:
        return None
    word, pos, _src = words[0]
    return word if pos.startswith("n") and len(word) <= 3 else None


# words a sentence may say for the question's: 是/为/系, 又叫/又称/又名 (one character
# for another keeps every offset)
_SAME = str.maketrans(_SAME_FROM, _SAME_TO)

# how much a word of the question counts less for each character it stands from the
# gap, and how much each character of the span costs: the nearest, shortest frame wins
_FAR, _LONG = 0.7, 0.01
_CAP = 3.0
_CUE_SCORE = 2.5
_MIN_FRAME = 1.5  # the question's words must frame the gap by at least this much
_EDGE_SCORE = 0.5


def _best_gap(left: str, right: str, ns: str, opens: list[int] = ()) -> tuple[int, int] | None:
    """[start, end) of the span of `ns` that the question's words frame best: what
    precedes it repeats the end of `left`, what follows it the start of `right`."""
    n = len(ns)
    left, right, cs = (t.translate(_SAME) for t in (left, right, ns))
    said_l = _frame_scores(left[::-1], cs[::-1])[::-1]  # by where the span starts
    said_r = _frame_scores(right, cs)  # by where the span ends
    starts, ends = list(said_l), list(said_r)
    for i in opens:  # where the question's kind says an answer opens
        starts[i] = max(starts[i], _CUE_SCORE)
    cuts = (
        {0, n}
        | {c.end() for c in _CLAUSE_END.finditer(ns)}
        | {c.start() for c in _CLAUSE_END.finditer(ns)}
    )
    # a clause's edge frames a span too: fully where the gap opens or closes the
    # question, a little where the question's words are not found there
    edge_l = 1.0 if not left else _EDGE_SCORE
    edge_r = 1.0 if not right else _EDGE_SCORE
    for c in cuts:
        starts[c] = max(starts[c], edge_l)
        ends[c] = max(ends[c], edge_r)
    # words[j] - words[i]: characters of ns[i:j] that are more than particles and
    # punctuation; a gap of only those (the 。 after a repeated word) is no span
    words = [0] * (n + 1)
    for k, c in enumerate(ns):
        words[k + 1] = words[k] + (c not in _EDGE)
    best, where = _MIN_FRAME, None
    for i in range(n + 1):
        if starts[i] <= 0:
            continue
        for j in range(i, min(n, i + _MAX_SPAN) + 1):
            if j == i:  # no gap: only where the question's own words meet
                score = said_l[i] + said_r[i] if said_l[i] > 0 and said_r[i] > 0 else 0
            elif ends[j] <= 0 or words[j] == words[i]:
                continue
            else:
                score = starts[i] + ends[j] - _LONG * (j - i)
            if score > best:
                best, where = score, (i, j)
    # framed best with nothing between: the sentence says the question's words
    # without a gap ("这项工作意义重大" for 这项工作有什么意义), so no span answers
    return where if where and where[0] < where[1] else None


def _frame_scores(words: str, ns: str) -> list[float]:
    """For each position j of `ns`, how well `ns[j:]` opens with `words` or a piece of
    it: the length of the longest common start of ns[j:] and words[p:], less _FAR per
    character p it stands from the gap; one character counts only right at the gap."""
    n, m = len(ns), len(words)
    out = [0.0] * (n + 1)
    if not m:
        return out
    # run[j][p]: length of the common start of ns[j:] and words[p:]
    nxt = [0] * (m + 1)
    for j in range(n - 1, -1, -1):
        cur = [0] * (m + 1)
        c = ns[j]
        for p in range(m - 1, -1, -1):
            if words[p] == c:
                cur[p] = nxt[p + 1] + 1
        best = 0.0
        for p in range(m):
            k = cur[p]
            if k >= 2 or (k == 1 and p == 0):
                best = max(best, min(k, _CAP) - _FAR * p)
        out[j] = best
        nxt = cur
    return out


# what opens a reason (由于……, 为了……) and what opens its consequence (……，所以)
_BECAUSE = re.compile(r"由于|因为|是为了|为了|主要目的是|目的是|用途是|原因是|因(?![此而素])")
_SO = re.compile(
    r"[，,；;]?\s*(?:所以|因此|因而|于是|以致|故(?!事|乡|意|宫|居))|而(?=[^，,；;。]{0,8}$)"
)


def _reason(sentence: str) -> str | None:
    """The reason a sentence gives: what follows 由于/为了 up to its consequence, or
    what comes before ……所以."""
    nz = normalize(sentence)
    ns = nz.text
    m = _BECAUSE.search(ns)
    if m:
        start = m.end()
        so = _SO.search(ns, start)
        end = so.start() if so else len(ns)
    else:
        so = _SO.search(ns)
        if not so:
            return None
        start, end = 0, so.start()
    start, end = _trim(ns, start, end)
    if end <= start:
        return None
    a, b = nz.span(start, end)
    return sentence[a:b]


def _first(pattern: re.Pattern, sentence: str, qn: str, need_digit: bool = False) -> str | None:
    """The first match of `pattern` in `sentence` (matched in its normalised form: 33話
    is 33话, ３６页 is 36页) that the question does not name, as the sentence writes it."""
    nz = normalize(sentence)
    for m in pattern.finditer(nz.text):
        span = m.group().strip(" ,.")
        if not span or (need_digit and not re.search(r"[0-9一二三四五六七八九十百千万两半]", span)):
            continue
        if span in qn:  # the question's own year is not the answer
            continue
        start = m.start() + m.group().index(span)
        a, b = nz.span(start, start + len(span))
        return sentence[a:b]
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


__all__ = ["short_answer"]
