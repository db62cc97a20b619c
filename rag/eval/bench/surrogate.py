"""Stand-in passage vectors, so 10k- and 69k-article indexes can be built in minutes.

Embedding 200k chunks with the real model takes hours on two cores, while the cost of
searching depends only on the number of vectors and their dimension. `SurrogateEmbedder`
has `rag.embed.embedder.Embedder`'s interface and returns, for passages, either

- ``hash``: signed hashed character-bigram counts, normalised (lexically similar texts
  get similar vectors, so approximate search has real neighbourhoods to find and its
  recall means something), or
- ``random``: random unit vectors (no structure: the hardest case for approximate search).

Queries get the same kind of vector. With `real_query` the real model also embeds every
query first, so query latency includes the true cost of embedding a query.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

E5_SMALL_DIM = 384
_MUL = np.uint64(0x9E3779B97F4A7C15)


def hashed_bigrams(texts: list[str], dim: int = E5_SMALL_DIM) -> np.ndarray:
    """(len(texts), dim) float32 unit rows: signed counts of hashed character bigrams."""
    out = np.zeros((len(texts), dim), np.float32)
    step = 4096
    for a in range(0, len(texts), step):
        part = texts[a : a + step]
        lens = np.fromiter((len(t) for t in part), np.int64, len(part))
        cps = np.frombuffer("".join(part).encode("utf-32-le"), np.uint32).astype(np.uint64)
        if len(cps) < 2:
            continue
        row = np.repeat(np.arange(len(part)), lens)
        same = row[:-1] == row[1:]  # bigrams inside one text
        key = (cps[:-1] * np.uint64(1_000_003) + cps[1:])[same] * _MUL
        r = row[:-1][same]
        bucket = ((key >> np.uint64(33)) % np.uint64(dim)).astype(np.int64)
        sign = ((key >> np.uint64(17)) & np.uint64(1)).astype(np.float32) * 2 - 1
        flat = np.bincount(r * dim + bucket, weights=sign, minlength=len(part) * dim)
        out[a : a + len(part)] = flat.reshape(len(part), dim)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    empty = norms[:, 0] == 0
    out[empty, 0], norms[empty] = 1.0, 1.0
    return out / norms


def random_units(texts: list[str], dim: int = E5_SMALL_DIM) -> np.ndarray:
    """Random unit rows, seeded by each text, so the same text always gets the same one."""
    out = np.empty((len(texts), dim), np.float32)
    for i, t in enumerate(texts):
        seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
        out[i] = np.random.default_rng(seed).standard_normal(dim, dtype=np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


class SurrogateEmbedder:
    """`rag.embed.embedder.Embedder`'s interface with stand-in vectors (see the module docstring)."""

    def __init__(self, kind: str = "hash", dim: int = E5_SMALL_DIM, real_query=None):
        if kind not in ("hash", "random"):
            raise ValueError(f"surrogate kind {kind!r}: use 'hash' or 'random'")
        self.kind = kind
        self._dim = dim
        self.real_query = real_query  # an Embedder whose embed_query is timed, or None
        self.model_name = f"bench-surrogate-{kind}"
        self.batch_size = 32
        self.query_ms: list[float] = []  # the real model's share of each embed_query

    @property
    def model_id(self) -> str:
        return f"bench-surrogate-{self.kind}-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def _vectors(self, texts: list[str]) -> np.ndarray:
        f = hashed_bigrams if self.kind == "hash" else random_units
        return f(texts, self._dim)

    def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._vectors(list(texts))

    def warm_up(self, background: bool = False):
        """The real query model's warm-up (`rag.system.load_system` calls it)."""
        if self.real_query is not None and hasattr(self.real_query, "warm_up"):
            return self.real_query.warm_up(background=background)
        return None

    def embed_query(self, text: str) -> np.ndarray:
        if self.real_query is not None:
            t = time.perf_counter()
            self.real_query.embed_query(text)
            self.query_ms.append((time.perf_counter() - t) * 1e3)
        return self._vectors([text])[0]
