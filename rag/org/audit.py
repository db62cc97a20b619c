"""The audit log: every question asked, who asked it of which knowledge bases, what they
were told (answer, citations, refusal, confidence), how long it took, and the feedback
given on it. Append-only: SQLite triggers refuse any UPDATE or DELETE, so a row, once
written, stays as it was (HOME/audit.db).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ConfigError, NotFoundError
from rag.org.db import connect, now
from rag.textnorm import norm

# who asked when nobody logged in (the chat page or an API without accounts): never an
# account's name, which cannot hold parentheses (rag.org.accounts)
ANONYMOUS = "(anonymous)"

AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS questions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,                 -- UTC, ISO 8601
    user TEXT NOT NULL,
    channel TEXT NOT NULL,            -- cli | api | ui
    kbs TEXT NOT NULL,                -- JSON list of the knowledge bases searched
    question TEXT NOT NULL,
    rewritten TEXT,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,          -- JSON: [{n, kb, doc_id, title, start, end}]
    refused INTEGER NOT NULL,
    confidence REAL,
    latency_ms REAL,
    generator TEXT
);
CREATE INDEX IF NOT EXISTS questions_at ON questions(at);
CREATE INDEX IF NOT EXISTS questions_user ON questions(user);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    question_id INTEGER NOT NULL REFERENCES questions(id),
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment TEXT NOT NULL DEFAULT '',
    correction TEXT NOT NULL DEFAULT ''  -- the answer the user says is right
);
CREATE INDEX IF NOT EXISTS feedback_question ON feedback(question_id);
CREATE TRIGGER IF NOT EXISTS questions_no_update BEFORE UPDATE ON questions
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS questions_no_delete BEFORE DELETE ON questions
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS feedback_no_update BEFORE UPDATE ON feedback
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS feedback_no_delete BEFORE DELETE ON feedback
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

COLUMNS = ("id", "at", "user", "channel", "kbs", "question", "rewritten", "answer",
           "citations", "refused", "confidence", "latency_ms", "generator", "rating",
           "comment", "correction")  # fmt: skip


@dataclass(frozen=True)
class AuditRow:
    """One question as logged, with the latest feedback given on it ("" when none)."""

    id: int
    at: str
    user: str
    channel: str
    kbs: tuple[str, ...]
    question: str
    rewritten: str | None
    answer: str
    citations: tuple[dict, ...]
    refused: bool
    confidence: float | None
    latency_ms: float | None
    generator: str | None
    rating: str = ""
    comment: str = ""
    correction: str = ""

    @property
    def cited_doc_ids(self) -> list[str]:
        return list(dict.fromkeys(c["doc_id"] for c in self.citations if c.get("doc_id")))


def _citations(answer) -> list[dict]:
    return [
        {"n": c.n, "kb": c.kb, "doc_id": c.doc_id, "title": c.title, "start": c.start,
         "end": c.end}
        for c in answer.citations
    ]  # fmt: skip


UNANSWERED_GROUPS_PER_ROW = 10  # groups read per unanswered question shown, to merge spellings


@dataclass(frozen=True)
class AuditFigures:
    """What the admins are shown of a log: how many questions and refusals, (day,
    questions, refused) per day oldest first, the refused questions asked most often
    (text, times), and the documents most often cited (knowledge base, title, answers
    citing it; an answer citing a document twice counts once, a refusal cites nothing)."""

    total: int
    refused: int
    per_day: list[tuple[str, int, int]]
    unanswered: list[tuple[str, int]]
    most_cited: list[tuple[str, str, int]]


def _where(since: str | None, user: str | None, *more: str) -> tuple[str, list]:
    """The WHERE clause (with its leading space; "" for none) and its arguments."""
    where, args = list(more), []
    if since:
        where.append("q.at >= ?")
        args.append(since)
    if user:
        where.append("q.user = ?")
        args.append(user)
    return (" WHERE " + " AND ".join(where) if where else ""), args


class AuditLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _con(self):
        return connect(self.path, AUDIT_SCHEMA)

    def record(self, user: str, kbs: Sequence[str], answer, latency_ms: float,
               channel: str) -> int:  # fmt: skip
        """Append one answered question; return its id (feedback refers to it)."""
        row = (now(), user, channel, json.dumps(list(kbs), ensure_ascii=False),
               answer.question, answer.rewritten_question, answer.text,
               json.dumps(_citations(answer), ensure_ascii=False), int(answer.refused),
               float(answer.confidence), float(latency_ms), answer.generator)  # fmt: skip
        with closing(self._con()) as con:
            cur = con.execute(
                "INSERT INTO questions (at, user, channel, kbs, question, rewritten, answer, "
                "citations, refused, confidence, latency_ms, generator) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cur.lastrowid)

    def feedback(self, question_id: int, user: str, rating: str, comment: str = "",
                 correction: str = "") -> None:  # fmt: skip
        """Append feedback on a logged question, by the user who asked it (a later one
        supersedes an earlier one when read)."""
        if rating not in ("up", "down"):
            raise ConfigError(f"评价只能是 up 或 down，而不是“{rating[:20]}”。")
        with closing(self._con()) as con:
            asked = con.execute(
                "SELECT user FROM questions WHERE id = ?", (question_id,)
            ).fetchone()
            if asked is None or asked[0] != user:  # another's question is not there for you
                raise NotFoundError(f"没有编号为 {question_id} 的提问记录。")
            con.execute(
                "INSERT INTO feedback (question_id, at, user, rating, comment, correction) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (question_id, now(), user, rating, comment.strip(), correction.strip()),
            )

    def rows(self, since: str | None = None, user: str | None = None) -> list[AuditRow]:
        """The logged questions, oldest first, from `since` (an ISO date or time, UTC)
        and of `user` when given."""
        return self._select(since, user, "q.id")

    def latest(self, n: int) -> list[AuditRow]:
        """The `n` latest questions, newest first: one bounded query, however long the log."""
        return self._select(None, None, "q.id DESC", n)

    def _select(self, since: str | None, user: str | None, order: str,
                limit: int | None = None) -> list[AuditRow]:  # fmt: skip
        where, args = _where(since, user)
        sql = (
            "SELECT q.*, f.rating, f.comment, f.correction FROM questions q LEFT JOIN "
            "feedback f ON f.id = (SELECT MAX(id) FROM feedback WHERE question_id = q.id)"
            + where
            + f" ORDER BY {order}"
            + (" LIMIT ?" if limit is not None else "")
        )
        if not self.path.exists():
            return []
        with closing(self._con()) as con:
            rows = con.execute(sql, [*args, *([limit] if limit is not None else [])])
            return [self._row(r) for r in rows]

    def figures(self, since: str | None = None, user: str | None = None, top: int = 10,
                days: int | None = None) -> AuditFigures:  # fmt: skip
        """What the log says for its admins (`rag audit-report`, the admin tab), counted by
        SQLite over the questions from `since` and of `user`: a few rows come back however
        many were logged. `days` keeps only the latest days of the per-day figures."""
        if not self.path.exists():
            return AuditFigures(0, 0, [], [], [])
        where, args = _where(since, user)
        refused = _where(since, user, "q.refused = 1")[0]
        answered = _where(since, user, "q.refused = 0")[0]
        with closing(self._con()) as con:
            total, n_refused = con.execute(
                f"SELECT COUNT(*), COALESCE(SUM(q.refused), 0) FROM questions q{where}", args
            ).fetchone()
            per_day = con.execute(
                f"SELECT substr(q.at, 1, 10) AS day, COUNT(*), SUM(q.refused) FROM questions q"
                f"{where} GROUP BY day ORDER BY day DESC"
                + (" LIMIT ?" if days is not None else ""),
                [*args, *([days] if days is not None else [])],
            ).fetchall()
            # the same question asked with or without its question mark is one group here;
            # other spellings (traditional characters, full-width letters) are merged below,
            # among the groups asked most often
            groups = con.execute(
                "SELECT q.question, COUNT(*) AS n, MIN(q.id) AS first FROM questions q"
                f"{refused} GROUP BY rtrim(q.question, ' ?？') ORDER BY n DESC, first LIMIT ?",
                [*args, top * UNANSWERED_GROUPS_PER_ROW],
            ).fetchall()
            # SQLite's bare columns: `title` is the one of the row where MIN(q.id) is
            cited = con.execute(
                "SELECT COALESCE(json_extract(c.value, '$.kb'), '') AS kb,"
                " json_extract(c.value, '$.doc_id') AS doc,"
                " COALESCE(NULLIF(json_extract(c.value, '$.title'), ''),"
                " json_extract(c.value, '$.doc_id')) AS title,"
                " COUNT(DISTINCT q.id) AS n, MIN(q.id) AS first"
                f" FROM questions q, json_each(q.citations) c{answered}"
                " GROUP BY kb, doc ORDER BY n DESC, first LIMIT ?",
                [*args, top],
            ).fetchall()
        merged: dict[str, list] = {}  # normalised text -> [shown text, count, first id]
        for question, n, first in sorted(groups, key=lambda g: g[2]):
            m = merged.setdefault(norm(question).strip(" ?？"), [question, 0, first])
            m[1] += n
        unanswered = sorted(merged.values(), key=lambda m: (-m[1], m[2]))[:top]
        return AuditFigures(
            int(total), int(n_refused), [(d, int(a), int(f)) for d, a, f in reversed(per_day)],
            [(q, n) for q, n, _ in unanswered], [(kb, t, int(n)) for kb, _, t, n, _ in cited],
        )  # fmt: skip

    @staticmethod
    def _row(r) -> AuditRow:
        return AuditRow(
            r["id"], r["at"], r["user"], r["channel"], tuple(json.loads(r["kbs"])),
            r["question"], r["rewritten"], r["answer"], tuple(json.loads(r["citations"])),
            bool(r["refused"]), r["confidence"], r["latency_ms"], r["generator"],
            r["rating"] or "", r["comment"] or "", r["correction"] or "",
        )  # fmt: skip

    def write_csv(self, rows: Sequence[AuditRow], path: Path) -> None:
        """`rows` as CSV (UTF-8 with BOM, so spreadsheet programs read the Chinese)."""
        with open(path, "w", encoding="utf-8-sig", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for r in rows:
                w.writerow([
                    r.id, r.at, r.user, r.channel, "、".join(r.kbs), r.question,
                    r.rewritten or "", r.answer,
                    "；".join(f"[{c['n']}] {c['kb']}/{c['doc_id']}" for c in r.citations),
                    int(r.refused), r.confidence, r.latency_ms, r.generator or "",
                    r.rating, r.comment, r.correction,
                ])  # fmt: skip


def eval_records(rows: Sequence[AuditRow]) -> list[dict]:
    """Rated answers as questions.jsonl records of the eval harness (rag.eval.questions):
    a thumbs-up answer is gold with the documents it cited; a thumbs-down one with a
    correction is gold with the correction (its cited documents are not trusted); a
    thumbs-up refusal is unanswerable. A thumbs-down without a correction says only
    "wrong", which grades nothing, and is left out."""
    out = []
    for r in rows:
        if not r.rating:
            continue
        rec = {"id": f"audit-{r.id}", "question": r.rewritten or r.question}
        if r.rating == "up" and not r.refused:
            rec |= {"answers": [r.answer], "answerable": True, "gold_doc_ids": r.cited_doc_ids}
        elif r.rating == "up" and r.refused:
            rec |= {"answers": [], "answerable": False, "gold_doc_ids": []}
        elif r.correction:
            rec |= {"answers": [r.correction], "answerable": True, "gold_doc_ids": []}
        else:
            continue  # "wrong", but not what is right: nothing to grade against
        rec["source"] = {"user": r.user, "kbs": list(r.kbs), "at": r.at, "comment": r.comment}
        out.append(rec)
    return out
