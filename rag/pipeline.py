"""One way to assemble the system from settings, shared by the CLI, the chat app and eval."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings


def make_embedder(settings: Settings):
    from rag.embed import Embedder

    return Embedder.from_settings(settings)


@dataclass
class RagSystem:
    settings: Settings
    index: object  # HybridIndex
    embedder: object
    retriever: object  # HybridRetriever
    answerer: object  # ExtractiveAnswerer (or an LLM answerer wrapping it)

    def ask(self, question: str, top_k: int | None = None, **filters):
        return self.answerer.answer(question, top_k=top_k, **filters)

    def reload(self) -> None:
        """Pick up a new index version (after an ingest) without reloading the model."""
        from rag.index import HybridIndex

        self.index = HybridIndex.open(self.settings.index_path, self.settings)
        self.retriever.index = self.index


def load_system(
    settings: Settings, embedder=None, index_dir: str | Path | None = None
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
        warm_up(background=True)  # started before importing llama-index, which it overlaps
    from rag.index import HybridIndex, warm_up_segmenter

    if exists:
        warm_up_segmenter(settings.index_path, background=True)
    from rag.llm import make_answerer
    from rag.retrieve import HybridRetriever

    index = HybridIndex.open(settings.index_path, settings)
    if index.manifest["embedding"]["model"] != embedder.model_id:
        from rag.errors import IndexStoreError

        raise IndexStoreError(
            f"{settings.index_path}: built with {index.manifest['embedding']['model']}, "
            f"but the settings ask for {embedder.model_id}; re-run `rag ingest` with the same model"
        )
    retriever = HybridRetriever(index, embedder, settings)
    answerer = make_answerer(settings, retriever, embedder)
    return RagSystem(settings, index, embedder, retriever, answerer)
