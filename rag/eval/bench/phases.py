"""Our system's benchmark phases, each meant to run in a child process of its own.

`python -m rag.eval.bench.phases PHASE PARAMS.json OUT.json` runs one phase and writes its
figures as JSON. A child of its own gives every phase its own peak memory and, for
`startup`, a real process start.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rag.eval.bench import measure


@contextlib.contextmanager
def profiled(path: str | None, interval: float = 0.005) -> Iterator[None]:
    """Sample the block with pyinstrument into a text report at `path` (if given)."""
    if not path:
        yield
        return
    try:
        from pyinstrument import Profiler
    except ImportError:
        Path(path).write_text("pyinstrument is not installed: pip install pyinstrument\n")
        yield
        return
    prof = Profiler(interval=interval)
    prof.start()
    try:
        yield
    finally:
        prof.stop()
        Path(path).write_text(prof.output_text(unicode=True, color=False, show_all=False))


def _settings(index_dir: str, **kw: Any):
    from rag.config import Settings

    return Settings().replace(index_dir=index_dir, **kw)


def _quiet(_: str) -> None:
    return None


@contextlib.contextmanager
def counting_segmentation() -> Iterator[list[int]]:
    """Count the texts the BM25 segmenters segment inside the block (opening an index
    must segment none; loading a segmenter's dictionary is not segmenting)."""
    import rag.index.segment as b

    calls: list[int] = []
    saved = [(cls, cls.tokens, cls.iter_tokens) for cls in (b._Jieba, b._RJieba)]
    for cls, tokens, iter_tokens in saved:

        def t(self, text, _f=tokens):
            calls.append(1)
            return _f(self, text)

        def it(self, text, _f=iter_tokens):
            calls.append(1)
            return _f(self, text)

        cls.tokens, cls.iter_tokens = t, it
    try:
        yield calls
    finally:
        for cls, tokens, iter_tokens in saved:
            cls.tokens, cls.iter_tokens = tokens, iter_tokens


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process and of its waited-for children (ingest's workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


# ------------------------------------------------------------------ machine
def phase_machine(p: dict) -> dict:
    return {"machine": measure.machine(), "matmul": measure.matmul_peak(p.get("n", 2048))}


# ------------------------------------------------------------------ real embedding
def _counting_embedder(settings):
    """The real embedder, recording what it embeds and how long that takes."""
    from rag.embed.embedder import Embedder

    class CountingEmbedder(Embedder):
        def __init__(self, *a: Any, **kw: Any):
            super().__init__(*a, **kw)
            self.seen: list[str] = []
            self.seconds = 0.0
            self.cpu_seconds = 0.0  # all threads

        def embed_passages(self, texts, show_progress=False):
            texts = list(texts)
            t, c = time.perf_counter(), time.process_time()
            out = super().embed_passages(texts, show_progress)
            self.seconds += time.perf_counter() - t
            self.cpu_seconds += time.process_time() - c
            self.seen.extend(texts)
            return out

    return CountingEmbedder.from_settings(settings)


def token_stats(emb, texts: list[str], batch_size: int, call_size: int | None = None) -> dict:
    """Model tokens of what `emb` embedded (after its prefix and truncation) and FLOPs.

    `call_size`: texts per `embed_passages` call (None: all in one call); each call is
    sorted by length and padded per batch, as sentence-transformers does.
    """
    st = emb._model()
    limit = int(st.max_seq_length or 512)
    raw = [len(ids) for ids in st.tokenizer([emb.passage_prefix + t for t in texts])["input_ids"]]
    lens = [min(n, limit) for n in raw]
    total = sum(lens)
    padded = 0
    call = call_size or max(len(lens), 1)
    for c in range(0, len(lens), call):
        srt = sorted(lens[c : c + call], reverse=True)
        padded += sum(srt[i] * len(srt[i : i + batch_size]) for i in range(0, len(srt), batch_size))
    sq = sum(n * n for n in lens)
    fl = measure.encoder_flops_per_token(Path(emb.model_path), sq / max(total, 1))
    return {
        "texts": len(texts), "tokens": total, "padded_tokens": padded, "max_seq_length": limit,
        "truncated_texts": sum(n > limit for n in raw), "flops_per_token": fl,
    }  # fmt: skip


def _time_queries(emb, queries: list[str]) -> list[float]:
    out = []
    for q in queries:
        t = time.perf_counter()
        emb.embed_query(q)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def phase_embed(p: dict) -> dict:
    """Ingest a small corpus with the real model: embedding throughput, query embedding."""
    from rag.index.build import ingest

    shutil.rmtree(p["index_dir"], ignore_errors=True)
    settings = _settings(p["index_dir"])
    emb = _counting_embedder(settings)
    t = time.perf_counter()
    emb.embed_query("预热")  # load the model outside the timed ingest
    load_s = time.perf_counter() - t
    cpu0 = time.process_time()
    report = ingest([p["corpus"]], settings, embedder=emb, rebuild=True, log=_quiet, progress=False)
    cpu = time.process_time() - cpu0
    toks = token_stats(emb, emb.seen, settings.embed_batch_size)
    q_ms = _time_queries(emb, p["queries"])
    threads = emb.query_threads_now()
    # One short query gains little from a second thread, and on a busy machine the
    # threads wait for each other: measure one thread and all cores as well.
    fixed = {}
    for n in (1, os.cpu_count() or 1):
        emb.query_threads = n
        emb._query_cache.clear()
        fixed[n] = _time_queries(emb, p["queries"])
    emb.query_threads = settings.embed_query_threads
    n_docs = report.total_docs
    return {
        "model": emb.model_id,
        "model_load_s": round(load_s, 3),
        "batch_size": settings.embed_batch_size,
        "docs": n_docs,
        "chunks": report.embedded_chunks,
        "ingest_s": round(report.seconds, 3),
        "embed_s": round(emb.seconds, 3),
        "docs_per_s": round(n_docs / report.seconds, 3),
        "chunks_per_s": round(report.embedded_chunks / report.seconds, 3),
        "embed_tokens_per_s": round(toks["tokens"] / emb.seconds, 1),
        "embed_padded_tokens_per_s": round(toks["padded_tokens"] / emb.seconds, 1),
        "ingest_cpu_s": round(cpu, 3),
        "embed_cpu_s": round(emb.cpu_seconds, 3),
        "embed_tokens_per_cpu_s": round(toks["tokens"] / max(emb.cpu_seconds, 1e-9), 1),
        "tokens": toks,
        "query_embed_ms": measure.summary(q_ms),
        "query_embed_threads": threads,
        "query_encoder": emb.backend_id,
        "query_embed_1_thread_ms": measure.summary(fixed[1]),
        "query_embed_all_threads_ms": measure.summary(fixed[os.cpu_count() or 1]),
        "peak_rss": measure.peak_rss(),
    }


# ------------------------------------------------------------------ ingestion (stand-in vectors)
def phase_ingest(p: dict) -> dict:
    """Build a fresh index of the corpus with stand-in vectors; time everything else."""
    from rag.eval.bench.surrogate import SurrogateEmbedder
    from rag.index.build import ingest
    from rag.index.versions import current_version

    shutil.rmtree(p["index_dir"], ignore_errors=True)
    settings = _settings(p["index_dir"], **p.get("settings", {}))
    emb = SurrogateEmbedder(p.get("kind", "hash"))
    rss0 = measure.rss()
    cpu0, kids0 = _cpu()
    with profiled(p.get("profile")):
        report = ingest(
            [p["corpus"]], settings, embedder=emb, rebuild=True, log=_quiet, progress=False
        )
    cpu1, kids1 = _cpu()
    cpu, kids = cpu1 - cpu0, kids1 - kids0
    failed = [r for r in report.results if r.status == "failed"]
    folder = current_version(Path(p["index_dir"]))
    files = measure.folder_bytes(folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    rest = report.seconds - report.embed_seconds
    text_s = rest - report.vector_seconds
    out = {
        "docs": report.total_docs,
        "chunks": report.total_chunks,
        "tokenizer": manifest.get("tokenizer", {}).get("name", "jieba"),
        "ingest_workers": report.workers,
        "failed": len(failed),
        "failed_examples": [f"{r.source}: {r.reason}" for r in failed[:3]],
        "ingest_s": round(report.seconds, 3),
        "surrogate_embed_s": round(report.embed_seconds, 3),
        "no_embed_s": round(rest, 3),
        "docs_per_s": round(report.total_docs / rest, 2),
        "chunks_per_s": round(report.total_chunks / rest, 2),
        # the row "load, clean, chunk, BM25": without building the vector index
        "vector_index_s": round(report.vector_seconds, 3),
        "text_s": round(text_s, 3),
        "text_docs_per_s": round(report.total_docs / max(text_s, 1e-9), 2),
        # CPU seconds of this process and of its loading and segmenting workers (all
        # cores): on a machine shared with others, what the work costs whatever its share
        # of the CPU; per article without embedding (text_: nor the vector index)
        "cpu_s": round(cpu, 3),
        "workers_cpu_s": round(kids, 3),
        "embed_cpu_s": round(report.embed_cpu_seconds, 3),
        "vector_index_cpu_s": round(report.vector_cpu_seconds, 3),
        "docs_per_cpu_s": round(
            report.total_docs / max(cpu + kids - report.embed_cpu_seconds, 1e-9), 2
        ),
        "text_docs_per_cpu_s": round(
            report.total_docs
            / max(cpu + kids - report.embed_cpu_seconds - report.vector_cpu_seconds, 1e-9),
            2,
        ),
        "vector_index": manifest["vector_index"],
        "disk_bytes": files,
        "disk_bytes_per_chunk": round(sum(files.values()) / max(report.total_chunks, 1), 1),
        "disk_bytes_per_chunk_without_texts": round(
            sum(v for k, v in files.items() if k != "texts.jsonl") / max(report.total_chunks, 1), 1
        ),
        "rss_before": rss0,
        "peak_rss": measure.peak_rss(),
    }
    out["clean"] = _clean_rate(p["corpus"], p.get("clean_docs", 2000))
    return out


def _clean_rate(corpus: str, n: int) -> dict:
    """Cleaning speed on the corpus's articles (ingest skips cleaning for .jsonl records)."""
    from rag.ingest.clean import clean_text

    texts = []
    for shard in sorted(Path(corpus).glob("*.jsonl")):
        with open(shard, encoding="utf-8") as f:
            for line in f:
                texts.append(json.loads(line)["text"])
                if len(texts) >= n:
                    break
        if len(texts) >= n:
            break
    t = time.perf_counter()
    for x in texts:
        clean_text(x)
    s = time.perf_counter() - t
    return {
        "docs": len(texts),
        "seconds": round(s, 3),
        "docs_per_s": round(len(texts) / max(s, 1e-9), 1),
    }


# ------------------------------------------------------------------ serving
COMPONENTS = (
    "embed_ms",
    "dense_ms",
    "bm25_ms",
    "fuse_ms",
    "retrieve_ms",
    "generate_ms",
    "total_ms",
)


def phase_serve(p: dict) -> dict:
    """Warm query latency by component, memory of the loaded index, what opening reads."""
    from rag.embed.embedder import Embedder
    from rag.eval.bench.surrogate import SurrogateEmbedder
    from rag.system import load_system

    settings = _settings(p["index_dir"], **p.get("settings", {}))
    real = Embedder.from_settings(settings)
    real.embed_query("预热")
    emb = SurrogateEmbedder(p.get("kind", "hash"), real_query=real)
    import rag.index.hybrid  # noqa: F401  (llama-index and the rest: memory of code, not of the index)
    import rag.llm.answerer  # noqa: F401
    import rag.search.retriever  # noqa: F401

    rss_model = measure.rss()
    read0 = measure.bytes_read()
    t = time.perf_counter()
    with counting_segmentation() as segmented:
        system = load_system(settings, embedder=emb)
    open_s = time.perf_counter() - t
    read_open = measure.bytes_read() - read0
    segmented_on_open = bool(segmented)
    idx = system.index
    t = time.perf_counter()
    idx.bm25.weights  # noqa: B018  (read at open, or built on the first query; timed here)
    idx.bm25.df  # noqa: B018
    weights_s = time.perf_counter() - t
    rss_index = measure.rss()
    files = measure.folder_bytes(idx.folder)

    for q in p["warmup"]:
        system.ask(q)
    emb.query_ms.clear()
    measure.reset_peak_rss()
    per: dict[str, list[float]] = {c: [] for c in COMPONENTS}
    cpu_ms: list[float] = []
    refused = 0
    with profiled(p.get("profile")):
        for q in p["queries"]:
            c = time.process_time()
            ans = system.ask(q)
            cpu_ms.append((time.process_time() - c) * 1e3)
            refused += ans.refused
            for c in COMPONENTS:
                per[c].append(ans.timings_ms.get(c, 0.0))
    n = len(idx)
    return {
        "docs": len(idx.docs),
        "chunks": n,
        "vector_index": idx.manifest["vector_index"],
        "queries": len(p["queries"]),
        "refused": refused,
        "latency_ms": {c.removesuffix("_ms"): measure.summary(v) for c, v in per.items()},
        "real_query_embed_ms": measure.summary(emb.query_ms),
        "cpu_ms": measure.summary(cpu_ms),  # all threads' CPU time per query
        "open_s": round(open_s, 3),
        "bm25_weights_s": round(weights_s, 3),
        "open_read_bytes": read_open,
        "index_bytes_without_texts": sum(v for k, v in files.items() if k != "texts.jsonl"),
        "texts_jsonl_bytes": files.get("texts.jsonl", 0),
        "segmented_on_open": segmented_on_open,
        "rss_model": rss_model,
        "rss_index": rss_index,
        "memory_bytes_per_chunk": round((rss_index - rss_model) / max(n, 1), 1),
        "peak_rss_serving": measure.peak_rss(),
    }


# ------------------------------------------------------------------ start-up
def phase_startup(p: dict) -> dict:
    """From process start (`spawned`, wall clock, set by the parent) to the first answer."""
    t_main = time.time()
    from rag.embed.embedder import Embedder
    from rag.eval.bench.surrogate import SurrogateEmbedder
    from rag.system import load_system

    t_import = time.time()
    settings = _settings(p["index_dir"], **p.get("settings", {}))
    emb = SurrogateEmbedder(p.get("kind", "hash"), real_query=Embedder.from_settings(settings))
    system = load_system(settings, embedder=emb)
    t_open = time.time()
    ans = system.ask(p["question"])
    t_answer = time.time()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "startup_s": round(t_answer - p["spawned"], 3),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
        "interpreter_s": round(t_main - p["spawned"], 3),
        "imports_s": round(t_import - t_main, 3),
        "open_s": round(t_open - t_import, 3),
        "first_answer_s": round(t_answer - t_open, 3),
        "first_answer_timings_ms": {k: round(v, 1) for k, v in ans.timings_ms.items()},
        "answered": not ans.refused,
    }


PHASES: dict[str, Callable[[dict], dict]] = {
    "machine": phase_machine,
    "embed": phase_embed,
    "ingest": phase_ingest,
    "serve": phase_serve,
    "startup": phase_startup,
}


def main(argv: list[str], phases: dict[str, Callable[[dict], dict]] = PHASES) -> int:
    name, params, out = argv
    p = json.loads(Path(params).read_text(encoding="utf-8"))
    if p.get("omp_wait_policy"):  # an experiment; must be set before torch is imported
        os.environ["OMP_WAIT_POLICY"] = p["omp_wait_policy"]
    # the parent's wall clock just before it started this process (for `startup`)
    p["spawned"] = float(os.environ.get("BENCH_SPAWNED", time.time()))
    load0 = measure.loadavg()
    t = time.perf_counter()
    res = phases[name](p)
    res["phase_s"] = round(time.perf_counter() - t, 3)
    res["loadavg"] = {"start": load0, "end": measure.loadavg()}
    Path(out).write_text(json.dumps(res, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
