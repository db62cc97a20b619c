"""A chat session: history, and follow-up questions rewritten into standalone ones."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from rag.index.segment import tokenize
from rag.textnorm import norm
from rag.types import Filters

# A follow-up leans on the previous turn: pronouns, "then/and", or no subject of its own.
_FOLLOW_UP = re.compile(
    r"^(那|那么|还有|另外|以及|并且|而且|它|他|她|其|该|此|这|那个|这个)|[它他她其该此]们?的|这个|那个|这些|那些|上述|前者|后者"
)
# Personal pronouns stand for something named before, whatever else the question names
# ("那它的治理工程总投资是多少？"). jieba may glue a leading 那/这 to them ("那它").
_PRONOUNS = frozenset("它 它们 他 他们 她 她们 其 此".split())
# Words that point back or ask, never part of a subject of the question's own.
_NOT_CONTENT = frozenset(
    "这 那 这个 那个 这些 那些 这里 那里 该 此 上述 前者 后者 其中 其他 其余 另外 还有 "
    "什么 哪 哪些 哪个 哪里 哪儿 谁 多少 几 怎么 怎样 怎么样 如何 为什么 为何".split()
)
_QUESTION_WORD = re.compile(r"什么|哪|谁|多少|几|怎|如何|为何|为什么|是否|吗|有没有")
# Part-of-speech tags (jieba) of the words a subject is made of: nouns and their modifiers.
# Verbal nouns (vn: 投资, 工作) are left out: in "该项目投资多少" the subject is 项目 alone.
_NOUN_TAGS = ("n", "nr", "nrt", "ns", "nt", "nz", "ng", "j", "eng")
_MODIFIER_TAGS = ("a", "b", "m")


@functools.lru_cache(maxsize=1)
def _posseg():
    import logging

    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg


def subject_phrase(question: str) -> str | None:
    """The noun phrase by which a question names its own subject, or None.

    A phrase is a run of at least two nouns and modifiers (jieba tokens), with a noun in
    it and no pronoun, demonstrative or question word: "精致城市论坛" in
    "精致城市论坛在哪里举办？", "城市更新计划" in "这个城市更新计划的总投资是多少？".
    None when the question leans on a personal pronoun ("那它的治理工程总投资是多少？"),
    is elliptical ("那威海呢？": what about it is in the previous turn), or names no more
    than one word ("这次论坛在哪里举办？").
    """
    q = norm(question).strip()
    plain = re.sub(r"[\W_]+$", "", q)
    if plain.endswith("呢") and not _QUESTION_WORD.search(plain):
        return None
    words = [(w.word, w.flag) for w in _posseg().lcut(q)]
    if any(w.lstrip("那这") in _PRONOUNS for w, _ in words):
        return None
    run: list[tuple[str, str]] = []
    for word, flag in [*words, ("", "x")]:
        content = word not in _NOT_CONTENT and not _QUESTION_WORD.search(word)
        if content and flag in _NOUN_TAGS + _MODIFIER_TAGS:
            run.append((word, flag))
            continue
        if len(run) >= 2 and any(f in _NOUN_TAGS for _, f in run):
            return "".join(w for w, _ in run)
        run = []
    return None


def is_follow_up(question: str) -> bool:
    """Whether `question` needs the previous turn to be understood.

    It must read like one -- a leading 那/这/还有, a pronoun or demonstrative, or only a
    word or two -- and not name its own subject (`subject_phrase`).
    """
    q = question.strip()
    if not (_FOLLOW_UP.search(q) or len(tokenize(q)) <= 2):
        return False
    return subject_phrase(q) is None


def carry_over(question: str, previous: str) -> str:
    """Rewrite a follow-up without an LLM: prepend the previous question's key terms.

    A question that is not a follow-up (`is_follow_up`) is returned as it is.

    >>> carry_over("那它的投资是多少？", "崂山区2023年重点推进多少个城市更新项目？")
    '崂山区 2023 重点 推进 城市更新 项目：那它的投资是多少？'
    """
    q = question.strip()
    if not previous or not is_follow_up(q):
        return q
    own = set(tokenize(q))
    terms = [
        t for t in dict.fromkeys(tokenize(previous)) if t not in own and (len(t) > 1 or t.isdigit())
    ]
    # cut_for_search yields both a word and its parts; keep the longest forms only
    terms = [t for t in terms if not any(t != u and t in u for u in terms)]
    return f"{' '.join(terms[:8])}：{q}" if terms else q


@dataclass
class Turn:
    question: str
    rewritten: str
    answer: str


@dataclass
class ChatSession:
    system: object  # RagSystem
    rewriter: object | None = None  # callable(question, history) -> str (an LLM), optional
    history: list[Turn] = field(default_factory=list)

    def rewrite(self, question: str) -> str:
        if not self.history:
            return question
        if self.rewriter is not None:
            try:
                return self.rewriter(question, self.history) or question
            except Exception:  # an LLM failure must not stop the chat: fall back
                pass
        return carry_over(question, self.history[-1].rewritten)

    def ask(self, question: str, top_k: int | None = None, filters: Filters | None = None):
        standalone = self.rewrite(question)
        ans = self.system.ask(standalone, top_k=top_k, filters=filters)
        ans.question = question
        ans.rewritten_question = standalone
        self.history.append(Turn(question, standalone, ans.text))
        return ans

    def reset(self) -> None:
        self.history.clear()
