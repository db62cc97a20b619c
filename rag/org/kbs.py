"""The knowledge bases of a home: each its own index folder with its own embedding model.

`default` is HOME/index, so an install from before knowledge bases (one index at
.rag/index) keeps working: the registry adopts that folder as `default` the first time
it is opened. Every other knowledge base lives at HOME/kb/NAME.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.errors import ConfigError, NotFoundError
from rag.index.versions import current_version
from rag.org.db import now, org_db

DEFAULT_KB = "default"
LEGACY_FOLDER = "index"  # HOME/index: the one index of a home from before knowledge bases
# letters (Chinese too), digits, '-', '_': a name is part of a path and of a model id
_NAME = re.compile(r"[\w\-]{1,40}")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name or "") or name.startswith("-"):
        raise ConfigError(
            f"知识库名称“{name[:40]}”不可用：只能由 1–40 个汉字、字母、数字、“-”或“_”组成。"
        )
    return name


def kb_not_found(name: str) -> NotFoundError:
    """The one message for a knowledge base that is missing or that the caller may not
    read: both must read alike."""
    return NotFoundError(f"没有名为“{name[:40]}”的知识库：该知识库不存在。")


@dataclass(frozen=True)
class KnowledgeBase:
    name: str
    folder: Path  # the index folder
    embed_model: str
    created_at: str

    @property
    def built(self) -> bool:
        """Whether anything was ingested yet (an index version is live)."""
        return (self.folder / "CURRENT").is_file()

    def settings(self, base: Settings) -> Settings:
        """`base` pointed at this knowledge base's index and embedding model."""
        return base.replace(index_dir=str(self.folder), embed_model=self.embed_model)


class KnowledgeBases:
    """The registry in HOME/org.db: create, list, rename, delete."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = settings.home_path

    def connect(self) -> sqlite3.Connection:
        """A connection to HOME/org.db, an old HOME/index adopted as `default` first."""
        con = org_db(self.home)
        self._adopt_legacy(con)
        return con

    def _adopt_legacy(self, con: sqlite3.Connection) -> None:
        if not (self.home / LEGACY_FOLDER / "CURRENT").is_file():
            return
        model = self.settings.embed_model
        folder = current_version(self.home / LEGACY_FOLDER)
        try:  # the model it was built with, as its manifest names it
            import json

            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            model = manifest["settings"]["embed_model"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        con.execute(
            "INSERT OR IGNORE INTO kbs (name, folder, embed_model, created_at) "
            "SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM kbs WHERE folder = ?)",
            (DEFAULT_KB, LEGACY_FOLDER, model, now(), LEGACY_FOLDER),
        )

    def _kb(self, row: sqlite3.Row) -> KnowledgeBase:
        return KnowledgeBase(
            row["name"], self.home / row["folder"], row["embed_model"], row["created_at"]
        )

    def list(self) -> list[KnowledgeBase]:
        with closing(self.connect()) as con:
            rows = con.execute("SELECT * FROM kbs ORDER BY name").fetchall()
        return [self._kb(r) for r in rows]

    def names(self) -> list[str]:
        return [kb.name for kb in self.list()]

    def get(self, name: str) -> KnowledgeBase:
        with closing(self.connect()) as con:
            row = con.execute("SELECT * FROM kbs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise kb_not_found(name)
        return self._kb(row)

    def get_or_default(self, name: str) -> KnowledgeBase:
        """`get`, except that `default` is registered on first use (`rag ingest --kb default`
        in a new home)."""
        if name == DEFAULT_KB:
            try:
                return self.get(name)
            except NotFoundError:
                return self.create(DEFAULT_KB)
        return self.get(name)

    def create(self, name: str, embed_model: str | None = None) -> KnowledgeBase:
        check_name(name)
        folder = LEGACY_FOLDER if name == DEFAULT_KB else f"kb/{name}"
        model = embed_model or self.settings.embed_model
        with closing(self.connect()) as con:
            try:
                con.execute(
                    "INSERT INTO kbs (name, folder, embed_model, created_at) VALUES (?, ?, ?, ?)",
                    (name, folder, model, now()),
                )
            except sqlite3.IntegrityError:
                raise ConfigError(f"知识库“{name}”已存在。") from None
        (self.home / folder).mkdir(parents=True, exist_ok=True)
        return self.get(name)

    def rename(self, old: str, new: str) -> KnowledgeBase:
        """Rename `old` to `new`: its folder moves to HOME/kb/NEW and its grants follow."""
        check_name(new)
        kb = self.get(old)
        if new == DEFAULT_KB:
            raise ConfigError(f"“{DEFAULT_KB}”是保留的知识库名称，请换一个名称。")
        target = self.home / "kb" / new
        if target.exists():
            raise ConfigError(f"{target} 已存在，不能重命名为“{new}”。")
        with closing(self.connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute(
                    "UPDATE kbs SET name = ?, folder = ? WHERE name = ?", (new, f"kb/{new}", old)
                )
            except sqlite3.IntegrityError:
                con.execute("ROLLBACK")
                raise ConfigError(f"知识库“{new}”已存在。") from None
            target.parent.mkdir(parents=True, exist_ok=True)
            if kb.folder.exists():
                kb.folder.rename(target)  # same file system: atomic, then the row commits
            con.execute("COMMIT")
        return self.get(new)

    def delete(self, name: str) -> None:
        """Remove the knowledge base, its index folder and every grant of it."""
        kb = self.get(name)
        with closing(self.connect()) as con:
            con.execute("DELETE FROM kbs WHERE name = ?", (name,))
        shutil.rmtree(kb.folder, ignore_errors=True)
