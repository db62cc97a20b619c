"""An optional LLM judge: faithfulness and correctness verdicts as structured JSON.

Any OpenAI-compatible chat-completions server will do (OpenAI, vLLM, Ollama, llama.cpp's
server). The judge must answer with one JSON object; a reply that is not one, or whose
fields have the wrong types, is recorded as an error, never read for a "yes" in free
text. Off by default: `rag eval run ... --judge-model M --judge-base-url URL`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rag.errors import ModelError

SYSTEM_PROMPT = (
    "You grade the answer of a question-answering system over Chinese documents. "
    "Judge only from the passages and the reference answers given. Reply with one JSON "
    "object and nothing else, with exactly these keys:\n"
    '{"faithfulness": <number from 0 to 1: the share of the answer\'s claims that the '
    'passages support>, "correct": <true if the answer gives the reference answer (in any '
    "wording), false if it does not, null when no reference answer is given>, "
    '"reason": <one short sentence>}'
)

Chat = Callable[[list[dict[str, str]]], str]


@dataclass(frozen=True)
class Verdict:
    """The judge's verdict on one answer; `error` set (and scores None) when it gave none."""

    faithfulness: float | None
    correct: bool | None
    reason: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def parse_verdict(content: str) -> Verdict:
    """Read a verdict from the judge's reply: one JSON object, optionally in a code fence.

    Anything else (prose, a missing key, a string where a number belongs) is an error
    verdict: a judge that does not follow the format is not guessed at.
    """
    text = (content or "").strip()
    m = _FENCE.match(text)
    if m:
        text = m.group(1)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return Verdict(None, None, error=f"reply is not a JSON object: {_short(content)}")
    if not isinstance(obj, dict):
        return Verdict(None, None, error=f"reply is not a JSON object: {_short(content)}")
    f, c = obj.get("faithfulness"), obj.get("correct", None)
    if isinstance(f, bool) or not isinstance(f, int | float) or not 0 <= f <= 1:
        return Verdict(None, None, error=f"faithfulness must be a number in [0, 1], got {f!r}")
    if c is not None and not isinstance(c, bool):
        return Verdict(None, None, error=f"correct must be true, false or null, got {c!r}")
    return Verdict(float(f), c, str(obj.get("reason") or ""))


def _short(s: str, n: int = 80) -> str:
    s = " ".join((s or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def build_messages(
    question: str, answer: str, passages: Sequence[str], references: Sequence[str] | None
) -> list[dict[str, str]]:
    """The chat messages of one judgement."""
    ctx = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1)) or "(none)"
    refs = " / ".join(references) if references else "(none)"
    user = (
        f"Question: {question}\n\nPassages:\n{ctx}\n\nReference answers: {refs}\n\n"
        f"Answer to grade: {answer}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


# ---------------------------------------------------------------- transport


def openai_chat(
    base_url: str, model: str, api_key: str | None, timeout_s: float, json_mode: bool = True
) -> Chat:
    """A chat function on the project's one OpenAI-compatible client
    (`rag.integrations.llm_backends.openai_like`)."""
    from rag.integrations.llm_backends import openai_like

    llm = openai_like(model, base_url, api_key, timeout_s, temperature=0.0, json_mode=json_mode)

    def chat(messages: list[dict[str, str]]) -> str:
        try:
            return llm.complete([(m["role"], m["content"]) for m in messages])
        except Exception as e:  # the openai client raises its own types
            raise ModelError(f"judge {model} at {base_url}: {type(e).__name__}: {e}") from e

    return chat


# ---------------------------------------------------------------- the judge


class LLMJudge:
    """Scores answers with an OpenAI-compatible model.

    >>> judge = LLMJudge("qwen2.5:7b", "http://localhost:11434/v1")   # doctest: +SKIP
    >>> judge.judge("崂山区推进多少个项目？", "196个[1]", ["……196个重点项目……"], ["196个"])
    Verdict(faithfulness=1.0, correct=True, reason='...', error=None)

    It talks through the project's one OpenAI-compatible client (llama-index's
    OpenAILike). A call that fails or a reply that is not a valid verdict is retried
    `retries` times, then returned as an error verdict.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 1,
        json_mode: bool = True,
    ):
        if not model or not base_url:
            raise ValueError("the judge needs a model name and a base URL")
        self.model = model
        self.base_url = base_url
        self.retries = max(0, retries)
        self._chat = openai_chat(base_url, model, api_key, timeout_s, json_mode)

    @property
    def model_id(self) -> str:
        """What the run's config records."""
        return f"{self.model} @ {self.base_url}"

    def judge(
        self,
        question: str,
        answer: str,
        passages: Sequence[str],
        references: Sequence[str] | None = None,
    ) -> Verdict:
        """The verdict on `answer` given the cited `passages` and the gold `references`."""
        messages = build_messages(question, answer, passages, references)
        verdict = Verdict(None, None, error="not asked")
        for _ in range(self.retries + 1):
            try:
                verdict = parse_verdict(self._chat(messages))
            except ModelError as e:
                verdict = Verdict(None, None, error=str(e))
            if verdict.error is None:
                if not references:
                    verdict = Verdict(verdict.faithfulness, None, verdict.reason)
                return verdict
        return verdict
