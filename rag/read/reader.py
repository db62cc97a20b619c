"""Reading passages for an answer: what a question asks for, and how well each sentence
of a passage answers it.

Both the retriever (its answer-aware rerank of the top candidates) and the extractive
answerer (which sentence to quote) score sentences here, with one cache, so a passage is
read once per question.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from rag.ingest.chunking import split_sentences
from rag.ingest.tables import CELL_SEP, Cell, is_row, row_cells
from rag.textnorm import norm
from rag.types import Query

_NUM_Q = re.compile(
    r"多少|几[个名次年天人岁项座条部处家种届期位万亿]|几|数量|比例|百分之|多大|多高|多长|多远|多重|面积|人口|规模"
)
_DATE_Q = re.compile(r"何时|什么时候|哪一?年|哪个月|哪一?天|几月|几号|日期|时间|年份|何年")
_WHO_Q = re.compile(r"谁|哪位|何人|什么人|哪个人|姓名|名字")
_LIST_Q = re.compile(r"哪些|哪几|有什么|包括|分别")
_WHICH_N = re.compile(r"哪[几两二三四五六七八九十]")  # 哪两个部门: names, not a count
_WHERE_Q = re.compile(r"哪里|在哪|何处|什么地方|哪个(?:城市|地方|国家|省|市|区)")
# 为什么 after a verb of naming asks "as what" (改名为什么, 被誉为什么), not why
_WHY_Q = re.compile(
    r"(?<![名称评选视作成誉列定改认美])为什么|为何|原因|因何|何故|缘何|什么缘故|理由"
)
# what a sentence that gives a reason says: 因/由于/为了/导致/所以; "死于2019年" gives none
_REASON = re.compile(
    r"因(?!地制宜|素|人而异|势利导)|由于|为了|所以|导致|致使|所致|造成|以致|鉴于|出于|目的|理由|缘故|引起|引发|是为"
)

_NUM = re.compile(
    r"\d|[一二三四五六七八九十百千万亿两半]+[个名次年天人岁项座条部处家种届期位%％成倍]|分之"
)
_DATE = re.compile(
    r"\d{2,4}\s*年|\d{1,2}\s*月\s*\d{0,2}|[一二三四五六七八九十〇零]{2,4}年|\d{1,2}日"
)
_LIST = re.compile(r"[、，,；;].*[、，,；;]")
_CLAUSE = re.compile(r"[，,；;：:、]\s*")
_CELL_END = re.compile(re.escape(CELL_SEP))
_OPEN_END = frozenset("，,；;：:、｜| \t\u3000")


# the first cue found decides: 哪一年有多少 asks for a date, 哪两个部门 for names
_KINDS = [
    (_WHY_Q, "reason"),  # 为什么……多少 asks why, 原因是什么 too
    (_DATE_Q, "date"),
    (_WHICH_N, "list"),
    (_NUM_Q, "number"),
    (_WHO_Q, "person"),
    (_WHERE_Q, "place"),
    (_LIST_Q, "list"),
]


def answer_type(question: str, normalized: bool = False) -> str:
    q = question if normalized else norm(question)
    return next((kind for cue, kind in _KINDS if cue.search(q)), "other")


# 这几年/近几年/好几 are idioms of time and amount, not a question word
_UNIT_Q = re.compile(r"(?:多少|(?<![这近前好十])几)([^\s，。？?、的是有]{1,4})")
_CN_NUM = "0-9一二三四五六七八九十百千万亿两半几数"
# Counter words and units that may follow 多少/几 ("几天", "多少公里"); longest first.
_UNITS = sorted(
    "公里 千米 平方米 平方公里 公顷 亿元 万元 美元 小时 分钟 人次 万人 个百分点".split()
    + list("个名人次年天项座条部处家种届期位岁层米元套辆架所只篇场户栋间台件亩吨倍"),
    key=len,
    reverse=True,
)


def question_unit(question: str) -> str | None:
    """The counter word a number question asks for: 几天 -> 天, 多少公里 -> 公里.

    Only real counters and units count: in 多少城建口的干部 the word after 多少 is a noun.
    """
    m = _UNIT_Q.search(norm(question))
    if not m:
        return None
    return next((u for u in _UNITS if m.group(1).startswith(u)), None)


# What a number question without a counter word asks for, told by its noun: 预算是多少
# wants an amount of money, 通过率是多少 a percentage, 常住人口有多少 a count of people.
# A sentence with some other number (194个项目) does not answer it.
# an amount starts with a digit: the header "计划投资（万元）" names a unit, not a sum
_AMOUNT = rf"[0-9一二三四五六七八九十百千两半几数][{_CN_NUM}.,]*\s*(?:多|余)?\s*"
_PEOPLE_UNITS = ("人", "名", "位", "人次", "万人")
_PEOPLE = re.compile(
    _AMOUNT + r"(?:[万亿]\s*)?(?:名|人次|人|位)"
)  # 人次 whole: 140万人次, not 140万人
_SLOTS: list[tuple[re.Pattern, re.Pattern]] = [
    (
        re.compile(r"率|比例|占比|比重|百分之|增速|增幅|涨幅|降幅"),
        re.compile(r"\d\s*%|百分之|[一二三四五六七八九]成|个百分点"),
    ),
    (
        re.compile(
            r"预算|资金|经费|费用|花费|投资|投入|钱|价格|价钱|票价|门票|收入|营收|利润|成本"
            r"|工资|薪|罚款|罚了|金额|造价|售价|市值|gdp|产值|票房|奖金"
        ),
        re.compile(_AMOUNT + r"(?:[万亿千百]\s*)*(?:元|块|美元|美金|欧元|英镑|日元|港元|港币)"),
    ),
    (re.compile(r"人口|人数|学员|游客|观众|员工|职工|居民|乘客|学生|伤亡|死亡|遇难|参加"), _PEOPLE),
    (re.compile(r"面积|占地"), re.compile(_AMOUNT + r"(?:[万亿]\s*)?(?:平方|亩|公顷)")),
    (
        re.compile(r"长度|多长|多远|距离|高度|多高|海拔|深度|多深"),
        re.compile(_AMOUNT + r"(?:[万千百]\s*)?(?:米|公里|千米|里)"),
    ),
]


def question_slot(question: str, normalized: bool = False) -> re.Pattern | None:
    """The pattern of a filler for a number question's slot, when its nouns tell it."""
    q = question if normalized else norm(question)
    unit = question_unit(q)
    if unit in _PEOPLE_UNITS:  # 多少人 is answered by 30多位成员 too
        return _PEOPLE
    if unit:
        return re.compile(rf"[{_CN_NUM}.%]+\s*(?:多|余)?\s*{re.escape(unit)}")
    # the noun nearest the question word decides: 培训费用是多少 -> money, not people
    at = min((m.start() for m in _NUM_Q.finditer(q)), default=len(q))
    best: tuple[int, re.Pattern] | None = None
    for cue, fill in _SLOTS:
        for m in cue.finditer(q):
            d = abs(m.start() - at)
            if best is None or d < best[0]:
                best = (d, fill)
    return best[1] if best else None


# a table cell that holds a figure ("120", "156亿元", "42602.1"), and a header's unit
# ("计划投资（万元）": the figures of that column are amounts of 万元)
_CELL_NUMBER = re.compile(r"-?[\d.,]+\s*[^\d]{0,6}")
_HEADER_UNIT = re.compile(r"[(（]\s*([^()（）]{1,6}?)\s*[)）]\s*$")


def header_affinity(header_norm: str, question_norm: str) -> int:
    """How much of a column header the question names: its bigrams found, and 2 more
    when the question holds the whole header."""
    h = header_norm
    return sum(h[i : i + 2] in question_norm for i in range(len(h) - 1)) + 2 * (h in question_norm)


def asked_cell(question_norm: str, row: str) -> Cell | None:
    """The cell of a table row whose header the question names most (None: no header is
    named); never the row's key, the cell whose value the question itself says
    (区县：崂山区 in "崂山区……多少")."""
    best, best_score = None, 0
    for c in row_cells(row):
        if norm(c.value) in question_norm:
            continue
        score = header_affinity(norm(c.header), question_norm)
        if score > best_score:
            best, best_score = c, score
    return best


def named_share(question_norm: str, row_norm: str) -> float:
    """The share of the question that a row's cell values spell out whole: the row of
    "莱西市中部体育馆改造工程" names all of that project, its neighbour "……建设工程" only
    the district, though both hold every term of the question."""
    named = {c.value for c in row_cells(row_norm) if len(c.value) >= 2 and c.value in question_norm}
    longest = [v for v in named if not any(v != w and v in w for w in named)]
    return sum(map(len, longest)) / max(len(question_norm), 1)


def cell_reading(c: Cell) -> str:
    """A cell's value with its column's unit when the value is a bare figure:
    "42602.1万元" under "计划投资（万元）"."""
    unit = _HEADER_UNIT.search(c.header)
    if unit and re.fullmatch(r"-?[\d.,]+", c.value):
        return c.value + unit.group(1)
    return c.value


def _cell_answers(c: Cell, slot: re.Pattern | None) -> bool:
    """A figure cell read with its column's unit fills the slot (42602.1 under 万元)."""
    return slot is not None and bool(slot.search(norm(cell_reading(c))))


def _row_type(sentence_norm: str, slot: re.Pattern | None, question_norm: str) -> float | None:
    """`type_match` of a table row for a number question; None when no cell holds a figure.

    The figure must be the asked one: in the cell whose header the question names, or
    one that fills the question's slot with its column's unit. A row (or part of one)
    whose only figure is another column's (序号：1) holds a number of another kind.
    """
    figures = [c for c in row_cells(sentence_norm) if _CELL_NUMBER.fullmatch(c.value)]
    if not figures:
        return None
    asked = asked_cell(question_norm, sentence_norm) if question_norm else None
    if any(c == asked or _cell_answers(c, slot) for c in figures) or not question_norm:
        return 2.0 if slot is not None else 1.0
    return 0.25 if slot is not None else 1.0


def type_match(
    kind: str, sentence_norm: str, slot: re.Pattern | None = None, question_norm: str = ""
) -> float:
    """How well a sentence holds the asked kind of value (0 none, 1 yes, 2 the slot's
    kind); `question_norm`, the normalised question, tells which cell of a row is asked."""
    if kind == "number" and ("｜" in sentence_norm or "|" in sentence_norm):
        row = _row_type(sentence_norm, slot, question_norm)
        if row is not None:
            return row
    if kind == "number":
        # When the question says what it counts, only a number of that kind answers it.
        if slot is not None:
            if slot.search(sentence_norm):
                return 2.0
            return 0.25 if _NUM.search(sentence_norm) else 0.0
        return 1.0 if _NUM.search(sentence_norm) else 0.0
    if kind == "date":
        return 1.0 if _DATE.search(sentence_norm) else 0.0
    if kind == "list":
        return 1.0 if _LIST.search(sentence_norm) else 0.3
    if kind == "reason":
        return 1.0 if _REASON.search(sentence_norm) else 0.0
    return 0.5


_YEAR = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
_RELATIVE_YEAR = {
    "前年": -2, "去年": -1, "上年": -1, "一年来": -1, "过去一年": -1,
    "今年": 0, "本年": 0, "明年": 1,
}  # fmt: skip
_RELATIVE = re.compile("|".join(_RELATIVE_YEAR))


def years_named(sentence: str, doc_date: str | None = None) -> set[str]:
    """Years a sentence names; 今年/去年/明年 count when the document's date is known."""
    sn = norm(sentence)
    years = set(_YEAR.findall(sn))
    if doc_date and doc_date[:4].isdigit():
        base = int(doc_date[:4])
        years.update(str(base + _RELATIVE_YEAR[m]) for m in _RELATIVE.findall(sn))
    return years


def year_conflict(question: str, sentence: str, doc_date: str | None = None) -> bool:
    """The question names a year and the sentence speaks only of other years.

    "2022年那一期有多少名学员" is not answered by "从2019年开始, 150多名干部...", nor
    "2022年实际完成投资" by "今年 (2023) 计划完成投资156亿元".
    """
    return _other_years(set(_YEAR.findall(norm(question))), sentence, doc_date)


def _other_years(asked: set[str] | frozenset[str], sentence: str, doc_date: str | None) -> bool:
    said = years_named(sentence, doc_date)
    return bool(asked and said and not asked & said)


def year_untied(question: str, doc_text: str, doc_date: str | None) -> bool:
    """The question names a year that neither the document nor its date mentions."""
    return years_untied(frozenset(_YEAR.findall(norm(question))), doc_text, doc_date)


def years_untied(asked: frozenset[str], doc_text: str, doc_date: str | None) -> bool:
    """`year_untied` for the years a question names (`Question.years`)."""
    if not asked:
        return False
    known = years_named(doc_text, doc_date)
    if doc_date and doc_date[:4].isdigit():
        known.add(doc_date[:4])
    return not asked & known


def is_question(sentence: str) -> bool:
    """A sentence that asks (为何一年一期?) never answers, however well it matches."""
    return sentence.rstrip(" ”’」』)）\"'").endswith(("?", "？"))


# ------------------------------------------------------------------ sentence scores
@dataclass(frozen=True)
class Sentence:
    start: int  # offsets in the passage
    end: int
    text: str
    score: float  # without the passage's rank prior, which only the answerer knows
    coverage: float
    type_ok: float


class Question(NamedTuple):
    """What `Reader.analyse` learns of a question, once."""

    text: str
    kind: str  # answer_type()
    slot: re.Pattern | None  # question_slot() for number questions
    idf: dict[str, float]  # the question's terms
    idf_total: float
    bigrams: frozenset[str]
    names_year: bool
    years: frozenset[str]  # the years it names ("2023")
    normalized: str  # rag.textnorm.norm of the text


class Reader:
    """Scores the sentences of a passage as answers to a question (no model, a few ms).

    score = IDF coverage of the question's terms + `weights` x (share of the question's
    character bigrams found, the answer-type match, for a table row the share of the
    question its cells spell out) - a penalty for long sentences. The first weights were
    chosen on the CMRC tuning split for the answerer (it has no tables).
    """

    max_sentence_chars = 90
    # a table row is quoted whole up to what a chunk holds (Settings.chunk_size); only a
    # longer one (cells of a page each) is cut, between cells
    max_row_chars = 300
    # "named": a table row's `named_share`, outweighing a passage's rank prior (at most
    # 0.5, rag.read.extractive) between rows that differ in one word of the key cell
    weights = {"bigram": 0.6, "type": 0.4, "named": 1.0}
    cache_size = 4096  # (question, passage) pairs: a few queries' worth of top passages

    def __init__(self, index):
        self.index = index
        # the chat serves several users at once: the caches are shared, under one lock
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], tuple[Sentence, ...]] = OrderedDict()
        self._last: Question | None = None

    def analyse(self, question: str | Query) -> Question:
        """Per question, once: its kind, slot pattern, term IDFs, bigrams and years.

        The question is normalised once (a `Query` from the retriever brings its own
        normalised form) and every later call with the same text is served from here.
        """
        text = question.text if isinstance(question, Query) else question
        last = self._last
        if last is not None and last.text == text:
            return last
        q_norm = Query.of(question).normalized
        kind = answer_type(q_norm, normalized=True)
        terms = list(set(self.index.tokenize(q_norm, normalized=True)))
        idf = dict(zip(terms, self.index.bm25.idf(terms).tolist()))
        years = frozenset(_YEAR.findall(q_norm))
        q = Question(
            text,
            kind,
            question_slot(q_norm, normalized=True) if kind == "number" else None,
            idf,
            sum(idf.values()) or 1.0,
            frozenset(q_norm[i : i + 2] for i in range(len(q_norm) - 1)),
            bool(years),
            years,
            q_norm,
        )
        self._last = q
        return q

    def _score(self, sn: str, q: Question) -> tuple[float, float, float]:
        cov = sum(w for t, w in q.idf.items() if t in sn) / q.idf_total
        # `b in sn` per question bigram: the same count as intersecting the sentence's
        # bigram set, without building it
        bi = sum(b in sn for b in q.bigrams) / max(len(q.bigrams), 1)
        tm = type_match(q.kind, sn, q.slot, q.normalized)
        length_pen = 0.15 * max(0.0, (len(sn) - 120) / 120)
        typed = self.weights["type"] * tm * (q.kind != "other")
        sc = cov + self.weights["bigram"] * bi + typed - length_pen
        if "|" in sn or "｜" in sn:  # a table row: the one whose cells the question names
            sc += self.weights["named"] * named_share(q.normalized, sn)
        return sc, cov, tm

    def sentences(self, question: str, text: str) -> tuple[Sentence, ...]:
        """The passage's answer candidates: its sentences (long ones cut to their best run
        of clauses), less questions and fragments, each scored."""
        key = (question, text)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        q = self.analyse(question)
        out = []
        for s, e in split_sentences(text):
            if is_row(text[s:e]):
                # a table row is a unit: whole, or (too long) a run of whole cells
                if e - s > self.max_row_chars:
                    s, e = self._window(text, s, e, q, self.max_row_chars, row=True)
            elif e - s > self.max_sentence_chars:
                s, e = self._window(text, s, e, q, self.max_sentence_chars)
            # an answer never ends at 、，；：(a clause of a longer sentence, a speaker's
            # "李瑞玲："): the quote stops at the last word
            while e > s and text[e - 1] in _OPEN_END:
                e -= 1
            sent = text[s:e]
            sn = norm(sent)
            if len(sn) < 4 or is_question(sent):
                continue
            sc, cov, tm = self._score(sn, q)
            out.append(Sentence(s, e, sent, sc, cov, tm))
        result = tuple(out)
        with self._lock:
            self._cache[key] = result
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return result

    def _window(
        self, text: str, s: int, e: int, q: Question, limit: int, row: bool = False
    ) -> tuple[int, int]:
        """The best run of clauses of a long sentence (of whole cells, for a table row:
        never a header without its value) that fits in `limit` characters."""
        marks = _CELL_END.finditer(text, s, e) if row else _CLAUSE.finditer(text, s, e)
        cuts = [s] + [m.end() for m in marks if m.end() < e] + [e]
        if len(cuts) == 2:  # no clause marks (text that lost its punctuation): fixed windows
            step = limit // 2
            cuts = list(range(s, e, step)) + [e]
        best, best_span = float("-inf"), (s, min(e, s + limit))
        for a in range(len(cuts) - 1):
            for b in range(a + 1, len(cuts)):
                if cuts[b] - cuts[a] > limit:
                    break
                sc = self._score(norm(text[cuts[a] : cuts[b]]), q)[0]
                if sc > best:
                    best, best_span = sc, (cuts[a], cuts[b])
        return best_span

    def fits(self, question: str, text: str, type_ok: float, doc_date: str | None) -> bool:
        """A sentence holds the asked kind of value and is not about another year."""
        q = self.analyse(question)
        if q.kind in ("date", "number", "reason") and type_ok < 1.0:
            return False
        return not (q.names_year and _other_years(q.years, text, doc_date))

    def evidence(
        self, question: str | Query, text: str, doc_date: str | None
    ) -> tuple[float, float]:
        """How well the passage answers: its best sentence's score, and its best fitting
        sentence's (0 when none)."""
        question = self.analyse(question).text  # a Query is analysed with its own norm
        sents = self.sentences(question, text)
        best = max((s.score for s in sents), default=0.0)
        fits = (s.score for s in sents if self.fits(question, s.text, s.type_ok, doc_date))
        fit = max(fits, default=0.0)
        return best, fit
