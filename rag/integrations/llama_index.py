"""llama-index at the edge: our retriever as a `BaseRetriever`, our embedder as a
`BaseEmbedding`, chunks as `TextNode`s, and any llama-index `LLM` as our generator.

The only module of `rag` that imports llama-index at import time; nothing else in the
pipeline passes llama-index objects around, so `rag ask` with the extractive answerer
never pays llama-index's seconds of start-up.

    from rag.integrations.llama_index import as_retriever
    from llama_index.core.query_engine import RetrieverQueryEngine
    engine = RetrieverQueryEngine.from_args(as_retriever(system.retriever), llm=my_llm)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import LLM, ChatMessage, MessageRole
from llama_index.core.schema import (
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)
from pydantic import PrivateAttr

from rag.types import Chunk, DocMeta, Filters


def to_node(chunk: Chunk, meta: DocMeta | None = None) -> TextNode:
    """A chunk as a llama-index TextNode carrying its offsets and its document's metadata."""
    m = {**(meta.to_dict() if meta else {}), "doc_id": chunk.doc_id}
    node = TextNode(
        id_=chunk.id,
        text=chunk.text,
        start_char_idx=chunk.start,
        end_char_idx=chunk.end,
        metadata=m,
        excluded_embed_metadata_keys=list(m),
        excluded_llm_metadata_keys=[k for k in m if k not in ("title", "date")],
    )
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=chunk.doc_id)
    return node


class LlamaIndexRetriever(BaseRetriever):
    """`rag.search.retriever.HybridRetriever` as a llama-index retriever."""

    def __init__(self, retriever: Any, top_k: int | None = None, filters: Filters | None = None):
        super().__init__()
        self._rag = retriever
        self._top_k = top_k
        self._filters = filters

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        res = self._rag.search(query_bundle.query_str, top_k=self._top_k, filters=self._filters)
        index = self._rag.index
        out = []
        for h in res.hits:
            node = to_node(h.chunk, index.doc_meta(h.doc_id))
            node.metadata.update({"dense_rank": h.dense_rank, "bm25_rank": h.bm25_rank})
            out.append(NodeWithScore(node=node, score=h.score))
        return out


def as_retriever(
    retriever: Any, top_k: int | None = None, filters: Filters | None = None
) -> LlamaIndexRetriever:
    """Our hybrid retriever over an index (`load_system(settings).retriever`) as a
    llama-index `BaseRetriever`, for any query engine: nodes carry the chunk ids, offsets,
    fused scores and document metadata, `filters` (`rag.types.Filters`) apply to every
    query. `CitationQueryEngine.from_args(index=None, retriever=as_retriever(r), llm=llm)`
    answers with [n] citations of our passages (tests/test_llama_index.py)."""
    return LlamaIndexRetriever(retriever, top_k, filters)


class LlamaIndexEmbedding(BaseEmbedding):
    """An `Embedder` as a llama-index embedding model: `embed_model=LlamaIndexEmbedding(e)`."""

    _embedder: Any = PrivateAttr()

    def __init__(self, embedder: Any = None, **kwargs: Any):
        if embedder is None:
            from rag.embed.embedder import Embedder

            embedder = Embedder()
        kwargs.setdefault("model_name", embedder.model_name)
        kwargs.setdefault("embed_batch_size", embedder.batch_size)
        super().__init__(**kwargs)
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "RagEmbedding"

    @property
    def embedder(self) -> Any:
        return self._embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed_query(query).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed_passages([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed_passages(texts).tolist()


_ROLES = {
    "system": MessageRole.SYSTEM,
    "user": MessageRole.USER,
    "assistant": MessageRole.ASSISTANT,
}


class LlamaIndexGenerator:
    """Any llama-index `LLM` as our generator: plain (role, content) messages in, text out.

    `rag.llm` speaks only `Message` pairs and this interface, so an `LLM` from any
    llama-index integration (OpenAI-like, Ollama, llama.cpp, Bedrock ...) answers.
    """

    def __init__(self, llm: LLM, name: str | None = None, serial: bool = False):
        self.llm = llm
        self.name = name or type(llm).__name__
        # an in-process model (llama.cpp) serves one call at a time; one shared by every
        # chat session must queue them, a remote endpoint need not
        self._lock = threading.Lock() if serial else contextlib.nullcontext()

    @staticmethod
    def _messages(messages: Sequence[tuple[str, str]]) -> list[ChatMessage]:
        return [ChatMessage(role=_ROLES[r], content=c) for r, c in messages]

    def stream(self, messages: Sequence[tuple[str, str]]) -> Iterator[str]:
        with self._lock:
            for r in self.llm.stream_chat(self._messages(messages)):
                if r.delta:
                    yield r.delta

    def complete(self, messages: Sequence[tuple[str, str]]) -> str:
        with self._lock:
            return self.llm.chat(self._messages(messages)).message.content or ""
