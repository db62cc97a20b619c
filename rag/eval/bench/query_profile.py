"""`python -m rag.eval.bench query_profile [--questions N] [--out DIR]`: where a warm
query's embedding time goes, and what could cut it, measured in paired runs.

The embedding of one question (about 15 tokens with the "query: " prefix) is run through
variants of the ONNX encoder, alternating variant by variant within each question (so
the machine's other load falls on all alike): the int8 file as served with 2 intra-op
threads (the default on this machine) and with 1; the float32 export; and the int8
quantisation of an export fused offline by onnxruntime's transformer optimizer
(SkipLayerNormalization, BiasGelu). Tokenising is timed on its own (`encode_batch` of
one text, as the embedder calls it, and `encode`). Then one onnxruntime profile of the
served int8 file on one thread gives each operator type's share of a run. Questions:
CMRC 2018 dev. Writes query_profile.json and query_profile.md to --out.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag.eval.bench import measure
from rag.eval.bench.corpus import shared_data


def _questions(n: int) -> list[str]:
    data = json.loads((shared_data() / "cmrc2018" / "cmrc2018_dev.json").read_text("utf-8"))
    return [q["query_text"] for d in data for q in d["qas"]][:n]


def _fused_int8(fp32: Path, work: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    from rag.embed.onnx_export import QUANT

    fused = optimizer.optimize_model(str(fp32), model_type="bert", num_heads=12, hidden_size=384)
    fused.save_model_to_file(str(work / "fused.fp32.onnx"))
    out = work / "fused.int8.onnx"
    quantize_dynamic(str(work / "fused.fp32.onnx"), str(out), weight_type=QuantType.QInt8,
                     per_channel=QUANT["per_channel"], op_types_to_quantize=QUANT["ops"],
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip
    return out


def _op_profile(int8: Path, folder: Path, seqs: list[list[int]], work: Path) -> dict[str, Any]:
    """Each operator type's microseconds per run (onnxruntime's profiler, one thread)."""
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    o.enable_profiling = True
    o.profile_file_prefix = str(work / "ort")
    o.log_severity_level = 3
    s = ort.InferenceSession(str(int8), o, providers=["CPUExecutionProvider"])
    for seq in seqs:
        ids = np.asarray([seq], np.int64)
        s.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    events = json.loads(Path(s.end_profiling()).read_text(encoding="utf-8"))
    us: collections.Counter = collections.Counter()
    nodes: collections.Counter = collections.Counter()
    runs = [e["dur"] for e in events if e.get("name") == "model_run"]
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            us[e["args"]["op_name"]] += e["dur"]
            nodes[e["args"]["op_name"]] += 1
    n = max(1, len(runs))
    return {
        "run_us_median": float(np.median(runs)) if runs else None,
        "kernels_us_per_run": round(sum(us.values()) / n),
        "ops": [
            {"op": k, "us_per_run": round(v / n), "nodes": nodes[k] // n}
            for k, v in us.most_common(12)
        ],  # fmt: skip
    }


def main(argv: list[str] | None = None) -> int:
    from rag.embed.embedder import Embedder
    from rag.embed.onnx_encoder import OnnxEncoder
    from rag.embed.onnx_export import _export_fp32, ensure_onnx

    ap = argparse.ArgumentParser(prog="python -m rag.eval.bench query_profile", description=__doc__.splitlines()[0])  # fmt: skip
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("eval/reports/onnx"))
    args = ap.parse_args(argv)
    qs = _questions(args.questions)
    emb = Embedder(backend="onnx")
    served = emb._onnx_model()
    folder = Path(emb.model_path)
    int8 = ensure_onnx(folder, emb.cache_dir, emb.model_id)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _export_fp32(folder, work / "model.fp32.onnx")
        variants = {
            "int8, 2 threads (served)": OnnxEncoder(folder, int8, 2),
            "int8, 1 thread": OnnxEncoder(folder, int8, 1),
            "float32, 2 threads": OnnxEncoder(folder, work / "model.fp32.onnx", 2),
            "int8 of the offline-fused export, 2 threads": OnnxEncoder(
                folder, _fused_int8(work / "model.fp32.onnx", work), 2
            ),  # fmt: skip
        }
        seqs = [served.token_ids([emb.query_prefix + q])[0] for q in qs]
        for v in variants.values():  # warm-up
            for s in seqs[:5]:
                v.encode_ids([s])
        load0 = measure.loadavg()
        names = list(variants)
        ms: dict[str, list[float]] = {k: [] for k in [*names, "tokenise: encode_batch", "tokenise: encode"]}  # fmt: skip
        for i, (q, s) in enumerate(zip(qs, seqs)):
            for k in names[i % len(names) :] + names[: i % len(names)]:  # rotate the order
                t = time.perf_counter()
                variants[k].encode_ids([s])
                ms[k].append((time.perf_counter() - t) * 1e3)
            text = emb.query_prefix + q
            tok = served.tokenizer
            for k, f, arg in (("tokenise: encode_batch", tok.encode_batch, [text]),
                              ("tokenise: encode", tok.encode, text)):  # fmt: skip
                t = time.perf_counter()
                f(arg)
                ms[k].append((time.perf_counter() - t) * 1e3)
        ref = np.vstack([variants[names[0]].encode_ids([s]) for s in seqs[:100]])
        cos = {k: round(float((np.vstack([variants[k].encode_ids([s]) for s in seqs[:100]]) * ref).sum(1).min()), 4)
               for k in names[1:]}  # fmt: skip
        load1 = measure.loadavg()
        profile = _op_profile(int8, folder, seqs[:60], work)
    result = {
        "command": "python -m rag.eval.bench query_profile "
        + " ".join(sys.argv[1:] if argv is None else argv),  # fmt: skip
        "machine": measure.machine(),
        "git": measure.git_state(),
        "questions": len(qs),
        "median_tokens": int(np.median([len(s) for s in seqs])),
        "load_start": load0,
        "load_end": load1,
        "ms": {k: measure.summary(v) for k, v in ms.items()},
        "min_cosine_to_served": cos,
        "op_profile": profile,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "query_profile.json").write_text(json.dumps(result, indent=1) + "\n", "utf-8")
    (args.out / "query_profile.md").write_text(render(result, args.out), encoding="utf-8")
    print(f"report: {args.out / 'query_profile.md'}")
    return 0


def render(r: dict[str, Any], out: Path) -> str:
    m = r["machine"]
    lines = [
        "# A warm query's embedding: where the time goes",
        "",
        f"Command: `{r['command']}` (commit {str(r['git'].get('commit', '?'))[:10]}).  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, shared with other "
        f"sessions: load average {r['load_start'][0]} at the start, {r['load_end'][0]} at the end. "
        "Variants alternate within each question (paired), so the load falls on all alike.  ",
        f"{r['questions']} CMRC 2018 dev questions, median {r['median_tokens']} tokens with the "
        "prefix; one question a call, as serving embeds it (no cache hits).",
        "",
        "| variant | median ms | p95 ms | min cosine to served (100 questions) |",
        "|---|---:|---:|---:|",
    ]
    for k, s in r["ms"].items():
        lines.append(f"| {k} | {s['median']:.2f} | {s['p95']:.2f} | {r['min_cosine_to_served'].get(k, '')} |")  # fmt: skip
    p = r["op_profile"]
    lines += [
        "",
        f"onnxruntime profile of the served int8 file, one thread, 60 questions: a run took "
        f"{p['run_us_median'] / 1000:.1f} ms (median, profiler on), its kernels "
        f"{p['kernels_us_per_run'] / 1000:.1f} ms:",
        "",
        "| operator (after onnxruntime's own fusions) | µs per run | nodes |",
        "|---|---:|---:|",
        *[f"| {o['op']} | {o['us_per_run']:,} | {o['nodes']} |" for o in p["ops"]],
    ]
    notes = out / "query_profile_notes.md"
    if notes.is_file():
        lines += ["", notes.read_text(encoding="utf-8").strip()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(main())
