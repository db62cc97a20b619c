"""One chat session: its answerer and settings, follow-up rewriting, streaming answers, citations and feedback; the example questions."""

import dataclasses
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import ConfigError, ForbiddenError, RagError
from rag.serve.limits import LimitError, check_comment, check_question
from rag.serve.public import public_error
from rag.serve.ui.library import DEFAULT_QA, Library
from rag.serve.ui.render import render_answer, render_error, render_partial, render_user
from rag.types import NO_FILTERS, Filters

# Questions from the corpus QA set that make good first examples (short, answered
# correctly by the offline extractive answerer); others fill in when these are missing.
PREFERRED_EXAMPLES = ("cq001", "cq013", "cq035", "cq039", "cq048")


def generator_label(base: Settings, name: str = "") -> str:
    """How the chat names the configured generator `name` (default: `base`'s own)."""
    name = name or base.current_generator()
    return dict((v, k) for k, v in base.generator_choices()).get(name, name)


# =========================================================================== sessions
def build_answerer(settings: Settings, retriever, embedder) -> tuple[Any, str]:
    """The answerer the settings ask for, and a notice when it had to fall back.

    Uses `rag.system.make_answerer` when that module is importable; without it only the
    extractive answerer exists, so that one is used and the notice says why.
    """
    from rag.read.extractive import ExtractiveAnswerer

    try:
        from rag.llm.answerer import LLMAnswerer  # noqa: F401  (is the LLM answerer there?)
        from rag.system import make_answerer
    except ImportError as e:
        fallback = ExtractiveAnswerer(retriever, settings)
        if settings.llm == "extractive":
            return fallback, ""
        return fallback, f"LLM 生成器不可用（{e}），已改用抽取式回答。"
    return make_answerer(settings, retriever, embedder), ""


def _rewriter_for(answerer, settings: Settings):
    """An LLM follow-up rewriter when the answerer has an LLM (else None: key-term carry-over)."""
    try:
        from rag.llm.rewrite import rewriter_for
    except ImportError:
        return None
    return rewriter_for(answerer, settings)


@dataclass
class ChatState:
    """One browser session: its history, its settings and the answerer built from them."""

    library: Library
    settings: Settings
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    messages: list[dict[str, Any]] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)  # Answer per turn
    message_turn: dict[int, int] = field(default_factory=dict)  # assistant message -> turn
    pending: Any = None  # the Feedback a comment would be added to
    notice: str = ""
    generator: str = ""  # the configured generator's name; "" until one is chosen
    filters: Filters = NO_FILTERS  # the search scope this session chose (发文机关, 发文字号)
    # the login name: a logged-in user's conversations are kept in HOME/history.db and
    # survive a reload; without login ("") a conversation lives as long as the page
    user: str = ""
    conv_id: str = ""  # this conversation's id in the history; "" until its first answer
    # who is asking and what (rag.serve.ui.access.UiAccess): every read goes through the
    # access with `caller`; `kbs` are the knowledge bases this conversation asks
    access: Any = None
    caller: Any = None
    kbs: tuple[str, ...] = ()
    audit_ids: dict[int, int] = field(default_factory=dict)  # turn -> its audit log id
    pending_turn: int | None = None
    _chat: Any = None
    _answerer: Any = None
    _answerer_key: tuple | None = None

    def __post_init__(self) -> None:
        from rag.read.followup import ChatSession

        self._chat = ChatSession(self.library.system)

    def __deepcopy__(self, memo) -> "ChatState":
        return self  # gr.State may copy values; a session is never duplicated

    @property
    def history(self):
        return self._chat.history

    def answerer(self):
        """This session's answerer over the live index, rebuilt when the index or settings change."""
        from rag.search.multi import MultiRetriever
        from rag.search.retriever import HybridRetriever

        system = self.library.system
        index = system.index
        key = (index, self.settings)  # the index compares by identity: one per version
        if self._answerer_key != key:
            if isinstance(system.retriever, MultiRetriever):  # knowledge bases of a home
                retriever = MultiRetriever(system.retriever.parts, self.settings)
            else:
                retriever = HybridRetriever(index, system.embedder, self.settings)
            self._answerer, self.notice = build_answerer(self.settings, retriever, system.embedder)
            if self.notice:  # fell back to the extractive answerer: say so in the settings too
                self.settings = dataclasses.replace(self.settings, llm="extractive")
                self.generator = "extractive"
            key = (index, self.settings)
            self._chat.rewriter = _rewriter_for(self._answerer, self.settings)
            self._answerer_key = key
        return self._answerer

    def login(self, username: str | None) -> None:
        """This session is `username`'s (the login name; "" for none): its caller, and
        over a home the first knowledge base it may read, unless it chose readable ones."""
        self.user = username or ""
        if self.access is None:
            return
        self.caller = self.access.caller(self.user)
        if self.access.has_kbs:
            readable = self.access.readable(self.caller)
            kept = [k for k in self.kbs if k in readable] or readable[:1]
            if kept:
                self.use_kbs(kept)
            else:
                self.kbs = ()

    def use_kbs(self, kbs) -> str:
        """Ask the knowledge bases `kbs` from now on: a new conversation when they change
        (UnknownKnowledgeBase for one the caller may not read). Returns the status line."""
        names = [k for k in dict.fromkeys(kbs or ()) if isinstance(k, str) and k]
        if not names:
            raise ConfigError("请至少选择一个知识库。")
        library = self.access.chat_library(names, self.caller)
        if tuple(names) != self.kbs:
            self.reset()
            self.kbs = tuple(names)
            self._chat.system = library.system
        self.library = library
        return f"提问范围：知识库 {'、'.join(self.kbs)}。"

    def _checked_library(self) -> None:
        """Over a home, the library of this conversation's knowledge bases, looked up
        again for the caller: a grant revoked since the last question counts now."""
        if self.access is None or not self.access.has_kbs:
            return
        self.caller = self.access.caller(self.user)
        if not self.kbs:
            raise ForbiddenError("您还没有可以提问的知识库，请联系管理员授权。")
        self.library = self.access.chat_library(self.kbs, self.caller)

    def apply(self, generator: str | None = None, top_k: Any = None) -> str:
        """Choose this session's generator (by the name the operator configured) and
        top-k; return a status line.

        A session only chooses: no URL, model file or key comes from it, so nothing it
        types makes the server open a connection or a file. The new answerer is built at
        once, so a failure is reported here and the previous settings stay in force.
        """
        base = self.library.settings  # the operator's settings, not this session's
        name = generator if isinstance(generator, str) else base.current_generator()
        chosen = base.with_generator(name)  # ConfigError (Chinese) for an unknown name
        try:
            k = max(1, min(50, int(top_k or self.settings.top_k)))
        except (TypeError, ValueError):
            raise ConfigError("top-k 必须是 1 到 50 之间的整数") from None
        previous = (self.settings, self.generator, self._answerer, self._answerer_key, self.notice)
        self.settings, self.generator = dataclasses.replace(chosen, top_k=k), name
        try:
            self.answerer()
        except Exception as e:  # a UI boundary: any failure to build leaves the old settings
            self.settings, self.generator, self._answerer, self._answerer_key, self.notice = (
                previous
            )
            print(f"app: generator {name!r} failed to build: {e}", file=sys.stderr)
            return "设置未生效：所选生成方式无法启用，请联系管理员查看服务日志。"
        msg = (
            f"已应用（仅本会话）：生成方式 {self.generator_label()}，top-k {self.settings.top_k}。"
        )
        return f"{msg}{self.notice}" if self.notice else msg

    def scope(self, issuer: str | None = None, doc_number: str | None = None) -> str:
        """Narrow this session's searches to one issuing body and/or one document number
        (empty: the whole knowledge base); return the line the page shows."""
        where = {k: v.strip() for k, v in (("issuer", issuer), ("doc_number", doc_number))
                 if isinstance(v, str) and v.strip()}  # fmt: skip
        self.filters = Filters(where=where) if where else NO_FILTERS
        if not where:
            return "检索范围：全部文档。"
        named = "，".join(
            f"{'发文机关' if k == 'issuer' else '发文字号'}为“{v}”" for k, v in where.items()
        )
        return f"检索范围：只检索{named}的文档。"

    def generator_label(self) -> str:
        """How the chat names the generator this session answers with."""
        return generator_label(self.library.settings, self.generator)

    def rewrite(self, question: str) -> str:
        """The standalone form of `question` given this session's history."""
        self.answerer()  # the rewriter comes with the answerer
        return self._chat.rewrite(question)

    def ask(self, question: str, standalone: str | None = None) -> Iterator[str | Any]:
        """Stream the answer to `question` (a follow-up is rewritten first, or `standalone`).

        Yields str pieces, then the finished Answer, which is also kept in the history.
        """
        from rag.read.followup import Turn

        answerer = self.answerer()
        standalone = standalone or self._chat.rewrite(question)
        final = None
        for item in answerer.stream(standalone, top_k=self.settings.top_k, filters=self.filters):
            if isinstance(item, str):
                yield item
            else:
                final = item
        if final is None:
            raise RagError("the answerer ended without an answer")
        final.question = question
        final.rewritten_question = standalone
        if final.refused and not final.citations and not self.filters.empty:
            final.notice = (
                "所选检索范围内没有找到相关内容；可以在“检索范围”中放宽或清除条件后再问。"
            )
        self._chat.history.append(Turn(question, standalone, final.text))
        yield final

    def respond(self, question: str) -> Iterator[list[dict[str, Any]]]:
        """Run one chat turn, yielding the message list after each streamed piece."""
        question = question.strip()
        if not question:
            return
        try:
            check_question(question, self.library.settings)
        except LimitError as e:  # refused before any work: only a preview is echoed back
            self.messages.append({"role": "user", "content": render_user(question[:200] + "……")})
            self.messages.append({"role": "assistant", "content": render_error(str(e))})
            yield self.messages
            return
        self.messages.append({"role": "user", "content": render_user(question)})
        self.messages.append({"role": "assistant", "content": render_partial("", question, None)})
        at = len(self.messages) - 1
        yield self.messages
        text = ""
        started = time.perf_counter()
        try:
            self._checked_library()
            rewritten = self.rewrite(question)
            for item in self.ask(question, rewritten):
                if isinstance(item, str):
                    text += item
                    self.messages[at]["content"] = render_partial(text, question, rewritten)
                    yield self.messages
                else:
                    turn = len(self.answers)
                    self.answers.append(item)
                    self.message_turn[at] = turn
                    self.messages[at]["content"] = render_answer(item, turn, self.library.n_chars())
                    self._remember(item)
                    self._audit(turn, item, started)
                    yield self.messages
        except Exception as e:  # noqa: BLE001 -- a generator bug must not take the session down
            self.messages[at]["content"] = render_error(public_error(e))
            yield self.messages

    def citation(self, turn: int, n: int):
        """Citation `n` of answer `turn`, or None."""
        if not 0 <= turn < len(self.answers):
            return None
        return next((c for c in self.answers[turn].citations if c.n == n), None)

    def source(self, turn: int, n: int):
        """(library, citation) to show citation `n` of answer `turn` from, the library
        looked up again for the caller; None when there is none it may read."""
        c = self.citation(turn, n)
        if c is None:
            return None
        try:
            self._checked_library()
        except RagError:
            return None
        return self.library, c

    def _audit(self, turn: int, answer, started: float) -> None:
        """The question into the audit log (rag.org.audit) by its caller: the login, else
        (over a bare index, nobody logged in) `ANONYMOUS`."""
        if self.access is None:
            return
        qid = self.access.record(self._asker(), self.library.system, answer, started)
        if qid is not None:
            self.audit_ids[turn] = qid

    def _asker(self):
        """Who the audit log says asked: this session's caller, else (a session whose page
        never loaded, e.g. nobody logged in) the caller its login name is."""
        return self.caller or self.access.caller(self.user)

    def _history(self):
        from rag.org.cli import history_store

        return history_store(self.library.settings)

    def _remember(self, answer) -> None:
        """Keep a logged-in user's answered question in their conversation (a new one for
        the first question)."""
        if not self.user:
            return
        history = self._history()
        if not self.conv_id:
            kbs = list(self.kbs) or sorted({c.kb for c in answer.citations if c.kb})
            self.conv_id = history.start(self.user, kbs, answer.question)
        history.append(self.user, self.conv_id, answer)

    def conversations(self) -> list[tuple[str, str]]:
        """(label, id) of this user's kept conversations, the most recent first."""
        if not self.user:
            return []
        return [(f"{c.title}（{c.updated_at[:16].replace('T', ' ')}）", c.id)
                for c in self._history().list(self.user)]  # fmt: skip

    def resume(self, conv_id: str) -> None:
        """Continue this user's conversation `conv_id`: its turns become this page's chat
        (citations open as before) and the follow-up context. Another user's conversation
        is not found (NotFoundError)."""
        from rag.read.followup import Turn

        conv = self._history().get(self.user, conv_id) if self.user else None
        if conv is None:
            raise ConfigError("登录后才能继续以前的对话。")
        if self.access is not None and self.access.has_kbs:
            self.use_kbs(conv.kbs or self.kbs)  # refused if the user may no longer read them
        self.reset()
        self.conv_id = conv.id
        for t in conv.turns:
            answer = _stored_answer(t, self.library.index.docs)
            self.messages.append({"role": "user", "content": render_user(t.question)})
            turn = len(self.answers)
            self.answers.append(answer)
            self.message_turn[len(self.messages)] = turn
            html = render_answer(answer, turn, self.library.n_chars())
            self.messages.append({"role": "assistant", "content": html})
            self._chat.history.append(Turn(t.question, t.rewritten or t.question, t.answer))

    def reset(self) -> None:
        self.conv_id = ""
        self._chat.reset()
        self.messages.clear()
        self.answers.clear()
        self.message_turn.clear()
        self.audit_ids.clear()
        self.pending = None
        self.pending_turn = None

    # ----------------------------------------------------------------- kept conversations
    def _own_history(self):
        if not self.user:
            raise ConfigError("登录后才能管理保存的对话。")
        return self._history()

    def rename_conversation(self, conv_id: str, title: str) -> None:
        """Rename this user's conversation (another user's is not found)."""
        self._own_history().rename(self.user, conv_id or "", title)

    def delete_conversation(self, conv_id: str) -> None:
        """Delete this user's conversation; the chat empties if it was the open one."""
        self._own_history().delete(self.user, conv_id or "")
        if conv_id == self.conv_id:
            self.reset()

    def conversation_title(self, conv_id: str) -> str:
        return self._own_history().get(self.user, conv_id or "").title

    def export_conversation(self, conv_id: str, folder: Path) -> Path:
        """This user's conversation as Markdown with its citations, written in `folder`."""
        from rag.serve.ui.library import sanitize_filename

        history = self._own_history()
        text = history.markdown(self.user, conv_id or "")
        title = history.get(self.user, conv_id).title
        path = Path(folder) / f"对话-{sanitize_filename(title, 40)}.md"
        path.write_text(text, encoding="utf-8")
        return path

    def feedback(self, message_index: int, rating: str, comment: str = ""):
        """Record a rating of the answer in chat message `message_index`; return the record."""
        from rag.serve.feedback import feedback_from_answer

        turn = self.message_turn.get(message_index)
        if turn is None:
            raise ConfigError("只能评价回答。")
        rec = feedback_from_answer(
            self.answers[turn],
            rating,
            self.settings.to_dict(),
            comment=comment,
            session=self.id,
            index_version=self.library.index.folder.name,
        )
        self._append(rec)
        self.pending, self.pending_turn = rec, turn
        if self.access is not None:
            self.access.feedback(self.audit_ids.get(turn), self._asker(), rating)
        return rec

    def _append(self, rec) -> None:
        from rag.serve.feedback import append_feedback

        s = self.library.settings
        append_feedback(
            self.library.feedback_path, rec, int(s.feedback_max_mb * 2**20), s.feedback_keep
        )

    def comment(self, text: str):
        """Add a comment to the last rating (appended as a superseding record)."""
        if self.pending is None:
            raise ConfigError("请先点赞或点踩一个回答。")
        check_comment(text, self.library.settings)
        rec = self.pending.with_comment(text)
        self._append(rec)
        if self.access is not None:
            self.access.feedback(self.audit_ids.get(self.pending_turn), self._asker(),
                                 rec.rating, text)  # fmt: skip
        self.pending = None
        return rec


def _stored_answer(t, docs: dict[str, dict]) -> Any:
    """An Answer from a kept turn (rag.org.history.Turn): its text and citations, dated
    from the index's `docs` when the document is still there; the history keeps no
    sentence offsets, so its markers are linked as an LLM answer's are."""
    from rag.types import Answer, Citation

    def date(doc_id: str) -> str | None:
        return (docs.get(doc_id) or {}).get("date") or None

    cites = [
        Citation(c["n"], "", c["doc_id"], c.get("title") or "", "", date(c["doc_id"]), 0, len(c["text"]),
                 c["text"], location=c.get("location") or "", kb=c.get("kb") or "")
        for c in t.citations
    ]  # fmt: skip
    return Answer(t.question, t.answer, t.refused, cites, [], [], 0.0,
                  rewritten_question=t.rewritten, generator="history")  # fmt: skip


def example_questions(
    doc_ids: set[str], titles: dict[str, str], qa_path: Path = DEFAULT_QA, n: int = 4
) -> list[str]:
    """Up to `n` example questions about documents in the index.

    From the corpus QA set when its documents are indexed (preferred ids first, then one
    per document); otherwise questions about document titles.
    """
    picked: list[str] = []
    try:
        rows = [
            json.loads(line)
            for line in Path(qa_path).read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    except (OSError, json.JSONDecodeError):
        rows = []
    usable = [
        r
        for r in rows
        if r.get("answerable")
        and r.get("question")
        and set(r.get("gold_doc_ids") or ["?"]) <= doc_ids
    ]
    by_id = {r.get("id"): r for r in usable}
    seen_docs: set[str] = set()
    for qid in PREFERRED_EXAMPLES:
        if qid in by_id and len(picked) < n:
            picked.append(by_id[qid]["question"])
            seen_docs.update(by_id[qid].get("gold_doc_ids") or [])
    for r in usable:
        if len(picked) >= n:
            break
        doc = (r.get("gold_doc_ids") or [""])[0]
        if r["question"] in picked or doc in seen_docs or len(r["question"]) > 40:
            continue
        seen_docs.add(doc)
        picked.append(r["question"])
    for doc_id in sorted(doc_ids):
        if len(picked) >= n:
            break
        q = f"《{titles.get(doc_id) or doc_id}》主要讲了什么？"
        if q not in picked:
            picked.append(q)
    return picked[:n]
