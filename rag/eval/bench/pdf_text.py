"""`python -m rag.eval.bench pdf_text`: reading a text PDF, this checkout against another.

The formats benchmark's PDF (rag/eval/bench/formats.py: crud_news articles drawn by
reportlab with the WenQuanYi font, about 150,000 characters) is read by
`rag.ingest.loaders.load_file` in a fresh process of each checkout, alternating, and
timed inside it (imports excluded). The two texts are compared as well: equal, or equal
once runs of blanks are one blank and lines have none at their ends. Writes pdf_text.json to --out and prints the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from rag.eval.bench import formats, measure
from rag.eval.bench.ingest_speed import _commit

REPO = Path(__file__).resolve().parents[3]
_READ = """
import json, sys, time
from pathlib import Path
from rag.ingest.loaders import load_file
t = time.perf_counter(); c = time.process_time()
[doc] = load_file(Path(sys.argv[1]))
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "text": doc.text, "pages": doc.meta.to_dict().get("pages")}))
"""


def read_once(checkout: Path, pdf: Path) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(checkout)}
    out = subprocess.run(
        [sys.executable, "-c", _READ, str(pdf)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.splitlines()[-1])


def _blanks(text: str) -> str:
    """`text` with each run of blanks one blank and no blank at a line's ends."""
    import re

    return "\n".join(re.sub(r"[ \t\u3000]+", " ", line).strip() for line in text.split("\n"))


def _differences(a: str, b: str, limit: int = 30) -> list[dict]:
    """Where `a` and `b` differ, each with a few characters around it."""
    import difflib

    out = []
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in ops:
        if tag != "equal" and len(out) < limit:
            out.append({"today": a[max(0, i1 - 8) : i2 + 8], "this": b[max(0, j1 - 8) : j2 + 8]})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rag.eval.bench pdf_text")
    p.add_argument("--chars", type=int, default=150_000)  # make_files' "mid", as formats reads it
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--today", type=Path, required=True, help="the checkout to compare with")
    p.add_argument("--work", type=Path, required=True, help="scratch folder")
    p.add_argument("--out", type=Path, default=measure.REPO / "eval" / "reports" / "ingest_formats")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    arts = formats._chars(formats.articles(4000), args.chars)
    pdf = formats.make_pdf(args.work / "news.pdf", arts)
    runs, texts = [], {}
    for r in range(args.rounds):
        for side in ("today", "this") if r % 2 == 0 else ("this", "today"):
            got = read_once(args.today if side == "today" else REPO, pdf)
            texts[side] = got.pop("text")
            row = {"round": r, "side": side, **{k: round(v, 3) for k, v in got.items() if k != "pages"}}  # fmt: skip
            row["pages"] = got["pages"]
            runs.append(row)
            print(json.dumps(row), flush=True)
    med = {
        s: statistics.median(r["wall_s"] for r in runs if r["side"] == s) for s in ("today", "this")
    }
    result = {
        "command": "python -m rag.eval.bench pdf_text "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": measure.machine(),
        "pdf": {"bytes": pdf.stat().st_size, "chars": len(texts["this"])},
        "today_commit": _commit(args.today),
        "this_commit": _commit(REPO),
        "median_wall_s": med,
        "speedup": round(med["today"] / med["this"], 1),
        "same_text": texts["today"] == texts["this"],
        "same_text_but_blanks": _blanks(texts["today"]) == _blanks(texts["this"]),
        "differences": _differences(_blanks(texts["today"]), _blanks(texts["this"])),
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, ensure_ascii=False))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pdf_text.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0
