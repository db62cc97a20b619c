"""Question sets: reading questions.jsonl records into typed `Question`s, and finding the corpus beside them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ConfigError


@dataclass(frozen=True)
class Question:
    """One evaluation question (the fields of `questions.jsonl`, see eval/README.md)."""

    id: str
    question: str
    answers: tuple[str, ...]
    answerable: bool
    gold_doc_ids: tuple[str, ...]
    type: str | None = None
    answer_items: tuple[tuple[str, ...], ...] | None = None
    history: tuple[tuple[str, str], ...] = ()
    # the question's own passages beyond its gold ones (an unanswerable question's
    # paragraph, RGB's negatives): what `--limit`'s small corpus keeps besides the gold
    context_doc_ids: tuple[str, ...] = ()
    # counterfactual sets (RGB zh_fact): the false facts the documents state
    false_answers: tuple[str, ...] = ()


def questions_file(path: str | Path) -> Path:
    """`path` itself when it is a file, else `path/questions.jsonl`."""
    p = Path(path)
    return p / "questions.jsonl" if p.is_dir() else p


def load_questions(path: str | Path, skipped: list[dict[str, str]] | None = None) -> list[Question]:
    """Read a questions file (or a data set folder holding `questions.jsonl`).

    Raises ConfigError naming the file and line of anything malformed; with `skipped`
    given, a malformed line (or a repeated id) is appended there as `{where, reason}`
    and left out instead, so one bad record does not lose a whole run.
    """
    p = questions_file(path)
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        hint = " (a data set folder needs questions.jsonl)" if Path(path).is_dir() else ""
        raise ConfigError(f"{p}: question file not found{hint}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    out: list[Question] = []
    seen: set[str] = set()
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            q = _question(rec)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            if skipped is None:
                raise ConfigError(f"{p}:{no}: not a valid question ({what})") from None
            skipped.append({"where": f"{p.name}:{no}", "reason": f"not a valid question ({what})"})
            continue
        if q.id in seen:
            if skipped is None:
                raise ConfigError(f"{p}:{no}: question id {q.id!r} occurs twice")
            skipped.append(
                {"where": f"{p.name}:{no}", "reason": f"question id {q.id!r} occurs twice"}
            )
            continue
        seen.add(q.id)
        out.append(q)
    if not out:
        raise ConfigError(f"{p}: no questions")
    return out


def _question(rec: Any) -> Question:
    if not isinstance(rec, dict):
        raise TypeError("a line must be a JSON object")
    text = str(rec["question"]).strip()
    if not text:
        raise ValueError("empty question")
    answers = tuple(str(a) for a in rec.get("answers") or ())
    items = rec.get("answer_items")
    history = tuple(
        (str(h["question"]), str(h.get("answer", ""))) for h in rec.get("history") or ()
    )
    return Question(
        id=str(rec["id"]),
        question=text,
        answers=answers,
        answerable=bool(rec.get("answerable", bool(answers))),
        gold_doc_ids=tuple(str(d) for d in rec.get("gold_doc_ids") or ()),
        type=rec.get("type"),
        answer_items=None
        if not items
        else tuple(tuple(str(s) for s in (it if isinstance(it, list) else [it])) for it in items),
        history=history,
        context_doc_ids=tuple(str(d) for d in rec.get("context_doc_ids") or ()),
        false_answers=tuple(str(a) for a in rec.get("false_answers") or ()),
    )


def resolve_corpus(questions: str | Path, corpus: str | Path | None) -> Path:
    """The corpus to index: `corpus`, else `corpus.jsonl` beside the questions."""
    if corpus is not None:
        c = Path(corpus)
        if not c.exists():
            raise ConfigError(f"{c}: corpus not found (give a folder or a corpus.jsonl)")
        return c
    c = questions_file(questions).parent / "corpus.jsonl"
    if not c.is_file():
        raise ConfigError(
            f"{c}: no corpus beside the questions; give one with --corpus FOLDER_OR_FILE"
        )
    return c
