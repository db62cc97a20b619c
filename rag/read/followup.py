"""A chat session: history, and follow-up questions rewritten into standalone ones.

A question is standalone when it names its own subject: a person, place or organisation
("李瑞玲是谁？"), a quoted name ("“四最”精神指的是什么？") or a noun phrase of its own
("口袋公园建了多少处？", "这次精致城市论坛有几个特点？"). It is a follow-up when it leans
on the turn before: a pronoun (它/他/其中), a demonstrative with nothing specific after
it (这个呢？, 该项目投资多少？), "what about X" (那威海呢？), or no subject at all
(完工了几个？, 还有吗？). `eval/datasets/followups.jsonl` measures the decision
(`rag eval followups`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from rag.index.segment import tokenize
from rag.textnorm import norm
from rag.types import Filters

# Personal pronouns and words that point back into the previous answer: unless the
# question named what they stand for before them ("选北京做对标城市,主要是想学它哪方面？"),
# it leans on the turn before ("那它的治理工程总投资是多少？"). jieba may glue a leading
# 那/这 to them ("那它").
_PRONOUNS = frozenset("它 它们 他 他们 她 她们 其 其中 其余 上述 前者 后者".split())
# Words that place the question in the time or setting of the turn before ("当年", "会上"):
# such a question needs a named subject of its own to stand alone.
_DEICTIC = frozenset(
    "当年 当时 那年 那时 同年 同期 期间 其间 会上 会中 会后 届时 当天 当日 这里 那里 这儿 那儿 "
    "此前 此后 其后".split()
)
# Ordinals point into a list the turn before gave ("第一个特点是什么？", "最后一条呢？").
_ORDINAL = re.compile(r"^(第[一二三四五六七八九十百\d]+|最后一?)[个点条项次期位种类步]?$")
# Demonstratives are tokens tagged r that start with one of these characters...
_DEMONSTRATIVE_START = "这那该此本"
# ... except these, which are adverbs or places, not "this X".
_NOT_DEMONSTRATIVE = frozenset(
    "那么 这么 这样 那样 这般 那般 本人 本身 本来 此外 这里 那里 这儿 那儿 这边 那边".split()
)
_MEASURES = frozenset("个 些 次 期 项 位 种 批 家 届 场 份 条 轮 段 篇 所 座 处 件 类 年")
# After a demonstrative with no noun of its own, these make it the thing asked about
# ("这个呢？", "那期是什么时候结束的？"); anything else may be a clause that names it
# ("南海新区那位已经参加过三期培训的学员是谁？").
_ENDS_BARE = frozenset("是 呢 吗 吧 啊 怎么样 如何 怎样".split())
# Words that point back or ask, never part of a subject of the question's own.
_NOT_CONTENT = frozenset(
    "这 那 这个 那个 这些 那些 这里 那里 该 此 上述 前者 后者 其中 其他 其余 另外 还有 一共 总共 "
    "什么 哪 哪些 哪个 哪里 哪儿 谁 多少 几 怎么 怎样 怎么样 如何 为什么 为何".split()
)
_QUESTION_WORD = re.compile(r"什么|哪|谁|多少|几|怎|如何|为何|为什么|是否|吗|有没有")
# Part-of-speech tags (jieba) of the words a subject is made of: nouns and their modifiers.
# Verbal nouns (vn: 投资, 工作) are left out: in "该项目投资多少" the subject is 项目 alone.
_NOUN_TAGS = ("n", "nr", "nrt", "nrfg", "ns", "nt", "nz", "ng", "j", "eng")
_MODIFIER_TAGS = ("a", "b", "m")
# Names: people, places, organisations, other proper nouns. One such word is a subject.
_NAME_TAGS = ("nr", "nrt", "nrfg", "ns", "nt", "nz")
# Common words that jieba's dictionary tags as names (城市/ns, 东西/ns, 明白/nr).
_NOT_NAMES = frozenset(
    "城市 新区 外国 东西 南北 明白 文明 和平 普通 英雄 太阳 朝廷 爱国 百科".split()
)
# Names that stand in for each other in "what about X" (那威海呢 after a 崂山 question):
# jieba often tags a place nr or a name ns, so people, places and organisations are one kind.
_ENTITY_TAGS = ("nr", "nrt", "nrfg", "ns", "nt")
_QUOTED = re.compile(r"[“\"「『《]([^”\"」』》]{1,30})[”\"」』》]")
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
_WHAT_ABOUT = "那…呢 without a question of its own"
MAX_CARRIED = 10  # terms a rewrite carries over from the turn before


@functools.lru_cache(maxsize=1)
def _posseg():
    import logging

    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg


def _words(text: str) -> list[tuple[str, str]]:
    return [(w.word, w.flag) for w in _posseg().lcut(text)]


def _is_name(word: str, flag: str) -> bool:
    return (
        flag in _NAME_TAGS
        and len(word) >= 2
        and word not in _NOT_NAMES
        and not _QUESTION_WORD.search(word)
    )


def _is_content(word: str, flag: str) -> bool:
    return (
        flag in _NOUN_TAGS + _MODIFIER_TAGS
        and word not in _NOT_CONTENT
        and not _QUESTION_WORD.search(word)
        and not _ORDINAL.match(word)
    )


def _phrase(run: list[tuple[str, str]]) -> tuple[str, bool] | None:
    """A run of content words as a subject: (text, whether it holds a name), or None.

    Trailing modifiers are not part of it (in "由哪几家单位主办" 主办/b follows the noun),
    and a single common noun is not a subject of its own (论坛, 项目: which one?).
    """
    while run and run[-1][1] in _MODIFIER_TAGS:
        run = run[:-1]
    named = any(_is_name(w, f) for w, f in run)
    if named or (len(run) >= 2 and any(f in _NOUN_TAGS for _, f in run)):
        return "".join(w for w, _ in run), named
    return None


class Reading(NamedTuple):
    """What a question leans on: its own `subject`, or the reason (`leans`) it needs the
    turn before. Exactly one of the two is None."""

    subject: str | None
    leans: str | None


def _demonstrative(word: str, flag: str, at_start: bool, next_char: str) -> bool:
    if flag != "r" or word[0] not in _DEMONSTRATIVE_START or word in _NOT_DEMONSTRATIVE:
        return False
    # a leading 那 is "then, what about" ("那威海市民中心在哪里？"), unless "那期/那个..."
    return not (word == "那" and at_start and next_char not in _MEASURES)


def _what_about(q: str) -> bool:
    """Whether `q` asks the previous question again about something else: "那威海呢？",
    "还有加装电梯呢？" (ends in 呢 and asks nothing of its own)."""
    plain = re.sub(r"[\W_]+$", "", q)
    return plain.endswith("呢") and not _QUESTION_WORD.search(plain)


@functools.lru_cache(maxsize=1024)
def read_question(question: str) -> Reading:
    """Whether `question` names its own subject, or leans on the turn before and why.

    A word that points back (a pronoun, a demonstrative, 当年, 会上) is satisfied by a
    subject named before it in the same question ("精致城市论坛这次的办会预算是多少？");
    after it, only a name will do ("这个论坛的总定位是什么？" leans on the turn before).

    >>> read_question("李瑞玲是谁？")
    Reading(subject='李瑞玲', leans=None)
    >>> read_question("那威海呢？")
    Reading(subject=None, leans='那…呢 without a question of its own')
    """
    q = norm(question).strip()
    if _what_about(q):
        return Reading(None, _WHAT_ABOUT)
    words, offset, i = _words(q), 0, 0
    found: list[tuple[str, bool]] = []  # subjects in order, and whether each holds a name
    weak: str | None = None  # the first word that points back to the turn before
    before_weak = 0  # subjects named before it
    run: list[tuple[str, str]] = []

    def close() -> None:
        nonlocal run
        p = _phrase(run)
        if p:
            found.append(p)
        run = []

    def points_back(word: str) -> None:
        nonlocal weak, before_weak
        if weak is None:
            weak, before_weak = word, len(found)

    while i < len(words):
        word, flag = words[i]
        if word.lstrip("那这") in _PRONOUNS:
            close()
            if not found:
                return Reading(None, f"pronoun {word}")
        elif word in _DEICTIC or _ORDINAL.match(word):
            close()
            points_back(word)
        elif _demonstrative(word, flag, offset == 0, q[offset + 1 : offset + 2]):
            close()
            # re-read what follows its first character: jieba cuts 该项目的 as 该项|目的
            rest = _words(q[offset + 1 :])
            j = 1 if rest and rest[0][0].removeprefix("一") in _MEASURES else 0  # 那(一)期
            head: list[tuple[str, str]] = []
            while j < len(rest) and (_is_content(*rest[j]) or (not head and rest[j][1] == "vn")):
                head.append(rest[j])
                j += 1
            p = _phrase(head)
            if p:  # 这次精致城市论坛: pointed at, and named in full
                found.append((p[0], True))
            elif head:  # 这次论坛, 该项目: one word, the rest is in the turn before
                points_back(word + "".join(w for w, _ in head))
            elif j < len(rest) and rest[j][1] in ("m", "t"):  # 这几年: a time, not a thing
                points_back(word)
            elif (
                j == len(rest)
                or rest[j][1] == "x"
                or rest[j][0] in _ENDS_BARE
                or _QUESTION_WORD.search(rest[j][0])
            ):  # 这个呢, (嘉兴)那期是什么时候: it stands for what is asked about
                return Reading(None, f"demonstrative {word} with nothing after it")
            else:  # 那位已经参加过……的学员: a clause that may name it
                points_back(word)
            offset += 1 + sum(len(w) for w, _ in rest[:j])
            words, i = rest[j:], 0
            continue
        elif _is_content(word, flag):
            run.append((word, flag))
        else:
            close()
        offset += len(word)
        i += 1
    close()
    found += [(m.group(1), True) for m in _QUOTED.finditer(q)]
    if weak is not None and not before_weak:
        named = [s for s, is_named in found if is_named]
        if named:
            return Reading(named[0], None)
        return Reading(None, f"{weak} points back and nothing is named")
    if found:
        return Reading(found[0][0], None)
    return Reading(None, "no subject of its own")


def subject_phrase(question: str) -> str | None:
    """The phrase by which a question names its own subject, or None when it has none.

    A name of a person, place or organisation ("李瑞玲" in "李瑞玲是谁？"), a quoted name,
    or a noun phrase of two or more words ("精致城市论坛" in "精致城市论坛在哪里举办？",
    "城市更新计划" in "这个城市更新计划的总投资是多少？"). None when the question leans on
    a pronoun ("那它的治理工程总投资是多少？"), is "what about X" ("那威海呢？": what
    about it is in the previous turn), points back with a demonstrative or a word like 当年
    and names nothing ("这次论坛在哪里举办？"), or names no subject ("完工了几个？").
    """
    return read_question(question).subject


def is_follow_up(question: str) -> bool:
    """Whether `question` needs the previous turn to be understood (`read_question`)."""
    return read_question(question).subject is None


def _replaced(question: str, previous: str) -> tuple[set[str], bool]:
    """What a "what about X" follow-up names in place of something in the previous turn:
    the previous turn's names when X is a name ("那威海呢？" after a 崂山 question), and
    whether X is a year that replaces the previous one ("那2023年呢？")."""
    q = norm(question)
    if not _what_about(q):
        return set(), False
    own = _words(q)
    names: set[str] = set()
    if any(f in _ENTITY_TAGS and _is_name(w, f) for w, f in own):
        names = {w for w, f in _words(norm(previous)) if f in _ENTITY_TAGS and _is_name(w, f)}
    return names, bool(_YEAR.search(q))


def _key_terms(text: str, drop: Callable[[str], bool]) -> list[str]:
    """The search terms of `text` worth carrying: no part of a question word, pronoun or
    demonstrative (jieba tags them r), longest forms only, quoted names whole."""
    asking = [w for w, f in _words(norm(text)) if f == "r" or _QUESTION_WORD.search(w)]
    terms = [
        t
        for t in dict.fromkeys(tokenize(text))
        if (len(t) > 1 or t.isdigit()) and not any(t in w for w in asking) and not drop(t)
    ]
    # cut_for_search yields both a word and its parts; keep the longest forms only
    terms = [t for t in terms if not any(t != u and t in u for u in terms)]
    for name in dict.fromkeys(m.group(1) for m in _QUOTED.finditer(norm(text))):
        if drop(name):
            continue
        at = next((k for k, t in enumerate(terms) if t in name), len(terms))
        terms = [t for t in terms if t not in name]
        terms.insert(min(at, len(terms)), name)
    return terms


def carry_over(question: str, previous: str) -> str:
    """Rewrite a follow-up without an LLM: prepend the previous question's key terms.

    A question that is not a follow-up (`is_follow_up`) is returned as it is. What the
    follow-up names replaces the same kind of thing in the previous turn: after "崂山区2023年
    计划完成投资多少？", "那威海呢？" carries 投资 but not 崂山区. `previous` may itself be
    a rewrite ("terms：question"); when there are more than `MAX_CARRIED` terms, the
    names and the previous question's own terms are kept first.

    >>> carry_over("那它的投资是多少？", "崂山区2023年重点推进多少个城市更新项目？")
    '崂山区 2023 重点 推进 城市更新 项目：那它的投资是多少？'
    >>> carry_over("那威海呢？", "崂山区2023年计划完成投资多少？")
    '2023 计划 完成 投资：那威海呢？'
    """
    q = question.strip()
    if not previous or not is_follow_up(q):
        return q
    own = norm(q)
    names, new_year = _replaced(q, previous)

    def drop(t: str) -> bool:
        return (
            t in own  # the question says it already
            or any(t in n or n in t for n in names)
            or bool(new_year and _YEAR.fullmatch(t))
        )

    carried, _, asked = previous.rpartition("：")
    older, newer = _key_terms(carried, drop), _key_terms(asked, drop)
    newer = [t for t in newer if not any(t in u for u in older)]
    older = [t for t in older if not any(t in u for u in newer)]
    named = [t for t in older if any(_is_name(w, f) for w, f in _words(t))]
    ranked = named + newer + [t for t in older if t not in named]
    keep = set(ranked[:MAX_CARRIED])
    terms = [t for t in older + newer if t in keep]
    return f"{' '.join(terms)}：{q}" if terms else q


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
        if not is_follow_up(question):  # names its own subject: never rewritten, by anyone
            return question.strip()
        if self.rewriter is not None:
            try:
                out = self.rewriter(question, self.history)
            except Exception:  # an LLM failure must not stop the chat: fall back
                out = None
            # a rewrite that still leans on the turn before (the question echoed, "它"
            # kept) would be searched without its subject: carry the key terms instead
            if out and not is_follow_up(out):
                return out
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
