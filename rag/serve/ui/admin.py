"""What the admin tab shows: the accounts and what they may read, the figures of
`rag audit-report` (rag.eval.audit_report: the same functions and plots) and the latest
questions of the audit log. Served to admins only (`UiAccess.require_admin`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

USER_HEADERS = ["用户", "角色", "可访问的知识库", "登录方式", "密钥数", "创建时间"]
RECENT_HEADERS = ["编号", "时间", "用户", "渠道", "知识库", "问题", "结果", "评价"]
ROLE_NAMES = {"admin": "管理员", "editor": "编辑", "reader": "读者"}
CHANNELS = {"ui": "网页", "api": "接口", "cli": "命令行"}
RECENT = 50


@dataclass(frozen=True)
class AdminView:
    users: list[list]
    summary: str  # Markdown: totals, the unanswered questions, the most cited documents
    per_day_png: Path
    cited_png: Path
    recent: list[list]


def user_rows(accounts) -> list[list]:
    out = []
    for u in accounts.list():
        kbs = "全部" if u.role == "admin" else ("、".join(u.kbs) or "无")
        login = "密码" if u.has_password else ("LDAP" if u.source == "ldap" else "仅 API 密钥")
        out.append([u.name, ROLE_NAMES.get(u.role, u.role), kbs, login, u.keys,
                    u.created_at[:16].replace("T", " ")])  # fmt: skip
    return out


def recent_rows(rows, n: int = RECENT) -> list[list]:
    """The `n` latest questions, newest first."""
    out = []
    for r in reversed(rows[-n:]):
        result = "拒答" if r.refused else f"已回答（可信度 {r.confidence:.2f}）"
        rating = {"up": "👍", "down": "👎"}.get(r.rating, "") + (
            f" {r.comment}" if r.comment else ""
        )
        out.append([r.id, r.at[:19].replace("T", " "), r.user, CHANNELS.get(r.channel, r.channel),
                    "、".join(r.kbs), r.question, result, rating.strip()])  # fmt: skip
    return out


def admin_view(accounts, audit, out: Path) -> AdminView:
    """Everything the tab shows, the plots written into `out` by `rag audit-report`'s
    own `write_report`."""
    from rag.eval.audit_report import most_cited, unanswered, write_report

    rows = audit.rows()
    write_report(rows, out)
    refused = sum(r.refused for r in rows)
    lines = [
        f"共 **{len(rows)}** 次提问，拒答 **{refused}** 次（{refused / max(len(rows), 1):.1%}）。",
        "",
    ]
    top = unanswered(rows)
    lines += ["#### 最常未能回答的问题", ""]
    lines += [f"{i}. {q}（{c} 次）" for i, (q, c) in enumerate(top, 1)] or ["（无）"]
    lines += ["", "#### 最常被引用的文档", ""]
    cited = most_cited(rows)
    lines += [f"{i}. 〔{kb}〕《{t}》：{k} 个回答" for i, (kb, t, k) in enumerate(cited, 1)] or [
        "（无）"
    ]
    return AdminView(user_rows(accounts), "\n".join(lines), out / "per_day.png",
                     out / "cited.png", recent_rows(rows))  # fmt: skip


def admin_panel(access, caller, out: Path) -> AdminView:
    """`admin_view` for `caller` if it is an admin; ForbiddenError otherwise."""
    access.require_admin(caller)
    return admin_view(access.accounts, access.service.audit, out)
