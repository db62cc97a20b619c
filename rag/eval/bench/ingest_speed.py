"""`python -m rag.eval.bench ingest_speed`: articles/s of `rag ingest` with real
embeddings on crud_news slices, each backend side by side in one run (alternating).

Every measurement is a fresh `python -m rag.serve.cli ingest` into an empty index, as a
user runs it (model load included), timed from outside: wall seconds, and CPU seconds
of the process and its workers, which other work on a shared machine changes much less.
Sides: `onnx` and `torch` (this checkout, `--embed-backend`), `onnx-w2` (ONNX with
`--workers 2`), and `today` (the checkout given by --today, e.g. the main branch, as it
runs by default). Writes results.json and README.md to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rag.eval.bench import corpus, measure

REPO = Path(__file__).resolve().parents[3]
SIDES = ("today", "torch", "onnx", "onnx-w2")


def _command(side: str, folder: Path, index: Path) -> list[str]:
    cmd = [sys.executable, "-m", "rag.serve.cli", "ingest", str(folder), "--index", str(index)]
    cmd.append("--quiet")
    if side in ("torch", "onnx"):
        cmd += ["--embed-backend", side]
    elif side == "onnx-w2":
        cmd += ["--embed-backend", "onnx", "--workers", "2"]
    return cmd


def run_once(side: str, folder: Path, index: Path, checkout: Path) -> dict:
    """One fresh ingest of `folder`; its wall time, CPU time and what it printed."""
    return run_command(side, _command(side, folder, index), index, checkout)


def run_command(side: str, cmd: list[str], index: Path, checkout: Path) -> dict:
    """`run_once` of a given ingest command line. CPU time counts this process's
    children only (the CLI and its local workers, not a Ray cluster's)."""
    shutil.rmtree(index, ignore_errors=True)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(checkout)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{side}: ingest failed: {proc.stderr[-2000:]}")
    m = re.search(r"index: (\d+) documents, (\d+) chunks", proc.stdout)
    e = re.search(r"embedded (\d+) chunks in ([\d.]+) s", proc.stdout)
    docs, chunks = int(m.group(1)), int(m.group(2))
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "side": side,
        "articles": docs,
        "chunks": chunks,
        "embedded": int(e.group(1)) if e else 0,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "embed_s": float(e.group(2)) if e else None,
        "articles_per_s": round(docs / wall, 3),
        "articles_per_cpu_s": round(docs / cpu, 3),
        "load_start": round(load0, 2),
        "load_end": round(os.getloadavg()[0], 2),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rag.eval.bench ingest_speed", description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--sizes", default="40,120", help="articles per slice (comma-separated)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each side at each size")
    p.add_argument("--sides", default="today,torch,onnx", help=f"from {', '.join(SIDES)}")
    p.add_argument("--today", type=Path, help="checkout whose default ingest is 'today'")
    p.add_argument("--source", type=Path, default=corpus.DEFAULT_SOURCE)
    p.add_argument("--work", type=Path, default=Path("/tmp/rag-bench/ingest-speed"))
    p.add_argument("--out", type=Path, default=Path("eval/reports/ingest_speed"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    sides = [s.strip() for s in args.sides.split(",")]
    if "today" in sides and args.today is None:
        raise SystemExit("--today CHECKOUT is needed for the 'today' side")
    articles = corpus.read_articles(args.source, limit=max(sizes))
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    rows = []
    load_at_start = list(os.getloadavg())
    for n in sizes:
        folder = corpus.write_corpus(articles[:n], args.work / f"corpus-{n}", str(args.source))
        for r in range(args.rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:  # alternate the order too
                checkout = args.today if side == "today" else REPO
                row = {
                    "size": n,
                    "round": r,
                    **run_once(side, folder, args.work / "index", checkout),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {
        "command": "python -m rag.eval.bench ingest_speed "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "started": started,
        "machine": measure.machine(),
        "load_average_start": load_at_start,
        "load_average_end": list(os.getloadavg()),
        "sides": {s: " ".join(_command(s, Path("DIR"), Path("IDX"))[1:]) for s in sides},
        "today_checkout": str(args.today) if args.today else None,
        "today_commit": _commit(args.today) if args.today else None,
        "this_commit": _commit(REPO),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (args.out / "README.md").write_text(_markdown(result, sizes, sides), encoding="utf-8")
    return 0


def _commit(checkout: Path) -> str:
    out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip()


def _best(rows: list[dict], size: int, side: str, key: str) -> float:
    return max(r[key] for r in rows if r["size"] == size and r["side"] == side)


def _markdown(result: dict, sizes: list[int], sides: list[str]) -> str:
    rows = result["rows"]
    m = result["machine"]
    lines = [
        "# Ingestion speed with real embeddings: torch against int8 ONNX",
        "",
        f"Command: `{result['command']}` (started {result['started']}).",
        "",
        f"Machine: {m.get('cpu', '')}, {m.get('cores', os.cpu_count())} cores, shared with other sessions; "
        f"load average {result['load_average_start'][0]:.1f} at the start, {result['load_average_end'][0]:.1f} at the end "
        "(wall-clock rates depend on it; CPU-second rates much less).",
        "",
        "Each run is a fresh `rag ingest` of crud_news articles (seeded order, rag/eval/bench/corpus.py) into an empty index, model load included; sides alternate within each round.",  # fmt: skip
        "",
        "| side | command |",
        "|---|---|",
        *[
            f"| {s} | `{result['sides'][s]}`{' in ' + result['today_checkout'] + ' at ' + result['today_commit'] if s == 'today' else ' at ' + result['this_commit']} |"
            for s in sides
        ],  # fmt: skip
        "",
        "## Best of the rounds",
        "",
        "| articles | side | articles/s (wall) | articles per CPU-second | vs today, wall | vs today, CPU |",
        "|---|---|---|---|---|---|",
    ]
    for n in sizes:
        for s in sides:
            w, c = _best(rows, n, s, "articles_per_s"), _best(rows, n, s, "articles_per_cpu_s")
            if "today" in sides:
                tw, tc = _best(rows, n, "today", "articles_per_s"), _best(rows, n, "today", "articles_per_cpu_s")  # fmt: skip
                rel = f"{w / tw:.2f}x | {c / tc:.2f}x"
            else:
                rel = "| "
            lines.append(f"| {n} | {s} | {w:.2f} | {c:.2f} | {rel} |")
    lines += [
        "",
        "## Every run",
        "",
        "| articles | round | side | chunks | wall s | CPU s | embedding s | articles/s | articles/CPU-s | load at start → end |",  # fmt: skip
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['round']} | {r['side']} | {r['chunks']} | {r['wall_s']} | {r['cpu_s']} | {r['embed_s']} | {r['articles_per_s']} | {r['articles_per_cpu_s']} | {r['load_start']} → {r['load_end']} |"  # fmt: skip
        )
    return "\n".join(lines) + "\n"
