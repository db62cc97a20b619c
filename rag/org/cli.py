"""`rag kb ...`, `rag user ...` and `rag audit`: the commands that manage a home.

Registered by `add_org_parsers(sub, common)` from rag.serve.cli's parser. Mistakes raise
RagError subclasses, which the CLI prints as one line (exit status 2).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from rag.config import ROLES, Settings
from rag.errors import ConfigError


def _settings(args) -> Settings:
    return Settings.load(
        getattr(args, "config", None),
        home=getattr(args, "home", None),
        embed_model=getattr(args, "embed_model", None),
    )


# ---------------------------------------------------------------------------- kb
def _size(kb) -> tuple[int, int]:
    """(documents, chunks) of a knowledge base, from its live manifest (no index load)."""
    from rag.index.versions import current_version

    if not kb.built:
        return 0, 0
    try:
        m = json.loads((current_version(kb.folder) / "manifest.json").read_text(encoding="utf-8"))
        return int(m["n_docs"]), int(m["n_chunks"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0


def cmd_kb(args) -> int:
    from rag.org.kbs import KnowledgeBases

    registry = KnowledgeBases(_settings(args))
    if args.kb_cmd == "create":
        kb = registry.create(args.name, args.embed_model)
        print(f"已创建知识库“{kb.name}”（嵌入模型 {kb.embed_model}，目录 {kb.folder}）。")
        print(f"加入文档：rag ingest PATH --kb {kb.name}")
    elif args.kb_cmd == "list":
        kbs = registry.list()
        if args.json:
            rows = [
                {"name": kb.name, "documents": _size(kb)[0], "chunks": _size(kb)[1],
                 "embed_model": kb.embed_model, "folder": str(kb.folder)}
                for kb in kbs
            ]  # fmt: skip
            print(json.dumps(rows, ensure_ascii=False))
            return 0
        if not kbs:
            print("还没有知识库：rag kb create NAME")
        for kb in kbs:
            docs, chunks = _size(kb)
            print(f"{kb.name}\t{docs} 个文档\t{chunks} 个段落\t{kb.embed_model}\t{kb.folder}")
    elif args.kb_cmd == "rename":
        kb = registry.rename(args.old, args.new)
        print(f"已将知识库“{args.old}”重命名为“{kb.name}”（目录 {kb.folder}）。")
    elif args.kb_cmd == "delete":
        kb = registry.get(args.name)
        docs, _ = _size(kb)
        if not args.yes:
            _confirm(f"确定删除知识库“{kb.name}”（{docs} 个文档）及其索引？此操作不可恢复。")
        registry.delete(kb.name)
        print(f"已删除知识库“{kb.name}”。")
    return 0


def _confirm(question: str) -> None:
    """Ask on the terminal; anything but yes (or no terminal to ask on) cancels."""
    if not sys.stdin.isatty():
        raise ConfigError(f"{question} 没有终端可以确认：加 --yes 确认删除。")
    answer = input(f"{question}输入 yes 确认：").strip().lower()
    if answer not in ("yes", "y"):
        raise ConfigError("已取消，没有删除任何内容。")


# ---------------------------------------------------------------------------- user
def _password(prompt: str = "新密码：") -> str:
    """A password from the terminal (typed twice), or the first line of stdin."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise ConfigError("标准输入中没有密码。")
        return line
    first = getpass.getpass(prompt)
    if getpass.getpass("再输入一次：") != first:
        raise ConfigError("两次输入的密码不一致。")
    return first


def _describe(u) -> str:
    kbs = "全部" if u.role == "admin" else ("、".join(u.kbs) or "无")
    login = "密码" if u.has_password else ("LDAP" if u.source == "ldap" else "仅密钥")
    return f"{u.name}\t{u.role}\t知识库：{kbs}\t登录：{login}\t密钥 {u.keys} 个"


def cmd_user(args) -> int:
    from rag.org.accounts import Accounts

    accounts = Accounts(_settings(args))
    c = args.user_cmd
    if c == "add":
        password = _password() if args.password_stdin else None
        key = accounts.add(args.name, args.role, args.kb or (), password)
        print(_describe(accounts.get(args.name)))
        print("API 密钥（只显示这一次，请妥善保存）：", file=sys.stderr)
        print(key)  # the last line: scripts read it
    elif c == "grant":
        print(_describe(accounts.grant(args.name, args.kb)))
    elif c == "revoke":
        print(_describe(accounts.revoke(args.name, args.kb)))
    elif c == "role":
        print(_describe(accounts.set_role(args.name, args.role)))
    elif c == "list":
        users = accounts.list()
        if not users:
            print("还没有用户：rag user add NAME --role reader --kb KB")
        for u in users:
            print(_describe(u))
    elif c == "passwd":
        accounts.get(args.name)
        accounts.passwd(args.name, _password())
        print(f"已更新“{args.name}”的密码。")
    elif c == "key":
        key = accounts.new_key(args.name)
        print("新的 API 密钥（只显示这一次）：", file=sys.stderr)
        print(key)
    elif c == "remove":
        accounts.get(args.name)
        if not args.yes:
            _confirm(f"确定删除用户“{args.name}”及其全部密钥？")
        accounts.remove(args.name)
        print(f"已删除用户“{args.name}”。")
    return 0


# ---------------------------------------------------------------------------- audit
def audit_log(settings: Settings):
    from rag.org.audit import AuditLog

    return AuditLog(settings.home_path / "audit.db")


def _since(value: str | None) -> str | None:
    import datetime as dt

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"--since 应为日期 YYYY-MM-DD，而不是“{value[:20]}”。") from None


def cmd_audit(args) -> int:
    from rag.org.audit import eval_records

    log = audit_log(_settings(args))
    rows = log.rows(_since(args.since), args.user)
    if args.csv:
        log.write_csv(rows, args.csv)
        print(f"已写出 {len(rows)} 条记录：{args.csv}")
    if args.eval:
        recs = eval_records(rows)
        with open(args.eval, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
        print(f"已写出 {len(recs)} 道评测题：{args.eval}（rag eval run --questions {args.eval}）")
    if args.csv or args.eval:
        return 0
    for r in rows:
        state = "拒答" if r.refused else f"可信度 {r.confidence:.2f}"
        rating = {"up": "👍", "down": "👎"}.get(r.rating, "")
        rating += f" {r.comment}" if r.comment else ""
        rating += f"（更正：{r.correction}）" if r.correction else ""
        cited = "、".join(f"{c['kb']}/{c['doc_id']}" for c in r.citations) or "无引用"
        print(f"#{r.id}\t{r.at}\t{r.user}\t{'、'.join(r.kbs)}\t{r.question}\t{state}\t"
              f"{r.latency_ms:.0f} ms\t{cited}\t{rating}")  # fmt: skip
    return 0


def cmd_feedback(args) -> int:
    name = args.user or "operator"
    audit_log(_settings(args)).feedback(args.id, name, args.rating, args.comment or "",
                                        args.correction or "")  # fmt: skip
    print(f"已记录对 #{args.id} 的评价。")
    return 0


# ---------------------------------------------------------------------------- history
def history_store(settings: Settings):
    from rag.org.history import History

    return History(settings.home_path / "history.db")


def cmd_history(args) -> int:
    from rag.org.accounts import Accounts

    s = _settings(args)
    Accounts(s).get(args.user)  # an unknown name is said, not an empty list
    h = history_store(s)
    c = args.history_cmd
    if c == "list":
        convs = h.list(args.user)
        if not convs:
            print("还没有对话。")
        for conv in convs:
            print(f"{conv.id}\t{conv.updated_at}\t{'、'.join(conv.kbs)}\t{conv.title}")
    elif c == "show" or c == "export":
        text = h.markdown(args.user, args.id)
        if c == "export" and args.out:
            with open(args.out, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"已导出：{args.out}")
        else:
            print(text, end="")
    elif c == "rename":
        h.rename(args.user, args.id, args.title)
        print(f"已重命名对话 {args.id}。")
    elif c == "delete":
        h.get(args.user, args.id)
        if not args.yes:
            _confirm(f"确定删除对话 {args.id}？")
        h.delete(args.user, args.id)
        print(f"已删除对话 {args.id}。")
    return 0


# ---------------------------------------------------------------------------- parsers
def add_org_parsers(sub, common: argparse.ArgumentParser) -> None:
    """`rag kb`, `rag user` (and `rag audit`, `rag history`) on the CLI's subparsers."""
    kb = sub.add_parser("kb", help="manage knowledge bases")
    kbs = kb.add_subparsers(dest="kb_cmd", required=True)
    p = kbs.add_parser("create", parents=[common], help="create a knowledge base")
    p.add_argument("name")
    kbs.add_parser("list", parents=[common], help="list knowledge bases").add_argument(
        "--json", action="store_true", help="one JSON list"
    )
    p = kbs.add_parser("rename", parents=[common], help="rename a knowledge base")
    p.add_argument("old")
    p.add_argument("new")
    p = kbs.add_parser("delete", parents=[common], help="delete a knowledge base and its index")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    kb.set_defaults(func=cmd_kb)

    user = sub.add_parser("user", help="manage accounts and their access")
    us = user.add_subparsers(dest="user_cmd", required=True)
    p = us.add_parser("add", parents=[common], help="create an account; prints its API key last")
    p.add_argument("name")
    p.add_argument("--role", choices=ROLES, required=True)
    p.add_argument("--kb", action="append", metavar="NAME", help="knowledge base (repeatable)")
    p.add_argument(
        "--password-stdin", action="store_true",
        help="set a password for the UI login (typed, or the first line of stdin)",
    )  # fmt: skip
    for name, what in (("grant", "give access to"), ("revoke", "take access away from")):
        p = us.add_parser(name, parents=[common], help=f"{what} knowledge bases")
        p.add_argument("name")
        p.add_argument("--kb", action="append", metavar="NAME", required=True)
    p = us.add_parser("role", parents=[common], help="change an account's role")
    p.add_argument("name")
    p.add_argument("--role", choices=ROLES, required=True)
    us.add_parser("list", parents=[common], help="list accounts")
    p = us.add_parser("passwd", parents=[common], help="set an account's password")
    p.add_argument("name")
    p = us.add_parser("key", parents=[common], help="issue another API key for an account")
    p.add_argument("name")
    p = us.add_parser("remove", parents=[common], help="delete an account and its keys")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    user.set_defaults(func=cmd_user)

    p = sub.add_parser(
        "audit", parents=[common], help="the questions asked, who asked, what they were told"
    )
    p.add_argument("--since", metavar="DATE", help="from this day on (YYYY-MM-DD, UTC)")
    p.add_argument("--user", metavar="NAME", help="only this account's questions")
    p.add_argument("--csv", metavar="FILE", help="write the rows as CSV")
    p.add_argument("--eval", metavar="FILE", help="write rated answers as an eval question set")
    p.set_defaults(func=cmd_audit)

    hist = sub.add_parser("history", help="an account's conversations")
    hs = hist.add_subparsers(dest="history_cmd", required=True)
    for name, what in (("list", "list the conversations"), ("show", "print one as Markdown"),
                       ("export", "write one as Markdown with its citations"),
                       ("rename", "rename one"), ("delete", "delete one")):  # fmt: skip
        p = hs.add_parser(name, parents=[common], help=what)
        p.add_argument("--user", metavar="NAME", required=True)
        if name != "list":
            p.add_argument("id", help="the conversation's id (rag history list)")
        if name == "rename":
            p.add_argument("title")
        if name == "export":
            p.add_argument("--out", metavar="FILE", help="write here instead of stdout")
        if name == "delete":
            p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    hist.set_defaults(func=cmd_history)

    p = sub.add_parser("feedback", parents=[common], help="rate an answer by its audit number")
    p.add_argument("id", type=int, help="the number `rag ask` printed (#12)")
    p.add_argument("rating", choices=("up", "down"))
    p.add_argument("--user", metavar="NAME", help="the account that asked")
    p.add_argument("--comment")
    p.add_argument("--correction", help="the right answer")
    p.set_defaults(func=cmd_feedback)
