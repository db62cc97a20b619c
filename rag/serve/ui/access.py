"""Who is logged in to the chat page and what they may read and change.

Every read and write the page makes goes through `rag.serve.service.Service` with the
login's `Caller`, as the HTTP APIs do: the knowledge bases a caller may not read are
never opened for it, so none of their passages reaches an answer, a citation, a source
view, a document list or an error message. Over a bare index (no accounts) the one
login, or nobody (`ANONYMOUS` in the audit log), is the operator, who reads and changes
everything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from rag.errors import ForbiddenError, NotFoundError
from rag.org.accounts import Caller
from rag.org.audit import ANONYMOUS


class UiAccess:
    """The page's view of a `Service`: callers by login name, their knowledge bases, the
    library of one or several of them, and the audit log of what they asked."""

    def __init__(self, service):  # a rag.serve.service.Service (not imported: it imports us)
        self.service = service
        self._combined: dict[tuple[str, ...], object] = {}
        self._lock = threading.Lock()

    @property
    def accounts(self):
        return self.service.accounts

    @property
    def has_kbs(self) -> bool:
        """Whether the page serves a home's knowledge bases (else one bare index)."""
        return self.service.systems is not None

    def caller(self, username: str | None) -> Caller:
        """The caller a login name is, read afresh (a grant or revoke counts at once); an
        account removed since its login reads nothing. Over a bare index, nobody logged
        in is `ANONYMOUS` (so the audit log says so), who may do what the operator may."""
        if self.accounts is None:
            return Caller(username or ANONYMOUS, "admin", None)
        try:
            return self.accounts.caller(username or "")
        except NotFoundError:
            return Caller(username or "", "reader", frozenset())

    def readable(self, caller: Caller) -> list[str]:
        return self.service.knowledge_bases(caller)

    def library(self, kb: str | None, caller: Caller, edit: bool = False):
        """The library of knowledge base `kb` (UnknownKnowledgeBase if `caller` may not read
        it; with `edit`, ForbiddenError if it may not change it)."""
        if caller is None:  # the Service would read None as the operator
            raise ForbiddenError("请先登录。")
        return self.service.knowledge_base(kb, caller, edit=edit).library

    def chat_library(self, kbs: Sequence[str], caller: Caller):
        """The library the chat answers from over `kbs` (none: the caller's first): that
        knowledge base's own for one, a read-only one over all of them for several (hits
        fused, document ids qualified `KB/DOC`, rag.search.multi)."""
        names = list(dict.fromkeys(k for k in kbs if k)) or [None]
        parts = [self.library(n, caller) for n in names]  # each checked for this caller
        if len(parts) == 1:
            return parts[0]
        key = tuple(sorted(names))
        versions = [p.index.folder for p in parts]
        with self._lock:
            cached = self._combined.get(key)
            if cached is None:
                cached = self._combined[key] = (self._combine(key, caller), versions)
            lib, seen = cached
            if seen != versions:  # a document added or removed in one of them
                lib.system.reload()
                self._combined[key] = (lib, versions)
            return lib

    def _combine(self, names: tuple[str, ...], caller: Caller):
        from rag.serve.ui.library import Library, data_dir
        from rag.system import load_kb_system

        systems = self.service.systems
        system = load_kb_system(systems.settings, names, caller, systems.embedders)
        root = data_dir(system.settings)
        return Library(system, root / "uploads", root / "feedback.jsonl", self.service.temp_dir)

    def require_admin(self, caller: Caller) -> None:
        if caller.role != "admin" or self.accounts is None:
            raise ForbiddenError("只有管理员可以查看管理页面。")

    # ----------------------------------------------------------------- audit
    def record(self, caller: Caller, system, answer, started: float) -> int | None:
        """The answer into the audit log, by `caller` on the channel "ui"; its id."""
        return self.service.record(caller, system, answer, started, via="ui")

    def feedback(self, question_id: int | None, caller: Caller, rating: str, comment: str = ""):
        """A thumb (and comment) beside the logged question in the audit log."""
        if self.service.audit is not None and question_id is not None:
            self.service.audit.feedback(question_id, caller.name, rating, comment)


EXPORT_KEEP_S = 3600  # an export is downloaded at once; Gradio serves its own copy


def export_dir() -> Path:
    """A new folder for an export (a conversation's Markdown, the admin tab's plots)
    inside Gradio's upload folder, which it may serve from
    (rag.serve.ui.library.use_upload_temp_dir); exports older than an hour go first."""
    import os
    import shutil
    import tempfile

    root = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "exports"
    root.mkdir(parents=True, exist_ok=True)
    old = time.time() - EXPORT_KEEP_S
    for d in root.iterdir():
        try:
            if d.stat().st_mtime < old:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            continue
    return Path(tempfile.mkdtemp(dir=root))
