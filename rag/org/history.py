"""Each user's conversations (HOME/history.db, WAL): listed, resumed after a restart or
from another client, renamed, deleted, exported as Markdown with their citations.

Every read and change names the user: another user's conversation is not found, the
same as one that does not exist.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ConfigError, NotFoundError
from rag.org.db import connect, now

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    title TEXT NOT NULL,
    kbs TEXT NOT NULL,                -- JSON list of the knowledge bases asked
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_user ON conversations(user, updated_at);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    question TEXT NOT NULL,
    rewritten TEXT,
    answer TEXT NOT NULL,
    refused INTEGER NOT NULL,
    citations TEXT NOT NULL           -- JSON: [{n, kb, doc_id, title, location, text}]
);
"""
MAX_TITLE_CHARS = 60


@dataclass(frozen=True)
class Turn:
    question: str
    rewritten: str | None
    answer: str
    refused: bool
    citations: tuple[dict, ...]
    at: str


@dataclass(frozen=True)
class Conversation:
    id: str
    user: str
    title: str
    kbs: tuple[str, ...]
    created_at: str
    updated_at: str
    turns: tuple[Turn, ...] = ()


def _not_found(conv_id: str) -> NotFoundError:
    return NotFoundError(f"没有编号为 {conv_id[:40]} 的对话。")


class History:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _con(self):
        return connect(self.path, HISTORY_SCHEMA)

    def start(self, user: str, kbs: Sequence[str], title: str) -> str:
        """A new, empty conversation of `user`; returns its id."""
        conv_id = uuid.uuid4().hex[:12]
        t = now()
        with closing(self._con()) as con:
            con.execute(
                "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?)",
                (conv_id, user, _title(title), json.dumps(list(kbs), ensure_ascii=False), t, t),
            )
        return conv_id

    def append(self, user: str, conv_id: str, answer) -> None:
        """Add an answered question to `user`'s conversation `conv_id`."""
        cites = [
            {"n": c.n, "kb": c.kb, "doc_id": c.doc_id, "title": c.title,
             "location": c.location, "text": c.text}
            for c in answer.citations
        ]  # fmt: skip
        with closing(self._con()) as con:
            con.execute("BEGIN IMMEDIATE")
            self._owned(con, user, conv_id)
            t = now()
            con.execute(
                "INSERT INTO turns (conversation_id, at, question, rewritten, answer, refused, "
                "citations) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conv_id, t, answer.question, answer.rewritten_question, answer.text,
                 int(answer.refused), json.dumps(cites, ensure_ascii=False)),
            )  # fmt: skip
            con.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (t, conv_id))
            con.execute("COMMIT")

    @staticmethod
    def _owned(con, user: str, conv_id: str):
        row = con.execute(
            "SELECT * FROM conversations WHERE id = ? AND user = ?", (conv_id, user)
        ).fetchone()
        if row is None:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise _not_found(conv_id)
        return row

    def list(self, user: str) -> list[Conversation]:
        """`user`'s conversations, the most recent first (without their turns)."""
        if not self.path.exists():
            return []
        with closing(self._con()) as con:
            rows = con.execute(
                "SELECT * FROM conversations WHERE user = ? ORDER BY updated_at DESC, rowid DESC",
                (user,),
            ).fetchall()
        return [_conversation(r) for r in rows]

    def get(self, user: str, conv_id: str) -> Conversation:
        with closing(self._con()) as con:
            row = self._owned(con, user, conv_id)
            turns = con.execute(
                "SELECT * FROM turns WHERE conversation_id = ? ORDER BY id", (conv_id,)
            ).fetchall()
        return _conversation(row, tuple(
            Turn(t["question"], t["rewritten"], t["answer"], bool(t["refused"]),
                 tuple(json.loads(t["citations"])), t["at"])
            for t in turns
        ))  # fmt: skip

    def rename(self, user: str, conv_id: str, title: str) -> None:
        with closing(self._con()) as con:
            self._owned(con, user, conv_id)
            con.execute("UPDATE conversations SET title = ? WHERE id = ?", (_title(title), conv_id))

    def delete(self, user: str, conv_id: str) -> None:
        with closing(self._con()) as con:
            self._owned(con, user, conv_id)
            con.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))

    def markdown(self, user: str, conv_id: str) -> str:
        """The conversation as Markdown: each question, its answer, its citations."""
        conv = self.get(user, conv_id)
        out = [
            f"# {conv.title}",
            "",
            f"知识库：{'、'.join(conv.kbs)}；开始于 {conv.created_at}",
            "",
        ]
        for t in conv.turns:
            out += [f"## 问：{t.question}", ""]
            if t.rewritten and t.rewritten != t.question:
                out += [f"（理解为：{t.rewritten}）", ""]
            out += [t.answer, ""]
            if t.citations:
                out.append("可能相关的段落：" if t.refused else "引用：")
                out.append("")
                for c in t.citations:
                    where = f"，{c['location']}" if c.get("location") else ""
                    kb = f"〔知识库 {c['kb']}〕" if c.get("kb") else ""
                    text = " ".join(c["text"].split())
                    out.append(f"{c['n']}. {kb}《{c['title']}》{where}：{text}")
                out.append("")
        return "\n".join(out).rstrip() + "\n"


def _title(title: str) -> str:
    title = " ".join((title or "").split())
    if not title:
        raise ConfigError("对话标题不能为空。")
    return title[:MAX_TITLE_CHARS]


def _conversation(r, turns: tuple[Turn, ...] = ()) -> Conversation:
    return Conversation(r["id"], r["user"], r["title"], tuple(json.loads(r["kbs"])),
                        r["created_at"], r["updated_at"], turns)  # fmt: skip
