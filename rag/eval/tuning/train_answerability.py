"""Train the answerability cross-encoder (rag/read/answerability.py) on developer data.

    rag eval convert --from cail ../shared/data/cail2019/test_ground_truth.json --out artifacts/eval/cail
    rag eval tune train_answerability pairs artifacts/eval/cail --out artifacts/answerability
    rag eval tune train_answerability fit artifacts/answerability

`pairs` asks every question of the set through the real retriever and extractive answerer
over the whole corpus and keeps what the model will see in use: the question and the
window around the sentence the answerer would quote (or the near miss it would report).
Label 1 when the question is answerable and the window holds a gold answer, else 0 (an
unanswerable question, or evidence that misses the answer: both must not be given as the
answer). For an answerable question the window around the gold answer in its document is
added as a positive too. Questions whose documents the held-out slice uses (the first
`--holdout` questions, what `rag eval run --limit 1500` measures) are never trained on.

`fit` fine-tunes the top `--layers` layers and a classification head of the embedder's
base model, keeps a tenth of the documents aside to report ROC-AUC, and writes the
fine-tuned weights (float16) to rag/read/answerability_delta.npz with its description.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]

from rag.config import Settings  # noqa: E402
from rag.read.answerability import DELTA, MAX_TOKENS, META, evidence, window  # noqa: E402
from rag.textnorm import norm  # noqa: E402


def _rows(qfile: Path) -> list[dict]:
    return [json.loads(line) for line in open(qfile, encoding="utf-8")]


def _docs_of(r: dict) -> set[str]:
    return set(r.get("gold_doc_ids") or []) | set(r.get("context_doc_ids") or [])


def pairs(args) -> None:
    from rag.eval.index_cache import ensure_index
    from rag.system import load_system, make_embedder

    folder = Path(args.set)
    rows = _rows(folder / "questions.jsonl")
    held = set().union(*(_docs_of(r) for r in rows[: args.holdout]))
    train = [r for r in rows[args.holdout :] if not (_docs_of(r) & held)]
    settings = Settings()
    embedder = make_embedder(settings)
    info = ensure_index(folder / "corpus.jsonl", settings, embedder)
    system = load_system(settings.replace(index_dir=str(info.dir)), embedder=embedder)
    index, answerer = system.index, system.answerer
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = {0: 0, 1: 0}
    t0 = time.perf_counter()
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as f:

        def emit(r, doc_id, start, end, label, kind):
            w = evidence(index, doc_id, start, end)
            row = {"id": r["id"], "doc": doc_id, "kind": kind, "label": label}
            f.write(json.dumps(row | {"question": r["question"], "window": w}, ensure_ascii=False))
            f.write("\n")
            n[label] += 1
            return w

        for i, r in enumerate(train):
            q = r["question"]
            hits = system.retriever.search(q).hits
            cands, best = answerer.select(q, hits)
            if best is None:
                near = answerer.near_miss(q, hits, cands)
                best = near[0] if near else None
            answers = [norm(a) for a in r.get("answers") or [] if a and a not in ("YES", "NO")]
            if best is not None:
                h = hits[best.hit_i]
                w = norm(window(index.document_text(h.doc_id), best.start, best.end))
                ok = r.get("answerable", True) and any(a in w for a in answers)
                emit(r, h.doc_id, best.start, best.end, int(ok), "quoted")
                if ok:
                    continue
            if r.get("answerable", True) and answers:  # the gold evidence, as a positive
                for d in r.get("gold_doc_ids") or []:
                    text = index.document_text(d)
                    at = norm(text).find(answers[0])
                    if at >= 0:
                        emit(r, d, at, at + len(answers[0]), 1, "gold")
                        break
            if i % 200 == 0:
                rate = (i + 1) / (time.perf_counter() - t0)
                print(f"{i}/{len(train)} questions, {n} pairs, {rate:.1f} q/s", file=sys.stderr)
    meta = {"set": str(folder), "holdout_questions": args.holdout, "train_questions": len(train)}
    (out / "pairs.json").write_text(json.dumps(meta | {"pairs": n}, indent=1), encoding="utf-8")
    print(f"{out / 'pairs.jsonl'}: {n[1]} answering, {n[0]} not", file=sys.stderr)


def pair_classifier(base: str | Path):
    """The model `fit` trains: the base BERT, mean-pooled as e5 was trained (its first
    token carries little), and a two-class linear head. Its state names ("bert.…",
    "classifier.…") are what rag.embed.onnx_export applies over the base for the export."""
    import torch
    from transformers import AutoModel

    class PairClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(base), add_pooling_layer=False)
            self.classifier = torch.nn.Linear(self.bert.config.hidden_size, 2)

        def forward(self, input_ids, attention_mask, **_):
            x = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(x.dtype)
            return self.classifier((x * m).sum(1) / m.sum(1).clamp(min=1e-9))

    return PairClassifier()


def validation_docs(rows: list[dict], seed: int) -> set[str]:
    """The tenth of the pairs' documents `fit` never trains on (its ROC-AUC, and the
    refusal calibration's CAIL set: evidence the cross-encoder has not seen)."""
    docs = sorted({r["doc"] for r in rows})
    random.Random(seed).shuffle(docs)
    return set(docs[: max(1, len(docs) // 10)])


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan")


def fit(args) -> None:
    import torch
    from transformers import AutoTokenizer

    from rag.embed.resolve import resolve_model

    settings = Settings()
    base = resolve_model(settings.embed_model, settings.cache_path)
    rows = _rows(Path(args.pairs) / "pairs.jsonl")
    val_docs = validation_docs(rows, args.seed)
    train = [r for r in rows if r["doc"] not in val_docs]
    val = [r for r in rows if r["doc"] in val_docs]
    print(f"{len(train)} training pairs, {len(val)} validation pairs", file=sys.stderr)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(base)
    model = pair_classifier(base)
    n_layers = model.bert.config.num_hidden_layers
    keep = [f"encoder.layer.{i}." for i in range(n_layers - args.layers, n_layers)]
    trained_names = [
        name
        for name, _ in model.named_parameters()
        if any(k in name for k in keep) or name.startswith("classifier")
    ]
    for name, p in model.named_parameters():
        p.requires_grad = name in trained_names
    # the new head learns fast, the pretrained layers slowly
    head = [p for n, p in model.named_parameters() if n.startswith("classifier")]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("classifier")]  # fmt: skip
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr}, {"params": head, "lr": args.head_lr}])
    steps = args.epochs * ((len(train) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, 1 - s / steps)
    )
    pos = sum(r["label"] for r in train)
    # balance the classes: near misses are the minority and the point
    weight = torch.tensor([len(train) / (2 * (len(train) - pos)), len(train) / (2 * pos)])
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)

    def batches(data, size, shuffle):
        order = list(range(len(data)))
        if shuffle:
            random.Random(args.seed + len(data)).shuffle(order)
        for s in range(0, len(order), size):
            part = [data[i] for i in order[s : s + size]]
            enc = tok(
                [r["question"] for r in part],
                [r["window"] for r in part],
                truncation="only_second",
                max_length=MAX_TOKENS,
                padding=True,
                return_tensors="pt",
            )
            yield enc, torch.tensor([r["label"] for r in part])

    def evaluate() -> float:
        model.eval()
        ps, ys = [], []
        with torch.inference_mode():
            for enc, y in batches(val, 32, False):
                ps += torch.softmax(model(**enc), -1)[:, 1].tolist()
                ys += y.tolist()
        model.train()
        return _auc(np.array(ps), np.array(ys))

    def save(epochs_done: int) -> Path:
        state = model.state_dict()
        delta = {k: state[k].detach().numpy().astype(np.float16) for k in trained_names}
        out = Path(args.out_delta)
        tmp = out.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **delta)
        tmp.replace(out)
        meta = {
            "base": settings.embed_model,
            "layers": args.layers,
            "trained_on": json.loads((Path(args.pairs) / "pairs.json").read_text(encoding="utf-8")),
            "training_pairs": len(train),
            "validation_pairs": len(val),
            "epochs": epochs_done,
            "epochs_planned": args.epochs,
            "lr": args.lr,
            "head_lr": args.head_lr,
            "batch": args.batch,
            "max_tokens": MAX_TOKENS,
            "history": history,
            "seconds": round(time.perf_counter() - t0),
            "validation_docs": sorted(val_docs),
        }
        text = json.dumps(meta, indent=1, ensure_ascii=False)
        Path(args.out_meta).write_text(text, encoding="utf-8")
        return out

    step, t0, history = 0, time.perf_counter(), []
    model.train()
    for epoch in range(args.epochs):
        for enc, y in batches(train, args.batch, True):
            loss = loss_fn(model(**enc), y)
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step % 20 == 0:
                el = time.perf_counter() - t0
                print(f"step {step}/{steps} loss {loss.item():.3f} {el:.0f}s", file=sys.stderr)
        auc = evaluate()
        history.append({"epoch": epoch + 1, "validation_auc": round(auc, 4)})
        print(f"epoch {epoch + 1}: validation ROC-AUC {auc:.3f}", file=sys.stderr)
        out = save(epoch + 1)  # after every epoch: a stopped run keeps what it has

    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pairs", help="question-window pairs from a converted set")
    p.add_argument("set", help="a folder of `rag eval convert` (questions.jsonl, corpus.jsonl)")
    p.add_argument("--out", required=True)
    p.add_argument("--holdout", type=int, default=1500, help="first N questions never trained on")
    f = sub.add_parser("fit", help="fine-tune on the pairs")
    f.add_argument("pairs", help="the --out folder of `pairs`")
    f.add_argument("--layers", type=int, default=4)
    f.add_argument("--epochs", type=int, default=2)
    f.add_argument("--lr", type=float, default=5e-5)
    f.add_argument("--head-lr", type=float, default=1e-3)
    f.add_argument("--batch", type=int, default=16)
    f.add_argument("--threads", type=int, default=2)
    f.add_argument("--seed", type=int, default=13)
    f.add_argument("--out-delta", default=str(DELTA))
    f.add_argument("--out-meta", default=str(META))
    args = ap.parse_args()
    (pairs if args.cmd == "pairs" else fit)(args)


if __name__ == "__main__":
    main()
