"""The admins' figures from a real audit log: questions and refusals per day, the most
frequent unanswered questions, the most cited documents; `rag audit-report` writes them
with their plots."""

from __future__ import annotations

import datetime as dt
import json

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
    fig = log.figures()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert (fig.total, fig.refused) == (5, 3)
    assert fig.per_day == [(today, 5, 3)]
    assert fig.unanswered == [("食堂几点开门？", 2), ("停车费多少？", 1)]
    assert fig.most_cited == [("plan", "崂山城市更新", 2), ("hr", "杭州考察", 1)]
    assert log.figures(user="wang").total == 0 and log.figures(since="2999-01-01").per_day == []

    out = tmp_path / "report"
    assert main(["audit-report", str(out), "--home", str(tmp_path / "home")]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "共 5 次提问，拒答 3 次（60.0%）" in md and f"| {today} | 5 | 3 | 60.0% |" in md
    assert "| 食堂几点开门？ | 2 |" in md and "| plan | 崂山城市更新 | 2 |" in md
    for png in ("per_day.png", "cited.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "figures.json").read_text())["unanswered"][0] == ["食堂几点开门？", 2]


def test_the_admin_tab_reads_a_bounded_window_of_a_long_log(tmp_path):
    """20,000 questions over 200 days, written straight into a real audit.db: the admin
    tab's figures are the log's exact aggregates, and what it reads back is bounded (50
    rows, 90 days, 10 questions, 10 documents), counted by SQLite rather than in Python."""
    import sqlite3
    import time
    from collections import Counter

    from rag.config import Settings
    from rag.org.accounts import Accounts
    from rag.org.audit import ANONYMOUS
    from rag.serve.ui.admin import DAYS, RECENT, admin_view

    s = Settings(home=str(tmp_path / "home"), index_dir="")
    Accounts(s).add("boss", "admin", password="boss-password")
    log = AuditLog(s.home_path / "audit.db")
    log.record("li", ["hr"], _answer("第一问", False), 1.0, "ui")  # creates the schema
    variants = ["食堂几点开门？"] * 3 + [
        "食堂幾點開門?",
        "停车费多少？",
        "停车费多少？",
        "停车费多少",
    ]
    start = dt.date(2026, 1, 1)
    rows, days, cited, unique = [], Counter(), Counter(), []
    days[dt.datetime.now(dt.UTC).date().isoformat()] += 1  # the first question's
    for i in range(20_000):
        day = (start + dt.timedelta(days=i % 200)).isoformat()
        refused = i % 4 == 0
        if refused:
            k = (i // 4) % 8
            question = variants[k] if k < 7 else f"只问一次的问题{i}"
            if k == 7:
                unique.append(question)
            cites = []
        else:
            question = f"问题{i}"
            doc = [("plan", "a", "文档甲")] if i % 2 else [("hr", "b", "文档乙")] * 2
            cites = doc + ([("plan", "c", "文档丙")] if i % 3 == 0 else [])
            for kb, _, t in set(cites):
                cited[(kb, t)] += 1
        days[day] += 1
        citations = json.dumps([{"n": n, "kb": kb, "doc_id": d, "title": t, "start": 0, "end": 9}
                                for n, (kb, d, t) in enumerate(cites, 1)], ensure_ascii=False)  # fmt: skip
        user = ANONYMOUS if i % 5 == 4 else "li"
        rows.append((f"{day}T12:00:00+00:00", user, "ui", '["hr"]', question, None, "答",
                     citations, int(refused), 0.5, 10.0, "extractive"))  # fmt: skip
    with sqlite3.connect(log.path) as con:
        con.executemany(
            "INSERT INTO questions (at, user, channel, kbs, question, rewritten, answer, "
            "citations, refused, confidence, latency_ms, generator) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    last = 20_001
    log.feedback(last, ANONYMOUS, "down", "不对")
    log.feedback(last, ANONYMOUS, "up", "其实对")  # the later one is shown

    started = time.perf_counter()
    view = admin_view(Accounts(s), log, tmp_path / "out")
    took = time.perf_counter() - started
    print(f"admin_view over 20,001 questions: {took * 1e3:.0f} ms")

    assert len(view.recent) == RECENT
    assert [r[0] for r in view.recent] == list(range(last, last - RECENT, -1))
    assert view.recent[0][2] == "（匿名）" and view.recent[0][7] == "👍 其实对"
    assert "共 **20001** 次提问，拒答 **5000** 次（25.0%）" in view.summary
    assert "1. 食堂几点开门？（2500 次）" in view.summary
    assert "2. 停车费多少？（1875 次）" in view.summary
    assert f"3. {unique[0]}（1 次）" in view.summary  # asked once: the oldest first
    assert view.per_day_png.stat().st_size > 1000 and view.cited_png.is_file()

    fig = log.figures(days=DAYS)
    assert (fig.total, fig.refused) == (20_001, 5000)
    latest_days = sorted(days)[-DAYS:]
    assert fig.per_day == [(d, days[d], fig.per_day[i][2]) for i, d in enumerate(latest_days)]
    assert sum(f for _, _, f in log.figures().per_day) == 5000
    assert fig.unanswered == [("食堂几点开门？", 2500), ("停车费多少？", 1875)] + [
        (q, 1) for q in unique[:8]
    ]
    assert fig.most_cited == [(kb, t, n) for (kb, t), n in cited.most_common()]
    assert [r.id for r in log.latest(3)] == [last, last - 1, last - 2]
