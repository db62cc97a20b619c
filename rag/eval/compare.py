"""Compare two evaluation runs: metric differences with intervals, and changed outcomes.

Runs on the same questions are compared question by question: the interval of a
difference is a paired bootstrap over the questions both runs answered, which is much
narrower than the two runs' own intervals side by side and tells a real change from noise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.eval import metrics as M
from rag.eval.provenance import comparable, differences
from rag.eval.report import METRIC_ROWS, fmt
from rag.eval.rows import outcome, read_rows, row_value
from rag.eval.runner import CONFIG, METRICS, RESULTS

# Metrics without a per-question value to pair: percentiles of latency (which depend on
# the machine's load more than on the code) and the judge's (not every row is judged).
UNPAIRED = frozenset(
    {"latency_p50_ms", "latency_p95_ms", "judge_faithfulness", "judge_correctness"}
)
# Lower is better for these; the plain-words summary says which run is better.
LOWER_IS_BETTER = frozenset(
    {"false_refusal_rate", "repeats_false", "latency_p50_ms", "latency_p95_ms"}
)
# Yes/no per question, so McNemar's test applies (recall@k too where every question has
# one gold document, which the values show).
YES_NO_METRICS = frozenset(
    {"correct", "em", "short_em", "containment", "rgb_correct", "repeats_false"}
    | {"refusal_rate", "false_refusal_rate"}
)


def _yes_no(key: str, xa: np.ndarray, xb: np.ndarray) -> bool:
    if not (key in YES_NO_METRICS or key.startswith(("hit@", "recall@"))):
        return False
    return bool(np.isin(xa, (0.0, 1.0)).all() and np.isin(xb, (0.0, 1.0)).all())


# Not a quality: longer is neither better nor worse.
NEUTRAL = frozenset({"answer_chars"})


@dataclass(frozen=True)
class MetricDelta:
    """One metric in both runs; `delta_ci` is the paired interval (None if not paired)."""

    key: str
    a: float | None
    b: float | None
    a_ci: tuple[float, float] | None
    b_ci: tuple[float, float] | None
    delta_ci: tuple[float, float] | None
    n_pairs: int = 0  # questions both runs have a value for
    n_changed: int = 0  # of those, questions whose value differs
    # yes/no metrics: (right in A only, right in B only, exact McNemar p)
    mcnemar: tuple[int, int, float] | None = None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def significant(self) -> bool:
        """McNemar p < 0.05 for a yes/no metric, else the paired 95% interval excludes zero."""
        if self.mcnemar is not None:
            return self.mcnemar[2] < 0.05
        return self.delta_ci is not None and (self.delta_ci[0] > 0 or self.delta_ci[1] < 0)


@dataclass(frozen=True)
class Change:
    """A question whose outcome differs between the runs."""

    question_id: str
    question: str
    type: str | None
    kind: str  # "answer" (correct flipped) or "retrieval" (hit@5 flipped)
    now_right: bool
    answer_a: str
    answer_b: str
    gold: str = ""


@dataclass(frozen=True)
class Comparison:
    a: Path
    b: Path
    config_diffs: list[str]
    n_common: int
    only_a: int
    only_b: int
    metrics: list[MetricDelta]
    changes: list[Change]
    warnings: list[str] = field(default_factory=list)  # data or corpus differ: in Chinese


def _load_run(path: Path) -> tuple[dict, dict, list[dict]]:
    if not (path / METRICS).is_file():
        raise ConfigError(f"{path}: not an evaluation run (no {METRICS}); run `rag eval run` first")
    try:
        metrics = json.loads((path / METRICS).read_text(encoding="utf-8"))
        config = (
            json.loads((path / CONFIG).read_text(encoding="utf-8"))
            if (path / CONFIG).is_file()
            else {}
        )
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable run files ({e})") from None
    return metrics, config, read_rows(path / RESULTS)


def _ci(v: Any) -> tuple[float, float] | None:
    return (float(v[0]), float(v[1])) if v else None


def _hit5(row: Mapping[str, Any]) -> bool | None:
    r5 = (row.get("metrics") or {}).get("recall@5")
    return None if r5 is None else r5 > 0


def _gold_text(row: Mapping[str, Any]) -> str:
    if not row.get("answerable"):
        return "(refuse)"
    return " / ".join((row.get("answers") or [])[:3])


def _answer_text(row: Mapping[str, Any]) -> str:
    return "(refused)" if row.get("refused") else str(row.get("answer") or "")


def compare_runs(
    a: str | Path, b: str | Path, n_resamples: int = 1000, seed: int = 0
) -> Comparison:
    """Compare run folders `a` (before) and `b` (after)."""
    a, b = Path(a), Path(b)
    ma, ca, rows_a = _load_run(a)
    mb, cb, rows_b = _load_run(b)
    diffs = differences(comparable(ca), comparable(cb)) if ca and cb else []
    by_a = {r["question_id"]: r for r in rows_a}
    by_b = {r["question_id"]: r for r in rows_b}
    common = [q for q in by_a if q in by_b]

    deltas = []
    ci_a, ci_b = ma.get("ci95") or {}, mb.get("ci95") or {}
    for key, _label, _over in METRIC_ROWS:
        va, vb = ma.get(key), mb.get(key)
        if va is None and vb is None:
            continue
        paired, n_pairs, n_changed, mcn = None, 0, 0, None
        if key not in UNPAIRED:
            xa, xb = paired_columns(rows_a, rows_b, key)
            n_pairs, n_changed = int(xa.size), int(np.sum(xa != xb))
            if n_pairs:
                paired = M.bootstrap_ci(xb - xa, n_resamples=n_resamples, seed=seed)
                if _yes_no(key, xa, xb):
                    b_only = int(np.sum((xa == 0) & (xb == 1)))
                    a_only = int(np.sum((xa == 1) & (xb == 0)))
                    mcn = (a_only, b_only, M.mcnemar_exact(a_only, b_only))
        deltas.append(
            MetricDelta(
                key,
                va,
                vb,
                _ci(ci_a.get(key)),
                _ci(ci_b.get(key)),
                paired,
                n_pairs,
                n_changed,
                mcn,
            )
        )

    changes = []
    for q in common:
        ra, rb = by_a[q], by_b[q]
        ok_a, ok_b = outcome(ra), outcome(rb)
        if ok_a is not None and ok_b is not None and ok_a != ok_b:
            changes.append(
                Change(
                    q,
                    rb.get("question", ""),
                    rb.get("type"),
                    "answer",
                    ok_b,
                    _answer_text(ra),
                    _answer_text(rb),
                    _gold_text(rb),
                )
            )
    for q in common:
        ha, hb = _hit5(by_a[q]), _hit5(by_b[q])
        if ha is not None and hb is not None and ha != hb:
            rb = by_b[q]
            changes.append(
                Change(q, rb.get("question", ""), rb.get("type"), "retrieval", hb, "", "")
            )
    return Comparison(
        a,
        b,
        diffs,
        len(common),
        len(by_a) - len(common),
        len(by_b) - len(common),
        deltas,
        changes,
        data_warnings(ca, cb),
    )


def data_warnings(ca: Mapping[str, Any], cb: Mapping[str, Any]) -> list[str]:
    """Why the two runs' figures may not be comparable at all: other questions, another
    corpus (or another --limit sample of it), another configuration. In Chinese: the
    plain-words summary is for the people reading the comparison."""
    out = []
    da, db = ca.get("dataset") or {}, cb.get("dataset") or {}
    if da.get("questions_sha256") != db.get("questions_sha256"):
        out.append(
            f"警告：两次运行的问题文件不同（A: {ca.get('questions')}，B: {cb.get('questions')}）；"
            "逐题比较只用两边都有的问题。"
        )
    if da.get("corpus_sha256") != db.get("corpus_sha256"):
        sa, sb = ca.get("corpus_sample"), cb.get("corpus_sample")
        why = ""
        if sa or sb:

            def desc(s):
                return "完整语料" if not s else f"--limit 小语料 {s['own']}+{s['distractors']} 篇"

            why = f"（A: {desc(sa)}，B: {desc(sb)}）"
        out.append(
            f"警告：两次运行检索的语料不同{why}（A: {ca.get('corpus')}，B: {cb.get('corpus')}）；"
            "检索越难分数越低，差异未必来自系统本身。"
        )
    diffs = (
        [d for d in differences(comparable(ca), comparable(cb)) if not d.startswith("dataset:")]
        if ca and cb
        else []
    )
    if diffs:
        shown = "；".join(diffs[:6]) + ("……" if len(diffs) > 6 else "")
        out.append(f"注意：两次运行的配置不同：{shown}。")
    return out


def _signed(key: str, v: float | None) -> str:
    if v is None:
        return "–"
    s = fmt(key, abs(v))
    return ("+" if v >= 0 else "−") + s


def _clip(s: str, n: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


# Chinese names for the plain-words summary; other metrics go by their key (recall@1).
ZH_NAMES = {
    "correct": "正确率（correct）",
    "containment": "答案包含率（containment）",
    "em": "精确匹配（EM）",
    "f1": "F1",
    "rgb_correct": "RGB 全部要点命中率",
    "repeats_false": "复述错误事实的比例",
    "refusal_rate": "拒答率（不可答题被拒答）",
    "false_refusal_rate": "误拒率（可答题被拒答）",
    "answer_chars": "答案长度",
    "supported_share": "有依据的句子比例",
    "citation_precision": "引用精确率",
    "citation_recall": "引用召回率",
    "latency_p50_ms": "延迟中位数",
    "latency_p95_ms": "延迟 p95",
}


def _unit(key: str) -> tuple[str, float]:
    if key == "answer_chars":
        return "个字符", 1.0
    if key.endswith("_ms"):
        return "毫秒", 1.0
    return "个百分点", 100.0


def sentence(d: MetricDelta) -> str | None:
    """One metric's difference in plain words, e.g.
    "B 的 recall@1 高 1.2 个百分点（95% 区间 0.4–2.0），显著，B 更好"."""
    if d.delta is None:
        return None
    name = ZH_NAMES.get(d.key, d.key)
    unit, scale = _unit(d.key)
    if d.delta_ci is not None and d.n_changed == 0:
        return f"A 与 B 的 {name} 相同（{d.n_pairs} 题逐题一致）"
    mag = abs(d.delta) * scale
    way = "高" if d.delta > 0 else ("低" if d.delta < 0 else "持平，")
    head = f"B 的 {name} {way} {mag:.1f} {unit}" if d.delta else f"B 的 {name} 持平"
    if d.delta_ci is None:
        tail = "（未逐题配对，无区间"
        tail += (
            "；延迟随机器负载变化，请用同一命令交替运行得到的数字）"
            if d.key.endswith("_ms")
            else "）"
        )
        return head + tail
    lo, hi = d.delta_ci[0] * scale, d.delta_ci[1] * scale
    if lo >= 0 or hi <= 0:
        x, y = sorted((abs(lo), abs(hi)))
        interval = f"95% 区间 {x:.1f}–{y:.1f}"
    else:
        interval = f"B−A 的 95% 区间 {lo:+.1f} 至 {hi:+.1f}"
    out = f"{head}（{interval}），{'显著' if d.significant else '不显著'}"
    if d.mcnemar is not None:
        a_only, b_only, p = d.mcnemar
        out += f"（McNemar p = {p:.3g}：{a_only} 题只有 A 是，{b_only} 题只有 B 是）"
    if d.significant and d.delta and d.key not in NEUTRAL:
        better = (d.delta > 0) != (d.key in LOWER_IS_BETTER)
        out += "，B 更好" if better else "，B 更差"
    return out


def format_comparison(c: Comparison, max_changes: int = 20) -> str:
    """The comparison as plain text for the terminal: warnings, one sentence per metric,
    the table, then the questions that changed, both ways."""
    lines = [f"A: {c.a}", f"B: {c.b}", *c.warnings]
    lines.append(
        f"questions: {c.n_common} in both"
        + (f", {c.only_a} only in A" if c.only_a else "")
        + (f", {c.only_b} only in B" if c.only_b else "")
    )
    lines += ["", "结论（B 相对 A，逐题配对）："]
    lines += [f"- {s}" for d in c.metrics if (s := sentence(d))]
    lines += [
        "",
        "Δ = B − A. The paired interval is a bootstrap over the questions both runs answered "
        "(1,000 resamples); * marks a change beyond noise: McNemar p < 0.05 for yes/no "
        "metrics, else the interval excludes 0.",
    ]
    head = f"{'metric':<22}{'A':>9}{'B':>9}{'Δ (B−A)':>10}   95% CI of Δ (paired)   McNemar p   A 95% CI / B 95% CI"
    lines += [head, "-" * len(head)]
    for d in c.metrics:
        ci = (
            f"[{_signed(d.key, d.delta_ci[0])}, {_signed(d.key, d.delta_ci[1])}]{' *' if d.significant else ''}"
            if d.delta_ci
            else ""
        )
        p = f"{d.mcnemar[2]:.3g}" if d.mcnemar else ""
        own = ""
        if d.a_ci or d.b_ci:
            fa = f"[{fmt(d.key, d.a_ci[0])}, {fmt(d.key, d.a_ci[1])}]" if d.a_ci else "–"
            fb = f"[{fmt(d.key, d.b_ci[0])}, {fmt(d.key, d.b_ci[1])}]" if d.b_ci else "–"
            own = f"{fa} / {fb}"
        lines.append(
            f"{d.key:<22}{fmt(d.key, d.a):>9}{fmt(d.key, d.b):>9}{_signed(d.key, d.delta):>10}   {ci:<23}{p:<12}{own}"
        )

    for kind, title in (("answer", "Outcome"), ("retrieval", "Retrieval hit@5")):
        ch = [x for x in c.changes if x.kind == kind]
        right = [x for x in ch if x.now_right]
        wrong = [x for x in ch if not x.now_right]
        lines += [
            "",
            f"{title} changed on {len(ch)} question(s): {len(right)} now right, {len(wrong)} now wrong.",
        ]
        for label, group in (("now right", right), ("now wrong", wrong)):
            if not group:
                continue
            lines.append(f"{label}:")
            for x in group[:max_changes]:
                t = f" [{x.type}]" if x.type else ""
                lines.append(f"  {x.question_id}{t} {_clip(x.question, 50)}")
                if kind == "answer":
                    lines.append(f"      A: {_clip(x.answer_a, 90)}")
                    lines.append(f"      B: {_clip(x.answer_b, 90)}")
                    lines.append(f"      gold: {_clip(x.gold, 60)}")
            if len(group) > max_changes:
                lines.append(
                    f"  … and {len(group) - max_changes} more (--all or --json lists every one)"
                )
    return "\n".join(lines)


def comparison_json(c: Comparison) -> dict[str, Any]:
    """The comparison as plain data (for --json): every changed question, both ways."""
    return {
        "a": str(c.a),
        "b": str(c.b),
        "warnings": c.warnings,
        "config_diffs": c.config_diffs,
        "n_common": c.n_common,
        "only_a": c.only_a,
        "only_b": c.only_b,
        "metrics": {
            d.key: {
                "a": d.a,
                "b": d.b,
                "delta": d.delta,
                "delta_ci95": list(d.delta_ci) if d.delta_ci else None,
                "n_pairs": d.n_pairs,
                "n_changed": d.n_changed,
                "mcnemar": None
                if d.mcnemar is None
                else {"a_only": d.mcnemar[0], "b_only": d.mcnemar[1], "p": d.mcnemar[2]},
                "significant": d.significant,
                "sentence": sentence(d),
            }
            for d in c.metrics
        },
        "changes": [
            {
                "question_id": x.question_id,
                "question": x.question,
                "type": x.type,
                "kind": x.kind,
                "now_right": x.now_right,
                "answer_a": x.answer_a,
                "answer_b": x.answer_b,
                "gold": x.gold,
            }
            for x in c.changes
        ],
    }


def paired_columns(
    rows_a: Sequence[Mapping], rows_b: Sequence[Mapping], key: str
) -> tuple[np.ndarray, np.ndarray]:
    """A's and B's per-question values of a metric (`rows.row_value`: refusal and false
    refusal too) over the questions both runs have a value for, in A's order."""
    by_b = {r["question_id"]: r for r in rows_b}
    xa, xb = [], []
    for r in rows_a:
        rb = by_b.get(r["question_id"])
        if rb is None:
            continue
        va, vb = row_value(r, key), row_value(rb, key)
        if va is not None and vb is not None:
            xa.append(va)
            xb.append(vb)
    return np.asarray(xa, dtype=float), np.asarray(xb, dtype=float)


def paired_values(rows_a: Sequence[Mapping], rows_b: Sequence[Mapping], key: str) -> np.ndarray:
    """Per-question differences b - a of a metric over the questions both runs have."""
    xa, xb = paired_columns(rows_a, rows_b, key)
    return xb - xa
