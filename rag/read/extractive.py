"""Cited answers: the extractive answerer (the offline default) and the answer types.

The extractive answerer quotes, verbatim, the sentence or few sentences of the retrieved
passages that best answer the question, each followed by its citation [n]. When the
evidence is weak it refuses plainly and lists the closest passages as possibly related.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.ingest.chunking import split_sentences
from rag.ingest.planted import INSTRUCTION, flags_in
from rag.ingest.tables import CELL_SEP
from rag.read.answerability import evidence
from rag.read.answerability import shared as answerability_model
from rag.read.constraints import YEAR, constraints, parts, shown, tag, unmet
from rag.read.grade import CONFLICT, grade
from rag.read.reader import Reader, named_share, years_named, years_untied
from rag.textnorm import norm, without_glosses
from rag.types import Answer, AnswerSentence, Citation, Filters, Hit, Searcher

REFUSAL = "根据现有文档无法回答这个问题。"
# how far either side of a sentence its "paragraph" reaches when the text has no breaks
PARAGRAPH_REACH = 600
RELATED_NOTICE = "以下段落可能相关，但不足以回答这个问题。"

# Refusal model: logistic regression over evidence features, fitted by
# rag/eval/tuning/calibrate_refusal.py on data other than corpus_qa (see refusal_calibration.md).
_REFUSAL_MODEL = Path(__file__).with_name("refusal_model.json")


@functools.lru_cache(maxsize=2)
def refusal_model(answerability: bool = True) -> dict:
    """The fitted refusal model; `answerability` False: the fit without the cross-encoder's
    feature (it is off in the settings, or this checkout ships no such model)."""
    try:
        m = json.loads(_REFUSAL_MODEL.read_text(encoding="utf-8"))
    except FileNotFoundError:  # before the first calibration: a hand-set model
        return {
            "features": ["dense_top", "coverage", "missing_idf", "type_ok", "bm25_top1"],
            "coef": [6.0, 4.0, -2.0, 0.8, 0.5],
            "intercept": -6.0,
            "threshold": 0.5,
        }
    if not answerability and ANSWERS in m["features"]:
        return m["without_answerability"]
    return m


ANSWERS = "answers"  # the refusal feature the answerability cross-encoder gives


def provenance(meta) -> str:
    """Where an uploaded document came from, as a citation shows it; "" for the corpus.

    Set only from the upload's sidecar (rag.ingest.loaders.PROVENANCE), so a file cannot
    pass as an official document by its name or its own metadata.
    """
    at = meta.get("uploaded_at")
    if not at:
        return ""
    try:
        when = dt.datetime.fromisoformat(str(at)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        when = ""
    parts = [str(meta.get("uploaded_by") or "")[:60], when]
    if meta.get("original_file"):
        parts.append(f"原文件名：{str(meta.get('original_file'))[:120]}")
    return f"用户上传（{'，'.join(p for p in parts if p)}）"


def make_citation(index, n: int, h: Hit, quotes=()) -> Citation:
    """Citation `n` for hit `h`: its passage plus its document's title, source, date and,
    for an upload, where it came from."""
    meta = index.doc_meta(h.doc_id)
    return Citation(
        n,
        h.chunk_id,
        h.doc_id,
        meta.title or h.doc_id,
        meta.source or "",
        meta.date,
        h.start,
        h.end,
        h.text,
        tuple(quotes),
        provenance=provenance(meta),
        flags=index.passage_flags(h.doc_id, h.start, h.end),
        # the quoted sentence's place when there is one: a passage may span rows or pages
        location=index.location(h.doc_id, *(quotes[0] if quotes else (h.start, h.end))),
        ocr=index.is_ocr(h.doc_id, h.start, h.end),
        kb=h.kb,
    )


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
    flags: tuple[str, ...] = ()  # planted-text kinds of the sentence (rag.ingest.planted)


# a paragraph that opens with who is speaking: "……主任李瑞玲：" (at most 80 characters)
_SPEAKER = re.compile(r"\s*([^\n：:“”\"。！？]{2,80})[：:]")
_PRONOUN_START = re.compile(r"^[\s“”\"]*(?:他们|她们|他|她|其|该|此|这一|这些|这是)")
# questions that want several points gathered: 有哪些经验, 主要措施, 做法
GATHER = re.compile(r"哪些|有什么|主要|经验|措施|做法|举措|亮点|特点|总结")

# "总结这篇文档", "概括一下这份报告的主要内容": one document's key sentences
SUMMARY = re.compile(r"总结|概括|归纳|摘要|概述|梳理")
_SUMMARY_DOC = re.compile(r"这篇|这份|该文|本文|文档|文章|报道|报告|材料|文件|通知|主要内容|要点")
_BYLINE = re.compile(r"^(?:来源|作者|编辑|责任编辑|记者|通讯员|发布时间|日期)[:：]")

UNMET = "文档中没有找到与{}相符的答案。相关的是："
UNMET_NOTICE = "所引内容与问题中的{}不符，不能当作这个问题的答案。"


def unmet_text(missing, sentences) -> str:
    return UNMET.format(shown(missing)) + "".join(f"{s.text}[{s.citation}]" for s in sentences)


def unmet_reason(missing) -> str:
    return f"引用中没有出现问题里的{shown(missing)}"


SUMMARY_NOTICE = "《{}》的要点（摘自原文）："
CONFLICT_NOTICE = "所引文档对这个问题给出的数值不同，请核对原文后再使用。"


def conflict_text(sentences) -> str:
    """The answer text when documents disagree: "文档之间不一致：……[1]；……[2]。"."""
    return CONFLICT + "；".join(f"{s.text}[{s.citation}]" for s in sentences) + "。"


def _clause(c: _Cand) -> _Cand:
    """`c` without its closing punctuation, to be joined into a conflict notice."""
    text = c.text.rstrip("。！!；;，,…")
    return _Cand(
        c.hit_i, c.start, c.start + len(text), text, c.score, c.coverage, c.type_ok, c.flags
    )


class ExtractiveAnswerer:
    """Picks verbatim sentences from retrieved passages; needs no LLM."""

    name = "extractive"

    def __init__(self, retriever: Searcher, settings: Settings | None = None):
        self.retriever = retriever
        self.settings = settings or retriever.settings
        # the cross-encoder (None: off in the settings, or none shipped)
        self.answerability = (
            answerability_model(self.settings.cache_path)
            if self.settings.answerability_model
            else None
        )
        self.model = refusal_model(self.answerability is not None)
        # None in the settings means "the calibrated threshold"
        t = self.settings.refusal_threshold
        self.refusal_threshold = self.model["threshold"] if t is None else t

    # scoring ----------------------------------------------------------------
    @property
    def reader(self) -> Reader:
        return self.retriever.reader  # shared: the retriever's rerank read these passages

    def _candidates(self, question: str, hits: list[Hit]) -> list[_Cand]:
        """Every sentence of the passages, scored; none that is an instruction planted
        for the assistant (it is not a fact, whatever it says)."""
        w = self.weights["rank"]
        index = self.retriever.index
        out = []
        for i, h in enumerate(hits):
            planted = index.planted(h.doc_id)
            for x in self.reader.sentences(question, h.text):
                start, end = h.start + x.start, h.start + x.end
                flags = flags_in(planted, start, end) if planted else ()
                if INSTRUCTION in flags:
                    continue
                out.append(
                    _Cand(
                        i, start, end, x.text, x.score + w / (1 + i), x.coverage, x.type_ok, flags
                    )
                )
        return out

    # a sentence's score (rag.read.reader.Reader) + this times its passage's rank prior 1/(1+i)
    weights = {"rank": 0.5}
    fit_ratio = 0.7  # how far below the top sentence a fitting one may score
    constrained_ratio = 0.45  # ... when those above miss the question's constraints

    def select(self, question: str, hits: list[Hit]) -> tuple[list[_Cand], _Cand | None]:
        """Candidate sentences, best first, and the one that answers (None: none can)."""
        cands = sorted(self._candidates(question, hits), key=lambda c: -c.score)
        # a sentence carrying citation markers of its own (根据文档[1]……) never leads
        # while a plain one can answer
        best = self._fitting(question, hits, [c for c in cands if not c.flags])
        best = best or self._fitting(question, hits, cands)
        if best is not None and best is not cands[0]:
            cands.remove(best)
            cands.insert(0, best)
        return cands, best

    def _doc_date(self, hit: Hit) -> str | None:
        return self.retriever.index.doc_meta(hit.doc_id).date

    def _fitting(self, question: str, hits: list[Hit], cands: list[_Cand]):
        """The best-scoring sentence that can answer: None when none within reach can.

        A question that asks for a date or a number is answered only by a sentence that
        holds one of the asked kind (预算是多少 wants an amount of money, not "4个特点"),
        and a question that names a year only by a sentence not about other years, from
        a passage or document of that year. Every place, organisation, person, year and
        named work the question names must be met by the sentence's evidence
        (`unmet_constraints`). A sentence within `fit_ratio` of the top score that fits
        wins over a top one that does not; when none fits, the documents do not say.
        """
        found = next((c for c, m in self._fits(question, hits, cands) if not m), None)
        if found is None and constraints(question):
            # the best-scoring sentences are about another place, person or year: the one
            # about the asked one may score lower (its paragraph names it, not itself)
            found = next(
                (c for c, m in self._fits(question, hits, cands, self.constrained_ratio) if not m),
                None,
            )
        return found

    def near_miss(self, question: str, hits: list[Hit], cands: list[_Cand]):
        """(sentence, unmet constraints) for the best sentence that answers the asked
        kind of value but misses one of the question's constraints (崂山's 156亿元 for
        威海's budget), or None."""
        return next(((c, m) for c, m in self._fits(question, hits, cands) if m), None)

    def _fits(self, question: str, hits: list[Hit], cands: list[_Cand], ratio: float | None = None):
        """(sentence, unmet constraints) for each sentence within reach (`ratio` of the
        top score) that holds the asked kind of value, best first."""
        if not cands:
            return
        floor = (self.fit_ratio if ratio is None else ratio) * cands[0].score
        q = self.reader.analyse(question)
        names_year = q.names_year
        cons = constraints(question)
        years = [c for c in cons if c.kind == YEAR]
        split = parts(question)
        groups = [list(constraints(p)) if len(split) > 1 else list(cons) for p in split]
        untied: dict[str, bool] = {}  # per document: its text is read once, and only here
        for c in cands:
            if c.score < floor:
                break
            hit = hits[c.hit_i]
            date = self._doc_date(hit) if names_year or cons else None
            if not self.reader.fits(question, c.text, c.type_ok, None):
                continue  # not the asked kind of value: no answer, not even a near one
            if names_year:
                if hit.doc_id not in untied:
                    text = self.retriever.index.document_text(hit.doc_id)
                    untied[hit.doc_id] = years_untied(q.years, text, date)
                if untied[hit.doc_id] or not self.reader.fits(question, c.text, c.type_ok, date):
                    # about another year: 今年(2023)计划投资 for 2024's budget
                    others = [k for k in cons if k.kind != YEAR]
                    yield c, years + self.unmet_constraints(others, hit, c)
                    continue
            # A question of several questions is answered by a sentence meeting one's.
            found = [self.unmet_constraints(g, hit, c) if g else [] for g in groups]
            yield c, min(found, key=len)

    def unmet_by_passages(self, question: str, hits: list[Hit]) -> list:
        """The question's constraints that none of `hits` (passages an LLM cited), their
        locations, their documents' labels or dates meet: the same rule the extractive
        answer keeps, for any answerer."""
        missing = list(constraints(question))
        for h in hits:
            missing = self._unmet_in(missing, h, h.start, h.end, h.text, [norm(h.text)])
        return missing

    def unmet_constraints(self, cons, hit: Hit, c: _Cand) -> list:
        """The question's constraints that neither the sentence, its paragraph, its
        location (heading path, sheet, slide), nor its document's title and metadata meet."""
        missing = unmet(cons, [norm(c.text)])
        if not missing:
            return missing
        text = self.retriever.index.document_text(hit.doc_id)
        a = text.rfind("\n", 0, c.start) + 1
        b = text.find("\n", c.end)
        b = len(text) if b < 0 else b
        # a paragraph, bounded: a record without line breaks is not one paragraph
        para = text[max(a, c.start - PARAGRAPH_REACH) : min(b, c.end + PARAGRAPH_REACH)]
        return self._unmet_in(missing, hit, c.start, c.end, para, [norm(hit.text), norm(para)])

    def _unmet_in(self, missing, hit: Hit, start: int, end: int, around: str, near: list) -> list:
        """`missing` less what `near` (normalised texts), the location of [start, end),
        the document's labels or the years `around` speaks of meet, nearest first."""
        index = self.retriever.index

        def evidence():  # each normalised only while a constraint is still unmet
            yield from near
            yield norm(index.location(hit.doc_id, start, end))
            yield from (norm(x) for x in index.doc_labels(hit.doc_id))
            # years: the document's own date, and what 今年/去年 mean in it
            date = self._doc_date(hit)
            yield " ".join(sorted(years_named(around, date) | ({date[:4]} if date else set())))

        for ev in evidence():
            if not missing:
                break
            missing = unmet(missing, [ev])
        return missing

    def features(
        self, question: str, hits: list[Hit], best: _Cand | None, answers: bool | None = None
    ) -> dict[str, float]:
        """Evidence features of the refusal model (all in [0, 1] except type_ok); the
        cross-encoder's `answers` when the model reads it (or `answers` asks for it)."""
        if not hits or best is None:
            return {}
        idf = self.reader.analyse(question).idf
        top_text = norm(hits[0].text)
        top3 = norm("".join(h.text for h in hits[:3]))
        missing = [w for t, w in idf.items() if t not in top_text]
        f = {
            "coverage_top3": sum(w for t, w in idf.items() if t in top3)
            / (sum(idf.values()) or 1.0),
            "dense_top": max((h.dense_score or 0.0) for h in hits[:3]),
            "coverage": best.coverage,
            "missing_idf": max(missing, default=0.0) / (max(idf.values(), default=1.0) or 1.0),
            "type_ok": min(best.type_ok, 1.0),
            "bm25_top1": 1.0 if hits[0].bm25_rank == 1 else 0.0,
        }
        if answers is None:
            answers = ANSWERS in self.model["features"]
        if self.answerability is not None and answers:
            h = hits[best.hit_i]
            window = evidence(self.retriever.index, h.doc_id, best.start, best.end)
            f[ANSWERS] = self.answerability.score(question, window)
        return f

    def confidence(self, question: str, hits: list[Hit], best: _Cand | None) -> float:
        f = self.features(question, hits, best)
        if not f:
            return 0.0
        m = self.model
        z = m["intercept"] + sum(c * f[name] for name, c in zip(m["features"], m["coef"]))
        return 1.0 / (1.0 + math.exp(-z))

    # answering --------------------------------------------------------------
    def answer(
        self, question: str, top_k: int | None = None, filters: Filters | None = None
    ) -> Answer:
        t0 = time.perf_counter()
        res = self.retriever.search(question, top_k=top_k, filters=filters)
        t1 = time.perf_counter()
        ans = self.compose(question, res.hits)
        ans.timings_ms.update(res.timings_ms)
        ans.timings_ms["retrieve_ms"] = (t1 - t0) * 1e3
        ans.timings_ms["generate_ms"] = (time.perf_counter() - t1) * 1e3
        ans.timings_ms["total_ms"] = (time.perf_counter() - t0) * 1e3
        return ans

    def stream(
        self, question: str, top_k: int | None = None, filters: Filters | None = None
    ) -> Iterator[str | Answer]:
        """Yield the answer text in pieces, then the finished `Answer` as the last item.

        Every answerer has this shape, so the terminal and the chat UI stream any of them.
        """
        ans = self.answer(question, top_k=top_k, filters=filters)
        yield from ans.text.splitlines(keepends=True)  # a list comes point by point
        yield ans

    def compose(self, question: str, hits: list[Hit]) -> Answer:
        """Choose and cite sentences from `hits`; refuse when the evidence is weak.
        The answer says how sure it is and which span answers (rag.read.grade)."""
        return grade(self._compose(question, hits))

    def _compose(self, question: str, hits: list[Hit]) -> Answer:
        q = norm(question)
        if hits and SUMMARY.search(q) and _SUMMARY_DOC.search(q):
            return self._summary(question, hits)
        return self._compose_plain(question, hits)

    def _compose_plain(self, question: str, hits: list[Hit]) -> Answer:
        cands, best = self.select(question, hits)
        if best is None:
            near = self.near_miss(question, hits, cands)
            if near is not None:
                conf = self.confidence(question, hits, near[0])
                if conf >= self.refusal_threshold:  # it would have answered, but for them
                    return self._unmet(question, hits, near[0], near[1], conf)
        conf = self.confidence(question, hits, best)
        if best is None or conf < self.refusal_threshold:
            return self._refusal(question, hits, conf)

        rival = self.disagreeing(question, hits, cands, best)
        if rival is not None:
            return self._conflict(question, hits, best, rival, conf)
        gather = bool(GATHER.search(norm(question)))
        # a list question gathers points from several passages; others stay short: the
        # passage is one click away
        most = self.gather_items if gather else self.settings.max_answer_sentences
        budget = self.settings.answer_max_chars * (self.gather_budget if gather else 1)
        ratio = self.gather_ratio if gather else self.settings.answer_second_ratio
        cons = constraints(question)
        chosen = [best]
        for c in cands[1 : 8 + 4 * gather]:
            if len(chosen) >= most:
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
                c.score >= ratio * best.score
                and used + len(c.text) <= budget
                and len(c.text) >= 10  # a bare heading adds nothing to an answer
                and not overlaps
                # another table row joins only if it matches the question as fully and
                # its cells name as much of it: the row of another district or project
                # is not context, it is another answer
                and (CELL_SEP not in c.text or self._as_named(question, c, best))
                # nor the document's title line, in a list of points
                and not (gather and self._is_title(hits[c.hit_i], c))
                # nor does a sentence about another place or year
                and not (cons and self.unmet_constraints(cons, hits[c.hit_i], c))
            ):
                chosen.append(c)
        chosen = [self._with_subject(hits[c.hit_i], c) for c in chosen]
        # best sentence first: the reader sees the answer before the supporting context
        return self._cited(question, hits, chosen, conf, numbered=gather)

    @staticmethod
    def _as_named(question: str, c: _Cand, best: _Cand) -> bool:
        q = norm(question)
        return c.coverage >= best.coverage and named_share(q, norm(c.text)) >= named_share(
            q, norm(best.text)
        )

    # list questions (GATHER): up to this many points, this many times the answer budget,
    # each scoring at least this share of the best
    gather_items = 5
    gather_budget = 3
    gather_ratio = 0.35

    def disagreeing(
        self, question: str, hits: list[Hit], cands: list[_Cand], best: _Cand
    ) -> _Cand | None:
        """A sentence of another document that answers as well as `best` with a different
        value of the asked quantity (5000亿元 against 156亿元), or None.

        Only for number questions whose nouns say what is counted (rag.read.reader's
        slot: an amount of money, a length, a count of people ...), only between sentences
        that each state one such value, and only among the sentences that fit the question
        as `best` does: a figure that merely differs in another context is no conflict.
        """
        q = self.reader.analyse(question)
        if q.kind != "number" or q.slot is None:
            return None
        mine = _values(q.slot, best.text)
        if len(mine) != 1 or best.coverage < self.conflict_min_coverage:
            return None
        floor = self.fit_ratio * cands[0].score
        for c in cands:
            if c.score < floor:
                break
            if c is best or hits[c.hit_i].doc_id == hits[best.hit_i].doc_id:
                continue
            if c.coverage < max(
                best.coverage - self.conflict_coverage_gap, self.conflict_min_coverage
            ):
                continue
            theirs = _values(q.slot, c.text)
            if len(theirs) != 1 or theirs == mine:
                continue
            date = self._doc_date(hits[c.hit_i]) if q.names_year else None
            if self.reader.fits(question, c.text, c.type_ok, date):
                return c
        return None

    # Both sentences must be about what is asked: each covers this share of the question's
    # terms (IDF-weighted), the rival no more than the gap below the best. On DRCD dev, 600
    # questions, a lower floor let sentences about neighbouring topics (0.13-0.44) pass as
    # disagreeing; the planted and honest conflicts seen cover 0.9-1.0.
    conflict_min_coverage = 0.6
    conflict_coverage_gap = 0.1

    def _conflict(self, question, hits, best: _Cand, rival: _Cand, conf: float) -> Answer:
        """Both values, each cited, under "文档之间不一致": never one chosen silently."""
        ans = self._cited(question, hits, [_clause(best), _clause(rival)], conf)
        ans.text = conflict_text(ans.sentences)
        ans.notice = CONFLICT_NOTICE
        return ans

    def _cited(
        self, question, hits, chosen: list[_Cand], conf: float, numbered: bool = False
    ) -> Answer:
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
        # the quote without a page's pinyin glosses (區(qū)); start/end still locate it
        sentences = [
            AnswerSentence(without_glosses(c.text), n_of[c.hit_i], c.start, c.end) for c in chosen
        ]
        said = [self.speaker(hits[c.hit_i], c) for c in chosen]
        pieces = [
            f"{who + '表示：' if who else ''}{s.text}[{s.citation}]"
            for s, who in zip(sentences, said)
        ]
        if numbered and len(pieces) > 1:
            text = "\n".join(f"{i}. {p}" for i, p in enumerate(pieces, start=1))
        else:
            text = "".join(pieces)
        return Answer(question, text, False, citations, sentences, hits, conf)

    summary_points = 5

    def _summary(self, question: str, hits: list[Hit]) -> Answer:
        """The first retrieved passage's document in its own words: from each of its
        first passages, the sentence that says most (the longest full sentence that is
        not its title or a byline), numbered, each cited."""
        index = self.retriever.index
        doc = hits[0].doc_id
        title = norm(index.doc_meta(doc).title or "")
        chosen: list[_Cand] = []
        passages: list[Hit] = []
        for row in index.doc_rows(doc):
            if len(chosen) >= self.summary_points:
                break
            ch = index.chunk(row)
            best = None
            for a, b in split_sentences(ch.text):
                t = ch.text[a:b].strip()
                n = norm(t)
                if len(n) < 15 or _BYLINE.match(n) or (title and (n.rstrip("。") in title)):
                    continue
                a, b = ch.start + a, ch.start + b
                if any(x.start < b and a < x.end for x in chosen):
                    continue  # passages overlap by a sentence: never the same point twice
                if best is None or len(t) > len(best[2]):
                    best = (a, b, ch.text[a - ch.start : b - ch.start])
            if best is None:
                continue
            passages.append(Hit(ch.row, ch.id, ch.doc_id, ch.text, ch.start, ch.end,
                                0.0, None, None, None, None))  # fmt: skip
            chosen.append(_Cand(len(passages) - 1, best[0], best[1], best[2], 0.0, 1.0, 1.0))
        if not chosen:
            return self._compose_plain(question, hits)
        ans = self._cited(question, passages, chosen, 1.0, numbered=True)
        ans.retrieved = hits
        ans.notice = SUMMARY_NOTICE.format(index.doc_meta(doc).title or doc)
        ans.confidence_level, ans.confidence_reason = "中", "摘录了文档各部分的要句，不是全文"
        return ans

    def _is_title(self, hit: Hit, c: _Cand) -> bool:
        title = norm(self.retriever.index.doc_meta(hit.doc_id).title or "")
        t = norm(c.text).rstrip("。")
        return bool(title) and (t in title or title in t)

    def speaker(self, hit: Hit, c: _Cand) -> str:
        """Who says the quoted sentence, when its paragraph opens with a speaker
        ("……主任李瑞玲：“精致城市”是……"): the name, so the quote is never anonymous."""
        text = self.retriever.index.document_text(hit.doc_id)
        a = text.rfind("\n", 0, c.start) + 1
        m = _SPEAKER.match(text, a, c.start)
        if not m or m.end() > c.start:
            return ""
        names = [w for w, t, _ in tag(m.group(1)) if t in ("PER", "nr") and len(w) >= 2]
        return names[-1] if names else ""

    def _with_subject(self, hit: Hit, c: _Cand) -> _Cand:
        """`c` with the sentence before it when it opens with a pronoun (他/她/其/该……):
        "他强调……" alone does not say who; both stay one verbatim quote of the passage."""
        if not _PRONOUN_START.match(c.text):
            return c
        text = self.retriever.index.document_text(hit.doc_id)
        prev = [
            s
            for s, e in split_sentences(text[hit.start : c.start])
            if text[hit.start + s : hit.start + e].strip()
        ]
        if not prev:
            return c
        start = hit.start + prev[-1]
        if c.end - start > 2 * self.settings.answer_max_chars:
            return c
        return _Cand(
            c.hit_i, start, c.end, text[start : c.end], c.score, c.coverage, c.type_ok, c.flags
        )

    def _refusal(self, question, hits, conf: float) -> Answer:
        return refusal(self.retriever.index, question, hits, conf)

    def _unmet(self, question, hits, near: _Cand, missing, conf: float) -> Answer:
        """A refusal that says what is there instead: "文档中没有找到与“威海”“2024年”相符
        的答案。相关的是：崂山区……[1]" -- never the other district's figure as the answer."""
        ans = self._cited(question, hits, [near], conf)
        ans.text = unmet_text(missing, ans.sentences)
        ans.refused = True
        ans.notice = UNMET_NOTICE.format(shown(missing))
        ans.confidence_level, ans.confidence_reason = "低", unmet_reason(missing)
        return ans


def _values(slot, sentence: str) -> set[str]:
    """The distinct fillers of a number question's slot in `sentence` ("156亿元")."""
    return {re.sub(r"\s+", "", m.group()) for m in slot.finditer(norm(sentence))}


def refusal(index, question: str, hits: list[Hit], confidence: float) -> Answer:
    """The plain refusal, with the top three passages offered as possibly related."""
    related = [make_citation(index, n, h) for n, h in enumerate(hits[:3], start=1)]
    return Answer(
        question,
        REFUSAL,
        True,
        related,
        [],
        hits,
        confidence,
        notice=RELATED_NOTICE if related else "",
    )
