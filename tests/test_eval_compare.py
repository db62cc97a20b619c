"""`rag eval compare` in plain words: paired intervals for every metric, McNemar for yes/no ones, warnings, changes both ways.

Two run folders are written from result rows whose metrics are computed by the real
`rag.eval.rows` functions; McNemar's p-value is checked against scipy's exact binomial test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag.eval import metrics as M
from rag.eval.compare import compare_runs, comparison_json, format_comparison, sentence
from rag.eval.rows import row_metrics, summarize
from rag.serve.cli import main


def _rows(right: set[int], refuses: set[int]) -> list[dict]:
    """40 answerable questions (right: answered with the gold answer) and 10 unanswerable
    (refuses: refused)."""
    rows = []
    for i in range(50):
        answerable = i < 40
        refused = (not answerable) and i in refuses
        r = {
            "question_id": f"q{i:02d}",
            "question": f"第{i}个问题？",
            "answerable": answerable,
            "answers": [f"答案{i}号"] if answerable else [],
            "gold_doc_ids": [f"d{i}"] if answerable else [],
            "retrieved_doc_ids": [f"d{i}", "x"] if i % 3 else ["x", f"d{i}"],
            "refused": refused,
            "answer": "抱歉。" if refused else (f"是答案{i}号。" if i in right else "别的。"),
            "timings_ms": {"total": 100.0},
        }
        r["metrics"] = row_metrics(r)
        rows.append(r)
    return rows


def _write_run(path: Path, rows: list[dict], config: dict) -> Path:
    path.mkdir(parents=True)
    (path / "results.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    (path / "metrics.json").write_text(json.dumps(summarize(rows, n_resamples=100)), "utf-8")
    (path / "config.json").write_text(json.dumps(config, ensure_ascii=False), "utf-8")
    return path


CONFIG = {
    "questions": "data/questions.jsonl",
    "corpus": "data/corpus.jsonl",
    "dataset": {"hash": "h1", "questions_sha256": "q1", "corpus_sha256": "c1"},
    "settings": {"top_k": 5},
}


def _a() -> list[dict]:  # right on q00-q19, refuses q40-q44
    return _rows(set(range(20)), {40, 41, 42, 43, 44})


def _b() -> list[dict]:  # right on q02-q31, refuses q40-q43 and q45-q48
    return _rows(set(range(2, 32)), {40, 41, 42, 43, 45, 46, 47, 48})


def _a_correct() -> np.ndarray:
    return np.array([float(m["metrics"]["correct"]) for m in _a()])


@pytest.fixture()
def runs(tmp_path):
    return _write_run(tmp_path / "a", _a(), CONFIG), _write_run(tmp_path / "b", _b(), CONFIG)


def test_paired_intervals_mcnemar_and_sentences(runs):
    c = compare_runs(*runs)
    d = {m.key: m for m in c.metrics}
    assert c.n_common == 50 and c.warnings == []
    # every metric of the report with a per-question value is paired, refusal included
    for key in ("refusal_rate", "false_refusal_rate", "correct", "f1", "recall@1", "mrr@10"):
        assert d[key].delta_ci is not None, key
    refusal = d["refusal_rate"]
    assert (refusal.a, refusal.b, refusal.n_pairs) == (0.5, 0.8, 10)
    assert refusal.mcnemar[:2] == (1, 4)  # q44 refused only by A; q45..q48 only by B
    assert d["false_refusal_rate"].n_changed == 0

    correct = d["correct"]
    a_only, b_only, p = correct.mcnemar
    assert (a_only, b_only) == (2 + 1, 12 + 4)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert p == pytest.approx(scipy_stats.binomtest(a_only, a_only + b_only, 0.5).pvalue)
    assert correct.significant and p < 0.05
    lo, hi = M.bootstrap_ci(
        np.array([float(m["metrics"]["correct"]) for m in _b()]) - _a_correct(), seed=0
    )
    assert sentence(correct) == (
        f"B 的 正确率（correct） 高 26.0 个百分点（95% 区间 {lo * 100:.1f}–{hi * 100:.1f}），显著"
        f"（McNemar p = {p:.3g}：3 题只有 A 是，16 题只有 B 是），B 更好"
    )
    assert sentence(d["recall@1"]) == "A 与 B 的 recall@1 相同（40 题逐题一致）"
    assert d["mrr@10"].mcnemar is None  # not a yes/no metric, even where its values are 0/1
    text = format_comparison(c, max_changes=5)
    assert "结论（B 相对 A，逐题配对）：" in text and sentence(correct) in text
    # both ways: 16 now right, 3 now wrong; 5 of each printed, all of them in the JSON
    assert "Outcome changed on 19 question(s): 16 now right, 3 now wrong." in text
    assert "… and 11 more (--all or --json lists every one)" in text
    data = comparison_json(c)
    answer_changes = [x for x in data["changes"] if x["kind"] == "answer"]
    assert len(answer_changes) == 19
    assert {x["question_id"] for x in answer_changes if not x["now_right"]} == {"q00", "q01", "q44"}
    assert data["metrics"]["correct"]["mcnemar"]["p"] == p
    assert data["metrics"]["correct"]["sentence"] == sentence(correct)


def test_warnings_when_data_corpus_or_config_differ(tmp_path, capsys):
    a = _write_run(tmp_path / "a", _a(), CONFIG)
    other = {
        **CONFIG,
        "corpus": "runs/b/corpus.sample.jsonl",
        "dataset": {"hash": "h2", "questions_sha256": "q2", "corpus_sha256": "c2"},
        "corpus_sample": {"own": 12, "distractors": 200, "total": 848},
        "settings": {"top_k": 3},
    }
    b = _write_run(tmp_path / "b", _b()[:30], other)
    c = compare_runs(a, b)
    assert len(c.warnings) == 3
    assert c.warnings[0].startswith("警告：两次运行的问题文件不同")
    assert "A: 完整语料，B: --limit 小语料 12+200 篇" in c.warnings[1]
    assert c.warnings[2] == "注意：两次运行的配置不同：settings.top_k: 5 -> 3。"
    assert main(["eval", "compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "questions: 30 in both, 20 only in A" in out and c.warnings[1] in out


def test_mcnemar_exact_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for b, c in ((0, 0), (1, 9), (5, 5), (0, 7), (40, 61), (300, 340)):
        expected = 1.0 if b + c == 0 else scipy_stats.binomtest(b, b + c, 0.5).pvalue
        assert M.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9), (b, c)
    with pytest.raises(ValueError):
        M.mcnemar_exact(-1, 2)
