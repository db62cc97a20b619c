"""The one object that wires a loaded index, retriever and answerer.

The CLI, the chat UI and the eval harness all build the system here, so each of them
answers with the same parts made from the same settings; it is the only module that
knows every stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.embed.embedder import Embedder
from rag.errors import IndexStoreError
from rag.index.hybrid import HybridIndex, warm_up_segmenter
from rag.read.reader import Reader
from rag.search.retriever import HybridRetriever
from rag.types import Answer, Answerer, Filters


def make_embedder(settings: Settings) -> Embedder:
    return Embedder.from_settings(settings)


def make_answerer(settings: Settings, retriever: HybridRetriever, embedder=None) -> Answerer:
    """The configured answerer: extractive, or an LLM one wrapping it (rag.llm)."""
    from rag.llm.answerer import make_answerer as make_llm_answerer

    generator = None
    if settings.llm != "extractive":  # llama-index only for a generator that needs it
        from rag.integrations.llm_backends import shared_llm

        generator = shared_llm(settings)
    return make_llm_answerer(settings, retriever, embedder, generator)


@dataclass
class RagSystem:
    settings: Settings
    index: HybridIndex
    embedder: Embedder
    retriever: HybridRetriever
    answerer: Answerer

    def ask(
        self, question: str, top_k: int | None = None, filters: Filters | None = None
    ) -> Answer:
        return self.answerer.answer(question, top_k=top_k, filters=filters)

    def reload(self) -> None:
        """Pick up a new index version (after an ingest) without reloading the model.

        The reader is rebuilt with the index: its cache holds readings of the old
        version's passages and its corpus statistics (IDF) are the old version's.
        """
        self.index = HybridIndex.open(self.settings.index_path, self.settings)
        self.retriever.index = self.index
        self.retriever.reader = Reader(self.index)


def load_system(
    settings: Settings, embedder: Embedder | None = None, index_dir: str | Path | None = None
) -> RagSystem:
    """Open the index and build retriever and answerer.

    The query encoder and the index's word segmenter load in background threads while
    the index opens, so the first question waits for whichever takes longer, not both.
    """
    if index_dir is not None:
        settings = settings.replace(index_dir=str(index_dir))
    embedder = embedder or make_embedder(settings)
    warm_up = getattr(embedder, "warm_up", None)
    exists = (settings.index_path / "CURRENT").is_file()  # else open() fails: load nothing
    if exists and callable(warm_up):
        warm_up(background=True)
    if exists:
        warm_up_segmenter(settings.index_path, background=True)
    index = HybridIndex.open(settings.index_path, settings)
    if index.manifest["embedding"]["model"] != embedder.model_id:
        raise IndexStoreError(
            f"{settings.index_path}: built with {index.manifest['embedding']['model']}, "
            f"but the settings ask for {embedder.model_id}; re-run `rag ingest` with the same model"
        )
    retriever = HybridRetriever(index, embedder, settings)
    answerer = make_answerer(settings, retriever, embedder)
    return RagSystem(settings, index, embedder, retriever, answerer)
