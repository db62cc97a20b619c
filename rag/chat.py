"""A chat session: history, and follow-up questions rewritten into standalone ones."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.bm25 import tokenize

# A follow-up leans on the previous turn: pronouns, "then/and", or no subject of its own.
_FOLLOW_UP = re.compile(r"^(那|那么|还有|另外|以及|并且|而且|它|他|她|其|该|此|这|那个|这个)|[它他她其该此]们?的|这个|那个|这些|那些|上述|前者|后者")


def carry_over(question: str, previous: str) -> str:
    """Rewrite a follow-up without an LLM: prepend the previous question's key terms.

    >>> carry_over("那它的投资是多少？", "崂山区2023年重点推进多少个城市更新项目？")
    '崂山区 2023 重点 推进 城市 更新 项目：那它的投资是多少？'
    """
    q = question.strip()
    if not previous or not (_FOLLOW_UP.search(q) or len(tokenize(q)) <= 2):
        return q
    own = set(tokenize(q))
    terms = [t for t in dict.fromkeys(tokenize(previous)) if t not in own and (len(t) > 1 or t.isdigit())]
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

    def ask(self, question: str, top_k: int | None = None, **filters):
        standalone = self.rewrite(question)
        ans = self.system.ask(standalone, top_k=top_k, **filters)
        ans.question = question
        ans.rewritten_question = standalone
        self.history.append(Turn(question, standalone, ans.text))
        return ans

    def reset(self) -> None:
        self.history.clear()
