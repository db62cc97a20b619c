"""`python -m rag.eval.bench agreement`: how close the int8 ONNX vectors are to the float32
torch ones, on real passages and questions (CMRC 2018 dev and DRCD dev).

Passages are cut and normalised as ingestion cuts them (chunk size and overlap from the
settings, title line first); both backends embed them in batches, as ingestion does, and
every question one at a time, as a live query is. Writes agreement.json and
agreement.md to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from rag.config import Settings
from rag.eval.bench import measure
from rag.eval.bench.corpus import shared_data

DATA = shared_data()


def _records(path: Path) -> list[tuple[str, str, list[str]]]:
    """(title, paragraph, questions) of a CMRC (original form) or SQuAD-style file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, list):  # CMRC 2018's own form
        return [
            (d.get("title", ""), d["context_text"], [q["query_text"] for q in d["qas"]])
            for d in data
        ]
    out = []
    for art in data["data"]:
        for par in art["paragraphs"]:
            out.append((art.get("title", ""), par["context"], [q["question"] for q in par["qas"]]))
    return out


def sample(path: Path, n: int, settings: Settings) -> tuple[list[str], list[str]]:
    """The first `n` chunks (as ingestion embeds them) and the first `n` questions."""
    from rag.ingest.chunking import chunk_spans
    from rag.textnorm import norm

    passages: list[str] = []
    questions: list[str] = []
    for title, text, qs in _records(path):
        for s, e in chunk_spans(text, settings.chunk_size, settings.chunk_overlap):
            chunk = text[s:e]
            passages.append(norm(f"{title}\n{chunk}" if title and not chunk.startswith(title) else chunk))  # fmt: skip
        questions.extend(qs)
        if len(passages) >= n and len(questions) >= n:
            break
    return passages[:n], questions[:n]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _stats(cos: np.ndarray) -> dict:
    return {
        "n": int(len(cos)),
        "min": round(float(cos.min()), 5),
        "p1": round(float(np.percentile(cos, 1)), 5),
        "p5": round(float(np.percentile(cos, 5)), 5),
        "median": round(float(np.median(cos)), 5),
        "mean": round(float(cos.mean()), 5),
        "below_0.99": int((cos < 0.99).sum()),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rag.eval.bench agreement", description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--per-set", type=int, default=500, help="passages and questions from each set")
    p.add_argument("--out", default="eval/reports/onnx", help="report folder")
    return p


def main(argv: list[str] | None = None) -> int:
    from rag.embed.embedder import Embedder

    args = build_parser().parse_args(argv)
    settings = Settings.load()
    sets = {
        "cmrc2018_dev": DATA / "cmrc2018" / "cmrc2018_dev.json",
        "drcd_dev": DATA / "drcd" / "DRCD_dev.json",
    }
    passages: list[str] = []
    questions: list[str] = []
    for path in sets.values():
        p, q = sample(path, args.per_set, settings)
        passages += p
        questions += q
    torch_e = Embedder.from_settings(settings.replace(embed_backend="torch"))
    onnx_e = Embedder.from_settings(settings.replace(embed_backend="onnx"))
    t0 = time.perf_counter()
    vecs = {}
    for name, e in (("torch", torch_e), ("onnx", onnx_e)):
        vecs[name] = {
            "passages": e.embed_passages(passages),
            "questions_batched": e.embed_queries(questions),
            "questions_one_by_one": np.stack([e._embed([q], e.query_prefix)[0] for q in questions]),
        }
    result: dict = {
        "command": "python -m rag.eval.bench agreement "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "sets": {k: str(v) for k, v in sets.items()},
        "per_set": args.per_set,
        "model": torch_e.model_id,
        "backends": [torch_e.backend_id, onnx_e.backend_id],
        "batch_size": settings.embed_batch_size,
        "machine": measure.machine(),
        "load_average": list(os.getloadavg()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for kind in vecs["torch"]:
        result[kind] = _stats(_cos(vecs["onnx"][kind], vecs["torch"][kind]))
    # does the nearest passage of each question stay the same?
    same = [
        (vecs[b]["questions_one_by_one"] @ vecs[b]["passages"].T).argmax(1)
        for b in ("torch", "onnx")
    ]
    result["same_nearest_passage"] = round(float((same[0] == same[1]).mean()), 4)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "agreement.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    rows = "\n".join(
        f"| {k} | {r['n']} | {r['min']} | {r['p1']} | {r['p5']} | {r['median']} | {r['below_0.99']} |"
        for k, r in ((k, result[k]) for k in vecs["torch"])
    )
    (out / "agreement.md").write_text(
        f"""# int8 ONNX against float32 torch: cosine of the same texts' vectors

Command: `{result["command"]}` (load average at the end {result["load_average"]}).
Model `{result["model"]}`; {args.per_set} passages (chunks as ingestion cuts them) and
{args.per_set} questions from each of CMRC 2018 dev and DRCD dev.

| texts | n | min | 1st percentile | 5th percentile | median | below 0.99 |
|---|---|---|---|---|---|---|
{rows}

Each question's nearest of the {len(passages)} passages is the same under both: {result["same_nearest_passage"]:.2%}.
""",
        encoding="utf-8",
    )
    print(json.dumps({k: result[k] for k in vecs["torch"]}, indent=1))
    return 0
