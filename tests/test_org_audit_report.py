"""The admins' figures from a real audit log: questions and refusals per day, the most
frequent unanswered questions, the most cited documents; `rag audit-report` writes them
with their plots."""

from __future__ import annotations

import datetime as dt
import json

from rag.eval.audit_report import most_cited, per_day, unanswered
from rag.org.audit import AuditLog
from rag.serve.cli import main
from rag.types import Answer, Citation


def _answer(question: str, refused: bool, cites=()) -> Answer:
    citations = [
        Citation(n, f"c{n}", doc, title, "", None, 0, 10, "text", kb=kb)
        for n, (kb, doc, title) in enumerate(cites, start=1)
    ]
    return Answer(question, "答" if not refused else "无法回答", refused, citations, [], [], 0.5)


def test_figures_and_report_from_a_real_audit_log(tmp_path, capsys):
    log = AuditLog(tmp_path / "home" / "audit.db")
    a = ("plan", "laoshan", "崂山城市更新")
    b = ("hr", "hangzhou", "杭州考察")
    for q, refused, cites in [
        ("崂山投资多少？", False, [a, a]),  # cites one document twice: counts once
        ("杭州学了什么？", False, [b, a]),
        ("食堂几点开门？", True, [b]),  # a refusal's passages are not citations
        ("食堂几点开门?", True, []),
        ("停车费多少？", True, []),
    ]:
        log.record("li", ["plan", "hr"], _answer(q, refused, cites), 12.0, "cli")
    rows = log.rows()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert per_day(rows) == [(today, 5, 3)]
    assert unanswered(rows) == [("食堂几点开门？", 2), ("停车费多少？", 1)]
    assert most_cited(rows) == [("plan", "崂山城市更新", 2), ("hr", "杭州考察", 1)]

    out = tmp_path / "report"
    assert main(["audit-report", str(out), "--home", str(tmp_path / "home")]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "共 5 次提问，拒答 3 次（60.0%）" in md and f"| {today} | 5 | 3 | 60.0% |" in md
    assert "| 食堂几点开门？ | 2 |" in md and "| plan | 崂山城市更新 | 2 |" in md
    for png in ("per_day.png", "cited.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "figures.json").read_text())["unanswered"][0] == ["食堂几点开门？", 2]
