"""`python -m rag.eval.bench sheet_speed`: how soon a large spreadsheet is searchable.

The formats benchmark's project table (rag/eval/bench/formats.py: `--rows` rows by 6
columns, openpyxl) is ingested by a fresh `python -m rag.serve.cli ingest` into an empty
index, as a user runs it (model load included), by this checkout and by the one given
with --today, alternating. Timed from outside: until the index's CURRENT file first
names a version (from then on `rag ask` and the chat search it), and until the process
exits (every vector in). Writes sheet.json to --out and prints the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from rag.eval.bench import formats, measure
from rag.eval.bench.ingest_speed import _commit

REPO = Path(__file__).resolve().parents[3]


def run_once(side: str, sheet: Path, index: Path, checkout: Path) -> dict:
    import shutil

    shutil.rmtree(index, ignore_errors=True)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, "-m", "rag.serve.cli", "ingest", str(sheet), "--index", str(index), "--quiet"]  # fmt: skip
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    searchable = None
    while proc.poll() is None:
        if searchable is None and (index / "CURRENT").exists():
            searchable = time.perf_counter() - t
        time.sleep(0.05)
    wall = time.perf_counter() - t
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{side}: ingest failed: {err[-2000:]}")
    m = re.search(r"index: (\d+) documents, (\d+) chunks", out)
    return {
        "side": side,
        "chunks": int(m.group(2)),
        "searchable_s": round(searchable if searchable is not None else wall, 1),
        "embedded_s": round(wall, 1),
        "load_start": round(load0, 2),
        "load_end": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rag.eval.bench sheet_speed")
    p.add_argument("--rows", type=int, default=formats.SHEET_ROWS)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--today", type=Path, required=True, help="the checkout to compare with")
    p.add_argument("--work", type=Path, required=True, help="scratch folder")
    p.add_argument("--out", type=Path, default=measure.REPO / "eval" / "reports" / "ingest_speed")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    sheet = formats.make_xlsx(args.work / "projects.xlsx", formats.sheet_rows(args.rows))
    rows = []
    for r in range(args.rounds):
        for side in ("today", "this") if r % 2 == 0 else ("this", "today"):
            checkout = args.today if side == "today" else REPO
            row = {"round": r, **run_once(side, sheet, args.work / "index", checkout)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "command": "python -m rag.eval.bench sheet_speed "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": measure.machine(),
        "rows_in_sheet": args.rows,
        "today_commit": _commit(args.today),
        "this_commit": _commit(REPO),
        "runs": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sheet.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0
