"""One settings object: defaults here, overridable from a TOML file and from the CLI.

Every index manifest and every evaluation report embeds `Settings.to_dict()`, so a
figure can always be traced back to the configuration that produced it.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

DEFAULT_EMBED_MODEL = "intfloat/multilingual-e5-small"
MIN_CHUNK_SIZE = 20  # below it a chunk cannot hold one Chinese sentence


def _default_cache_dir() -> str:
    return os.environ.get("RAG_CACHE_DIR", str(Path.home() / ".cache" / "rag"))


def _default_index_dir() -> str:
    return os.environ.get("RAG_INDEX", ".rag/index")


@dataclass(frozen=True)
class Settings:
    # where things live
    index_dir: str = field(default_factory=_default_index_dir)
    cache_dir: str = field(default_factory=_default_cache_dir)
    # loading
    max_file_mb: float = 50.0
    clean: bool = True
    # chunking (defaults chosen by measurement, see README "Chunking")
    chunk_size: int = 300
    chunk_overlap: int = 1  # sentences carried over into the next chunk
    # embeddings
    embed_model: str = DEFAULT_EMBED_MODEL
    embed_batch_size: int = 32
    embed_device: str = "cpu"
    query_prefix: str | None = None  # None: chosen from the model name (e5 -> "query: ")
    passage_prefix: str | None = None
    embed_query_threads: int = 0  # torch threads for one query; 0: auto (rag/embed/embedder.py)
    # ingestion: BM25 segmenter of a new index (auto: rjieba if installed, else jieba; an
    # existing index keeps the one it was built with) and worker processes (0: auto, one
    # per core while a core is free; rag/index/hybrid.py)
    tokenizer: str = "auto"
    ingest_workers: int = 0
    # vector index: exact search up to this many chunks, HNSW above
    ann_min_chunks: int = 200_000
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    # retrieval
    top_k: int = 5
    candidate_depth: int = 50
    # fusion "score": weighted sum of normalised evidence (weights below, chosen on the
    # CMRC tuning split, eval/reports/fusion.md); "rrf": weighted reciprocal rank fusion
    fusion: str = "score"
    rrf_k: int = 60
    dense_weight: float = 0.6
    bm25_weight: float = 0.4
    doc_bm25_weight: float = 0.1  # whole-document BM25 as a third signal
    coverage_weight: float = 0.2  # IDF-weighted share of query terms in the chunk (score only)
    number_weight: float = 0.2  # share of the query's numbers in the chunk (score only)
    # answer-aware rerank of the top `evidence_depth` fused chunks (score fusion only): add
    # these times the chunk's best sentence score as an answer (rag.read.reader) and its best
    # one that holds the asked kind of value and year. Chosen on the development sets
    # (CMRC tuning split, CMRC hard negatives, RGB); DRCD held out (eval/reports/fusion.md)
    evidence_depth: int = 10
    evidence_weight: float = 0.3
    evidence_fit_weight: float = 0.15
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    # answering
    llm: str = "extractive"  # extractive | openai | ollama | llamacpp
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_model_path: str | None = None
    llm_timeout_s: float = 60.0  # wall-clock budget for one LLM answer, retries included
    llm_retries: int = 1  # retries of a failed LLM call before its first token
    llm_temperature: float = 0.1
    llm_max_tokens: int = 512
    llm_context_window: int = 4096  # tokens; also bounds the passage text in the prompt
    llm_chat_format: str | None = None  # llamacpp: e.g. "gemma"; None: the GGUF's template
    grounding_threshold: float | None = None  # None: the calibrated one (rag/llm/grounding.py)
    max_answer_sentences: int = 3
    answer_max_chars: int = 110  # the quoted sentences together (about 85 on CMRC, 93 with markers)
    answer_second_ratio: float = 0.5  # another sentence joins if it scores this share of the best
    refusal_threshold: float | None = None  # None: the calibrated value (rag/refusal_model.json)

    def __post_init__(self) -> None:
        if self.fusion not in ("score", "rrf"):
            raise ConfigError(f"fusion must be 'score' or 'rrf', got {self.fusion!r}")
        if self.chunk_size < MIN_CHUNK_SIZE:
            raise ConfigError(
                f"chunk_size must be at least {MIN_CHUNK_SIZE} characters, got {self.chunk_size}"
            )
        if self.chunk_overlap < 0:
            raise ConfigError(f"chunk_overlap must be 0 or more, got {self.chunk_overlap}")
        if self.evidence_depth < 0:
            raise ConfigError(
                f"evidence_depth must be 0 or more (0 turns the answer rerank off), "
                f"got {self.evidence_depth}"
            )

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied; None values are ignored (unset CLI flags)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, **overrides: Any) -> Settings:
        """Defaults, then the TOML file at `path` (or $RAG_CONFIG), then `overrides`."""
        s = cls()
        path = path or os.environ.get("RAG_CONFIG")
        if path:
            p = Path(path)
            try:
                data = tomllib.loads(p.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"{p}: settings file not found") from None
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(f"{p}: not valid TOML ({e})") from None
            data = data.get("rag", data)  # allow a [rag] table or top-level keys
            s = s.replace(**data)
        return s.replace(**overrides)

    @property
    def index_path(self) -> Path:
        return Path(self.index_dir).expanduser()

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser()


API_KEY_ENV = ("RAG_LLM_API_KEY", "OPENAI_API_KEY")


def api_key() -> str | None:
    """The API key from $RAG_LLM_API_KEY, else $OPENAI_API_KEY (None when neither is set)."""
    for name in API_KEY_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None
