"""`python -m rag.eval.bench store_scale`: query cost of FAISS and milvus-lite against
corpus size (10k, 100k, 1M chunks by default), with a plot.

The chunks, the queries and the three timed calls (dense top 50, BM25 top 50, dense
within a date filter) are those of `stores` (rag/eval/bench/stores.py); the stores are
asked alternately query by query. FAISS is exact below `--ann-min` chunks and HNSW from
there, as `Settings.ann_min_chunks` makes it. milvus-lite is loaded whole up to
`--milvus-max` chunks; above that only its first `--probe-rows` are written, to measure
its write rate and say how long loading the whole size would take (milvus-lite 3.x
writes about a hundred chunks a second here: a million would take hours). Writes
scale.json, scale.md and scale.png to --out.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rag.eval.bench import measure
from rag.eval.bench.stores import (
    DEPTH,
    _queries,
    calls,
    faiss_store,
    milvus_store,
    store_versions,
    synthetic,
    time_calls,
)

CALLS = ("dense", "bm25", "dense_filtered")
LABELS = {"faiss": "FAISS + BM25 files", "milvus": "milvus-lite"}


def measure_size(n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    t = time.perf_counter()
    data = synthetic(n)
    out: dict[str, Any] = {"n_chunks": n, "n_docs": len(data["docs"]),
                           "synthetic_s": round(time.perf_counter() - t, 1),
                           "load_start": measure.loadavg()}  # fmt: skip
    local, bm25, table, faiss_s = faiss_store(data, args.ann_min)
    out["faiss_index"] = "hnsw" if local.faiss.is_approximate else "flat"
    out["ann_min"] = args.ann_min
    out["faiss_build_s"] = round(faiss_s, 2)
    stores = {"faiss": local}
    db = str(work / f"scale-{n}.db")
    if n <= args.milvus_max:
        milvus, secs = milvus_store(data, bm25, table, db, args.ann_min)
        stores["milvus"] = milvus
        out.update(milvus_write_s=round(secs, 1), milvus_rows_per_s=round(n / secs, 1))
        n_queries = args.milvus_queries
    else:
        rows = min(args.probe_rows, n)
        probe, secs = milvus_store(data, bm25, table, db, args.ann_min, rows=rows)
        probe.client.drop_collection("rag_bench")  # frees milvus-lite's memory
        rate = rows / secs
        out["milvus_probe"] = {"rows": rows, "write_s": round(secs, 1),
                               "rows_per_s": round(rate, 1),
                               "load_estimate_s": round(n / rate)}  # fmt: skip
        n_queries = args.queries
    qv, toks, scope = _queries(n_queries + 5, data["docs"])
    del data["vecs"]  # FAISS keeps its own copy
    gc.collect()
    out["queries"] = n_queries
    out.update(time_calls(stores, calls(qv, toks, scope), n_queries))
    out["load_end"] = measure.loadavg()
    out["peak_rss_gib"] = round(measure.peak_rss() / 2**30, 2)
    if "milvus" in stores:
        stores["milvus"].client.drop_collection("rag_bench")
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    from rag.eval.report_plots import pyplot, quiet_fonts

    quiet_fonts()
    plt = pyplot()
    fig, axes = plt.subplots(1, len(CALLS), figsize=(12, 3.8), dpi=110, sharey=True)
    for ax, call in zip(axes, CALLS):
        for store, marker in (("faiss", "o"), ("milvus", "s")):
            pts = [(r["n_chunks"], r[call][store]) for r in results["sizes"] if store in r[call]]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ax.plot(xs, [p[1]["median"] for p in pts], marker=marker, label=f"{LABELS[store]} p50")
            ax.plot(xs, [p[1]["p95"] for p in pts], marker=marker, linestyle="--",
                    label=f"{LABELS[store]} p95")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("chunks in the corpus")
        ax.set_title(f"{call} (top {DEPTH})")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("ms per store call")
    axes[-1].legend(fontsize=7, loc="upper left")
    fig.suptitle("Query cost against corpus size (synthetic 384-dim chunks, 2 shared cores)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Query cost against corpus size: FAISS + BM25 files vs milvus-lite",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, shared with other "
        "sessions' work (load averages below); the stores were asked alternately, query "
        "by query, so the comparison is paired.  ",
        f"Versions: pymilvus {results['versions']['pymilvus']}, milvus-lite "
        f"{results['versions']['milvus_lite']}, faiss {results['versions']['faiss']}; commit "
        f"{str(results['git'].get('commit', '?'))[:10]}.",
        "",
        "Synthetic chunks as in `stores` (rag/eval/bench/stores.py): 384-dim unit vectors, "
        "Zipf term counts over 200k terms, 20 chunks a document; the FAISS index of each "
        "row is exact (flat) or HNSW (M=32, efSearch=128) as `--ann-min` chose. "
        f"Milliseconds per store call, top {DEPTH}. ![cost against size](scale.png)",
        "",
        "| chunks | FAISS index | call | queries | FAISS p50 | FAISS p95 | milvus-lite p50 | "
        "milvus-lite p95 | same top-10 | load (start→end) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["sizes"]:
        load = f"{r['load_start'][0]:.1f}→{r['load_end'][0]:.1f}"
        for call in CALLS:
            f, mv = r[call]["faiss"], r[call].get("milvus")
            milv = f"{mv['median']:.2f} | {mv['p95']:.2f}" if mv else "not loaded | "
            same = f"{r[call]['same_top10']:.0%}" if "same_top10" in r[call] else ""
            lines.append(
                f"| {r['n_chunks']:,} | {r['faiss_index']} | {call} | {r['queries']} | "
                f"{f['median']:.2f} | {f['p95']:.2f} | {milv} | {same} | {load} |"
            )
    lines += ["", "| chunks | FAISS build s | milvus-lite write | peak RSS GiB |",
              "|---:|---:|---|---:|"]  # fmt: skip
    for r in results["sizes"]:
        if "milvus_write_s" in r:
            w = f"{r['milvus_write_s']} s ({r['milvus_rows_per_s']:,} rows/s)"
        else:
            p = r["milvus_probe"]
            est = p["load_estimate_s"]
            est = f"{est / 3600:.1f} h" if est >= 3600 else f"{est / 60:.0f} min"
            w = (f"not loaded: first {p['rows']:,} rows in {p['write_s']} s ({p['rows_per_s']:,} "
                 f"rows/s), the whole size would take about {est}")  # fmt: skip
        lines.append(f"| {r['n_chunks']:,} | {r['faiss_build_s']} | {w} | {r['peak_rss_gib']} |")
    notes = Path(results["out"]) / "scale_notes.md"  # what a person read off the figures
    if notes.is_file():
        lines += ["", notes.read_text(encoding="utf-8").strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rag.eval.bench store_scale", description=__doc__.splitlines()[0])  # fmt: skip
    ap.add_argument("--sizes", default="10000,100000,1000000", help="chunk counts")
    ap.add_argument("--queries", type=int, default=200, help="queries where only FAISS runs")
    ap.add_argument("--milvus-queries", type=int, default=50, help="queries on both stores")
    ap.add_argument("--milvus-max", type=int, default=100_000, help="largest size loaded into milvus-lite")  # fmt: skip
    ap.add_argument("--probe-rows", type=int, default=10_000, help="rows written to time milvus-lite above it")  # fmt: skip
    ap.add_argument("--ann-min", type=int, default=200_000, help="as Settings.ann_min_chunks")
    ap.add_argument("--out", default="eval/reports/milvus", help="report folder")
    ap.add_argument("--work", default=None, help="where the .db files go (default: a temp dir)")
    ap.add_argument("--report-only", action="store_true", help="re-render from scale.json")
    ap.add_argument("--append", action="store_true", help="add these sizes to scale.json's")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scale.json"
    command = "python -m rag.eval.bench store_scale " + " ".join(sys.argv[1:] if argv is None else argv)  # fmt: skip
    kept = None
    if (args.report_only or args.append) and path.is_file():
        kept = json.loads(path.read_text(encoding="utf-8"))
    if args.report_only:
        results = kept
    else:
        if kept is not None:
            kept["command"] += f"`, then `{command}"
        results = kept or {
            "command": command,
            "out": str(out),
            "ann_min": args.ann_min,
            "machine": measure.machine(),
            "git": measure.git_state(),
            "versions": store_versions(),
            "sizes": [],
        }
        with tempfile.TemporaryDirectory(dir=args.work) as work:
            for n in (int(x) for x in args.sizes.split(",")):
                print(f"store_scale: {n:,} chunks ...", file=sys.stderr, flush=True)
                results["sizes"].append(measure_size(n, args, Path(work)))
                path.write_text(json.dumps(results, indent=1), encoding="utf-8")
                gc.collect()
    plot(results, out / "scale.png")
    (out / "scale.md").write_text(render(results), encoding="utf-8")
    print(f"report: {out / 'scale.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
