"""User feedback on answers: thumbs up/down with an optional comment, kept as JSON lines.

The chat app appends one line per rating. A comment given afterwards is appended as a
new line with the same `id`, so the file is append-only (safe with several app
processes) and `read_feedback` keeps the last line of each id. Each line carries
everything needed to replay or grade the answer later: the question and its rewritten
form, the answer, its citations (document ids and character offsets) and the settings
that produced it. The eval harness reads it with `read_feedback`.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

RATINGS = ("up", "down")


@dataclass(frozen=True)
class Feedback:
    """One rating of one answer; a later record with the same `id` supersedes it."""

    id: str
    rating: str  # "up" | "down"
    question: str
    answer: str
    refused: bool
    citations: list[dict[str, Any]]
    settings: dict[str, Any]
    comment: str = ""
    rewritten_question: str | None = None
    generator: str = ""
    confidence: float | None = None
    index_version: str = ""
    session: str = ""
    time: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    @property
    def cited_doc_ids(self) -> list[str]:
        return list(dict.fromkeys(c["doc_id"] for c in self.citations if c.get("doc_id")))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "cited_doc_ids": self.cited_doc_ids}

    def with_comment(self, comment: str) -> Feedback:
        """The same rating with a comment, stamped now (appended, it supersedes this one)."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return Feedback(**{**asdict(self), "comment": comment.strip(), "time": now})


def feedback_from_answer(
    answer: Any,
    rating: str,
    settings: dict[str, Any],
    *,
    comment: str = "",
    session: str = "",
    index_version: str = "",
    feedback_id: str | None = None,
) -> Feedback:
    """Build a record from an `rag.read.extractive.Answer` and the settings that produced it."""
    if rating not in RATINGS:
        raise ConfigError(f"rating must be one of {', '.join(RATINGS)}, not {rating!r}")
    citations = [
        {
            "n": c.n,
            "doc_id": c.doc_id,
            "chunk_id": c.chunk_id,
            "title": c.title,
            "date": c.date,
            "start": c.start,
            "end": c.end,
            "quotes": [list(q) for q in c.quotes],
        }
        for c in answer.citations
    ]
    return Feedback(
        id=feedback_id or uuid.uuid4().hex,
        rating=rating,
        question=answer.question,
        answer=answer.text,
        refused=bool(answer.refused),
        citations=citations,
        settings=dict(settings),
        comment=comment.strip(),
        rewritten_question=answer.rewritten_question,
        generator=getattr(answer, "generator", ""),
        confidence=round(float(answer.confidence), 4),
        index_version=index_version,
        session=session,
    )


def append_feedback(
    path: str | os.PathLike, record: Feedback, max_bytes: int | None = None, keep: int = 5
) -> None:
    """Append one JSON line; an exclusive lock keeps lines whole across processes.

    Past `max_bytes` the file is rotated first (path.1 ... path.`keep`, the oldest
    dropped), so feedback can never fill the disk.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record.to_json(), ensure_ascii=False, default=str) + "\n"
    with open(p.with_name(p.name + ".lock"), "a") as guard:
        fcntl.flock(guard.fileno(), fcntl.LOCK_EX)  # one writer, rotation included
        try:
            if max_bytes is not None and p.exists() and p.stat().st_size + len(line) > max_bytes:
                _rotate(p, keep)
            with open(p, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        finally:
            fcntl.flock(guard.fileno(), fcntl.LOCK_UN)


def _rotate(p: Path, keep: int) -> None:
    for i in range(keep, 0, -1):
        older = p.with_name(f"{p.name}.{i}")
        if i == keep:
            older.unlink(missing_ok=True)
        elif older.exists():
            os.replace(older, p.with_name(f"{p.name}.{i + 1}"))
    if keep > 0:
        os.replace(p, p.with_name(f"{p.name}.1"))
    else:
        p.unlink()


def feedback_files(path: str | os.PathLike) -> list[Path]:
    """The feedback file and its rotated predecessors, oldest first."""
    p = Path(path)
    rotated = sorted(
        (q for q in p.parent.glob(f"{p.name}.*") if q.suffix[1:].isdigit()),
        key=lambda q: -int(q.suffix[1:]),
    )
    return [*rotated, p]


def read_feedback(path: str | os.PathLike, latest_only: bool = True) -> list[Feedback]:
    """The records in `path` and its rotated predecessors, oldest first, in file order;
    with `latest_only`, the last line of each id.

    A missing file is an empty list; a line that is not a feedback record raises
    ConfigError naming the file and line.
    """
    names = set(Feedback.__dataclass_fields__)
    out: dict[str, Feedback] | list[Feedback] = {} if latest_only else []
    lines = [
        (p, no, line)
        for p in feedback_files(path)
        if p.exists()
        for no, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1)
    ]
    for p, no, line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            rec = Feedback(**{k: v for k, v in obj.items() if k in names})
        except (json.JSONDecodeError, TypeError) as e:
            raise ConfigError(f"{p}:{no}: not a feedback record ({e})") from None
        if isinstance(out, dict):
            out.pop(rec.id, None)  # re-insert: order by the latest line
            out[rec.id] = rec
        else:
            out.append(rec)
    return list(out.values()) if isinstance(out, dict) else out
