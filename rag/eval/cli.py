"""`rag eval convert | run | compare | table | followups`: the evaluation subcommands of `rag`."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from rag.config import Settings
from rag.errors import ConfigError

DEFAULT_RUNS = Path("artifacts/eval/runs")


def _command_line(args: argparse.Namespace, out: Path) -> str:
    """The command that reproduces this run (given options only, --out made explicit)."""
    parts = ["rag", "eval", "run", args.questions]
    for flag, value in (
        ("--corpus", args.corpus),
        ("--config", args.config),
        ("--index", args.index),
        ("--embed-model", args.embed_model),
        ("--store", args.store),
        ("--top-k", args.top_k),
        ("--limit", args.limit),
        ("--distractors", args.distractors_arg),
        ("--workers", args.workers if args.workers != 1 else None),
        ("--judge-model", args.judge_model),
        ("--judge-base-url", args.judge_base_url),
        ("--out", out),
    ):
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _default_out(questions: str) -> Path:
    p = Path(questions)
    name = p.name if p.is_dir() else p.stem
    return DEFAULT_RUNS / name


def _distractors(value: str | None) -> int | None:
    """--distractors: a count, or "all" for the whole corpus (None)."""
    from rag.eval.sample import DEFAULT_DISTRACTORS

    if value is None:
        return DEFAULT_DISTRACTORS
    if value.strip().lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"--distractors: a number or all, not {value!r}") from None
    if n < 0:
        raise ConfigError(f"--distractors must be 0 or more, got {n}")
    return n


def _judge(args: argparse.Namespace):
    if not args.judge_model:
        if args.judge_base_url:
            raise ConfigError("--judge-base-url needs --judge-model")
        return None
    base = args.judge_base_url or os.environ.get("OPENAI_BASE_URL")
    if not base:
        raise ConfigError("--judge-model needs --judge-base-url (or $OPENAI_BASE_URL)")
    from rag.eval.judge import LLMJudge

    return LLMJudge(
        args.judge_model,
        base,
        api_key=os.environ.get(args.judge_api_key_env),
        timeout_s=args.judge_timeout,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from rag.eval.runner import run_eval

    settings = Settings.load(
        args.config, embed_model=args.embed_model, top_k=args.top_k, store=args.store
    )
    if args.generator:  # a [generators.NAME] of the settings file answers every question
        settings = settings.with_generator(args.generator)
    out = Path(args.out) if args.out else _default_out(args.questions)
    try:
        summary = run_eval(
            args.questions,
            out,
            settings,
            corpus=args.corpus,
            index_dir=args.index,
            limit=args.limit,
            distractors=_distractors(args.distractors_arg),
            workers=args.workers,
            overwrite=args.overwrite,
            judge=_judge(args),
            progress=not args.quiet,
            command=_command_line(args, out),
        )
    except KeyboardInterrupt:
        print(
            f"rag: interrupted; the answered questions are saved in {out}/results.jsonl. "
            "Run the same command again to go on where it stopped.",
            file=sys.stderr,
        )
        return 130
    m = summary.metrics
    keys = (
        "recall@5",
        "mrr@10",
        "containment",
        "f1",
        "correct",
        "refusal_rate",
        "false_refusal_rate",
        "latency_p50_ms",
    )
    shown = ", ".join(
        f"{k} {m[k]:.3f}" if not k.endswith("_ms") else f"{k} {m[k]:.0f}"
        for k in keys
        if m.get(k) is not None
    )
    print(f"{summary.n} questions ({summary.asked} asked, {summary.resumed} resumed): {shown}")
    print(f"report: {summary.out_dir / 'report.md'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rag.eval.compare import compare_runs, comparison_json, format_comparison

    c = compare_runs(args.run_a, args.run_b)
    if args.json:
        print(json.dumps(comparison_json(c), ensure_ascii=False, indent=1))
    else:
        print(format_comparison(c, max_changes=10**9 if args.all else args.max_changes))
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from rag.eval.report import summary_table

    runs = [Path(r) for r in args.runs]
    for r in runs:
        if not (r / "metrics.json").is_file():
            raise ConfigError(f"{r}: not an evaluation run (no metrics.json)")
    print(summary_table(runs, link_from=Path(args.link_from) if args.link_from else None))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from rag.eval.convert import run_convert

    run_convert(args)
    return 0


def cmd_followups(args: argparse.Namespace) -> int:
    from rag.eval.followups import run_followups

    parts = ["rag", "eval", "followups", args.turns, "--out", args.out]
    parts += ["--split", args.split] if args.split else []
    rewriter = name = None
    if args.llm_model_path:  # follow-ups rewritten by a local GGUF model (issue 21, 4c)
        from rag.config import Settings
        from rag.integrations.llm_backends import make_llm
        from rag.llm.rewrite import make_rewriter

        parts += ["--llm-model-path", args.llm_model_path]
        s = Settings(llm="llamacpp", llm_model_path=args.llm_model_path, llm_temperature=0.0)
        s = s.replace(llm_max_tokens=64, llm_timeout_s=300.0)
        rewriter, name = make_rewriter(make_llm(s), s), f"llamacpp {Path(args.llm_model_path).name}"
    summary = run_followups(
        args.turns,
        args.out,
        split=args.split,
        command=shlex.join(parts),
        rewriter=rewriter,
        rewriter_name=name,
    )

    def f(x):
        return "–" if x is None else f"{x:.3f}"

    for name, m in summary.metrics.items():
        lo, hi = m["accuracy_ci95"]
        print(
            f"{name}: {m['n']} turns, accuracy {f(m['accuracy'])} [{lo:.3f}, {hi:.3f}], "
            f"follow-up precision {f(m['follow_up_precision'])} "
            f"recall {f(m['follow_up_recall'])}, "
            f"rewrite carries terms {f(m['rewrite_carries_terms'])}"
        )
    print(f"{len(summary.misses)} misses; report: {summary.out_dir / 'report.md'}")
    return 0


def add_eval_parser(subparsers, common_parent_parser: argparse.ArgumentParser) -> None:
    """Add `rag eval` with its subcommands to the `rag` command's subparsers."""
    from rag.eval.convert import add_convert_args

    ev = subparsers.add_parser("eval", help="evaluate on a question set: convert, run, compare")
    sub = ev.add_subparsers(dest="eval_cmd", required=True)

    conv = sub.add_parser(
        "convert", help="turn a public QA data set into questions.jsonl + corpus.jsonl"
    )
    add_convert_args(conv)
    conv.set_defaults(func=cmd_convert)

    run = sub.add_parser(
        "run",
        parents=[common_parent_parser],
        help="ask every question of a data set and write results, metrics and a report",
        description="Ask every question and write results.jsonl, metrics.json, config.json, "
        "report.md and plots to --out. An interrupted run resumes when started again.",
    )
    run.add_argument(
        "questions",
        metavar="DIR_OR_QUESTIONS",
        help="a data set folder (questions.jsonl + corpus.jsonl) or a questions .jsonl file",
    )
    run.add_argument(
        "--corpus", help="folder or corpus.jsonl to index (default: beside the questions)"
    )
    run.add_argument("--out", metavar="DIR", help=f"run folder (default {DEFAULT_RUNS}/<name>)")
    run.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="only the first N questions, over a small corpus: their own documents "
        "plus --distractors others",
    )
    run.add_argument(
        "--distractors",
        dest="distractors_arg",
        metavar="M|all",
        help="with --limit: other corpus records indexed beside the asked questions' own "
        "(default 100; all: the whole corpus)",
    )
    run.add_argument(
        "--workers", type=int, default=1, metavar="N", help="questions asked at once (default 1)"
    )
    run.add_argument("--top-k", type=int, help="passages given to the answerer")
    run.add_argument(
        "--generator", metavar="NAME", help="answer with [generators.NAME] of --config"
    )
    run.add_argument("--overwrite", action="store_true", help="discard an earlier run in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    judge = run.add_argument_group("LLM judge (off unless --judge-model is given)")
    judge.add_argument("--judge-model", help="model name on an OpenAI-compatible server")
    judge.add_argument("--judge-base-url", help="e.g. http://localhost:11434/v1 ($OPENAI_BASE_URL)")
    judge.add_argument(
        "--judge-api-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default OPENAI_API_KEY)",
    )
    judge.add_argument(
        "--judge-timeout", type=float, default=60.0, metavar="S", help="seconds per call"
    )
    run.set_defaults(func=cmd_run)

    cmp_ = sub.add_parser("compare", help="metric differences and changed questions of two runs")
    cmp_.add_argument("run_a", metavar="RUN_A", help="run folder: before")
    cmp_.add_argument("run_b", metavar="RUN_B", help="run folder: after")
    cmp_.add_argument(
        "--max-changes",
        type=int,
        default=20,
        metavar="N",
        help="changed questions listed per group",
    )
    cmp_.add_argument("--all", action="store_true", help="list every changed question")
    cmp_.add_argument("--json", action="store_true", help="machine-readable output")
    cmp_.set_defaults(func=cmd_compare)

    table = sub.add_parser("table", help="one markdown table of the headline metrics of runs")
    table.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    table.add_argument(
        "--link-from", metavar="DIR", help="link run names to their reports, relative to DIR"
    )
    table.set_defaults(func=cmd_table)

    fu = sub.add_parser(
        "followups",
        help="are follow-up questions told apart from standalone ones, and rewritten right",
        description="Replay each conversation of a follow-up data set through the chat's "
        "rewriting and write report.md, metrics.json and results.jsonl to --out.",
    )
    fu.add_argument("turns", metavar="FOLLOWUPS_JSONL", help="e.g. eval/datasets/followups.jsonl")
    fu.add_argument("--out", default="eval/reports/followups", metavar="DIR", help="report folder")
    fu.add_argument(
        "--split", metavar="NAME", help="only this split's conversations (dev, heldout)"
    )
    fu.add_argument(
        "--llm-model-path",
        metavar="FILE",
        help="rewrite follow-ups with this GGUF model (default: key-term carry-over)",
    )
    fu.set_defaults(func=cmd_followups)

    tune = sub.add_parser(
        "tune",
        help="the scripts that fit what the package loads (refusal model, grounding "
        "threshold, rerank weights) and build development sets",
        description="rag eval tune NAME [ARGS...]: runs rag/eval/tuning/NAME.py with ARGS "
        "(NAME --help for its own options)",
    )
    tune.add_argument("name", choices=TUNING_SCRIPTS)
    tune.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS")
    tune.set_defaults(func=cmd_tune)


TUNING_SCRIPTS = (
    "calibrate_refusal",
    "calibrate_grounding",
    "tune_rerank",
    "make_nearmiss",
    "tradeoff",
    "train_answerability",
)


def cmd_tune(args: argparse.Namespace) -> int:
    """Run one tuning script as if called with its own arguments (it parses sys.argv)."""
    import importlib
    import sys

    module = importlib.import_module(f"rag.eval.tuning.{args.name}")
    saved = sys.argv
    sys.argv = [f"rag eval tune {args.name}", *args.script_args]
    try:
        return int(module.main() or 0)
    finally:
        sys.argv = saved
