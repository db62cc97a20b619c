"""What the admin tab shows: the accounts and what they may read, the figures of
`rag audit-report` (counted by SQLite, `AuditLog.figures`, drawn by the same
`write_report`) and the latest questions of the audit log. Each is a bounded query: the
tab opens as fast over a million questions as over ten. Served to admins only
(`UiAccess.require_admin`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rag.org.audit import ANONYMOUS

USER_HEADERS = ["用户", "角色", "可访问的知识库", "登录方式", "密钥数", "创建时间"]
RECENT_HEADERS = ["编号", "时间", "用户", "渠道", "知识库", "问题", "结果", "评价"]
ROLE_NAMES = {"admin": "管理员", "editor": "编辑", "reader": "读者"}
CHANNELS = {"ui": "网页", "api": "接口", "cli": "命令行"}
RECENT = 50
DAYS = 90  # the per-day plot's latest days with questions


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


def recent_rows(rows) -> list[list]:
    """The table of logged questions `rows` (newest first, `AuditLog.latest`)."""
    out = []
    for r in rows:
        result = "拒答" if r.refused else f"已回答（可信度 {r.confidence:.2f}）"
        rating = {"up": "👍", "down": "👎"}.get(r.rating, "") + (
            f" {r.comment}" if r.comment else ""
        )
        user = "（匿名）" if r.user == ANONYMOUS else r.user
        out.append([r.id, r.at[:19].replace("T", " "), user, CHANNELS.get(r.channel, r.channel),
                    "、".join(r.kbs), r.question, result, rating.strip()])  # fmt: skip
    return out


def admin_view(accounts, audit, out: Path) -> AdminView:
    """Everything the tab shows, the plots written into `out` by `rag audit-report`'s
    own `write_report`; the per-day figures of the latest `DAYS` days with questions."""
    from rag.eval.audit_report import write_report

    fig = audit.figures(days=DAYS)
    write_report(fig, out)
    total, refused = fig.total, fig.refused
    lines = [f"共 **{total}** 次提问，拒答 **{refused}** 次（{refused / max(total, 1):.1%}）。", ""]
    lines += ["#### 最常未能回答的问题", ""]
    lines += [f"{i}. {q}（{c} 次）" for i, (q, c) in enumerate(fig.unanswered, 1)] or ["（无）"]
    lines += ["", "#### 最常被引用的文档", ""]
    lines += [
        f"{i}. 〔{kb}〕《{t}》：{k} 个回答" for i, (kb, t, k) in enumerate(fig.most_cited, 1)
    ] or ["（无）"]
    return AdminView(user_rows(accounts), "\n".join(lines), out / "per_day.png",
                     out / "cited.png", recent_rows(audit.latest(RECENT)))  # fmt: skip


def admin_panel(access, caller, out: Path) -> AdminView:
    """`admin_view` for `caller` if it is an admin; ForbiddenError otherwise."""
    access.require_admin(caller)
    return admin_view(access.accounts, access.service.audit, out)
