"""The `rag` command: ingest, ask, chat, info (and eval, when installed).

User mistakes end in one clear line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag.config import LLM_KINDS, Settings
from rag.errors import ConfigError, RagError
from rag.textnorm import without_glosses
from rag.types import Filters


def _err(msg: str) -> None:
    print(f"rag: {msg}", file=sys.stderr)


def _settings(args) -> Settings:
    return Settings.load(
        getattr(args, "config", None),
        home=getattr(args, "home", None),
        index_dir=getattr(args, "index", None),
        store=getattr(args, "store", None),
        top_k=getattr(args, "top_k", None),
        embed_model=getattr(args, "embed_model", None),
        llm=getattr(args, "llm", None),
        llm_model=getattr(args, "llm_model", None),
        llm_base_url=getattr(args, "llm_base_url", None),
        llm_model_path=getattr(args, "llm_model_path", None),
        llm_timeout_s=getattr(args, "llm_timeout", None),
        ingest_workers=getattr(args, "workers", None),
        ray_address=getattr(args, "ray", None),
        embed_backend=getattr(args, "embed_backend", None),
    )


# ---------------------------------------------------------------------------- ingest
def cmd_ingest(args) -> int:
    from rag.index.build import ingest

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers 必须是正整数，收到 {args.workers}")
    s = _settings(args)
    if args.explain:
        return _explain(args.explain)
    if args.kb or args.user:
        from rag.errors import ForbiddenError, NotFoundError
        from rag.org.kbs import DEFAULT_KB, KnowledgeBases, kb_not_found

        args.kb = args.kb or DEFAULT_KB

        caller = _caller(s, args)
        if not caller.may_read(args.kb):  # as if it did not exist
            raise NotFoundError(f"{kb_not_found(args.kb)} 先运行 rag kb create {args.kb}")
        if not caller.may_edit(args.kb):
            raise ForbiddenError(f"用户“{caller.name}”只能查询知识库“{args.kb}”，不能加入文档。")
        try:
            s = KnowledgeBases(s).get_or_default(args.kb).settings(s)
        except NotFoundError as e:
            raise NotFoundError(f"{e} 先运行 rag kb create {args.kb}") from None
    with _ocr_progress(not args.quiet):
        report = ingest(
            args.paths, s, prune=args.prune, rebuild=args.rebuild, progress=not args.quiet
        )
    for r in report.results:
        if r.status == "failed":
            print(f"failed: {r.source}: {r.reason}", file=sys.stderr)
        elif r.status != "unchanged" or args.verbose:
            print(f"{r.status}: {r.source} ({r.chunks} chunks)")
    print(report.summary())
    if report.embedded_chunks:
        rate = report.embedded_chunks / max(report.embed_seconds, 1e-9)
        print(
            f"embedded {report.embedded_chunks} chunks in {report.embed_seconds:.1f} s ({rate:.1f} chunks/s)"
        )
        if report.resumed_chunks:
            print(f"resumed {report.resumed_chunks} chunks embedded by an interrupted run")
    if report.deferred_chunks:
        print(
            f"{report.searchable_seconds:.1f} 秒后可按关键词检索，"
            f"{report.seconds:.1f} 秒后向量补全（{report.deferred_chunks} 个分块）"
        )
    return 0 if report.ingested_anything else 2


def _ocr_progress(show: bool):
    """While ingesting, a line on stderr per scanned page read: "OCR 通知.pdf：第3/10页"."""
    import contextlib

    if not show:
        return contextlib.nullcontext()
    from rag.ingest.ocr import on_page

    def page_done(source: str, page: int, pages: int) -> None:
        print(f"OCR {Path(source).name}：第{page}/{pages}页", file=sys.stderr, flush=True)

    return on_page(page_done)


def _explain(path: str) -> int:
    from rag.errors import LoadError
    from rag.ingest.clean import clean_text, explain
    from rag.ingest.loaders import load_file

    p = Path(path)
    try:
        raws = load_file(p, p.parent)
    except LoadError as e:
        _err(str(e))
        return 2
    for raw in raws:
        cleaned = clean_text(raw.text)
        print(f"{raw.source} ({raw.format}, {raw.encoding}): kept {cleaned.kept_lines} lines")
        print(explain(cleaned))
    return 0


# ---------------------------------------------------------------------------- ask / chat
def _system(args):
    """The system `rag ask`/`rag chat` answer with: the bare index (--index, or the home's
    `default`), or with --kb/--user the knowledge bases the user may read."""
    from rag.system import load_kb_system, load_system

    s = _settings(args)
    if not (getattr(args, "kb", None) or getattr(args, "user", None)):
        if not s.index_dir and not (s.index_path / "CURRENT").is_file():
            from rag.org.kbs import KnowledgeBases

            names = KnowledgeBases(s).names()
            if names:  # a home without `default`: say which there are
                raise ConfigError(
                    f"{s.home_path} 没有知识库“default”；请用 --kb NAME 选择：{'、'.join(names)}"
                )
        return load_system(s)
    return load_kb_system(s, args.kb or (), _caller(s, args))


def _caller(settings: Settings, args):
    from rag.org.accounts import OPERATOR, Accounts

    name = getattr(args, "user", None)
    return Accounts(settings).caller(name) if name else OPERATOR


def _filters(args) -> Filters:
    from rag.serve.filters import make_filters, parse_where

    return make_filters(
        doc_ids=getattr(args, "doc", None),
        date_from=getattr(args, "date_from", None),
        date_to=getattr(args, "date_to", None),
        doc_number=getattr(args, "doc_number", None),
        issuer=getattr(args, "issuer", None),
        where=parse_where(getattr(args, "where", None)),
        names={"date_from": "--date-from", "date_to": "--date-to", "where": "--where"},
    )


BOLD, PLAIN = "\033[1m", "\033[0m"  # a terminal shows the short answer in bold


def print_answer(ans, as_json: bool, out=None, with_text: bool = True) -> None:
    out = out or sys.stdout  # looked up per call, so redirected output is honoured
    if as_json:
        print(json.dumps(ans.to_json(), ensure_ascii=False), file=out)
        return
    if with_text:
        if ans.rewritten_question and ans.rewritten_question != ans.question:
            print(f"（理解为：{ans.rewritten_question}）", file=out)
        if ans.notice and not ans.refused:
            print(ans.notice, file=out)
        print(ans.text, file=out)
    if ans.short_answer and not ans.refused:
        bold = getattr(out, "isatty", lambda: False)()
        print(f"简答：{BOLD if bold else ''}{ans.short_answer}{PLAIN if bold else ''}", file=out)
    if ans.confidence_level:
        reason = f"（{ans.confidence_reason}）" if ans.confidence_reason else ""
        print(f"可信度：{ans.confidence_level}{reason}", file=out)
    if ans.citations:
        print("\n可能相关的段落：" if ans.refused else "\n引用：", file=out)
        for c in ans.citations:
            date = f"，{c.date}" if c.date else ""
            where = c.location or f"第 {c.start}–{c.end} 字"
            where += "（扫描件识别）" if c.ocr else ""
            text = without_glosses(c.text)  # 嶗山區(qū): as the chat's cards show it
            snippet = text if len(text) <= 120 else text[:120] + "……"
            kb = f"〔知识库 {c.kb}〕" if c.kb else ""
            print(f"[{c.n}] {kb}《{c.title}》{date}，{where}：{snippet}", file=out)


def print_streamed(items, out=None):
    """Print an answerer's stream as it arrives, then what the citation check made of it.

    Returns the final `Answer`. When the checked answer differs from what was streamed
    (sentences marked, or the extractive answer after a failure) it is printed in full.
    """
    out = out or sys.stdout
    shown: list[str] = []
    final = None
    for item in items:
        if isinstance(item, str):
            out.write(item)
            out.flush()
            shown.append(item)
        else:
            final = item
    streamed = "".join(shown).strip()
    if streamed:
        print(file=out)
    if streamed == final.text.strip() and not (final.notice and not final.refused):
        if final.citations:
            print_answer(final, False, out, with_text=False)
        return final
    if streamed:
        print("\n——核查后——", file=out)
    print_answer(final, False, out)
    return final


def _read_batch(path: str):
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise RagError(f"{p}: question file not found") from None
    except UnicodeDecodeError:
        raise RagError(f"{p}: not UTF-8 text; save the question file as UTF-8") from None
    for no, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                obj = json.loads(line)
                yield obj.get("id", no), obj["question"]
            except (json.JSONDecodeError, KeyError):
                raise RagError(f'{p}:{no}: not a JSON object with a "question" field') from None
        else:
            yield no, line


def _audited(args, system):
    """Record each answer in the home's audit log when knowledge bases are asked (--kb,
    --user), or over a bare index when the home keeps an audit log already (a department
    install: the chat page and the API write one); returns record(answer, started) -> the
    row's number, or None. A bare index on a laptop without a home writes nothing."""
    from rag.org.cli import audit_log

    if not system.kbs and not (system.settings.home_path / "audit.db").is_file():
        return lambda ans, started: None
    import time

    log = audit_log(system.settings)
    user = getattr(args, "user", None) or "operator"

    def record(ans, started: float) -> int:
        kbs = system.kbs or ("default",)  # a bare index, named as the chat page names it
        return log.record(user, kbs, ans, (time.perf_counter() - started) * 1e3, "cli")

    return record


def _remembered(args, system, title: str, resume: str | None = None):
    """With --user, each answer is kept in that account's conversations; returns
    keep(answer) (a no-op without --user) and the conversation's id."""
    user = getattr(args, "user", None)
    if not user:
        return (lambda ans: None), None
    from rag.org.cli import history_store

    h = history_store(system.settings)
    conv_id = resume or h.start(user, system.kbs, title)
    return (lambda ans: h.append(user, conv_id, ans)), conv_id


def cmd_ask(args) -> int:
    import time

    system = _system(args)
    record = _audited(args, system)
    keep, _ = _remembered(args, system, args.question or args.batch or "")
    if args.batch:
        for qid, q in _read_batch(args.batch):
            started = time.perf_counter()
            ans = system.ask(q, top_k=args.top_k, filters=_filters(args))
            record(ans, started)
            keep(ans)
            row = {"id": qid, **ans.to_json()}
            print(json.dumps(row, ensure_ascii=False), flush=True)
        return 0
    if not args.question:
        raise RagError(
            'give a question, e.g. rag ask "威海精致城市建设有哪些做法？", or --batch FILE'
        )
    started = time.perf_counter()
    if args.json:
        ans = system.ask(args.question, top_k=args.top_k, filters=_filters(args))
        print_answer(ans, True)
    else:
        ans = print_streamed(
            system.answerer.stream(args.question, top_k=args.top_k, filters=_filters(args))
        )
    n = record(ans, started)
    keep(ans)
    if n is not None:
        print(f"（记录编号 #{n}；评价：rag feedback {n} up|down）", file=sys.stderr)
    return 0


def cmd_chat(args) -> int:
    import time

    from rag.llm.rewrite import rewriter_for
    from rag.read.followup import ChatSession, Turn

    system = _system(args)
    session = ChatSession(system, rewriter=rewriter_for(system.answerer, system.settings))
    record = _audited(args, system)
    keep, conv_id = None, args.resume
    if args.resume:  # the turns so far, so that follow-ups read them
        if not args.user:
            raise ConfigError("--resume 需要同时给出 --user NAME")
        from rag.org.cli import history_store

        for t in history_store(system.settings).get(args.user, args.resume).turns:
            session.history.append(Turn(t.question, t.rewritten or t.question, t.answer))
    print("输入问题，回车提问；输入 /exit 退出，/new 开始新对话。", file=sys.stderr)
    while True:
        try:
            q = input("问> ").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if not q:
            continue
        if q in ("/exit", "/quit", "exit", "quit"):
            return 0
        if q == "/new":
            session.reset()
            keep, conv_id = None, None
            continue
        if keep is None:
            keep, conv_id = _remembered(args, system, q, conv_id)
            if conv_id:
                print(f"（对话 {conv_id}；继续：rag chat --user {args.user} --resume {conv_id}）",
                      file=sys.stderr)  # fmt: skip
        started = time.perf_counter()
        if args.json:
            ans = session.ask(q, top_k=args.top_k, filters=_filters(args))
            print_answer(ans, True)
        else:
            standalone = session.rewrite(q)
            if standalone != q:
                print(f"（理解为：{standalone}）")
            ans = print_streamed(
                system.answerer.stream(standalone, top_k=args.top_k, filters=_filters(args))
            )
            ans.question, ans.rewritten_question = q, standalone
            session.history.append(Turn(q, standalone, ans.text))
        record(ans, started)
        keep(ans)
        print()


def cmd_info(args) -> int:
    from rag.index.build import index_info

    print(json.dumps(index_info(_settings(args).index_path), ensure_ascii=False, indent=2))
    return 0


def cmd_list(args) -> int:
    """The indexed documents, as the web page lists them: title, date, type, chunks and
    whether their vectors are ready ("向量计算中（1,200/5,512）" while being filled in)."""
    from rag.index.hybrid import HybridIndex
    from rag.serve.passages import index_documents

    s = _settings(args)
    docs = index_documents(HybridIndex.open(s.index_path, s))
    if args.json:
        out = {"index_dir": str(s.index_path), "documents": [d.to_json() for d in docs]}
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    for d in docs:
        print("  ".join(x for x in (d.title, d.date, d.kind, f"{d.chunks}个片段", d.status) if x))
    return 0


# ---------------------------------------------------------------------------- serve
def cmd_serve(args) -> int:
    from rag.serve.api import ServeOptions, api_keys, serve, ui_login

    keys = api_keys(args.api_key)
    login = None if args.no_ui else ui_login(args.auth)
    opts = ServeOptions(args.host, args.port, keys, args.no_auth, not args.no_ui, login)
    return serve(opts, _settings(args))


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag", description="Ask questions about your own documents.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home",
        help="folder of all state: knowledge bases, accounts, logs (default .rag or $RAG_HOME)",
    )
    common.add_argument("--index", help="one index folder (default HOME/index or $RAG_INDEX)")
    common.add_argument("--config", help="settings file (TOML)")
    common.add_argument("--embed-model", help="sentence-transformers model name or local folder")
    common.add_argument(
        "--store", metavar="URI",
        help="where vectors are searched: faiss (default), a milvus-lite x.db, http://host:19530",
    )  # fmt: skip
    common.add_argument(
        "--embed-backend",
        choices=("auto", "onnx", "torch"),
        help="auto: int8 ONNX on CPU where the model allows it, else sentence-transformers",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    ing = sub.add_parser("ingest", parents=[common], help="add or update documents in the index")
    ing.add_argument("paths", nargs="*", help="files or folders")
    ing.add_argument("--prune", action="store_true", help="remove documents whose files are gone")
    ing.add_argument("--rebuild", action="store_true", help="ignore the existing index")
    ing.add_argument("--explain", metavar="FILE", help="show what cleaning drops from FILE")
    ing.add_argument("--quiet", action="store_true", help="no progress bar")
    ing.add_argument("-v", "--verbose", action="store_true", help="also list unchanged files")
    ing.add_argument("--kb", metavar="NAME", help="into this knowledge base (rag kb create NAME)")
    ing.add_argument("--user", metavar="NAME", help="as this account (an editor of --kb)")
    ing.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes that load, chunk and embed (default: loading on every idle core, "
        "embedding in this process); with --ray, Ray tasks at once (default: every CPU)",
    )
    ing.add_argument(
        "--ray", metavar="ADDRESS",
        help="load, chunk and embed as tasks on this Ray cluster (HOST:PORT of ray start "
        "--head, or auto); needs pip install 'rag[ray]'",
    )  # fmt: skip
    ing.set_defaults(func=cmd_ingest)

    def retrieval_args(sp):
        sp.add_argument(
            "--kb", action="append", metavar="NAME",
            help="search this knowledge base (repeatable: several at once)",
        )  # fmt: skip
        sp.add_argument("--user", metavar="NAME", help="ask as this account: only what it may read")
        sp.add_argument("--top-k", type=int, help="passages to retrieve")
        sp.add_argument("--json", action="store_true", help="one JSON object per answer")
        sp.add_argument("--doc", action="append", help="only this document id (repeatable)")
        sp.add_argument(
            "--doc-number", help="only the document with this 发文字号 (青政发〔2023〕5号)"
        )
        sp.add_argument("--issuer", help="only documents of this issuing body (发文机关)")
        sp.add_argument(
            "--where", action="append", metavar="FIELD=VALUE",
            help="only documents whose metadata FIELD equals VALUE (repeatable)",
        )  # fmt: skip
        sp.add_argument("--date-from", help="only documents dated on or after (YYYY[-MM[-DD]])")
        sp.add_argument("--date-to", help="only documents dated on or before (YYYY[-MM[-DD]])")

    def llm_args(sp):
        sp.add_argument("--llm", choices=LLM_KINDS, help="answer generator (default extractive)")
        sp.add_argument("--llm-model", metavar="NAME", help="model name (openai, ollama)")
        sp.add_argument("--llm-base-url", metavar="URL", help="server URL (openai, ollama)")
        sp.add_argument("--llm-model-path", metavar="FILE", help="GGUF file (llamacpp)")
        sp.add_argument(
            "--llm-timeout", type=float, metavar="SECONDS", help="time limit per answer"
        )

    ask = sub.add_parser("ask", parents=[common], help="answer one question, or a file of them")
    ask.add_argument("question", nargs="?")
    ask.add_argument("--batch", metavar="FILE", help="questions, one per line or JSONL")
    retrieval_args(ask)
    llm_args(ask)
    ask.set_defaults(func=cmd_ask)

    chat = sub.add_parser("chat", parents=[common], help="interactive chat in the terminal")
    chat.add_argument("--resume", metavar="ID", help="go on with a kept conversation (--user)")
    retrieval_args(chat)
    llm_args(chat)
    chat.set_defaults(func=cmd_chat)

    info = sub.add_parser("info", parents=[common], help="describe the index")
    info.set_defaults(func=cmd_info)

    lst = sub.add_parser("list", parents=[common], help="list the indexed documents")
    lst.add_argument("--json", action="store_true", help="one JSON object with every document")
    lst.set_defaults(func=cmd_list)

    srv = sub.add_parser(
        "serve", parents=[common], help="serve the OpenAI-compatible and Dify APIs over HTTP"
    )
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    srv.add_argument(
        "--api-key", action="append", metavar="KEY",
        help="a key the APIs accept (repeatable; default $RAG_API_KEYS, comma-separated)",
    )  # fmt: skip
    srv.add_argument(
        "--no-auth", action="store_true", help="accept requests without a key (loopback only)"
    )
    srv.add_argument(
        "--auth", metavar="USER:PASSWORD",
        help="login for the chat UI at / (or $RAG_AUTH); needed for a --host beyond loopback",
    )  # fmt: skip
    srv.add_argument("--no-ui", action="store_true", help="serve the APIs only, no chat UI")
    llm_args(srv)
    srv.set_defaults(func=cmd_serve)

    from rag.llm.models import add_models_parser
    from rag.org.cli import add_org_parsers
    from rag.serve.mcp_server import add_mcp_parser

    add_models_parser(sub, common)
    add_org_parsers(sub, common)
    add_mcp_parser(sub, common)

    from rag.index.copy import add_index_parser

    add_index_parser(sub, common)

    try:
        from rag.eval.audit_report import add_audit_report_parser
        from rag.eval.cli import add_eval_parser
    except ImportError:
        pass
    else:
        add_eval_parser(sub, common)
        add_audit_report_parser(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "cmd", None) == "ingest" and not args.paths and not args.explain:
        _err("give at least one file or folder, e.g. rag ingest corpus/")
        return 2
    try:
        return args.func(args)
    except RagError as e:
        _err(str(e))
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
