"""A mean-pooled BERT sentence-transformers folder exported to ONNX and quantised to int8,
once, into the cache directory (keyed by the weights and the export settings).

The graph is written from the folder's safetensors in plain torch (embeddings, encoder,
mean pooling, L2 normalisation), exported with `torch.onnx.export`, then quantised with
onnxruntime's `quantize_dynamic`: optimum, the usual road, clashes with
sentence-transformers 6.x here. Torch is needed for the export only; running the file
needs onnxruntime alone (rag/embed/onnx_encoder.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from rag.errors import ModelError
from rag.fileio import publish_folder, write_json

# Bump when the graph below or the quantisation changes: the key (and so the file) changes.
EXPORT_FORMAT = 1
OPSET = 17
# Signed int8 weights with one scale per output column: on 96 CMRC passages the lowest
# cosine to the float32 vectors was 0.9962, against 0.9911 with one scale per matrix
# (unsigned) and 0.9822 (signed), and it took the fewest CPU-seconds of the four
# (a quick comparison made when choosing; eval/reports/onnx/ measures the chosen one).
# MatMul and Gather (the 250k-token embedding table: 384 MB as
# float32, 96 MB as int8; quantising it moved no cosine) are quantised.
QUANT = {"weight_type": "QInt8", "per_channel": True, "ops": ["MatMul", "Gather"]}
ONNX_NAME = "model.int8.onnx"
INFO_NAME = "export.json"  # written last into every export folder; its presence = complete


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def exportable(folder: Path) -> bool:
    """Whether `folder` is a sentence-transformers model this export reproduces: BertModel
    (absolute positions, exact GELU), float32 safetensors, an XLM-R style (Metaspace)
    tokenizer.json, then mean pooling and normalisation, nothing else."""
    folder = Path(folder)
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


def export_key(folder: Path, model_id: str, extra: dict | None = None) -> str:
    """What the exported file depends on: the model, its weights file (size and time,
    which a rebuild changes), its config, the export settings, and `extra` (the head and
    the fine-tuned weights of a classifier export)."""
    folder = Path(folder)
    st = (folder / "model.safetensors").stat()
    parts = {
        "model": model_id,
        "weights": [st.st_size, st.st_mtime_ns],
        "config": (folder / "config.json").read_text(encoding="utf-8"),
        "format": EXPORT_FORMAT,
        "opset": OPSET,
        "quant": QUANT,
    }
    if extra:
        parts["extra"] = extra
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def export_folder(folder: Path, cache_dir: Path, model_id: str, extra: dict | None = None) -> Path:
    """Where the export of `folder` lives under `cache_dir` (it may not exist yet)."""
    name = re.sub(r"[^\w.-]+", "-", model_id).strip("-")[:60]
    key = export_key(folder, model_id, extra)
    return Path(cache_dir).expanduser() / "onnx" / f"{name}-{key}"


def ensure_onnx(
    folder: Path, cache_dir: Path, model_id: str, *, classifier: Path | None = None
) -> Path:
    """The int8 ONNX file for `folder`, exported and quantised first if not yet cached.

    With `classifier` (an .npz of fine-tuned weights: top layers and a two-class head
    over the mean, as rag/read/answerability.py ships them), the graph applies them
    over the folder's weights and returns the head's logits instead of the embedding.

    Built in a temporary sibling and renamed into place, so a killed export never leaves
    a file that would later load; if another process finished first, its folder is kept.
    """
    extra = None
    if classifier is not None:
        digest = hashlib.sha256(Path(classifier).read_bytes()).hexdigest()[:16]
        extra = {"head": "classify", "weights": digest}
    dest = export_folder(folder, cache_dir, model_id, extra)
    if (dest / INFO_NAME).is_file():
        return dest / ONNX_NAME
    what = "the answerability model" if classifier else "the embedding model"
    print(
        f"Exporting {what} to ONNX int8 (once, ~1 min) into {dest} ...",
        file=sys.stderr,
        flush=True,
    )

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        _export_fp32(Path(folder), tmp / "model.fp32.onnx", classifier)
        _quantise(tmp / "model.fp32.onnx", tmp / ONNX_NAME)
        (tmp / "model.fp32.onnx").unlink()
        write_json(tmp / INFO_NAME, _info(folder, model_id, time.perf_counter() - t0))
        for p in (tmp, *tmp.iterdir()):  # mkdtemp creates owner-only modes
            p.chmod(0o755 if p.is_dir() else 0o644)

    try:
        publish_folder(dest, INFO_NAME, build)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(
            f"could not export {model_id} to ONNX into {dest}: {type(e).__name__}: {e} "
            '(set embed_backend = "torch" to embed without ONNX)'
        ) from e
    return dest / ONNX_NAME


def _info(folder: Path, model_id: str, seconds: float) -> dict:
    import onnxruntime
    import torch

    return {
        "model": model_id,
        "source": str(Path(folder).resolve()),
        "key": export_key(folder, model_id),
        "format": EXPORT_FORMAT,
        "opset": OPSET,
        "quant": QUANT,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "seconds": round(seconds, 1),
        "built_by": "rag.embed.onnx_export.ensure_onnx",
    }


def _bert_module(folder: Path, classifier: Path | None = None) -> Any:
    """The folder's BERT + mean pooling + normalisation as a torch module (float32);
    with `classifier`, its weights over the folder's and the head's logits instead."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    weights = {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors")).items()}  # fmt: skip
    if classifier is not None:  # the pair classifier's names: "bert." prefixes
        with np.load(classifier) as z:
            weights.update({k.removeprefix("bert."): torch.from_numpy(z[k].astype(np.float32)) for k in z.files})  # fmt: skip

    cfg = _read_json(folder / "config.json")
    H, nh = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    layers, eps = int(cfg["num_hidden_layers"]), float(cfg.get("layer_norm_eps", 1e-12))
    F = torch.nn.functional

    class PooledBert(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # buffers, not closure constants: the export makes them initialisers, which
            # is what quantize_dynamic quantises
            for k, v in weights.items():
                self.register_buffer(k.replace(".", "__"), v)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            w = {k.replace("__", "."): v for k, v in self.named_buffers()}
            B, n = input_ids.shape
            d = H // nh
            x = w["embeddings.word_embeddings.weight"][input_ids]
            x = x + w["embeddings.position_embeddings.weight"][:n].unsqueeze(0)
            x = x + w["embeddings.token_type_embeddings.weight"][0]
            x = F.layer_norm(x, (H,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)  # fmt: skip
            m = attention_mask.to(x.dtype)
            bias = (1.0 - m)[:, None, None, :] * -1e4  # padded keys get no attention
            for i in range(layers):
                p = f"encoder.layer.{i}."

                def lin(t, name, p=p):
                    return F.linear(t, w[p + name + ".weight"], w[p + name + ".bias"])

                def norm(t, name, p=p):
                    return F.layer_norm(t, (H,), w[p + name + ".weight"], w[p + name + ".bias"], eps)  # fmt: skip

                def heads(t):
                    return t.view(B, n, nh, d).transpose(1, 2)

                q = heads(lin(x, "attention.self.query"))
                k = heads(lin(x, "attention.self.key"))
                v = heads(lin(x, "attention.self.value"))
                a = torch.softmax(q @ k.transpose(-1, -2) / d**0.5 + bias, dim=-1)
                c = (a @ v).transpose(1, 2).reshape(B, n, H)
                x = norm(lin(c, "attention.output.dense") + x, "attention.output.LayerNorm")
                x = norm(lin(F.gelu(lin(x, "intermediate.dense")), "output.dense") + x, "output.LayerNorm")  # fmt: skip
            pooled = (x * m[:, :, None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1e-9)
            if classifier is not None:  # the pair classifier's head reads the mean
                return F.linear(pooled, w["classifier.weight"], w["classifier.bias"])
            return F.normalize(pooled, p=2.0, dim=1)

    return PooledBert().eval()


def _export_fp32(folder: Path, out: Path, classifier: Path | None = None) -> None:
    import warnings

    import torch

    module = _bert_module(folder, classifier)
    ids = torch.tensor([[0, 100, 200, 2], [0, 300, 2, 1]], dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.long)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module,
            (ids, mask),
            str(out),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },  # fmt: skip
            opset_version=OPSET,
            dynamo=False,
        )


def _quantise(src: Path, dst: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise ModelError(
            f"cannot quantise the ONNX export: {e}; pip install onnx onnxruntime"
        ) from e
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=getattr(QuantType, QUANT["weight_type"]),
        per_channel=QUANT["per_channel"],
        op_types_to_quantize=QUANT["ops"],
    )
