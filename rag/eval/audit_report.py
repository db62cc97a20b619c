"""`rag audit-report DIR`: what the audit log says of a service, for its admins: questions
per day, the refusal rate per day, the questions most often left unanswered and the
documents most often cited, as plots and tables (report.md, per_day.png, cited.png).

The figures are counted by SQLite (`rag.org.audit.AuditLog.figures`), so a long log
costs a few rows here; the admin tab draws the same plots with `write_report`.
"""

from __future__ import annotations

import json
from pathlib import Path

from rag.org.audit import AuditFigures


def write_report(figures: AuditFigures, out: Path) -> Path:
    """report.md, per_day.png and cited.png of `figures` in `out`; returns report.md's path."""
    from rag.eval.report_plots import pyplot, quiet_fonts

    out.mkdir(parents=True, exist_ok=True)
    days, top, cited = figures.per_day, figures.unanswered, figures.most_cited
    total, refused = figures.total, figures.refused
    quiet_fonts()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3))
    if days:
        xs = [d for d, _, _ in days]
        ax.bar(xs, [a for _, a, _ in days], color="#4c78a8", label="提问数")
        ax2 = ax.twinx()
        ax2.plot(xs, [f / a for _, a, f in days], color="#e45756", marker="o", label="拒答率")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("拒答率")
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.set_ylabel("提问数")
    ax.set_title("每日提问数与拒答率")
    fig.tight_layout()
    fig.savefig(out / "per_day.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3))
    labels = [f"{kb}/{t[:18]}" for kb, t, _ in cited][::-1]
    ax.barh(labels, [k for _, _, k in cited][::-1], color="#54a24b")
    ax.set_xlabel("引用它的回答数")
    ax.set_title("最常被引用的文档")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "cited.png", dpi=120)
    plt.close(fig)

    lines = [
        "# 使用情况（审计日志）", "",
        f"共 {total} 次提问，拒答 {refused} 次（{refused / max(total, 1):.1%}）。", "",
        "![每日提问数与拒答率](per_day.png)", "",
        "| 日期 | 提问数 | 拒答 | 拒答率 |", "|---|---|---|---|",
        *(f"| {d} | {a} | {f} | {f / a:.1%} |" for d, a, f in days), "",
        "## 最常未能回答的问题", "", "| 问题 | 次数 |", "|---|---|",
        *(f"| {q} | {c} |" for q, c in top), "",
        "## 最常被引用的文档", "", "![最常被引用的文档](cited.png)", "",
        "| 知识库 | 文档 | 引用它的回答数 |", "|---|---|---|",
        *(f"| {kb} | {t} | {k} |" for kb, t, k in cited), "",
    ]  # fmt: skip
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "figures.json").write_text(
        json.dumps({"per_day": days, "unanswered": top, "most_cited": cited}, ensure_ascii=False,
                   indent=1), encoding="utf-8")  # fmt: skip
    return out / "report.md"


def cmd_audit_report(args) -> int:
    from rag.config import Settings
    from rag.org.cli import _since, audit_log

    s = Settings.load(args.config, home=args.home)
    figures = audit_log(s).figures(_since(args.since), args.user)
    print(f"已写出：{write_report(figures, Path(args.out))}")
    return 0


def add_audit_report_parser(sub, common) -> None:
    p = sub.add_parser("audit-report", parents=[common],
                       help="questions per day, refusal rate, unanswered questions, cited documents")  # fmt: skip
    p.add_argument("out", metavar="DIR", help="where report.md and its plots go")
    p.add_argument("--since", metavar="DATE", help="from this day on (YYYY-MM-DD, UTC)")
    p.add_argument("--user", metavar="NAME", help="only this account's questions")
    p.set_defaults(func=cmd_audit_report)
