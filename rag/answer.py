"""Cited answers: the extractive answerer (the offline default) and the answer types.

The extractive answerer quotes, verbatim, the sentence or few sentences of the retrieved
passages that best answer the question, each followed by its citation [n]. When the
evidence is weak it refuses plainly and lists the closest passages as possibly related.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.chunking import split_sentences
from rag.config import Settings
from rag.retrieve import Hit, HybridRetriever
from rag.textnorm import norm

REFUSAL = "根据现有文档无法回答这个问题。"

# Refusal model: logistic regression over evidence features, fitted by
# eval/calibrate_refusal.py on data other than corpus_qa (see refusal_calibration.md).
_REFUSAL_MODEL = Path(__file__).with_name("refusal_model.json")


@functools.lru_cache(maxsize=1)
def refusal_model() -> dict:
    try:
        return json.loads(_REFUSAL_MODEL.read_text(encoding="utf-8"))
    except FileNotFoundError:  # before the first calibration: a hand-set model
        return {
            "features": ["dense_top", "coverage", "missing_idf", "type_ok", "bm25_top1"],
            "coef": [6.0, 4.0, -2.0, 0.8, 0.5],
            "intercept": -6.0,
            "threshold": 0.5,
        }


@dataclass(frozen=True)
class Citation:
    n: int
    chunk_id: str
    doc_id: str
    title: str
    source: str
    date: str | None
    start: int  # passage offsets in the document's original text
    end: int
    text: str  # the whole cited passage
    quotes: tuple[tuple[int, int], ...] = ()  # quoted sentences' offsets in the document


def make_citation(index, n: int, h: Hit, quotes=()) -> Citation:
    """Citation `n` for hit `h`: its passage plus its document's title, source and date."""
    meta = index.doc_meta(h.doc_id)
    return Citation(
        n,
        h.chunk_id,
        h.doc_id,
        meta.get("title") or h.doc_id,
        meta.get("source") or "",
        meta.get("date"),
        h.start,
        h.end,
        h.text,
        tuple(quotes),
    )


@dataclass(frozen=True)
class AnswerSentence:
    text: str
    citation: int  # n of its citation
    start: int  # offsets in the document's original text
    end: int
    supported: bool | None = True  # extractive quotes are supported by construction


@dataclass
class Answer:
    question: str
    text: str
    refused: bool
    citations: list[Citation]
    sentences: list[AnswerSentence]
    retrieved: list[Hit]
    confidence: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    notice: str = ""
    rewritten_question: str | None = None
    generator: str = "extractive"

    def to_json(self) -> dict:
        return {
            "question": self.question,
            "rewritten_question": self.rewritten_question,
            "answer": self.text,
            "refused": self.refused,
            "confidence": round(self.confidence, 4),
            "generator": self.generator,
            "notice": self.notice,
            "sentences": [asdict(s) for s in self.sentences],
            "citations": [
                {
                    "n": c.n,
                    "doc_id": c.doc_id,
                    "title": c.title,
                    "source": c.source,
                    "date": c.date,
                    "start": c.start,
                    "end": c.end,
                    "text": c.text,
                    "quotes": [list(q) for q in c.quotes],
                }
                for c in self.citations
            ],
            "retrieved": [
                {
                    "chunk_id": h.chunk_id,
                    "doc_id": h.doc_id,
                    "score": round(h.score, 6),
                    "dense_rank": h.dense_rank,
                    "bm25_rank": h.bm25_rank,
                    "start": h.start,
                    "end": h.end,
                    "text": h.text,
                }
                for h in self.retrieved
            ],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


# ------------------------------------------------------------------ question analysis
_NUM_Q = re.compile(
    r"多少|几[个名次年天人岁项座条部处家种届期位万亿]|几|数量|比例|百分之|多大|多高|多长|多远|多重|面积|人口|规模"
)
_DATE_Q = re.compile(r"何时|什么时候|哪一?年|哪个月|哪一?天|几月|几号|日期|时间|年份|何年")
_WHO_Q = re.compile(r"谁|哪位|何人|什么人|哪个人|姓名|名字")
_LIST_Q = re.compile(r"哪些|哪几|有什么|包括|分别")
_WHICH_N = re.compile(r"哪[几两二三四五六七八九十]")  # 哪两个部门: names, not a count
_WHERE_Q = re.compile(r"哪里|在哪|何处|什么地方|哪个(?:城市|地方|国家|省|市|区)")

_NUM = re.compile(
    r"\d|[一二三四五六七八九十百千万亿两半]+[个名次年天人岁项座条部处家种届期位%％成倍]|分之"
)
_DATE = re.compile(
    r"\d{2,4}\s*年|\d{1,2}\s*月\s*\d{0,2}|[一二三四五六七八九十〇零]{2,4}年|\d{1,2}日"
)
_LIST = re.compile(r"[、，,；;].*[、，,；;]")
_CLAUSE = re.compile(r"[，,；;：:、]\s*")


def answer_type(question: str) -> str:
    q = norm(question)
    if _DATE_Q.search(q):
        return "date"
    if _WHICH_N.search(q):
        return "list"
    if _NUM_Q.search(q):
        return "number"
    if _WHO_Q.search(q):
        return "person"
    if _WHERE_Q.search(q):
        return "place"
    if _LIST_Q.search(q):
        return "list"
    return "other"


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
_AMOUNT = rf"[{_CN_NUM}.,]+\s*(?:多|余)?\s*"
_PEOPLE_UNITS = ("人", "名", "位", "人次", "万人")
_PEOPLE = re.compile(_AMOUNT + r"(?:[万亿]\s*)?(?:名|人|位)")
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


def question_slot(question: str) -> re.Pattern | None:
    """The pattern of a filler for a number question's slot, when its nouns tell it."""
    q = norm(question)
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


def type_match(kind: str, sentence_norm: str, slot: re.Pattern | None = None) -> float:
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
    return 0.5


_YEAR = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
_RELATIVE_YEAR = {"前年": -2, "去年": -1, "上年": -1, "今年": 0, "本年": 0, "明年": 1}
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
    asked = set(_YEAR.findall(norm(question)))
    said = years_named(sentence, doc_date)
    return bool(asked and said and not asked & said)


def year_untied(question: str, doc_text: str, doc_date: str | None) -> bool:
    """The question names a year that neither the document nor its date mentions."""
    asked = set(_YEAR.findall(norm(question)))
    if not asked:
        return False
    known = years_named(doc_text, doc_date)
    if doc_date and doc_date[:4].isdigit():
        known.add(doc_date[:4])
    return not asked & known


def _is_question(sentence: str) -> bool:
    """A sentence that asks (为何一年一期?) never answers, however well it matches."""
    return sentence.rstrip(" ”’」』)）\"'").endswith(("?", "？"))


# ------------------------------------------------------------------ the answerer
@dataclass(frozen=True)
class _Cand:
    hit_i: int
    start: int  # offsets in the document
    end: int
    text: str
    score: float
    coverage: float
    type_ok: float


class ExtractiveAnswerer:
    """Picks verbatim sentences from retrieved passages; needs no LLM."""

    name = "extractive"

    def __init__(self, retriever: HybridRetriever, settings: Settings | None = None):
        self.retriever = retriever
        self.settings = settings or retriever.settings
        # None in the settings means "the calibrated threshold"
        t = self.settings.refusal_threshold
        self.refusal_threshold = refusal_model()["threshold"] if t is None else t

    # scoring ----------------------------------------------------------------
    def _idf(self, tokens: list[str]) -> dict[str, float]:
        terms = list(set(tokens))
        return dict(zip(terms, self.retriever.index.bm25.idf(terms).tolist()))

    def _candidates(self, question: str, hits: list[Hit], kind: str) -> list[_Cand]:
        q_toks = self.retriever.index.tokenize(question)
        idf = self._idf(q_toks)
        total = sum(idf.values()) or 1.0
        q_norm = norm(question)
        q_bigrams = {q_norm[i : i + 2] for i in range(len(q_norm) - 1)}
        cands = []
        slot = question_slot(question) if kind == "number" else None

        def score(text: str, prior: float) -> tuple[float, float, float]:
            sn = norm(text)
            cov = sum(w for t, w in idf.items() if t in sn) / total
            bis = {sn[j : j + 2] for j in range(len(sn) - 1)}
            bi = len(q_bigrams & bis) / max(len(q_bigrams), 1)
            tm = type_match(kind, sn, slot)
            length_pen = 0.15 * max(0.0, (len(sn) - 120) / 120)
            w = self.weights
            typed = w["type"] * tm * (kind != "other")
            return cov + w["bigram"] * bi + typed + w["rank"] * prior - length_pen, cov, tm

        for i, h in enumerate(hits):
            prior = 1.0 / (1 + i)
            for s, e in split_sentences(h.text):
                if e - s > self.max_sentence_chars:
                    s, e = self._window(h.text, s, e, lambda t, p=prior: score(t, p)[0])
                sent = h.text[s:e]
                if len(norm(sent)) < 4 or _is_question(sent):
                    continue
                sc, cov, tm = score(sent, prior)
                cands.append(_Cand(i, h.start + s, h.start + e, sent, sc, cov, tm))
        return cands

    max_sentence_chars = 90
    # sentence score: IDF coverage of the question + these times the question's bigrams
    # found, the answer-type match and the passage's rank prior (CMRC tuning split)
    weights = {"bigram": 0.6, "type": 0.4, "rank": 0.5}
    fit_ratio = 0.7  # how far below the top sentence a fitting one may score

    def _window(self, text: str, s: int, e: int, score) -> tuple[int, int]:
        """The best run of clauses of a long sentence that fits in `max_sentence_chars`."""
        cuts = [s] + [m.end() for m in _CLAUSE.finditer(text, s, e) if m.end() < e] + [e]
        if len(cuts) == 2:  # no clause marks (text that lost its punctuation): fixed windows
            step = self.max_sentence_chars // 2
            cuts = list(range(s, e, step)) + [e]
        best, best_span = float("-inf"), (s, min(e, s + self.max_sentence_chars))
        for a in range(len(cuts) - 1):
            for b in range(a + 1, len(cuts)):
                if cuts[b] - cuts[a] > self.max_sentence_chars:
                    break
                sc = score(text[cuts[a] : cuts[b]])
                if sc > best:
                    best, best_span = sc, (cuts[a], cuts[b])
        return best_span

    def select(self, question: str, hits: list[Hit]) -> tuple[list[_Cand], _Cand | None]:
        """Candidate sentences, best first, and the one that answers (None: none can)."""
        kind = answer_type(question)
        cands = sorted(self._candidates(question, hits, kind), key=lambda c: -c.score)
        best = self._fitting(question, hits, cands, kind)
        if best is not None and best is not cands[0]:
            cands.remove(best)
            cands.insert(0, best)
        return cands, best

    def _doc_date(self, hit: Hit) -> str | None:
        return self.retriever.index.doc_meta(hit.doc_id).get("date")

    def _fitting(self, question: str, hits: list[Hit], cands: list[_Cand], kind: str):
        """The best-scoring sentence that can answer: None when none within reach can.

        A question that asks for a date or a number is answered only by a sentence that
        holds one of the asked kind (预算是多少 wants an amount of money, not "4个特点"),
        and a question that names a year only by a sentence not about other years, from
        a passage or document of that year. A sentence within `fit_ratio` of the top
        score that fits wins over a top one that does not; when none fits, the documents
        do not say, and we refuse.
        """
        if not cands:
            return None
        floor = self.fit_ratio * cands[0].score
        names_year = bool(_YEAR.search(norm(question)))
        untied: dict[str, bool] = {}  # per document: its text is read once, and only here
        for c in cands:
            if c.score < floor:
                break
            if kind in ("date", "number") and c.type_ok < 1.0:
                continue
            if names_year:
                hit = hits[c.hit_i]
                date = self._doc_date(hit)
                if year_conflict(question, c.text, date):
                    continue
                if hit.doc_id not in untied:
                    text = self.retriever.index.document_text(hit.doc_id)
                    untied[hit.doc_id] = year_untied(question, text, date)
                if untied[hit.doc_id]:
                    continue
            return c
        return None

    def features(self, question: str, hits: list[Hit], best: _Cand | None) -> dict[str, float]:
        """Evidence features of the refusal model (all in [0, 1] except type_ok)."""
        if not hits or best is None:
            return {}
        q_toks = self.retriever.index.tokenize(question)
        idf = self._idf(q_toks)
        top_text = norm(hits[0].text)
        top3 = norm("".join(h.text for h in hits[:3]))
        missing = [w for t, w in idf.items() if t not in top_text]
        content = [t for t in set(q_toks) if len(t) >= 2]
        vocab = self.retriever.index.bm25.vocab
        return {
            "oov": sum(t not in vocab for t in content) / max(len(content), 1),
            "coverage_top3": sum(w for t, w in idf.items() if t in top3)
            / (sum(idf.values()) or 1.0),
            "dense_top": max((h.dense_score or 0.0) for h in hits[:3]),
            "coverage": best.coverage,
            "missing_idf": max(missing, default=0.0) / (max(idf.values(), default=1.0) or 1.0),
            "type_ok": min(best.type_ok, 1.0),
            "bm25_top1": 1.0 if hits[0].bm25_rank == 1 else 0.0,
        }

    def confidence(self, question: str, hits: list[Hit], best: _Cand | None) -> float:
        f = self.features(question, hits, best)
        if not f:
            return 0.0
        m = refusal_model()
        z = m["intercept"] + sum(c * f[name] for name, c in zip(m["features"], m["coef"]))
        return 1.0 / (1.0 + math.exp(-z))

    # answering --------------------------------------------------------------
    def answer(self, question: str, top_k: int | None = None, **filters) -> Answer:
        t0 = time.perf_counter()
        res = self.retriever.search(question, top_k=top_k, **filters)
        t1 = time.perf_counter()
        ans = self.compose(question, res.hits)
        ans.timings_ms.update(res.timings_ms)
        ans.timings_ms["retrieve_ms"] = (t1 - t0) * 1e3
        ans.timings_ms["generate_ms"] = (time.perf_counter() - t1) * 1e3
        ans.timings_ms["total_ms"] = (time.perf_counter() - t0) * 1e3
        return ans

    def stream(self, question: str, top_k: int | None = None, **filters) -> Iterator[str | Answer]:
        """Yield the answer text in pieces, then the finished `Answer` as the last item.

        Every answerer has this shape, so the terminal and the chat UI stream any of them.
        """
        ans = self.answer(question, top_k=top_k, **filters)
        for s in ans.sentences or [None]:
            yield ans.text if s is None else f"{s.text}[{s.citation}]"
        yield ans

    def compose(self, question: str, hits: list[Hit]) -> Answer:
        """Choose and cite sentences from `hits`; refuse when the evidence is weak."""
        cands, best = self.select(question, hits)
        conf = self.confidence(question, hits, best)
        if best is None or conf < self.refusal_threshold:
            return self._refusal(question, hits, conf)

        chosen = [best]
        budget = self.settings.answer_max_chars  # short answers: the passage is one click away
        for c in cands[1:8]:
            if len(chosen) >= self.settings.max_answer_sentences:
                break
            used = sum(len(x.text) for x in chosen)
            overlaps = any(
                c.hit_i == x.hit_i
                and c.start < x.end
                and x.start < c.end
                or norm(c.text) == norm(x.text)
                for x in chosen
            )
            if (
                c.score >= self.settings.answer_second_ratio * best.score
                and used + len(c.text) <= budget
                and len(c.text) >= 10  # a bare heading adds nothing to an answer
                and not overlaps
            ):
                chosen.append(c)
        # best sentence first: the reader sees the answer before the supporting context
        return self._cited(question, hits, chosen, conf)

    def _cited(self, question, hits, chosen: list[_Cand], conf: float) -> Answer:
        order: list[int] = []
        for c in chosen:
            if c.hit_i not in order:
                order.append(c.hit_i)
        n_of = {hi: n for n, hi in enumerate(order, start=1)}
        citations = [
            make_citation(
                self.retriever.index,
                n_of[hi],
                hits[hi],
                [(c.start, c.end) for c in chosen if c.hit_i == hi],
            )
            for hi in order
        ]
        sentences = [AnswerSentence(c.text, n_of[c.hit_i], c.start, c.end) for c in chosen]
        text = "".join(f"{c.text}[{n_of[c.hit_i]}]" for c in chosen)
        return Answer(question, text, False, citations, sentences, hits, conf)

    def _refusal(self, question, hits, conf: float) -> Answer:
        related = [
            make_citation(self.retriever.index, n, h) for n, h in enumerate(hits[:3], start=1)
        ]
        return Answer(
            question,
            REFUSAL,
            True,
            related,
            [],
            hits,
            conf,
            notice="以下段落可能相关，但不足以回答这个问题。" if related else "",
        )
