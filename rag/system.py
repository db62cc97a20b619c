"""The one object that wires a loaded index, retriever and answerer.

The CLI, the chat UI and the eval harness all build the system here, so each of them
answers with the same parts made from the same settings; it is the only module that
knows every stage.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.embed.embedder import Embedder
from rag.errors import IndexStoreError, NotFoundError
from rag.index.hybrid import HybridIndex, warm_up_segmenter
from rag.org.accounts import OPERATOR, Caller
from rag.org.kbs import KnowledgeBase, KnowledgeBases, kb_not_found
from rag.read.reader import Reader
from rag.search.multi import MultiRetriever
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
    retriever: HybridRetriever | MultiRetriever
    answerer: Answerer
    kbs: tuple[str, ...] = ()  # the knowledge bases searched; () for a bare index

    def ask(
        self, question: str, top_k: int | None = None, filters: Filters | None = None
    ) -> Answer:
        return self.answerer.answer(question, top_k=top_k, filters=filters)

    def reload(self) -> None:
        """Pick up a new index version (after an ingest) without reloading the model.

        The reader is rebuilt with the index: its cache holds readings of the old
        version's passages and its corpus statistics (IDF) are the old version's.
        """
        if isinstance(self.retriever, MultiRetriever):
            self.retriever.reload()
            self.index = self.retriever.index
            return
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
    index = _open_index(settings, embedder)
    retriever = HybridRetriever(index, embedder, settings)
    answerer = make_answerer(settings, retriever, embedder)
    return RagSystem(settings, index, embedder, retriever, answerer)


def _open_index(settings: Settings, embedder: Embedder) -> HybridIndex:
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
    return index


# ---------------------------------------------------------------------- knowledge bases
def readable_kbs(settings: Settings, names: Sequence[str] = (), caller: Caller | None = None
                 ) -> list[KnowledgeBase]:  # fmt: skip
    """The knowledge bases `names` (none: every one) that `caller` may read.

    A named one the caller may not read is refused exactly as one that does not exist,
    so its name tells nothing; unnamed ones the caller may not read are left out.
    """
    caller = caller or OPERATOR
    registry = KnowledgeBases(settings)
    if not names:
        return [kb for kb in registry.list() if caller.may_read(kb.name)]
    out = []
    for name in dict.fromkeys(names):
        if not caller.may_read(name):
            raise kb_not_found(name)
        out.append(registry.get(name))
    return out


class Embedders:
    """One loaded embedding model per model name, shared by the knowledge bases using it."""

    def __init__(self, settings: Settings, loaded: dict[str, Embedder] | None = None):
        self.settings = settings
        self._loaded: dict[str, Embedder] = dict(loaded or {})
        self._lock = threading.Lock()

    def get(self, model: str) -> Embedder:
        with self._lock:
            if model not in self._loaded:
                self._loaded[model] = make_embedder(self.settings.replace(embed_model=model))
            return self._loaded[model]


def load_kb_system(
    settings: Settings,
    names: Sequence[str] = (),
    caller: Caller | None = None,
    embedders: Embedders | None = None,
) -> RagSystem:
    """The system over the knowledge bases `names` (none: every one `caller` may read),
    each searched with its own index and embedding model, hits fused (rag.search.multi).

    Only knowledge bases the caller may read are ever opened: a passage of another one
    cannot reach an answer, a citation or an error message.
    """
    kbs = readable_kbs(settings, names, caller)
    if not kbs:
        raise kb_not_found(names[0] if names else "default")
    for kb in kbs:
        if not kb.built:
            raise IndexStoreError(
                f"知识库“{kb.name}”还没有文档；先运行 rag ingest PATH --kb {kb.name}"
            )
    embedders = embedders or Embedders(settings)
    parts = []
    for kb in kbs:
        s = kb.settings(settings)
        embedder = embedders.get(kb.embed_model)
        parts.append((kb.name, HybridRetriever(_open_index(s, embedder), embedder, s)))
    # one knowledge base: its own settings, so what writes through the system (the chat
    # UI's uploads, reload) writes its folder
    own = parts[0][1].settings if len(parts) == 1 else settings
    retriever = MultiRetriever(parts, own)
    embedder = parts[0][1].embedder
    answerer = make_answerer(own, retriever, embedder)
    return RagSystem(own, retriever.index, embedder, retriever, answerer,
                     tuple(kb.name for kb in kbs))  # fmt: skip


class KbSystems:
    """One loaded system per knowledge base, opened on first use and kept (a server's).

    `get(name, caller)` refuses a knowledge base the caller may not read exactly as one
    that does not exist; `names(caller)` lists only the readable ones.
    """

    def __init__(self, settings: Settings, embedders: Embedders | None = None):
        self.settings = settings
        self.embedders = embedders or Embedders(settings)
        self.registry = KnowledgeBases(settings)
        self._systems: dict[str, RagSystem] = {}
        self._lock = threading.Lock()

    def names(self, caller: Caller | None = None) -> list[str]:
        caller = caller or OPERATOR
        return [kb.name for kb in self.registry.list() if kb.built and caller.may_read(kb.name)]

    def get(self, name: str, caller: Caller | None = None) -> RagSystem:
        caller = caller or OPERATOR
        if not caller.may_read(name):
            raise kb_not_found(name)
        try:  # renamed or deleted since it was loaded: gone for every caller at once
            self.registry.get(name)
        except NotFoundError:
            self.forget(name)
            raise
        with self._lock:
            system = self._systems.get(name)
            if system is None:
                system = load_kb_system(self.settings, [name], caller, self.embedders)
                self._systems[name] = system
            return system

    def forget(self, name: str) -> None:
        """Drop a loaded system (its knowledge base was renamed or deleted)."""
        with self._lock:
            self._systems.pop(name, None)
