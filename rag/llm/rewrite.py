"""Follow-up questions rewritten by the LLM into stand-alone ones."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from rag.config import Settings
from rag.llm.failures import LLMFailure, guarded, redact
from rag.llm.grounding import CITATION, strip_citations
from rag.llm.prompts import REWRITE_PROMPT, escape


def make_rewriter(generator, settings: Settings) -> Callable[[str, list], str]:
    """A follow-up rewriter for `rag.read.followup.ChatSession(rewriter=...)` that uses the
    generator (anything with `complete(messages)`, e.g. `LlamaIndexGenerator`).

    It raises `LLMFailure` when the LLM fails or returns something that is not a
    rewrite of the question, so the session falls back to its key-term carry-over.
    """

    def rewrite(question: str, history: list) -> str:
        turns = []
        for t in history[-3:]:
            turns.append(f"问：{escape(getattr(t, 'rewritten', None) or t.question)}")
            answer = strip_citations(getattr(t, "answer", "") or "")
            turns.append(f"答：{escape(answer[:200])}")  # answers quote documents
        user = (
            "对话历史：\n"
            + "\n".join(turns)
            + f"\n\n最新问题：{escape(question.strip())}\n改写后的问题："
        )
        messages = [("system", REWRITE_PROMPT), ("user", user)]

        def produce() -> Iterator[str]:
            yield generator.complete(messages) or ""

        out = "".join(guarded(produce, settings.llm_timeout_s, settings.llm_retries))
        return clean_rewrite(out, question)

    return rewrite


def rewriter_for(answerer, settings: Settings) -> Callable[[str, list], str] | None:
    """The follow-up rewriter of a chat over `answerer`: the LLM's when it has one and
    `llm_rewrite` is on, else None (the key-term carry-over)."""
    llm = getattr(answerer, "llm", None)
    if llm is None or not settings.llm_rewrite:
        return None
    return make_rewriter(llm, settings)


def clean_rewrite(output: str, question: str) -> str:
    """The rewritten question from the LLM's output, or LLMFailure if it is not one."""
    line = next((x.strip() for x in output.strip().splitlines() if x.strip()), "")
    line = re.sub(r"^(改写后的问题|改写后|问题|问)[:：]\s*", "", line).strip("“”\"'「」 ")
    if not line or len(line) > max(200, 4 * len(question)) or CITATION.search(line):
        raise LLMFailure("改写结果无效", detail=redact(output[:200]))
    q = {question[i : i + 2] for i in range(len(question) - 1) if question[i : i + 2].strip()}
    if q and len(q & {line[i : i + 2] for i in range(len(line) - 1)}) / len(q) < 0.3:
        raise LLMFailure("改写结果与问题无关", detail=redact(output[:200]))
    return line
