"""The refusal / false-refusal trade-off of finished runs, as the refusal threshold rises.

    rag eval tune tradeoff RUN_DIR... --out eval/reports/trust/tradeoff.png

Each run's results.jsonl holds every question's confidence (the refusal model's
P(answerable)) and whether it was refused. Raising the threshold above the one the run
used refuses every answered question whose confidence falls below it; the questions the
run refused stay refused (by the threshold, or by a rule: another year, an unmet
constraint, no value of the asked kind). So the curve starts at the run's own point and
shows what a stricter threshold would buy, measured, not guessed. Lowering the threshold
cannot be read off a run (a refused question has no answer to score): run again for that.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rag.eval.rows import read_rows


def curve(rows: list[dict], thresholds: np.ndarray) -> list[dict]:
    """Per threshold: refusal (unanswerable refused), false refusal (answerable refused),
    containment kept (answerable answered with the gold answer in it)."""
    una = [r for r in rows if not r.get("answerable")]
    ans = [r for r in rows if r.get("answerable")]
    out = []
    for t in thresholds:

        def refused(r, t=t):
            return bool(r.get("refused")) or float(r.get("confidence") or 0.0) < t

        out.append(
            {
                "threshold": round(float(t), 3),
                "refusal": float(np.mean([refused(r) for r in una])) if una else None,
                "false_refusal": float(np.mean([refused(r) for r in ans])) if ans else None,
                "containment": float(
                    np.mean(
                        [
                            (not refused(r)) and bool((r.get("metrics") or {}).get("containment"))
                            for r in ans
                        ]
                    )
                )
                if ans
                else None,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rag eval tune tradeoff", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (with results.jsonl)")
    p.add_argument("--out", type=Path, required=True, help="the plot (.png); a .json beside it")
    p.add_argument(
        "--start", type=float, default=None, help="lowest threshold (default: the runs')"
    )
    a = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    data = {}
    for run in a.runs:
        rows = read_rows(run / "results.jsonl")
        if not rows:
            raise SystemExit(f"{run}: no results.jsonl rows")
        cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
        t0 = a.start
        if t0 is None:
            t0 = (cfg.get("settings") or {}).get("refusal_threshold") or _calibrated()
        pts = curve(rows, np.linspace(t0, 0.95, 40))
        data[str(run)] = pts
        xs = [p["false_refusal"] for p in pts if p["refusal"] is not None]
        ys = [p["refusal"] for p in pts if p["refusal"] is not None]
        if xs:
            ax.plot(xs, ys, marker=".", label=f"{run.parent.name}/{run.name}")
            ax.annotate("run", (xs[0], ys[0]))
    ax.set_xlabel("false refusal (answerable refused)")
    ax.set_ylabel("refusal (unanswerable refused)")
    ax.set_title("refusal trade-off as the threshold rises")
    ax.grid(alpha=0.3)
    ax.legend()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    a.out.with_suffix(".json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    print(f"{a.out}: {len(data)} run(s)")
    return 0


def _calibrated() -> float:
    from rag.read.extractive import refusal_model

    return float(refusal_model()["threshold"])


if __name__ == "__main__":
    raise SystemExit(main())
