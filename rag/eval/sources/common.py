"""What every source reader shares: the records it returns, the skipped-record tally, and reading JSON files.

A reader never stops on one bad record: it skips it, with its reason, into `Skips`, and
the conversion writes the tally beside the data set (`meta.json`) for the run's report.
Only a file that is not of the expected format at all (no usable record) is an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

Record = dict[str, Any]

EXPECTED = {
    "cmrc": "CMRC 2018 JSON: a list of {context_id, title, context_text, qas: [{query_id, "
    "query_text, answers}]}",
    "squad": "SQuAD v1 JSON: {data: [{title, paragraphs: [{context, qas: [{id, question, "
    "answers: [{text, answer_start}]}]}]}]}",
    "squad2": "SQuAD v2 JSON: {data: [{title, paragraphs: [{context, qas: [{id, question, "
    "answers, is_impossible}]}]}]}",
    "rgb": "RGB JSON lines: one {id, query, answer, positive, negative} object per line",
    "dureader": "DuReader JSON lines: {question_id, question, documents: [{title, paragraphs, "
    "is_selected}], answers} or DuReader-retrieval {question_id, question, answer_paragraphs: "
    "[{paragraph_id, paragraph_text}]}",
    "jsonl": "JSON lines (or a JSON list) of objects holding the fields named by "
    "--question-field, --answer-field and --context-field",
}
EXPECTED["drcd"] = EXPECTED["squad"]
EXPECTED["cail"] = EXPECTED["squad2"] + ' (CAIL2019: is_impossible as "true"/"false")'

MAX_EXAMPLES = 20  # skipped records named one by one in meta.json; the rest are counted


@dataclass(frozen=True)
class Source:
    """What a reader found: question and corpus records, plus what it had to leave out."""

    questions: list[Record]
    corpus: list[Record]
    skips: Skips


@dataclass
class Skips:
    """Records left out, counted by reason, the first few named with where they were."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, str]] = field(default_factory=list)
    # records kept, but read against what they say (a contradiction in the source)
    flagged: dict[str, int] = field(default_factory=dict)
    flagged_examples: list[dict[str, str]] = field(default_factory=list)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"where": where, "reason": reason})

    def flag(self, reason: str, where: str) -> None:
        self.flagged[reason] = self.flagged.get(reason, 0) + 1
        if len(self.flagged_examples) < MAX_EXAMPLES:
            self.flagged_examples.append({"where": where, "reason": reason})

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def first(self) -> str:
        return "; ".join(f"{e['where']}: {e['reason']}" for e in self.examples[:3])


def bad(path: Path, kind: str, reason: str) -> ConfigError:
    guess = guess_kind(path)
    hint = f"; it looks like --from {guess}" if guess and guess != kind else ""
    return ConfigError(f"{path}: {reason} (expected {EXPECTED[kind]}{hint})")


def guess_kind(path: Path) -> str | None:
    """Best guess of a file's format, only to suggest the right --from in an error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    except json.JSONDecodeError:
        try:
            with path.open(encoding="utf-8") as f:
                data = json.loads(f.readline())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if "context_id" in data[0]:
            return "cmrc"
        data = data[0]
    if isinstance(data, dict):
        if "query" in data and "positive" in data:
            return "rgb"
        if "question" in data and ("documents" in data or "answer_paragraphs" in data):
            return "dureader"
        if isinstance(data.get("data"), list):
            return "squad"
    return None


def load_json(path: Path, kind: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected {EXPECTED[kind]})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise bad(path, kind, f"not UTF-8 text ({e.reason})") from e
    except json.JSONDecodeError as e:
        raise bad(path, kind, f"not a single JSON document ({e.msg} at line {e.lineno})") from e


def read_records(path: Path, kind: str, skips: Skips) -> Iterator[tuple[str, Any]]:
    """(where, record) of a JSON-lines file, or of a file holding one JSON list.

    A line that is not JSON is skipped into `skips`, not fatal: one truncated line of a
    downloaded file must not lose the rest.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected {EXPECTED[kind]})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise bad(path, kind, f"not UTF-8 text ({e.reason})") from e
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, list):
        for n, rec in enumerate(whole):
            yield f"item {n}", rec
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            skips.add(f"not JSON ({e.msg})", f"line {lineno}")
            continue
        yield f"line {lineno}", rec


def content_id(prefix: str, text: str) -> str:
    """A passage id from its text (the same passage gets the same id in every question)."""
    return prefix + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def text_of(value: Any) -> str | None:
    """`value` as stripped text, or None when it is not a string (or a number)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    return None


def structure_error(e: KeyError | TypeError | AttributeError) -> str:
    return f"missing field {e}" if isinstance(e, KeyError) else f"unexpected structure ({e})"
