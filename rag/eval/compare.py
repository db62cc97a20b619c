"""Compare two evaluation runs: metric differences with intervals, and changed outcomes.

Runs on the same questions are compared question by question: the interval of a
difference is a paired bootstrap over the questions both runs answered, which is much
narrower than the two runs' own intervals side by side and tells a real change from noise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.eval import metrics as M
from rag.eval.provenance import comparable, differences
from rag.eval.report import METRIC_ROWS, fmt
from rag.eval.rows import outcome, read_rows
from rag.eval.runner import CONFIG, METRICS, RESULTS

# Per-question values that pair across runs (from each row's "metrics").
PAIRED = (
    "recall@1",
    "recall@3",
    "recall@5",
    "recall@10",
    "mrr@10",
    "ndcg@10",
    "correct",
    "em",
    "f1",
    "short_em",
    "short_f1",
    "containment",
    "rgb_correct",
    "citation_recall",
)


@dataclass(frozen=True)
class MetricDelta:
    """One metric in both runs; `delta_ci` is the paired interval (None if not paired)."""

    key: str
    a: float | None
    b: float | None
    a_ci: tuple[float, float] | None
    b_ci: tuple[float, float] | None
    delta_ci: tuple[float, float] | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def significant(self) -> bool:
        """The paired 95% interval excludes zero."""
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
        paired = None
        if key in PAIRED:
            d = paired_values(rows_a, rows_b, key)
            if d.size:
                paired = M.bootstrap_ci(d, n_resamples=n_resamples, seed=seed)
        deltas.append(MetricDelta(key, va, vb, _ci(ci_a.get(key)), _ci(ci_b.get(key)), paired))

    changes = []
    for q in common:
        ra, rb = by_a[q], by_b[q]
        ok_a, ok_b = outcome(ra), outcome(rb)
        if ok_a != ok_b:
            changes.append(
                Change(
                    q,
                    rb.get("question", ""),
                    rb.get("type"),
                    "answer",
                    ok_b,
                    _answer_text(ra),
                    _answer_text(rb),
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
        a, b, diffs, len(common), len(by_a) - len(common), len(by_b) - len(common), deltas, changes
    )


def _signed(key: str, v: float | None) -> str:
    if v is None:
        return "–"
    s = fmt(key, abs(v))
    return ("+" if v >= 0 else "−") + s


def _clip(s: str, n: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def format_comparison(c: Comparison, max_changes: int = 20) -> str:
    """The comparison as plain text for the terminal."""
    lines = [f"A: {c.a}", f"B: {c.b}"]
    if c.config_diffs:
        lines.append("configuration differs: " + "; ".join(c.config_diffs))
    lines.append(
        f"questions: {c.n_common} in both"
        + (f", {c.only_a} only in A" if c.only_a else "")
        + (f", {c.only_b} only in B" if c.only_b else "")
    )
    lines.append("")
    head = f"{'metric':<22}{'A':>9}{'B':>9}{'Δ (B−A)':>10}   95% CI of Δ (paired)   A 95% CI / B 95% CI"
    lines += [head, "-" * len(head)]
    for d in c.metrics:
        ci = (
            f"[{_signed(d.key, d.delta_ci[0])}, {_signed(d.key, d.delta_ci[1])}]{' *' if d.significant else ''}"
            if d.delta_ci
            else ""
        )
        own = ""
        if d.a_ci or d.b_ci:
            fa = f"[{fmt(d.key, d.a_ci[0])}, {fmt(d.key, d.a_ci[1])}]" if d.a_ci else "–"
            fb = f"[{fmt(d.key, d.b_ci[0])}, {fmt(d.key, d.b_ci[1])}]" if d.b_ci else "–"
            own = f"{fa} / {fb}"
        lines.append(
            f"{d.key:<22}{fmt(d.key, d.a):>9}{fmt(d.key, d.b):>9}{_signed(d.key, d.delta):>10}   {ci:<23}{own}"
        )
    lines.append("* the paired interval excludes 0: a change beyond noise.")

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
            if len(group) > max_changes:
                lines.append(f"  … and {len(group) - max_changes} more (--all shows them)")
    return "\n".join(lines)


def comparison_json(c: Comparison) -> dict[str, Any]:
    """The comparison as plain data (for --json)."""
    return {
        "a": str(c.a),
        "b": str(c.b),
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
                "significant": d.significant,
            }
            for d in c.metrics
        },
        "changes": [
            {
                "question_id": x.question_id,
                "kind": x.kind,
                "now_right": x.now_right,
                "answer_a": x.answer_a,
                "answer_b": x.answer_b,
            }
            for x in c.changes
        ],
    }


def paired_values(rows_a: Sequence[Mapping], rows_b: Sequence[Mapping], key: str) -> np.ndarray:
    """Per-question differences b - a of a row metric over the questions both runs have."""
    by_b = {r["question_id"]: r for r in rows_b}
    out = []
    for r in rows_a:
        rb = by_b.get(r["question_id"])
        if rb is None:
            continue
        xa, xb = (r.get("metrics") or {}).get(key), (rb.get("metrics") or {}).get(key)
        if xa is not None and xb is not None:
            out.append(float(xb) - float(xa))
    return np.asarray(out, dtype=float)
