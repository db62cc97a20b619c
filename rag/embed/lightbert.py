"""A light BERT query encoder for mean-pooled models, on safetensors weights: fast first queries without loading sentence-transformers."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import ModelError

if TYPE_CHECKING:
    pass


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _mean_pooled_bert(folder: Path) -> bool:
    """Whether `folder` is a sentence-transformers BERT that `LightBert` reproduces:
    BertModel (absolute positions, exact GELU), float32 safetensors, an XLM-R style
    (Metaspace) tokenizer.json, then mean pooling and normalisation, nothing else."""
    try:
        cfg = _read_json(folder / "config.json")
        modules = _read_json(folder / "modules.json")
        pooling = _read_json(folder / "1_Pooling" / "config.json")
        tok = _read_json(folder / "tokenizer.json")
        tok_cfg = _read_json(folder / "tokenizer_config.json")
    except (OSError, ValueError):
        return False
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    mean_only = pooling.get("pooling_mode_mean_tokens") and pooling.get("include_prompt", True)
    mean_only = mean_only and not any(
        v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
    )  # fmt: skip
    return (
        cfg.get("model_type") == "bert"
        and cfg.get("hidden_act") == "gelu"
        and cfg.get("position_embedding_type", "absolute") == "absolute"
        and kinds == ["Transformer", "Pooling", "Normalize"]
        and [m.get("path") for m in modules[:2]] == ["", "1_Pooling"]
        and bool(mean_only)
        and (tok.get("pre_tokenizer") or {}).get("type") == "Metaspace"
        and tok_cfg.get("tokenizer_class") == "XLMRobertaTokenizer"
        and (folder / "model.safetensors").is_file()
    )


def _safetensors_mmap(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a float32 safetensors file as a read-only view of the mapped file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            raise ModelError(f"{path}: tensor {name} is {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        out[name] = mm[8 + n + a : 8 + n + b].view(np.float32).reshape(t["shape"])
    return out


class LightBert:
    """BERT + mean pooling + normalisation in plain torch: sentence-transformers' vectors
    for a folder that `_mean_pooled_bert` accepts, loaded in a fraction of the time.

    The tokenizer is tokenizer.json with the whitespace split that transformers' XLM-R
    tokenizer puts before SentencePiece's metaspace (the same ids, checked in the tests).
    """

    def __init__(self, folder: Path | str, max_length: int = 512):
        import warnings

        import torch
        from tokenizers import Tokenizer, pre_tokenizers

        folder = Path(folder)
        cfg = _read_json(folder / "config.json")
        self.hidden = int(cfg["hidden_size"])
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        st_cfg = folder / "sentence_bert_config.json"
        if st_cfg.is_file():
            max_length = int(_read_json(st_cfg).get("max_seq_length") or max_length)
        self.max_length = min(max_length, int(cfg.get("max_position_embeddings", max_length)))
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), tok.pre_tokenizer]
        )
        tok.enable_truncation(self.max_length)
        tok.no_padding()
        self.tokenizer = tok
        with warnings.catch_warnings():  # the mapped file is read-only, and never written
            warnings.simplefilter("ignore", UserWarning)
            self.w = {
                k: torch.from_numpy(v)
                for k, v in _safetensors_mmap(folder / "model.safetensors").items()
            }
        self._torch = torch
        attn = "encoder.layer.{}.attention.self.{}.{}"
        self._qkv = [
            tuple(
                torch.cat([self.w[attn.format(i, m, part)] for m in ("query", "key", "value")])
                for part in ("weight", "bias")
            )
            for i in range(self.layers)
        ]

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Model token ids of each text (special tokens added, truncated to max_length)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), hidden) float32 unit rows, as one batch."""
        return self.encode_ids(self.token_ids(texts))

    def encode_ids(self, seqs: list[list[int]]) -> np.ndarray:
        """`encode` for texts already turned into token ids (one batch).

        Padding costs only in attention: every position-wise layer (the linear layers,
        94% of the FLOPs, and the norms) runs on the real tokens packed into one
        (tokens, hidden) matrix, and only attention sees the padded (batch, length) view.
        """
        torch = self._torch
        F = torch.nn.functional
        B, n = len(seqs), max(len(s) for s in seqs)
        ids = torch.zeros((B, n), dtype=torch.long)
        mask = torch.zeros((B, n), dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = True
        w, H, nh = self.w, self.hidden, self.heads
        d = H // nh
        padded = not bool(mask.all())
        where = mask.view(-1).nonzero().squeeze(1) if padded else None  # real tokens in B*n
        attn = mask[:, None, None, :] if padded else None
        with torch.inference_mode():
            x = w["embeddings.word_embeddings.weight"][ids]
            x = x + w["embeddings.position_embeddings.weight"][:n]
            x = x + w["embeddings.token_type_embeddings.weight"][0]
            x = x.view(B * n, H) if where is None else x.view(B * n, H)[where]
            x = F.layer_norm(x, (H,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)  # fmt: skip
            for i in range(self.layers):
                p = f"encoder.layer.{i}."

                def lin(x, name, p=p):
                    return F.linear(x, w[p + name + ".weight"], w[p + name + ".bias"])

                def norm(x, name, p=p):
                    return F.layer_norm(x, (H,), w[p + name + ".weight"], w[p + name + ".bias"], self.eps)  # fmt: skip

                def heads(t):  # packed (tokens, H) -> padded (B, heads, n, d)
                    if where is not None:
                        t = t.new_zeros(B * n, H).index_copy_(0, where, t)
                    return t.view(B, n, nh, d).transpose(1, 2)

                # query, key and value in one matrix product (fewer, larger calls)
                qkv = F.linear(x, self._qkv[i][0], self._qkv[i][1])
                q, k, v = (heads(t) for t in qkv.split(H, dim=1))
                c = F.scaled_dot_product_attention(q, k, v, attn_mask=attn)
                c = c.transpose(1, 2).reshape(B * n, H)
                if where is not None:
                    c = c[where]
                x = norm(lin(c, "attention.output.dense") + x, "attention.output.LayerNorm")
                h = F.gelu(lin(x, "intermediate.dense"))
                x = norm(lin(h, "output.dense") + x, "output.LayerNorm")
            lengths = mask.sum(1)
            seq = torch.repeat_interleave(torch.arange(B), lengths)  # sequence of each token
            pooled = x.new_zeros(B, H).index_add_(0, seq, x) / lengths[:, None].to(x.dtype)
            return F.normalize(pooled, p=2, dim=1).numpy().astype(np.float32, copy=False)
