"""report.html: self-contained, and its table of every question sorts and filters in real Chromium.

The rows are real result rows (their metrics computed by `rag.eval.rows.row_metrics`),
the plots real matplotlib output; the page is opened from disk by the system Chromium
through playwright, with every network request recorded.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from rag.eval.report import write_report
from rag.eval.report_html import first_gold_rank, question_rows, write_html
from rag.eval.report_plots import reliability_bins
from rag.eval.rows import by_type, row_metrics, summarize

CHROMIUM = os.environ.get("RAG_CHROMIUM", "/usr/bin/chromium")


def _row(qid, question, *, answerable=True, answers=(), answer=None, refused=False, gold=(),
         retrieved=(), confidence=0.5, ms=100.0, type_=None):  # fmt: skip
    r = {
        "question_id": qid,
        "question": question,
        "answerable": answerable,
        "gold_doc_ids": list(gold),
        "answers": list(answers),
        "answer": answer,
        "refused": refused,
        "confidence": confidence,
        "citations": [],
        "cited_doc_ids": [],
        "sentence_supported": [],
        "retrieved_doc_ids": list(retrieved),
        "timings_ms": {"total": ms},
        **({"type": type_} if type_ else {}),
    }
    r["metrics"] = row_metrics(r)
    return r


ROWS = [
    _row("q1", "崂山区推进多少个城市更新项目？", answers=["196个"], answer="崂山区推进196个项目。[1]",
         gold=["d1"], retrieved=["d1", "d2"], confidence=0.9, ms=80),
    _row("q2", "威海管廊建成多长？", answers=["40.6公里"], answer="威海建成海绵城市78.6平方公里。[1]",
         gold=["d2"], retrieved=["d3", "d4", "d2"], confidence=0.6, ms=120),
    _row("q3", "西溪湿地坚持什么原则？", answers=["生态优先"], answer="抱歉，资料中没有找到答案。", refused=True,
         gold=["d3"], retrieved=["d5"], confidence=0.08, ms=60),
    _row("q4", "火星上第一座城市叫什么？", answerable=False, answer="抱歉，资料中没有找到答案。", refused=True,
         retrieved=["d1"], confidence=0.05, ms=50),
    _row("q5", "月球基地的预算是多少？", answerable=False, answer="预算为156亿元。[1]", retrieved=["d1"],
         confidence=0.55, ms=90),
    _row("q6", "微信分享链接怎么打开app", gold=["d6"], answer="在浏览器打开即可。[1]", retrieved=["d6"],
         confidence=0.7, ms=70, type_="retrieval-only"),
]  # fmt: skip
CONFIG = {
    "command": "rag eval run artifacts/data/x --limit 6",
    "started": "2026-12-03T15:00:00+00:00",
    "settings": {"refusal_threshold": 0.3},
    "dataset": {"conversion": {"kind": "cmrc", "source": "x.json", "skipped_total": 2,
                               "skipped": {"empty question": 2}}},
}  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    metrics = summarize(ROWS, n_resamples=50)
    metrics["by_type"] = by_type(ROWS, n_resamples=50)
    write_report(out, ROWS, metrics, CONFIG, plots=True)
    return write_html(out, ROWS, metrics, CONFIG)


def test_table_records_and_bins():
    assert [first_gold_rank(r) for r in ROWS] == [1, 3, None, None, None, 1]
    qs = {q["id"]: q for q in question_rows(ROWS)}
    assert (qs["q1"]["outcome"], qs["q2"]["outcome"], qs["q3"]["outcome"]) == (
        "right",
        "wrong",
        "wrong",
    )
    assert (qs["q4"]["outcome"], qs["q5"]["outcome"]) == ("right", "wrong")
    assert qs["q6"]["outcome"] == "–" and qs["q6"]["gold"] == "(documents only)"  # nothing to judge
    assert qs["q3"]["answer"] == "" and qs["q4"]["gold"] == "(refuse)"
    bins = reliability_bins(ROWS)
    assert sum(b["n"] for b in bins) == 6
    low = next(b for b in bins if b["low"] == 0.0)  # q3 (0.08) and q4 (0.05)
    assert (low["n"], low["answerable"], low["right"]) == (2, 0.5, 0.0)


def test_html_is_self_contained(report):
    text = report.read_text(encoding="utf-8")
    assert "<script src" not in text and "<link" not in text
    assert not re.search(r"""(src|href)=["'](?!data:)""", text)  # every image inline
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 6  # 3 of report.md + 3 new
    for caption in (
        "reliability of the refusal score",
        "refusal / false refusal trade-off",
        "answer length",
    ):
        assert caption in text
    assert "left out 2 record(s): empty question: 2" in text
    assert "崂山区推进196个项目。[1]" in text


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
def test_sort_and_filter_in_chromium(report):
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tempfile.mkdtemp(prefix="rag-chromium-")
    requests: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
            )  # fmt: skip
            page = ctx.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            # every plot decoded (a broken data: URI has naturalWidth 0)
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            assert len(widths) == 6 and all(w > 0 for w in widths)

            def visible_ids():
                return page.eval_on_selector_all(
                    "#questions tbody tr:not([hidden])", "rs => rs.map(r => r.cells[0].textContent)"
                )

            assert page.text_content("#count") == "6 of 6 questions"
            rank = page.locator("#questions th[data-key=rank]")
            rank.click()
            assert visible_ids()[:3] == ["q1", "q6", "q2"]  # ranks 1, 1, 3; no rank last
            rank.click()
            assert visible_ids()[:2] == ["q2", "q1"] and rank.get_attribute("data-dir") == "desc"
            page.locator("#questions th[data-key=ms]").click()
            assert visible_ids() == ["q4", "q3", "q6", "q1", "q5", "q2"]

            page.select_option("#outcome", "wrong")
            assert sorted(visible_ids()) == ["q2", "q3", "q5"]
            page.select_option("#refused", "no")
            assert sorted(visible_ids()) == ["q2", "q5"]
            page.fill("#q", "威海")
            assert visible_ids() == ["q2"] and page.text_content("#count") == "1 of 6 questions"
            page.fill("#q", "")
            page.select_option("#outcome", "")
            page.select_option("#refused", "")
            page.select_option("#type", "retrieval-only")
            assert visible_ids() == ["q6"]
            ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests
