"""Side by side: the LLM runs of `rag.eval.bench.llm` against the extractive runs of the
same questions, one table per data set, with paired bootstrap intervals.

    python -m rag.eval.bench.llm_report RUNS_DIR --set NAME=QUESTIONS.jsonl ... --out DIR

`RUNS_DIR` holds `NAME.extractive.jsonl` and `NAME.qwen.jsonl` for each `--set`. Whether
an answer is right is recomputed here from its text and the questions file (`correct`),
so every set is scored by one rule whatever code wrote the rows. Beside the usual
figures it measures the LLM reader's refusal as a refusal signal for the extractive
answer (issue 21, 4b): "answer extractively, but refuse when the reader refuses".
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from rag.eval.bench.llm import correct, paired
from rag.eval.metrics import percentile
from rag.eval.provenance import _git
from rag.fileio import write_json, write_text_atomic
from rag.read.extractive import REFUSAL

_REFUSED = REFUSAL.rstrip("。")  # the model's refusal, with or without its full stop


def _rows(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.open(encoding="utf-8")) if r}


def _rescored(rows: dict[str, dict], questions: dict[str, dict]) -> list[dict]:
    out = []
    for qid, r in rows.items():
        q = questions[qid]
        r = dict(r, answerable=bool(q["answerable"]))
        r["contains"] = not r["refused"] and correct(r["answer"], q)
        if q.get("type") == "list" and q["answers"]:  # every answer is an item to name
            shown = "" if r["refused"] else r["answer"]
            r["items"] = sum(correct(shown, {"answers": [a]}) for a in q["answers"]) / len(
                q["answers"]
            )
        if "raw" in r:
            r["raw_contains"] = correct(r["raw"], q)
            r["reader_refused"] = _REFUSED in r["raw"] or not r["raw"].strip()
        out.append(r)
    return out


def _share(rows: list[dict], key: str) -> float | None:
    return sum(bool(r[key]) for r in rows) / len(rows) if rows else None


def _diff(ext: list[dict], llm: list[dict], key: str, llm_key: str | None = None) -> dict:
    if llm_key:  # a column of the LLM rows compared with another of the extractive ones
        llm = [dict(r, **{key: r[llm_key]}) for r in llm]
    return paired(ext, llm, key)


def compare_set(ext: list[dict], llm: list[dict]) -> dict[str, Any]:
    """The figures of one data set: the two answerers on the ids both answered."""
    ids = {r["id"] for r in ext} & {r["id"] for r in llm}
    ext = sorted((r for r in ext if r["id"] in ids), key=lambda r: r["id"])
    llm = sorted((r for r in llm if r["id"] in ids), key=lambda r: r["id"])
    ans_e, ans_l = [r for r in ext if r["answerable"]], [r for r in llm if r["answerable"]]
    una_e, una_l = [r for r in ext if not r["answerable"]], [r for r in llm if not r["answerable"]]
    # 4b: the extractive answer, refused also when the LLM reader refused
    by = {r["id"]: r for r in llm}
    gated = [dict(r, refused=r["refused"] or by[r["id"]]["reader_refused"]) for r in ext]
    for g in gated:
        g["contains"] = g["contains"] and not g["refused"]
    ans_g = [r for r in gated if r["answerable"]]
    una_g = [r for r in gated if not r["answerable"]]
    total = [r["total_ms"] / 1e3 for r in llm]
    first = [r["first_token_ms"] / 1e3 for r in llm if r.get("first_token_ms")]
    tps = [r["tokens_per_s"] for r in llm if r.get("tokens_per_s")]
    cited = sum(r["cited_sentences"] for r in llm)
    lists_e, lists_l = [r for r in ext if "items" in r], [r for r in llm if "items" in r]
    return {
        "questions": len(ids),
        "answerable": len(ans_e),
        "unanswerable": len(una_e),
        "extractive": {
            "containment": _share(ans_e, "contains"),
            "false_refusal": _share(ans_e, "refused"),
            "refusal_unanswerable": _share(una_e, "refused"),
            "total_s_median": percentile([r["total_ms"] / 1e3 for r in ext], 50),
        },
        "llm": {
            "containment": _share(ans_l, "contains"),
            "false_refusal": _share(ans_l, "refused"),
            "refusal_unanswerable": _share(una_l, "refused"),
            "raw_containment": _share(ans_l, "raw_contains"),
            "reader_refused_answerable": _share(ans_l, "reader_refused"),
            "reader_refused_unanswerable": _share(una_l, "reader_refused"),
            "shown": {k: sum(r["shown"] == k for r in llm) for k in ("llm", "fallback", "refusal")},
            "citation_validity": sum(r["valid_citations"] for r in llm) / cited if cited else None,
            "cited_sentences": cited,
            "supported_share": sum(r["supported"] for r in llm)
            / max(sum(r["sentences"] for r in llm), 1),
            "first_token_s_median": percentile(first, 50),
            "first_token_s_p90": percentile(first, 90),
            "total_s_median": percentile(total, 50),
            "total_s_p90": percentile(total, 90),
            "tokens_per_s_median": percentile(tps, 50),
        },
        "gated": {
            "containment": _share(ans_g, "contains"),
            "false_refusal": _share(ans_g, "refused"),
            "refusal_unanswerable": _share(una_g, "refused"),
        },
        "paired": {
            "containment": _diff(ans_e, ans_l, "contains"),
            "false_refusal": _diff(ans_e, ans_l, "refused"),
            "refusal_unanswerable": _diff(una_e, una_l, "refused"),
            "gated_false_refusal": _diff(ans_e, ans_g, "refused"),
            "gated_refusal_unanswerable": _diff(una_e, una_g, "refused"),
            "list_items": _diff(lists_e, lists_l, "items"),
        },
        "lists": {
            "questions": len(lists_e),
            "items_extractive": _mean(lists_e, "items"),
            "items_llm": _mean(lists_l, "items"),
        },
    }


def _mean(rows: list[dict], key: str) -> float | None:
    return sum(r[key] for r in rows) / len(rows) if rows else None


def _f(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _d(p: dict) -> str:
    if not p["n"]:
        return "–"
    lo, hi = p["ci95"]
    return f"{p['diff']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _head(sets: dict[str, dict]) -> list[str]:
    """The header of a table with one column per data set."""
    return ["| | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]


def format_report(sets: dict[str, dict], provenance: dict) -> str:
    out = [
        "# The real local LLM against the extractive answerer, per data set",
        "",
        f"Command: `{provenance['command']}`. Code: commit {provenance['code'].get('commit')}.",
        "",
        "Paired differences are LLM minus extractive on the same questions, with a 95%",
        "bootstrap interval (2,000 resamples of the questions). *Containment*: the shown",
        "answer holds a gold answer (RGB: every answer item). *Reader refused*: the model's",
        "own text is the refusal sentence, whatever was shown after the checks.",
        "",
        *_head(sets),
    ]

    def row(label: str, get) -> None:
        out.append(f"| {label} | " + " | ".join(get(m) for m in sets.values()) + " |")

    row(
        "questions (answerable / unanswerable)",
        lambda m: f"{m['answerable']} / {m['unanswerable']}",
    )
    row("containment, extractive", lambda m: _f(m["extractive"]["containment"]))
    row("containment, LLM (shown)", lambda m: _f(m["llm"]["containment"]))
    row("  paired difference", lambda m: _d(m["paired"]["containment"]))
    row("containment, model's own text", lambda m: _f(m["llm"]["raw_containment"]))
    row("false refusal, extractive", lambda m: _f(m["extractive"]["false_refusal"]))
    row("false refusal, LLM", lambda m: _f(m["llm"]["false_refusal"]))
    row("  paired difference", lambda m: _d(m["paired"]["false_refusal"]))
    row(
        "refusal of unanswerable, extractive", lambda m: _f(m["extractive"]["refusal_unanswerable"])
    )
    row("refusal of unanswerable, LLM", lambda m: _f(m["llm"]["refusal_unanswerable"]))
    row("  paired difference", lambda m: _d(m["paired"]["refusal_unanswerable"]))
    row(
        "shown: LLM answer / extractive fallback / refusal",
        lambda m: "{llm} / {fallback} / {refusal}".format(**m["llm"]["shown"]),
    )
    row(
        "citation validity (cited sentences)",
        lambda m: f"{_f(m['llm']['citation_validity'])} ({m['llm']['cited_sentences']})",
    )
    row("model's sentences supported", lambda m: _f(m["llm"]["supported_share"]))
    row(
        "first token s, median / p90",
        lambda m: (
            f"{_f(m['llm']['first_token_s_median'], 1)} / {_f(m['llm']['first_token_s_p90'], 1)}"
        ),
    )
    row(
        "total s, LLM median / p90",
        lambda m: f"{_f(m['llm']['total_s_median'], 1)} / {_f(m['llm']['total_s_p90'], 1)}",
    )
    row("total s, extractive median", lambda m: _f(m["extractive"]["total_s_median"], 2))
    row("tokens/s, median", lambda m: _f(m["llm"]["tokens_per_s_median"], 1))
    out += [
        "",
        "## The reader's refusal as a refusal signal (issue 21, 4b)",
        "",
        "The extractive answer, refused also when the LLM reader refused (same questions):",
        "",
        *_head(sets),
    ]
    row(
        "reader refused: answerable / unanswerable",
        lambda m: (
            f"{_f(m['llm']['reader_refused_answerable'])} / {_f(m['llm']['reader_refused_unanswerable'])}"
        ),
    )
    row("refusal of unanswerable, gated", lambda m: _f(m["gated"]["refusal_unanswerable"]))
    row("  vs extractive", lambda m: _d(m["paired"]["gated_refusal_unanswerable"]))
    row("false refusal, gated", lambda m: _f(m["gated"]["false_refusal"]))
    row("  vs extractive", lambda m: _d(m["paired"]["gated_false_refusal"]))
    row("containment, gated", lambda m: _f(m["gated"]["containment"]))
    out += [
        "",
        "## List questions: the share of the items named (issue 21, 4d)",
        "",
        "Questions of type `list`, whose gold answers are all items to name (corpus_qa):",
        "",
        *_head(sets),
    ]
    row("list questions", lambda m: str(m["lists"]["questions"]))
    row("items named, extractive", lambda m: _f(m["lists"]["items_extractive"]))
    row("items named, LLM", lambda m: _f(m["lists"]["items_llm"]))
    row("  paired difference", lambda m: _d(m["paired"]["list_items"]))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rag.eval.bench.llm_report")
    p.add_argument("runs", help="folder of NAME.extractive.jsonl and NAME.qwen.jsonl")
    p.add_argument("--set", action="append", required=True, metavar="NAME=QUESTIONS")
    p.add_argument("--out", required=True, help="folder for sets.md and sets.json")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    runs, sets = Path(args.runs), {}
    for spec in args.set:
        name, qpath = spec.split("=", 1)
        questions = {q["id"]: q for q in map(json.loads, open(qpath, encoding="utf-8")) if q}
        ext = _rescored(_rows(runs / f"{name}.extractive.jsonl"), questions)
        llm = _rescored(_rows(runs / f"{name}.qwen.jsonl"), questions)
        sets[name] = compare_set(ext, llm)
    prov = {
        "command": "python -m rag.eval.bench.llm_report " + shlex.join(argv),
        "code": _git(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sets.json", {**prov, "sets": sets})
    write_text_atomic(out / "sets.md", format_report(sets, prov))
    print((out / "sets.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
