"""Turn public QA data sets into the evaluation format: `questions.jsonl` + `corpus.jsonl`.

One converter per source format (CMRC 2018, SQuAD v1 / v2, RGB). Every converter
produces plain records; `convert` writes them atomically, so a failed or interrupted
run never leaves a half-written data set behind. The formats are described in
`eval/README.md`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.eval.metrics import normalize_answer
from rag.fileio import write_jsonl_atomic

KINDS = ("cmrc", "squad", "squad2", "rgb")

_EXPECTED = {
    "cmrc": "CMRC 2018 JSON: a list of {context_id, title, context_text, qas: [{query_id, "
    "query_text, answers}]}",
    "squad": "SQuAD v1 JSON: {data: [{title, paragraphs: [{context, qas: [{id, question, "
    "answers: [{text, answer_start}]}]}]}]}",
    "squad2": "SQuAD v2 JSON: {data: [{title, paragraphs: [{context, qas: [{id, question, "
    "answers, is_impossible}]}]}]}",
    "rgb": "RGB JSON lines: one {id, query, answer, positive, negative} object per line",
}


@dataclass(frozen=True)
class ConvertStats:
    """What `convert` wrote."""

    questions: int
    answerable: int
    unanswerable: int
    corpus_records: int
    out_dir: Path
    skipped: tuple[tuple[str, int], ...] = ()  # (reason, count) of records left out


Record = dict[str, Any]


# ---------------------------------------------------------------- reading


def _bad(path: Path, kind: str, reason: str) -> ConfigError:
    guess = _guess_kind(path)
    hint = f"; it looks like --from {guess}" if guess and guess != kind else ""
    return ConfigError(f"{path}: {reason} (expected {_EXPECTED[kind]}{hint})")


def _guess_kind(path: Path) -> str | None:
    """Best guess of a file's format, only to suggest the right --from in an error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    except json.JSONDecodeError:
        try:
            with path.open(encoding="utf-8") as f:
                first = json.loads(f.readline())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return "rgb" if isinstance(first, dict) and "query" in first else None
    if isinstance(data, list) and data and isinstance(data[0], dict) and "context_id" in data[0]:
        return "cmrc"
    if isinstance(data, dict) and "query" in data and "positive" in data:
        return "rgb"  # a one-line RGB file is also a valid JSON document
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return "squad"
    return None


def _load_json(path: Path, kind: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected {_EXPECTED[kind]})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise _bad(path, kind, f"not UTF-8 text ({e.reason})") from e
    except json.JSONDecodeError as e:
        raise _bad(path, kind, f"not a single JSON document ({e.msg} at line {e.lineno})") from e


def _structure_error(e: KeyError | TypeError) -> str:
    return f"missing field {e}" if isinstance(e, KeyError) else f"unexpected structure ({e})"


_BARE_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _clean_answers(raw: Iterable[Any], context: str) -> list[str]:
    """Answer strings, stripped and deduplicated in order.

    CMRC's dev file carries spreadsheet artefacts among its human answers (39764.0 for
    "2008年11月12日", 147.0 for "147位"); a bare number that does not occur in the
    paragraph is one, and is dropped unless nothing else is left.
    """
    answers = list(dict.fromkeys(s for a in raw if (s := str(a).strip())))
    kept = [a for a in answers if not (_BARE_NUMBER.fullmatch(a) and a not in context)]
    return kept or answers


# ---------------------------------------------------------------- converters


def _from_cmrc(path: Path) -> tuple[list[Record], list[Record]]:
    data = _load_json(path, "cmrc")
    if not (isinstance(data, list) and data and all(isinstance(p, dict) for p in data)):
        raise _bad(path, "cmrc", "not a list of paragraph objects")
    corpus: list[Record] = []
    questions: list[Record] = []
    for n, para in enumerate(data):
        try:
            pid, text, qas = str(para["context_id"]), para["context_text"], para["qas"]
            corpus.append({"id": pid, "title": para.get("title", ""), "text": text})
            for qa in qas:
                questions.append(
                    {
                        "id": str(qa["query_id"]),
                        "question": str(qa["query_text"]).strip(),
                        "answers": _clean_answers(qa["answers"], text),
                        "answerable": True,
                        "gold_doc_ids": [pid],
                    }
                )
        except (KeyError, TypeError) as e:
            raise _bad(path, "cmrc", f"paragraph {n}: {_structure_error(e)}") from e
    return questions, corpus


def _from_squad(path: Path, kind: str) -> tuple[list[Record], list[Record], dict[str, int]]:
    data = _load_json(path, kind)
    if not (isinstance(data, dict) and isinstance(data.get("data"), list)):
        raise _bad(path, kind, 'no top-level "data" list')
    corpus: list[Record] = []
    questions: list[Record] = []
    seen: set[str] = set()
    skipped: dict[str, int] = {}  # records left out, by reason
    for ai, article in enumerate(data["data"]):
        try:
            for pi, para in enumerate(article["paragraphs"]):
                pid = str(para.get("id") or f"{ai}-{pi}")
                if pid in seen:
                    raise _bad(path, kind, f"paragraph id {pid!r} occurs twice")
                seen.add(pid)
                text = para["context"]
                corpus.append({"id": pid, "title": article.get("title", ""), "text": text})
                for qi, qa in enumerate(para["qas"]):
                    if _yes_no(qa):
                        skipped["yes/no"] = skipped.get("yes/no", 0) + 1
                        continue
                    questions.append(_squad_question(path, kind, qa, pid, qi, text))
        except (KeyError, TypeError) as e:
            raise _bad(path, kind, f"article {ai}: {_structure_error(e)}") from e
    return questions, corpus, skipped


# YES/NO judgements (CAIL2019 writes them as is_impossible with the text "YES" or "NO"):
# the answerers quote passages and do not judge, so these are left out, and counted
YES_NO = frozenset({"YES", "NO"})


def _impossible(value: Any) -> bool:
    """SQuAD v2's is_impossible: a boolean, or (CAIL2019) the string "true"/"false"."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _yes_no(qa: Record) -> bool:
    texts = {str(a.get("text", "")).strip().upper() for a in qa.get("answers") or () if isinstance(a, dict)}
    return bool(texts) and texts <= YES_NO


def _squad_question(path: Path, kind: str, qa: Record, pid: str, qi: int, text: str) -> Record:
    impossible = _impossible(qa.get("is_impossible", False))
    if impossible and kind == "squad":
        raise _bad(path, kind, f"question {qa.get('id')!r} is marked is_impossible")
    answers = [] if impossible else _clean_answers((a["text"] for a in qa["answers"]), text)
    return {
        "id": str(qa.get("id") or f"{pid}-q{qi}"),
        "question": str(qa["question"]).strip(),
        "answers": answers,
        "answerable": not impossible,
        "gold_doc_ids": [] if impossible else [pid],
    }


def _rgb_id(text: str) -> str:
    return "rgb-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _read_rgb_lines(path: Path) -> Iterator[tuple[int, Record]]:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected {_EXPECTED['rgb']})")
    try:
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise _bad(path, "rgb", f"line {lineno} is not a JSON object ({e.msg})") from e
                if not isinstance(rec, dict):
                    raise _bad(path, "rgb", f"line {lineno} is not a JSON object")
                missing = [
                    k for k in ("id", "query", "answer", "positive", "negative") if k not in rec
                ]
                if missing:
                    raise _bad(path, "rgb", f"line {lineno} lacks {', '.join(missing)}")
                yield lineno, rec
    except UnicodeDecodeError as e:
        raise _bad(path, "rgb", f"not UTF-8 text ({e.reason})") from e


def _from_rgb(
    path: Path, limit: int | None, refusal_fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """RGB: the corpus is every positive and negative passage, deduplicated by text.

    With `refusal_fraction` > 0, that share of the questions become refusal questions:
    their positives and every passage containing any synonym of any of their answer
    items leave the corpus. See `_pick_refusals` for how they are chosen.
    """
    raw = list(_read_rgb_lines(path))
    if not raw:
        raise _bad(path, "rgb", "no records")
    texts: dict[str, str] = {}  # text -> id, in order of first appearance
    for _, rec in raw:
        for t in [*rec["positive"], *rec["negative"]]:
            texts.setdefault(t, _rgb_id(t))
    if len(set(texts.values())) != len(texts):
        raise _bad(path, "rgb", "two different passages share a 12-digit content hash")

    questions: list[Record] = []
    for lineno, rec in raw[:limit]:
        items = [
            [str(s) for s in it] if isinstance(it, list) else [str(it)] for it in rec["answer"]
        ]
        if not items or not all(items):
            raise _bad(path, "rgb", f"line {lineno} has an empty answer")
        questions.append(
            {
                "id": str(rec["id"]),
                "question": str(rec["query"]).strip(),
                "answers": [it[0] for it in items],
                "answer_items": items,
                "answerable": True,
                "gold_doc_ids": list(dict.fromkeys(texts[t] for t in rec["positive"])),
            }
        )

    removed: set[str] = set()
    if refusal_fraction > 0:
        chosen, removed = _pick_refusals(questions, texts, refusal_fraction, seed)
        for i in chosen:
            q = questions[i]
            q["original_answers"] = q.pop("answers")
            q["original_answer_items"] = q.pop("answer_items")
            q["original_gold_doc_ids"] = q["gold_doc_ids"]
            q.update(answers=[], answerable=False, gold_doc_ids=[], type="refusal")
        for q in questions:
            q["gold_doc_ids"] = [d for d in q["gold_doc_ids"] if d not in removed]

    corpus = [{"id": i, "title": "", "text": t} for t, i in texts.items() if i not in removed]
    return questions, corpus


def _pick_refusals(
    questions: list[Record], texts: dict[str, str], fraction: float, seed: int
) -> tuple[list[int], set[str]]:
    """Choose the refusal questions and the passages to remove with them.

    Candidates are visited in a seeded random order. A candidate is taken unless its
    removal would leave some other, still answerable question without any positive
    passage: short answers ("中国", "10") occur in thousands of passages, and taking
    such a question would empty the corpus for a third of the others. A candidate
    passed over is tried again once others have been taken (their questions no
    longer need their positives), until enough are taken or none can be.
    """
    want = max(1, round(fraction * len(questions)))
    norm_texts = [(tid, normalize_answer(t)) for t, tid in texts.items()]
    gold = [set(q["gold_doc_ids"]) for q in questions]

    def removal(i: int) -> set[str]:
        synonyms = [s for item in questions[i]["answer_items"] for s in map(normalize_answer, item)]
        return gold[i] | {tid for tid, nt in norm_texts if any(s and s in nt for s in synonyms)}

    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    removals: dict[int, set[str]] = {}
    chosen: set[int] = set()
    removed: set[str] = set()
    progress = True
    while progress and len(chosen) < want:
        progress = False
        for i in order:
            if len(chosen) == want:
                break
            if i in chosen:
                continue
            trial = removed | removals.setdefault(i, removal(i))
            others = (j for j in range(len(questions)) if j != i and j not in chosen and gold[j])
            if all(gold[j] - trial for j in others):
                chosen.add(i)
                removed = trial
                progress = True
    if len(chosen) < want:
        raise ConfigError(
            f"--refusal-fraction {fraction}: only {len(chosen)} of {want} questions can become "
            "refusal questions without removing every positive passage of another question; "
            "use a smaller fraction"
        )
    return sorted(chosen), removed


# ---------------------------------------------------------------- writing


def convert(
    kind: str,
    input_path: Path,
    out_dir: Path,
    *,
    limit: int | None = None,
    refusal_fraction: float = 0.0,
    seed: int = 0,
) -> ConvertStats:
    """Convert `input_path` (format `kind`, one of `KINDS`) into `out_dir`.

    Writes `out_dir/questions.jsonl` and `out_dir/corpus.jsonl`. `limit` keeps the
    first N questions (the corpus stays whole, so retrieval is as hard as on the full
    set). `refusal_fraction` and `seed` apply to `rgb` only. Raises ConfigError for a
    missing or malformed input, naming the file and the format expected.
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

    skipped: dict[str, int] = {}
    if kind == "cmrc":
        questions, corpus = _from_cmrc(input_path)
    elif kind in ("squad", "squad2"):
        questions, corpus, skipped = _from_squad(input_path, kind)
    else:
        questions, corpus = _from_rgb(input_path, limit, refusal_fraction, seed)
    questions = questions[:limit]

    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out_dir / "corpus.jsonl", corpus)
    write_jsonl_atomic(out_dir / "questions.jsonl", questions)
    answerable = sum(1 for q in questions if q["answerable"])
    return ConvertStats(
        questions=len(questions),
        answerable=answerable,
        unanswerable=len(questions) - answerable,
        corpus_records=len(corpus),
        out_dir=out_dir,
        skipped=tuple(sorted(skipped.items())),
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


def run_convert(args: argparse.Namespace) -> ConvertStats:
    """Run a conversion from parsed `add_convert_args` arguments and print a summary line."""
    stats = convert(
        args.kind,
        args.input,
        args.out,
        limit=args.limit,
        refusal_fraction=args.refusal_fraction,
        seed=args.seed,
    )
    print(
        f"{stats.out_dir}: {stats.questions} questions ({stats.answerable} answerable, "
        f"{stats.unanswerable} unanswerable), {stats.corpus_records} corpus records"
        + "".join(f"; left out {n} ({why})" for why, n in stats.skipped)
    )
    return stats
