"""The plots that show how far to trust a run's answers: refusal-score reliability, the refusal trade-off, answer lengths.

Each returns PNG bytes (or None when the run has no data for it), so the HTML report
can inline them; matplotlib is imported when a plot is drawn, not with the module.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rag.eval.rows import outcome


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # DejaVu lacks CJK glyphs; WenQuanYi (or Noto CJK) fills in where installed.
    plt.rcParams["font.family"] = ["DejaVu Sans", "WenQuanYi Micro Hei", "Noto Sans CJK SC"]
    plt.rcParams["axes.unicode_minus"] = False
    return plt


def quiet_fonts() -> Any:
    import logging

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def reliability_bins(rows: Sequence[Mapping[str, Any]], n_bins: int = 10) -> list[dict[str, Any]]:
    """Per confidence bin: how many questions, their mean confidence (the refusal
    model's P(answerable)), the share that is answerable, and the share whose answer
    (had it been given) is right: answerable, answered and correct. Empty bins are left out."""
    out = []
    conf = [(float(r["confidence"]), r) for r in rows if r.get("confidence") is not None]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for i in range(n_bins):
        lo, hi = edges[i], edges[i + 1]
        group = [(c, r) for c, r in conf if lo <= c < hi or (i == n_bins - 1 and c == hi)]
        if not group:
            continue
        out.append(
            {
                "low": float(lo),
                "high": float(hi),
                "n": len(group),
                "confidence": float(np.mean([c for c, _ in group])),
                "answerable": float(np.mean([bool(r.get("answerable")) for _, r in group])),
                "right": float(
                    np.mean([bool(r.get("answerable")) and outcome(r) is True for _, r in group])
                ),
            }
        )
    return out


def plot_reliability(rows: Sequence[Mapping[str, Any]], title: str) -> bytes | None:
    bins = reliability_bins(rows)
    if not bins:
        return None
    plt = pyplot()
    fig, (ax, axn) = plt.subplots(
        2, 1, figsize=(5.5, 4.6), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    x = [b["confidence"] for b in bins]
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfectly calibrated")
    ax.plot(x, [b["answerable"] for b in bins], marker="o", label="share answerable")
    ax.plot(x, [b["right"] for b in bins], marker="s", linestyle="--", label="share answered right")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("observed share")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    width = bins[0]["high"] - bins[0]["low"]
    axn.bar([b["low"] + width / 2 for b in bins], [b["n"] for b in bins], width * 0.9, color="#999")
    axn.set_xlim(0, 1)
    axn.set_xlabel("refusal score: P(answerable), binned")
    axn.set_ylabel("questions")
    return _png(fig)


def run_threshold(config: Mapping[str, Any]) -> float:
    """The refusal threshold the run used (its setting, else the calibrated one)."""
    t = (config.get("settings") or {}).get("refusal_threshold")
    if t is not None:
        return float(t)
    from rag.read.extractive import refusal_model

    return float(refusal_model()["threshold"])


def plot_tradeoff(
    rows: Sequence[Mapping[str, Any]], config: Mapping[str, Any], title: str
) -> bytes | None:
    """Refusal and false refusal as the threshold rises from the run's own (what a
    stricter threshold would buy, read off the run's confidences; see
    `rag.eval.tuning.tradeoff`)."""
    from rag.eval.tuning.tradeoff import curve

    if not any(r.get("confidence") is not None for r in rows):
        return None
    t0 = run_threshold(config)
    pts = curve(list(rows), np.linspace(t0, max(t0, 0.99), 40))
    plt = pyplot()
    both = any(p["refusal"] is not None for p in pts) and any(
        p["false_refusal"] is not None for p in pts
    )
    fig, axes = plt.subplots(1, 2 if both else 1, figsize=(9 if both else 5.5, 3.8), dpi=110)
    axes = np.atleast_1d(axes)
    ax = axes[0]
    th = [p["threshold"] for p in pts]
    for key, label, style in (
        ("refusal", "refusal (unanswerable refused)", "-"),
        ("false_refusal", "false refusal (answerable refused)", "--"),
        ("containment", "answerable answered with the gold answer", ":"),
    ):
        ys = [p[key] for p in pts]
        if any(y is not None for y in ys):
            ax.plot(th, [np.nan if y is None else y for y in ys], linestyle=style, label=label)
    ax.axvline(t0, color="black", linewidth=0.8)
    ax.annotate("this run", (t0, 0.02), fontsize=8)
    ax.set_xlabel("refusal threshold")
    ax.set_ylabel("share")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center right")
    ax.set_title(title)
    if both:
        ax2 = axes[1]
        ax2.plot([p["false_refusal"] for p in pts], [p["refusal"] for p in pts], marker=".")
        ax2.annotate("this run", (pts[0]["false_refusal"], pts[0]["refusal"]), fontsize=8)
        ax2.set_xlabel("false refusal (answerable refused)")
        ax2.set_ylabel("refusal (unanswerable refused)")
        ax2.set_xlim(-0.02, 1.02)
        ax2.set_ylim(-0.02, 1.02)
        ax2.grid(alpha=0.3)
        ax2.set_title("trade-off")
    return _png(fig)


def plot_answer_lengths(rows: Sequence[Mapping[str, Any]], title: str) -> bytes | None:
    lengths = [
        float(m["answer_chars"])
        for r in rows
        if not r.get("refused") and (m := r.get("metrics") or {}).get("answer_chars") is not None
    ]
    if not lengths:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=110)
    ax.hist(lengths, bins=min(40, max(10, len(lengths) // 10)), color="#55a868", alpha=0.85)
    med = float(np.median(lengths))
    ax.axvline(med, color="black", linewidth=1, label=f"median = {med:.0f} chars")
    ax.set_xlabel("answer length (characters, spaces not counted)")
    ax.set_ylabel("answered questions")
    ax.legend()
    ax.set_title(title)
    return _png(fig)
