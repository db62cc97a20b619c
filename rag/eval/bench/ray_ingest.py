"""`python -m rag.eval.bench ray_ingest`: `rag ingest --ray ADDRESS` on crud_news slices
with 1 and 2 Ray workers, beside the local ingest, alternating; the per-worker rate.

A Ray head of `--cpus` CPUs is started for the run (`ray start --head`, no dashboard)
unless `--address` names one. Each run is a fresh `rag ingest` into an empty index, as
in `ingest_speed` (rag/eval/bench/ingest_speed.py), model load included. A Ray worker
embeds on one thread; the per-worker rate (chunks embedded a second, per worker) is
what each added worker brings as long as the cluster has a core for it, so on a
machine with two cores it shows the rate, not the scaling. Writes results.json and
README.md to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rag.eval.bench import corpus, measure
from rag.eval.bench.ingest_speed import REPO, run_command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_head(cpus: int = 2, env: dict[str, str] | None = None) -> Iterator[str]:
    """The address ("127.0.0.1:PORT") of a Ray head of `cpus` CPUs started for the
    caller, without a dashboard, stopped on exit by its own process group (never `ray
    stop`, which stops every Ray on the machine). `env`: the head's environment (its
    workers inherit it)."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # Ray's socket paths must stay short
    ray_cli = Path(sys.executable).with_name("ray")
    base = env if env is not None else dict(os.environ)
    head = subprocess.Popen(
        [
            str(ray_cli),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--num-cpus={cpus}",
            "--include-dashboard=false",
            f"--temp-dir={temp}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
        ],  # fmt: skip
        cwd="/tmp",
        env={**base, "OMP_WAIT_POLICY": "PASSIVE", "RAY_USAGE_STATS_ENABLED": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started = threading.Event()
    lines: list[str] = []

    def read() -> None:
        for line in head.stdout:
            lines.append(line)
            if "Ray runtime started" in line:
                started.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not started.wait(180):
            raise RuntimeError("ray start --head did not start:\n" + "".join(lines[-40:]))
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _command(side: str, folder: Path, index: Path, address: str) -> list[str]:
    cmd = [sys.executable, "-m", "rag.serve.cli", "ingest", str(folder), "--index", str(index)]
    cmd += ["--quiet", "--embed-backend", "onnx"]
    if side.startswith("ray-w"):
        cmd += ["--ray", address, "--workers", side.removeprefix("ray-w")]
    return cmd


def _workers(side: str) -> int:
    return int(side.removeprefix("ray-w")) if side.startswith("ray-w") else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rag.eval.bench ray_ingest", description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--sizes", default="300", help="articles per slice (comma-separated)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each side at each size")
    p.add_argument("--sides", default="local,ray-w1,ray-w2", help="local and ray-wN")
    p.add_argument("--address", help="an existing Ray cluster (default: start a head)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the head started for the run")
    p.add_argument("--source", type=Path, default=corpus.DEFAULT_SOURCE)
    p.add_argument("--work", type=Path, default=Path("/tmp/rag-bench/ray-ingest"))
    p.add_argument("--out", type=Path, default=Path("eval/reports/ray_ingest"))
    p.add_argument("--report-only", action="store_true", help="re-render from results.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.report_only:
        result = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
        (args.out / "README.md").write_text(render(result), encoding="utf-8")
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    sides = [s.strip() for s in args.sides.split(",")]
    articles = corpus.read_articles(args.source, limit=max(sizes))
    result = {
        "command": "python -m rag.eval.bench ray_ingest "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": measure.machine(),
        "git": measure.git_state(),
        "ray_cpus": None if args.address else args.cpus,
        "out": str(args.out),
        "load_average_start": list(os.getloadavg()),
        "rows": [],
    }
    head = contextlib.nullcontext(args.address) if args.address else local_head(args.cpus)
    with head as address:
        for n in sizes:
            folder = corpus.write_corpus(articles[:n], args.work / f"corpus-{n}", str(args.source))
            for r in range(args.rounds):
                for side in sides if r % 2 == 0 else sides[::-1]:
                    cmd = _command(side, folder, args.work / "index", address)
                    row = {"size": n, "round": r, "workers": _workers(side),
                           **run_command(side, cmd, args.work / "index", REPO)}  # fmt: skip
                    if row["embed_s"]:
                        row["chunks_per_s"] = round(row["embedded"] / row["embed_s"], 1)
                        w = row["workers"]
                        row["chunks_per_s_per_worker"] = round(row["chunks_per_s"] / w, 1) if w else None  # fmt: skip
                    result["rows"].append(row)
                    print(json.dumps(row), flush=True)
    result["load_average_end"] = list(os.getloadavg())
    result["sides"] = {s: " ".join(_command(s, Path("DIR"), Path("IDX"), "ADDRESS")[1:]) for s in sides}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (args.out / "README.md").write_text(render(result), encoding="utf-8")
    print(f"report: {args.out / 'README.md'}")
    return 0


def render(result: dict) -> str:
    m = result["machine"]
    rows = result["rows"]
    lines = [
        "# Ingestion over Ray workers: the per-worker rate",
        "",
        f"Command: `{result['command']}` (started {result['started']}, commit "
        f"{str(result['git'].get('commit', '?'))[:10]}).  ",
        f"Machine: {m.get('cpu', '')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB, shared with "
        f"other sessions; load average {result['load_average_start'][0]:.1f} at the start, "
        f"{result['load_average_end'][0]:.1f} at the end. Ray head: "
        f"{result['ray_cpus'] or 'given'} CPUs, on the same machine.",
        "",
        "| side | command |",
        "|---|---|",
        *[f"| {s} | `{c}` |" for s, c in result["sides"].items()],
        "",
        "| articles | round | side | chunks | wall s | embedding s | chunks/s embedded | per worker | articles/s (wall) | load start → end |",  # fmt: skip
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['round']} | {r['side']} | {r['chunks']} | {r['wall_s']} | "
            f"{r['embed_s']} | {r.get('chunks_per_s', '')} | {r.get('chunks_per_s_per_worker') or ''} | "
            f"{r['articles_per_s']} | {r['load_start']} → {r['load_end']} |"
        )
    notes = Path(result["out"]) / "notes.md"
    if notes.is_file():  # what a person read off the figures
        lines += ["", notes.read_text(encoding="utf-8").strip()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
