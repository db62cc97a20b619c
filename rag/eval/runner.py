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
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import ConfigError
from rag.eval.index_cache import IndexInfo, corpus_fingerprint, ensure_index, file_sha256
from rag.eval.provenance import _git, _shown, _versions, code_hash, comparable, differences
from rag.eval.questions import Question, load_questions, questions_file, resolve_corpus
from rag.eval.rows import KS, RETRIEVAL_DEPTH, _dump, by_type, make_row, read_rows, summarize
from rag.eval.sample import DEFAULT_DISTRACTORS, SAMPLE_FILE, small_corpus
from rag.fileio import write_atomic, write_json

RESULTS, METRICS, CONFIG = "results.jsonl", "metrics.json", "config.json"


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


def conversion_meta(qfile: Path) -> dict[str, Any] | None:
    """What `rag eval convert` left out of this data set (its `meta.json`), if it says."""
    try:
        meta = json.loads((qfile.parent / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    keys = ("source", "kind", "skipped", "skipped_total", "skipped_examples", "flagged")
    return {k: meta.get(k) for k in keys}


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
    distractors: int | None = DEFAULT_DISTRACTORS,
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
    configuration there is refused unless `overwrite`. With `limit` over a JSONL corpus,
    only the asked questions' own documents plus `distractors` others are indexed
    (`rag.eval.sample`; None indexes the whole corpus). A malformed question line is
    skipped and listed in the report, not fatal. Raises ConfigError for bad input.
    """
    from rag.system import load_system, make_embedder

    t_start = time.perf_counter()
    settings = settings or Settings.load()
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if distractors is not None and distractors < 0:
        raise ConfigError(f"--distractors must be 0 or more (or all), got {distractors}")
    qfile = questions_file(questions)
    bad_questions: list[dict[str, str]] = []
    all_questions = load_questions(qfile, bad_questions)
    for b in bad_questions[:3]:
        log(f"warning: skipped {b['where']}: {b['reason']}")
    if len(bad_questions) > 3:
        log(f"warning: skipped {len(bad_questions)} question lines in all (see report.md)")
    selected = all_questions[:limit]
    corpus_path = resolve_corpus(questions, corpus)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample = None
    if (
        limit is not None
        and distractors is not None
        and len(selected) < len(all_questions)
        and corpus_path.is_file()
        and corpus_path.suffix == ".jsonl"
    ):
        sample = small_corpus(corpus_path, selected, distractors, out / SAMPLE_FILE)
        log(
            f"--limit {limit}: indexing {sample.own} documents of the asked questions "
            f"+ {sample.distractors} distractors of {sample.total} ({sample.path})"
        )
        corpus_source, corpus_path = corpus_path, sample.path

    embedder = embedder or make_embedder(settings)
    q_hash = file_sha256(qfile)
    c_hash = sample.sha256 if sample is not None else corpus_fingerprint(corpus_path)
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
            "skipped_questions": bad_questions,
            "conversion": conversion_meta(qfile),
        },
        "corpus_sample": None
        if sample is None
        else {**sample.to_json(), "source": _shown(corpus_source), "path": _shown(sample.path)},
        "models": {
            "embed": embedder.model_id,
            "embed_backend": getattr(embedder, "backend_id", None),
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
            "distractors": distractors if sample is not None else None,
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
            sampled = sample is not None or old.get("corpus_sample")
            if sampled and any(d.startswith("dataset:") for d in diffs):
                why += (
                    "; --limit indexes the asked questions' own documents, so another "
                    "--limit is another corpus (--distractors all indexes the whole one)"
                )
            raise ConfigError(
                f"{old_config_path}: {out} holds a run with another configuration "
                f"({why}); use another --out or --overwrite"
            )

    if sample is not None:
        sample.write()  # only now: a refused run must not touch the folder's files
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
    from rag.eval.report_html import write_html

    write_report(out, rows, metrics, config, plots=plots)
    write_html(out, rows, metrics, config)
    return RunSummary(out, len(selected), asked, resumed, metrics, index, seconds)
