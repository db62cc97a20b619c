"""`rag eval followups`: are the questions of a conversation told apart as standalone or
follow-up, and does a follow-up's rewrite carry what it leans on?

The data is one JSON object a turn, conversations in order (`eval/datasets/followups.jsonl`):

    {"conversation": "c01", "turn": 2, "question": "那总投资呢？", "follow_up": true,
     "rewrite_should_contain": ["崂山", "投资"], "rewrite_should_not_contain": [],
     "split": "dev"}

Each conversation is replayed through `ChatSession.rewrite`, the chat's own path, with no
answers needed (the rewrite reads only the earlier questions). The decision scored is
`is_follow_up(question)` on every turn, the first included: a first question that reads as
a follow-up would be rewritten wherever it came later in a chat. The rewrite is scored on
the later turns: a standalone question must come back unchanged, an elliptical one must
carry every `rewrite_should_contain` term and none of `rewrite_should_not_contain`
(compared after `norm`, spaces ignored).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.fileio import write_json, write_jsonl_atomic, write_text_atomic
from rag.textnorm import norm

DEFAULT_OUT = Path("eval/reports/followups")
SPLITS = ("dev", "heldout")


@dataclass(frozen=True)
class FollowUpTurn:
    """One turn of a conversation and what the chat should make of it."""

    conversation: str
    turn: int
    question: str
    follow_up: bool
    should_contain: tuple[str, ...] = ()
    should_not_contain: tuple[str, ...] = ()
    split: str = "dev"


def load_turns(path: str | Path) -> list[FollowUpTurn]:
    """Read a follow-up data set; raises ConfigError naming the file and line of a bad turn.

    Turns of a conversation must be consecutive and numbered 1, 2, 3, ... in order, and a
    first turn cannot be a follow-up (there is nothing before it).
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{p}: follow-up data set not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    turns: list[FollowUpTurn] = []
    done: set[str] = set()
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            t = _turn(json.loads(line))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            raise ConfigError(f"{p}:{no}: not a valid turn ({what})") from None
        prev = turns[-1] if turns else None
        expected = prev.turn + 1 if prev and prev.conversation == t.conversation else 1
        if t.turn != expected or (expected == 1 and t.conversation in done):
            raise ConfigError(
                f"{p}:{no}: conversation {t.conversation!r} turn {t.turn} out of order "
                f"(expected turn {expected}); keep each conversation's turns together, in order"
            )
        if t.turn == 1 and t.follow_up:
            raise ConfigError(f"{p}:{no}: a first turn cannot be a follow-up")
        if prev and prev.conversation != t.conversation:
            done.add(prev.conversation)
        turns.append(t)
    if not turns:
        raise ConfigError(f"{p}: no turns")
    return turns


def _turn(rec: Any) -> FollowUpTurn:
    if not isinstance(rec, dict):
        raise TypeError("a line must be a JSON object")
    question = str(rec["question"]).strip()
    if not question:
        raise ValueError("empty question")
    follow_up = rec["follow_up"]
    if not isinstance(follow_up, bool):
        raise ValueError("follow_up must be true or false")
    split = str(rec.get("split") or "dev")
    return FollowUpTurn(
        conversation=str(rec["conversation"]),
        turn=int(rec["turn"]),
        question=question,
        follow_up=follow_up,
        should_contain=tuple(str(s) for s in rec.get("rewrite_should_contain") or ()),
        should_not_contain=tuple(str(s) for s in rec.get("rewrite_should_not_contain") or ()),
        split=split,
    )


def _flat(text: str) -> str:
    return "".join(norm(text).split())


def judge_turns(
    turns: Sequence[FollowUpTurn],
    detect: Callable[[str], bool] | None = None,
    session_factory: Callable[[], Any] | None = None,
) -> list[dict[str, Any]]:
    """Replay each conversation through a chat session and score every turn (one row each).

    `detect` decides standalone or follow-up (default `is_follow_up`); `session_factory`
    makes the session whose `rewrite` and `history` are used (default a `ChatSession`
    without a system: rewriting needs none).
    """
    from rag.read.followup import ChatSession, Turn, is_follow_up

    detect = detect or is_follow_up
    session_factory = session_factory or (lambda: ChatSession(system=None))
    rows: list[dict[str, Any]] = []
    session, previous = None, None
    for t in turns:
        if t.turn == 1:
            session, previous = session_factory(), None
        predicted = bool(detect(t.question))
        rewritten = session.rewrite(t.question)
        session.history.append(Turn(t.question, rewritten, ""))
        row: dict[str, Any] = {
            "conversation": t.conversation,
            "turn": t.turn,
            "split": t.split,
            "question": t.question,
            "previous": previous,
            "follow_up": t.follow_up,
            "predicted": predicted,
            "decision_correct": predicted == t.follow_up,
            "rewritten": rewritten,
        }
        if t.turn > 1:
            flat = _flat(rewritten)
            changed = rewritten.strip() != t.question.strip()
            if t.follow_up:
                missing = [s for s in t.should_contain if _flat(s) not in flat]
                leaked = [s for s in t.should_not_contain if _flat(s) in flat]
                row.update(
                    should_contain=list(t.should_contain),
                    should_not_contain=list(t.should_not_contain),
                    missing_terms=missing,
                    leaked_terms=leaked,
                    rewrite_correct=changed and not missing and not leaked,
                )
            else:
                row["rewrite_correct"] = not changed
        rows.append(row)
        previous = t.question
    return rows


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score 95% interval of a proportion (sound at 0 and 1, unlike the bootstrap)."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def _rate(flags: Iterable[bool]) -> tuple[float | None, int, int]:
    f = list(flags)
    return (sum(f) / len(f) if f else None), sum(f), len(f)


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Decision accuracy (with its Wilson interval), precision and recall of "follow-up",
    and how the rewrites of the later turns fared."""
    tp = sum(r["predicted"] and r["follow_up"] for r in rows)
    fp = sum(r["predicted"] and not r["follow_up"] for r in rows)
    fn = sum(not r["predicted"] and r["follow_up"] for r in rows)
    acc, right, n = _rate(r["decision_correct"] for r in rows)
    later, _, n_later = _rate(r["decision_correct"] for r in rows if r["turn"] > 1)
    elliptical = [r for r in rows if r["turn"] > 1 and r["follow_up"]]
    carries, _, _ = _rate(
        not r["missing_terms"] and r["rewritten"] != r["question"] for r in elliptical
    )
    clean, _, n_guarded = _rate(
        not r["leaked_terms"] for r in elliptical if r["should_not_contain"]
    )
    unchanged, _, _ = _rate(
        r["rewrite_correct"] for r in rows if r["turn"] > 1 and not r["follow_up"]
    )
    rewrite_ok, _, _ = _rate(r["rewrite_correct"] for r in rows if r["turn"] > 1)
    return {
        "n": n,
        "n_follow_up": sum(r["follow_up"] for r in rows),
        "n_standalone": sum(not r["follow_up"] for r in rows),
        "accuracy": acc,
        "accuracy_ci95": wilson(right, n),
        "follow_up_precision": tp / (tp + fp) if tp + fp else None,
        "follow_up_recall": tp / (tp + fn) if tp + fn else None,
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": n - tp - fp - fn},
        "n_later_turns": n_later,
        "accuracy_later_turns": later,
        "rewrite_carries_terms": carries,
        "rewrite_keeps_out_terms": clean,
        "n_keep_out": n_guarded,
        "standalone_unchanged": unchanged,
        "rewrite_correct": rewrite_ok,
    }


def misses(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The turns told apart wrongly, or rewritten wrongly, with what went wrong."""
    out = []
    for r in rows:
        why = []
        if not r["decision_correct"]:
            why.append("read as a follow-up" if r["predicted"] else "read as standalone")
        if r.get("rewrite_correct") is False and r["decision_correct"]:
            if not r["follow_up"]:
                why.append("rewritten")
            elif r["rewritten"] == r["question"]:
                why.append("not rewritten")
            else:
                if r["missing_terms"]:
                    why.append("rewrite lacks " + "、".join(r["missing_terms"]))
                if r["leaked_terms"]:
                    why.append("rewrite keeps " + "、".join(r["leaked_terms"]))
        if why:
            out.append(
                {
                    **{
                        k: r[k]
                        for k in (
                            "conversation",
                            "turn",
                            "split",
                            "question",
                            "previous",
                            "rewritten",
                        )
                    },
                    "why": "; ".join(why),
                }
            )
    return out


# ---------------------------------------------------------------- report

_ROWS = (
    ("accuracy", "accuracy of the standalone / follow-up decision"),
    ("follow_up_precision", "precision of “follow-up”"),
    ("follow_up_recall", "recall of “follow-up”"),
    ("accuracy_later_turns", "accuracy, turns after the first"),
    ("rewrite_carries_terms", "follow-up rewrites that carry the expected terms"),
    ("rewrite_keeps_out_terms", "follow-up rewrites without the replaced terms"),
    ("standalone_unchanged", "standalone questions left unchanged (after the first turn)"),
)


@dataclass(frozen=True)
class FollowUpSummary:
    """What `run_followups` measured and where it wrote it."""

    out_dir: Path
    metrics: dict[str, dict[str, Any]]  # "all" and each split present
    misses: list[dict[str, Any]]


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _cell(text: Any) -> str:
    return " ".join(str(text if text is not None else "–").split()).replace("|", "\\|")


def format_report(
    metrics: Mapping[str, Mapping[str, Any]],
    missed: Sequence[Mapping[str, Any]],
    provenance: Mapping[str, Any],
) -> str:
    """The markdown report: provenance, one column of figures per split, every miss."""
    cols = list(metrics)
    data, code = provenance["data"], provenance["code"]
    out = [
        "# Follow-ups told apart: standalone or elliptical",
        "",
        f"Command: `{provenance['command']}`",
        "",
        f"Data: `{data['path']}` (sha256 {data['sha256'][:16]}, {data['turns']} turns in "
        f"{data['conversations']} conversations). Code: commit {code['commit'] or '?'}"
        f"{' (uncommitted changes)' if code.get('dirty') else ''}, jieba {code['jieba']}.",
        f"Follow-ups rewritten by: {provenance.get('rewriter', 'carry_over')}.",
        "",
        "The decision is `is_follow_up(question)` on every turn; the rewrite is "
        "`ChatSession.rewrite` replaying each conversation, scored on the later turns. "
        "Intervals are Wilson 95% intervals.",
        "",
        "| metric | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for key, label in _ROWS:
        cells = []
        for c in cols:
            m = metrics[c]
            cell = _fmt(m[key])
            if key == "accuracy" and m["accuracy_ci95"]:
                lo, hi = m["accuracy_ci95"]
                cell += f" [{lo:.3f}, {hi:.3f}]"
            cells.append(cell)
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out.append(
        "| turns (follow-up / standalone) | "
        + " | ".join(
            f"{metrics[c]['n']} ({metrics[c]['n_follow_up']} / {metrics[c]['n_standalone']})"
            for c in cols
        )
        + " |"
    )
    out += ["", f"## Misses ({len(missed)})", ""]
    if not missed:
        out.append("None.")
    else:
        out += [
            "| split | turn | question | previous question | rewrite | what went wrong |",
            "|---|---|---|---|---|---|",
        ]
        for m in missed:
            out.append(
                f"| {m['split']} | {m['conversation']}/{m['turn']} | {_cell(m['question'])} | "
                f"{_cell(m['previous'])} | {_cell(m['rewritten'])} | {_cell(m['why'])} |"
            )
    return "\n".join(out) + "\n"


def _provenance(path: Path, turns: Sequence[FollowUpTurn], command: str | None) -> dict[str, Any]:
    from importlib import metadata

    from rag.eval.provenance import _git, _shown

    try:
        jieba = metadata.version("jieba")
    except metadata.PackageNotFoundError:
        jieba = None
    return {
        "command": command or f"rag eval followups {_shown(path)}",
        "data": {
            "path": _shown(path),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "turns": len(turns),
            "conversations": len({t.conversation for t in turns}),
        },
        "code": {**_git(), "jieba": jieba},
    }


def _order(split: str) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


def run_followups(
    path: str | Path,
    out: str | Path = DEFAULT_OUT,
    split: str | None = None,
    command: str | None = None,
    rewriter: Callable[[str, list], str] | None = None,
    rewriter_name: str | None = None,
) -> FollowUpSummary:
    """Score a follow-up data set and write `report.md`, `metrics.json` and `results.jsonl`
    (one row a turn) to `out`. `split` keeps only that split's conversations; `rewriter`
    (an LLM's, `rag.llm.rewrite.make_rewriter`, named `rewriter_name` in the report)
    rewrites the follow-ups in place of the key-term carry-over."""
    path, out = Path(path), Path(out)
    turns = load_turns(path)
    if split is not None:
        turns = [t for t in turns if t.split == split]
        if not turns:
            raise ConfigError(f"{path}: no turns in split {split!r}")
    from rag.read.followup import ChatSession

    rows = judge_turns(turns, session_factory=lambda: ChatSession(None, rewriter=rewriter))
    present = sorted({r["split"] for r in rows}, key=lambda s: (_order(s), s))
    metrics = {s: summarize([r for r in rows if r["split"] == s]) for s in present}
    if len(present) > 1:
        metrics["all"] = summarize(rows)
    missed = misses(rows)
    prov = _provenance(path, turns, command)
    prov["rewriter"] = rewriter_name or "carry_over (key terms of the previous turn)"
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out / "results.jsonl", rows)
    write_json(out / "metrics.json", {**prov, "metrics": metrics, "misses": missed})
    write_text_atomic(out / "report.md", format_report(metrics, missed, prov))
    return FollowUpSummary(out, metrics, missed)
