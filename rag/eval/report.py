"""Write a run's `report.md` and its plots from the rows, the metrics and the config.

The report is self-contained: the command that produced it, the configuration that
matters, every metric with its 95% bootstrap interval, a break-down by question type,
the plots and the first misses, so a reader can judge a figure without opening the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.eval import metrics as M
from rag.eval.report_plots import pyplot, quiet_fonts

PLOTS = ("recall_at_k.png", "per_type.png", "latency_hist.png")

# (key, label, what it averages over); the order of the report's table.
METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("recall@1", "recall@1", "answerable, with gold docs"),
    ("recall@3", "recall@3", "answerable, with gold docs"),
    ("recall@5", "recall@5", "answerable, with gold docs"),
    ("recall@10", "recall@10", "answerable, with gold docs"),
    ("hit@5", "hit@5", "answerable, with gold docs"),
    ("mrr@10", "MRR@10", "answerable, with gold docs"),
    ("ndcg@10", "nDCG@10", "answerable, with gold docs"),
    ("correct", "correct (answer contained / refusal right)", "all questions"),
    ("em", "exact match", "answerable"),
    ("f1", "F1 (CMRC)", "answerable"),
    ("short_em", "short answer: exact match", "answerable, with a short answer or quote"),
    ("short_f1", "short answer: F1", "answerable, with a short answer or quote"),
    ("containment", "containment", "answerable"),
    ("rgb_correct", "RGB accuracy (all items)", "answerable, with answer items"),
    ("repeats_false", "repeats the false fact (lower is better)", "counterfactual documents"),
    ("answer_chars", "answer length (chars)", "answered"),
    ("supported_share", "supported sentences", "answered"),
    ("citation_precision", "citation precision", "answered, citing"),
    ("citation_recall", "citation recall", "answerable, with gold docs"),
    ("refusal_rate", "refusal rate", "unanswerable (higher is better)"),
    ("false_refusal_rate", "false refusal rate", "answerable (lower is better)"),
    ("judge_faithfulness", "judge: faithfulness", "answered, judged"),
    ("judge_correctness", "judge: correctness", "answerable, answered, judged"),
    ("latency_p50_ms", "latency p50 (ms)", "all questions"),
    ("latency_p95_ms", "latency p95 (ms)", "all questions"),
    ("citation_validity", "LLM: citation validity", "the model's cited sentences"),
    ("shown_llm", "LLM: its answer shown", "questions the LLM answered"),
    ("shown_fallback", "LLM: extractive fallback shown", "questions the LLM answered"),
    ("first_token_p50_ms", "LLM: first token p50 (ms)", "questions the LLM answered"),
    ("tokens_per_s_p50", "LLM: tokens/s p50", "questions the LLM answered"),
)

TYPE_COLUMNS = (
    "hit@5",
    "mrr@10",
    "containment",
    "f1",
    "correct",
    "false_refusal_rate",
    "refusal_rate",
)


def fmt(key: str, value: Any) -> str:
    """A metric value as the report shows it."""
    if value is None:
        return "–"
    if key.endswith("_ms"):
        return f"{value:.0f}"
    if key == "answer_chars":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _cell(text: Any, width: int = 60) -> str:
    s = " ".join(str(text or "").split()).replace("|", "\\|")
    return s if len(s) <= width else s[: width - 1] + "…"


# ---------------------------------------------------------------- plots


def recall_curve(rows: Sequence[Mapping[str, Any]], max_k: int = 10) -> dict[str, list[float]]:
    """Mean recall@k and hit@k for k = 1..max_k over the answerable rows with gold ids."""
    gold_rows = [r for r in rows if r.get("answerable") and r.get("gold_doc_ids")]
    out: dict[str, list[float]] = {"k": list(range(1, max_k + 1)), "recall": [], "hit": []}
    for k in out["k"]:
        rec = [
            M.recall_at_k(r.get("retrieved_doc_ids") or [], r["gold_doc_ids"], k) for r in gold_rows
        ]
        hit = [
            M.hit_at_k(r.get("retrieved_doc_ids") or [], r["gold_doc_ids"], k) for r in gold_rows
        ]
        out["recall"].append(float(np.mean(rec)) if rec else float("nan"))
        out["hit"].append(float(np.mean(hit)) if hit else float("nan"))
    return out


def plot_recall_at_k(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> bool:
    curve = recall_curve(rows)
    if all(np.isnan(curve["recall"])):
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    ax.plot(curve["k"], curve["recall"], marker="o", label="recall@k")
    if curve["hit"] != curve["recall"]:
        ax.plot(curve["k"], curve["hit"], marker="s", linestyle="--", label="hit@k")
    ax.set_xlabel("k (distinct documents)")
    ax.set_ylabel("share of questions")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(curve["k"])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_per_type(types: Mapping[str, Mapping[str, Any]], path: Path, title: str) -> bool:
    if not types:
        return False
    plt = pyplot()
    names = list(types)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5.5, 0.9 * len(names) + 2), 3.8), dpi=110)
    series = (("hit@5", "retrieval hit@5"), ("correct", "correct"))
    width = 0.38
    for i, (key, label) in enumerate(series):
        vals = [types[t].get(key) for t in names]
        heights = [v if v is not None else 0.0 for v in vals]
        errs = []
        for t, v in zip(names, vals):
            ci = (types[t].get("ci95") or {}).get(key)
            errs.append((v - ci[0], ci[1] - v) if ci and v is not None else (0.0, 0.0))
        ax.bar(
            x + (i - 0.5) * width,
            heights,
            width,
            yerr=np.array(errs).T,
            capsize=3,
            label=label,
        )
    ax.set_xticks(x)
    ax.set_xticklabels([f"{t}\n(n={types[t]['n']})" for t in names], fontsize=8)
    ax.set_ylim(0, 1.18)  # headroom for the legend above the bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("share of questions (95% CI)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper center", ncol=2, fontsize=8, frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_latency(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> bool:
    totals = [
        float(r["timings_ms"]["total"]) for r in rows if (r.get("timings_ms") or {}).get("total")
    ]
    if not totals:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=110)
    ax.hist(totals, bins=min(40, max(10, len(totals) // 10)), color="#4c72b0", alpha=0.85)
    for q, style in ((50, "-"), (95, "--")):
        v = float(np.percentile(totals, q))
        ax.axvline(v, color="black", linestyle=style, linewidth=1, label=f"p{q} = {v:.0f} ms")
    ax.set_xlabel("latency per question (ms)")
    ax.set_ylabel("questions")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_plots(
    out_dir: Path, rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any], name: str
) -> list[str]:
    """Write the plots that have data; return their file names."""
    quiet_fonts()
    made = []
    if plot_recall_at_k(rows, out_dir / PLOTS[0], f"Retrieval: {name}"):
        made.append(PLOTS[0])
    if plot_per_type(metrics.get("by_type") or {}, out_dir / PLOTS[1], f"By question type: {name}"):
        made.append(PLOTS[1])
    if plot_latency(rows, out_dir / PLOTS[2], f"Latency: {name}"):
        made.append(PLOTS[2])
    return made


# ---------------------------------------------------------------- markdown


def _fusion(s: Mapping[str, Any]) -> str:
    """How the run fused dense and BM25 evidence, in the words of eval/reports/fusion.md."""
    w = f"dense {s.get('dense_weight')} / BM25 {s.get('bm25_weight')}"
    if s.get("fusion", "rrf") == "rrf":  # runs from before score fusion have no "fusion"
        return f"RRF k {s.get('rrf_k')}, weights {w} / document BM25 {s.get('doc_bm25_weight')}"
    out = (
        f"score fusion, weights {w} / document BM25 {s.get('doc_bm25_weight')} / "
        f"term coverage {s.get('coverage_weight')} / numbers {s.get('number_weight')}"
    )
    if s.get("evidence_weight") or s.get("evidence_fit_weight"):  # runs before it have none
        out += (
            f"; answer rerank of the top {s.get('evidence_depth')}: best sentence "
            f"{s.get('evidence_weight')} / fitting sentence {s.get('evidence_fit_weight')}"
        )
    return out


def _settings_lines(config: Mapping[str, Any]) -> list[str]:
    s = config.get("settings", {})
    models = config.get("models", {})
    idx = config.get("index", {})
    ds = config.get("dataset", {})
    git = config.get("git", {})
    commit = (git.get("commit") or "unknown")[:10] + (
        " (uncommitted changes)" if git.get("dirty") else ""
    )
    rows = [
        (
            "questions",
            f"`{config.get('questions')}` ({ds.get('n_questions')} in the file, {config.get('eval', {}).get('n')} asked)",
        ),
        (
            "corpus",
            f"`{config.get('corpus')}`: {idx.get('n_docs')} documents, {idx.get('n_chunks')} chunks"
            + (f", {idx.get('failed')} not indexed" if idx.get("failed") else ""),
        ),
        ("dataset hash", f"`{ds.get('hash')}`"),
        ("embedding model", f"`{models.get('embed')}`"),
        ("generator", f"`{models.get('generator')}`"),
        ("judge", f"`{models.get('judge')}`" if models.get("judge") else "off"),
        ("chunking", f"{s.get('chunk_size')} chars, {s.get('chunk_overlap')} sentence(s) overlap"),
        (
            "retrieval",
            f"top_k {s.get('top_k')}, candidate_depth {s.get('candidate_depth')}, " + _fusion(s),
        ),
        (
            "answering",
            f"max {s.get('max_answer_sentences')} sentences, refusal threshold {s.get('refusal_threshold') or 'calibrated (rag/refusal_model.json)'}",
        ),
        (
            "metrics depth",
            f"{config.get('eval', {}).get('retrieval_depth')} chunks searched, documents ranked to k = {max(config.get('eval', {}).get('ks') or [10])}",
        ),
        ("code", f"commit `{commit}`, Python {config.get('versions', {}).get('python')}"),
        ("index", "reused from the cache" if idx.get("reused") else "built for this run"),
    ]
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def data_notes(config: Mapping[str, Any]) -> list[str]:
    """Plain sentences on what the run's data left out or cut down: records the
    conversion skipped, question lines skipped, the small corpus of --limit."""
    ds = config.get("dataset") or {}
    notes = []
    conv = ds.get("conversion") or {}
    if conv.get("skipped_total"):
        reasons = "; ".join(f"{why}: {n}" for why, n in (conv.get("skipped") or {}).items())
        notes.append(
            f"The conversion (`--from {conv.get('kind')}` of `{conv.get('source')}`) left out "
            f"{conv['skipped_total']} record(s): {reasons}. Each one's place: `meta.json` "
            "beside the questions."
        )
    if conv.get("flagged"):
        reasons = "; ".join(f"{why}: {n}" for why, n in conv["flagged"].items())
        notes.append(f"Kept but flagged by the conversion: {reasons}.")
    bad = ds.get("skipped_questions") or []
    if bad:
        shown = "; ".join(f"{b['where']}: {b['reason']}" for b in bad[:5])
        notes.append(
            f"{len(bad)} line(s) of the questions file were not valid questions and were "
            f"skipped: {shown}" + (" …" if len(bad) > 5 else "") + "."
        )
    sample = config.get("corpus_sample")
    if sample:
        notes.append(
            f"`--limit {config.get('eval', {}).get('limit')}` indexed a small corpus: the "
            f"{sample['own']} documents the asked questions name (gold and context) plus "
            f"{sample['distractors']} distractors, {sample['own'] + sample['distractors']} of "
            f"the {sample['total']} records of `{sample.get('source')}`"
            + (
                f"; {sample['missing_own']} named documents were not in it"
                if sample.get("missing_own")
                else ""
            )
            + ". Retrieval over the whole corpus is harder: compare such a run only with "
            "runs over the same corpus."
        )
    return notes


def _metric_lines(metrics: Mapping[str, Any]) -> list[str]:
    ci = metrics.get("ci95") or {}
    lines = ["| metric | value | 95% CI | over |", "|---|---:|---|---|"]
    for key, label, over in METRIC_ROWS:
        if metrics.get(key) is None:
            continue
        c = ci.get(key)
        interval = f"[{fmt(key, c[0])}, {fmt(key, c[1])}]" if c else ""
        lines.append(f"| {label} | {fmt(key, metrics[key])} | {interval} | {over} |")
    lines.append(
        f"| questions | {metrics.get('n')} | | {metrics.get('n_answerable')} answerable, "
        f"{metrics.get('n_unanswerable')} unanswerable |"
    )
    return lines


def _type_lines(types: Mapping[str, Mapping[str, Any]]) -> list[str]:
    cols = [c for c in TYPE_COLUMNS if any(t.get(c) is not None for t in types.values())]
    lines = ["| type | n | " + " | ".join(cols) + " |", "|---|---:|" + "---:|" * len(cols)]
    for name, t in types.items():
        cells = " | ".join(fmt(c, t.get(c)) for c in cols)
        lines.append(f"| {_cell(name, 30)} | {t.get('n')} | {cells} |")
    return lines


def _miss_lines(rows: Sequence[Mapping[str, Any]], limit: int) -> list[str]:
    from rag.eval.rows import outcome, row_type

    misses = [r for r in rows if outcome(r) is False][:limit]
    if not misses:
        return ["No misses."]
    lines = ["| id | type | question | answer | expected |", "|---|---|---|---|---|"]
    for r in misses:
        expected = " / ".join((r.get("answers") or [])[:3]) if r.get("answerable") else "(refuse)"
        answer = "(refused)" if r.get("refused") else r.get("answer")
        lines.append(
            f"| {_cell(r['question_id'], 20)} | {_cell(row_type(r), 14)} | {_cell(r.get('question'), 40)} "
            f"| {_cell(answer, 70)} | {_cell(expected, 30)} |"
        )
    return lines


def render(
    rows: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    config: Mapping[str, Any],
    plots: Sequence[str] = (),
    name: str = "",
    misses: int = 10,
) -> str:
    """The markdown of a run's report."""
    run = metrics.get("run") or {}
    lines = [
        f"# Evaluation: {name}",
        "",
        f"Started {config.get('started')}; {metrics.get('n')} questions; "
        f"{run.get('asked', 0)} asked in the last session"
        + (f", {run['resumed']} kept from an earlier one" if run.get("resumed") else "")
        + f"; {run.get('seconds', 0):.0f} s in all (index {run.get('index_seconds', 0):.0f} s)"
        + (
            f"; load average {run['loadavg_start']} → {run.get('loadavg_end')} on "
            f"{config.get('platform', {}).get('cpus')} CPUs (latency depends on it)."
            if run.get("loadavg_start") is not None
            else "."
        ),
        "",
        "Command:",
        "",
        "```sh",
        str(config.get("command") or "(called from Python)"),
        "```",
        "",
        "## Configuration",
        "",
        *_settings_lines(config),
        "",
        "Full settings, model names, library versions and hashes: `config.json`.",
        "",
        *[line for note in data_notes(config) for line in (f"- {note}",)],
        *([""] if data_notes(config) else []),
        "## Metrics",
        "",
        "Intervals: percentile bootstrap over the questions (1,000 resamples, seed 0). "
        "Definitions: `eval/README.md`. `correct`: an answerable question answered with "
        "a gold answer contained in the text (every item for RGB), or an unanswerable "
        "one refused. Citation precision counts cited documents that are gold.",
        "",
        *_metric_lines(metrics),
        "",
        "## By question type",
        "",
        *_type_lines(metrics.get("by_type") or {}),
        "",
    ]
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{p.removesuffix('.png')}]({p})" for p in plots]
        lines.append("")
    lines += [f"## First misses (up to {misses})", "", *_miss_lines(rows, misses), ""]
    lines += ["Per-question rows: `results.jsonl`; figures: `metrics.json`.", ""]
    return "\n".join(lines)


def write_report(
    out_dir: Path,
    rows: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    config: Mapping[str, Any],
    plots: bool = True,
) -> Path:
    """Write `report.md` (and the plots, when matplotlib is installed) into `out_dir`."""
    from rag.fileio import write_text_atomic

    out_dir = Path(out_dir)
    name = out_dir.name
    made: list[str] = []
    if plots:
        try:
            made = write_plots(out_dir, rows, metrics, name)
        except ImportError:
            made = []  # matplotlib is optional: the report says so
    text = render(rows, metrics, config, made, name)
    if plots and not made and rows:
        text += "\nPlots need matplotlib: `pip install matplotlib`.\n"
    path = out_dir / "report.md"
    write_text_atomic(path, text)
    return path


# ---------------------------------------------------------------- summary table

SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("recall@5", "recall@5"),
    ("mrr@10", "MRR@10"),
    ("ndcg@10", "nDCG@10"),
    ("containment", "contained"),
    ("f1", "F1"),
    ("short_f1", "short F1"),
    ("rgb_correct", "RGB acc."),
    ("refusal_rate", "refusal"),
    ("false_refusal_rate", "false refusal"),
    ("latency_p50_ms", "p50 ms"),
)


def summary_table(run_dirs: Sequence[Path], link_from: Path | None = None) -> str:
    """One markdown table, one row per run folder: the headline metrics of each report.

    `link_from`: the folder the table will live in, so run names link to their reports.
    """
    import json
    import os

    lines = [
        "| run | questions | " + " | ".join(label for _, label in SUMMARY_COLUMNS) + " |",
        "|---|---:|" + "---:|" * len(SUMMARY_COLUMNS),
    ]
    for d in run_dirs:
        d = Path(d)
        m = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
        name = d.name
        if link_from is not None:
            name = f"[{d.name}]({Path(os.path.relpath(d / 'report.md', link_from)).as_posix()})"
        n = f"{m.get('n')}" + (
            f" ({m['n_unanswerable']} unans.)" if m.get("n_unanswerable") else ""
        )
        cells = " | ".join(fmt(k, m.get(k)) for k, _ in SUMMARY_COLUMNS)
        lines.append(f"| {name} | {n} | {cells} |")
    return "\n".join(lines)
