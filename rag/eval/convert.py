"""Turn public QA data sets into the evaluation format: `questions.jsonl` + `corpus.jsonl` (+ `meta.json`).

One reader per source format lives in `rag.eval.sources` (CMRC 2018, SQuAD v1 / v2,
DRCD, CAIL2019, RGB zh_refine / zh_int / zh_fact, DuReader, any JSON lines with named
fields). A bad record is skipped with its reason, never fatal; `meta.json` beside the
data set counts what was left out and why, and the run's report shows it. `convert`
writes every file atomically, so a failed or interrupted run never leaves a
half-written data set behind. The formats are described in `eval/README.md`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.eval.sources.common import Skips, Source, bad
from rag.fileio import write_json, write_jsonl_atomic

KINDS = ("cmrc", "squad", "squad2", "drcd", "cail", "rgb", "dureader", "jsonl")
META = "meta.json"


@dataclass(frozen=True)
class ConvertStats:
    """What `convert` wrote."""

    questions: int
    answerable: int
    unanswerable: int
    corpus_records: int
    out_dir: Path
    skipped: tuple[tuple[str, int], ...] = ()  # (reason, count) of records left out
    flagged: tuple[tuple[str, int], ...] = ()  # (reason, count) of records kept despite it


def _read(
    kind: str, path: Path, limit: int | None, refusal_fraction: float, seed: int, fields: Any
) -> Source:
    if kind == "cmrc":
        from rag.eval.sources.squad import read_cmrc

        return read_cmrc(path)
    if kind in ("squad", "squad2", "drcd", "cail"):
        from rag.eval.sources.squad import read_squad

        return read_squad(path, kind)
    if kind == "rgb":
        from rag.eval.sources.rgb import read_rgb

        return read_rgb(path, refusal_fraction, seed, limit)
    if kind == "dureader":
        from rag.eval.sources.dureader import read_dureader

        return read_dureader(path)
    from rag.eval.sources.jsonl import Fields, read_jsonl

    return read_jsonl(path, fields or Fields())


def _drop_repeated_ids(questions: list[dict], skips: Skips) -> list[dict]:
    seen: set[str] = set()
    out = []
    for q in questions:
        if q["id"] in seen:
            skips.add("question id occurs twice", f"question {q['id']}")
            continue
        seen.add(q["id"])
        out.append(q)
    return out


def convert(
    kind: str,
    input_path: Path,
    out_dir: Path,
    *,
    limit: int | None = None,
    refusal_fraction: float = 0.0,
    seed: int = 0,
    fields: Any = None,
) -> ConvertStats:
    """Convert `input_path` (format `kind`, one of `KINDS`) into `out_dir`.

    Writes `out_dir/questions.jsonl`, `out_dir/corpus.jsonl` and `out_dir/meta.json`
    (source, counts, and every skipped record's reason). `limit` keeps the first N
    questions (the corpus stays whole; `rag eval run --limit` is the one that builds a
    small corpus). `refusal_fraction` and `seed` apply to `rgb` only; `fields`
    (a `rag.eval.sources.jsonl.Fields`) to `jsonl` only. Raises ConfigError for a
    missing file, a file of another format, or one without a single usable question.
    """
    input_path, out_dir = Path(input_path), Path(out_dir)
    if kind not in KINDS:
        raise ConfigError(f"unknown data set kind {kind!r}; choose one of {', '.join(KINDS)}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    if not 0.0 <= refusal_fraction <= 1.0:
        raise ConfigError(f"--refusal-fraction must be between 0 and 1, got {refusal_fraction}")
    if refusal_fraction and kind != "rgb":
        raise ConfigError(f"--refusal-fraction works with --from rgb only, not {kind}")

    src = _read(kind, input_path, limit, refusal_fraction, seed, fields)
    questions = _drop_repeated_ids(src.questions, src.skips)[:limit]
    if not questions:
        why = f" ({src.skips.total} skipped: {src.skips.first()})" if src.skips.total else ""
        raise bad(input_path, kind, f"no usable question{why}")

    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out_dir / "corpus.jsonl", src.corpus)
    write_jsonl_atomic(out_dir / "questions.jsonl", questions)
    answerable = sum(1 for q in questions if q["answerable"])
    skipped = tuple(sorted(src.skips.counts.items()))
    write_json(
        out_dir / META,
        {
            "source": str(input_path),
            "kind": kind,
            "limit": limit,
            "refusal_fraction": refusal_fraction or None,
            "seed": seed if refusal_fraction else None,
            "questions": len(questions),
            "answerable": answerable,
            "corpus_records": len(src.corpus),
            "skipped": dict(skipped),
            "skipped_total": src.skips.total,
            "skipped_examples": src.skips.examples,
            "flagged": src.skips.flagged,
            "flagged_examples": src.skips.flagged_examples,
        },
    )
    return ConvertStats(
        questions=len(questions),
        answerable=answerable,
        unanswerable=len(questions) - answerable,
        corpus_records=len(src.corpus),
        out_dir=out_dir,
        skipped=skipped,
        flagged=tuple(sorted(src.skips.flagged.items())),
    )


# ---------------------------------------------------------------- CLI helpers


def add_convert_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of `rag eval convert --from KIND INPUT --out DIR ...`."""
    parser.add_argument("--from", dest="kind", required=True, choices=KINDS, help="input format")
    parser.add_argument("input", metavar="INPUT", type=Path, help="the data set file")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument(
        "--refusal-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="rgb only: share of questions turned into refusal questions (default 0)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="seed (default 0)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="first N questions")
    g = parser.add_argument_group("--from jsonl: which field holds what (dotted paths allowed)")
    g.add_argument("--question-field", default="question", metavar="F")
    g.add_argument("--answer-field", default="answer", metavar="F", help="text or list of texts")
    g.add_argument("--context-field", default="context", metavar="F", help="passage(s)")
    g.add_argument("--id-field", default=None, metavar="F", help="default: q<record number>")
    g.add_argument("--title-field", default=None, metavar="F")


def run_convert(args: argparse.Namespace) -> ConvertStats:
    """Run a conversion from parsed `add_convert_args` arguments and print a summary line."""
    from rag.eval.sources.jsonl import Fields

    fields = Fields(
        question=args.question_field,
        answer=args.answer_field,
        context=args.context_field,
        id=args.id_field,
        title=args.title_field,
    )
    stats = convert(
        args.kind,
        args.input,
        args.out,
        limit=args.limit,
        refusal_fraction=args.refusal_fraction,
        seed=args.seed,
        fields=fields,
    )
    print(
        f"{stats.out_dir}: {stats.questions} questions ({stats.answerable} answerable, "
        f"{stats.unanswerable} unanswerable), {stats.corpus_records} corpus records"
        + "".join(f"; left out {n} ({why})" for why, n in stats.skipped)
        + "".join(f"; flagged {n} ({why})" for why, n in stats.flagged)
    )
    if stats.skipped or stats.flagged:
        print(f"  the skipped records and why: {stats.out_dir / META}")
    return stats
