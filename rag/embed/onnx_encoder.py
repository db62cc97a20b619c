"""The int8 ONNX export of a mean-pooled BERT run with onnxruntime: the CPU encoder for
passages and queries (no torch, no transformers at run time)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def load_tokenizer(folder: Path, max_length: int) -> object:
    """The folder's tokenizer.json, with the whitespace split that transformers' XLM-R
    tokenizer puts before SentencePiece's metaspace (the same ids as sentence-transformers,
    checked in the tests), truncating at `max_length`, no padding."""
    from tokenizers import Tokenizer, pre_tokenizers

    tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), tok.pre_tokenizer]
    )
    tok.enable_truncation(max_length)
    tok.no_padding()
    return tok


def max_tokens(folder: Path, default: int = 512) -> int:
    """The model's sequence limit: sentence-transformers' max_seq_length, within the positions."""
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    limit = default
    st_cfg = folder / "sentence_bert_config.json"
    if st_cfg.is_file():
        limit = int(json.loads(st_cfg.read_text(encoding="utf-8")).get("max_seq_length") or limit)
    return min(limit, int(cfg.get("max_position_embeddings", limit)))


class OnnxEncoder:
    """Unit vectors from the int8 ONNX file of `folder`'s model (`rag.embed.onnx_export`).

    `threads` is onnxruntime's intra-op thread count (0: every core). Its threads do not
    spin while waiting for work: on a machine whose cores other processes share, spinning
    threads slow everyone down (eval/reports/bench/optimisations.md for torch's).
    """

    def __init__(self, folder: Path | str, onnx_file: Path | str, threads: int = 0):
        import onnxruntime as ort

        folder = Path(folder)
        self.max_length = max_tokens(folder)
        self.tokenizer = load_tokenizer(folder, self.max_length)
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.hidden = int(cfg["hidden_size"])
        self.threads = threads or os.cpu_count() or 1
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # no warnings about unused initialisers
        self.session = ort.InferenceSession(
            str(onnx_file), opts, providers=["CPUExecutionProvider"]
        )

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Model token ids of each text (special tokens added, truncated to max_length)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), hidden) float32 unit rows, as one batch."""
        return self.encode_ids(self.token_ids(texts))

    def encode_ids(self, seqs: list[list[int]]) -> np.ndarray:
        """`encode` for texts already turned into token ids (one batch, padded to its
        longest: callers sort by length so that padding stays small)."""
        n = max(len(s) for s in seqs)
        ids = np.zeros((len(seqs), n), np.int64)  # pad id 1 or 0: masked out either way
        mask = np.zeros((len(seqs), n), np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        (out,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        return np.ascontiguousarray(out, dtype=np.float32)
