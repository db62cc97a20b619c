"""The llama-index edge: our retriever in a real llama-index query engine, our embedder
as a llama-index embedding, any llama-index LLM as our generator, chunks as TextNodes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402

from rag.ingest.chunking import chunk_document  # noqa: E402
from rag.integrations.llama_index import (  # noqa: E402
    LlamaIndexEmbedding,
    LlamaIndexGenerator,
    as_retriever,
    to_node,
)
from rag.types import DocMeta, Filters  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUESTION = "威海累计建成地下综合管廊多少公里？"


def test_a_llama_index_query_engine_runs_on_our_retriever(corpus_system) -> None:
    retriever = as_retriever(corpus_system.retriever, top_k=3)
    assert isinstance(retriever, BaseRetriever)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(max_tokens=8))
    response = engine.query(QUESTION)
    ours = corpus_system.retriever.search(QUESTION, top_k=3).hits
    nodes = response.source_nodes
    assert [n.node.node_id for n in nodes] == [h.chunk_id for h in ours]
    assert [n.score for n in nodes] == pytest.approx([h.score for h in ours])
    top = nodes[0].node
    assert "40.6公里" in top.get_content()
    assert top.metadata["doc_id"] == ours[0].doc_id and top.metadata["title"]
    assert top.ref_doc_id == ours[0].doc_id
    assert response.response  # the mock LLM wrote something from the retrieved context


def test_a_citation_query_engine_on_our_retriever_gives_cited_answers(corpus_system) -> None:
    """llama-index's CitationQueryEngine over our retriever, its LLM an OpenAI-compatible
    server on a socket (llama-index's OpenAILike client) that answers from the numbered
    sources it is sent: the [n] in the answer points at the source holding the fact."""
    import re

    from fake_openai import FakeOpenAI, Reply
    from llama_index.core.query_engine import CitationQueryEngine
    from llama_index.llms.openai_like import OpenAILike

    def from_sources(body: dict) -> str:
        prompt = "\n".join(str(m.get("content") or "") for m in body["messages"])
        parts = re.split(r"Source (\d+):", prompt)  # the engine labels passages so
        for n, text in zip(parts[1::2], parts[2::2]):
            if "40.6公里" in text:
                return f"威海累计建成地下综合管廊40.6公里[{n}]。"
        return "文件未提及。"

    ours = corpus_system.retriever.search(QUESTION, top_k=3).hits
    with FakeOpenAI() as srv:
        srv.script(Reply(from_sources))
        llm = OpenAILike(
            model="fake", api_base=srv.base_url, api_key="k", is_chat_model=True, max_retries=0
        )
        engine = CitationQueryEngine.from_args(
            index=None, retriever=as_retriever(corpus_system.retriever, top_k=3), llm=llm
        )
        response = engine.query(QUESTION)
        sent = srv.requests[-1]
    n = int(re.search(r"\[(\d+)\]", response.response).group(1))
    cited = response.source_nodes[n - 1].node
    assert "40.6公里" in response.response and "40.6公里" in cited.get_content()
    assert cited.metadata["doc_id"] == ours[0].doc_id
    assert {s.node.metadata["doc_id"] for s in response.source_nodes} == {h.doc_id for h in ours}
    assert "40.6公里" in str(sent["body"]["messages"])  # our passage reached the LLM


def test_the_adapter_passes_filters_through(corpus_system) -> None:
    hits = corpus_system.retriever.search(QUESTION, top_k=3).hits
    other = next(d for d in corpus_system.index.docs if d != hits[0].doc_id)
    nodes = as_retriever(corpus_system.retriever, filters=Filters(doc_ids=(other,))).retrieve(
        QUESTION
    )
    assert nodes and {n.node.metadata["doc_id"] for n in nodes} == {other}


def test_chunks_become_text_nodes_with_offsets() -> None:
    text = "威海市召开城市更新大会。会议强调精致城市建设。崂山区计划完成投资156亿元。"
    chunks = chunk_document("doc-1", text, size=20, overlap=0)
    nodes = [to_node(c, DocMeta(title="测试", date="2023-01-02")) for c in chunks]
    for c, n in zip(chunks, nodes, strict=True):
        assert n.node_id == c.id and n.text == c.text
        assert text[n.start_char_idx : n.end_char_idx] == n.text
        assert n.metadata == {"title": "测试", "date": "2023-01-02", "doc_id": "doc-1"}
        assert n.ref_doc_id == "doc-1"


def test_llama_index_embedding_returns_the_embedder_vectors(embedder) -> None:
    li = LlamaIndexEmbedding(embedder)
    assert isinstance(li, BaseEmbedding)
    assert li.model_name == embedder.model_name and li.embedder is embedder
    q = "崂山区2023年计划完成投资多少？"
    np.testing.assert_allclose(li.get_query_embedding(q), embedder.embed_query(q), atol=1e-6)
    np.testing.assert_allclose(
        asyncio.run(li.aget_query_embedding(q)), embedder.embed_query(q), atol=1e-6
    )
    texts = ["威海市召开城市更新大会。", "崂山区计划完成投资156亿元。"]
    np.testing.assert_allclose(
        li.get_text_embedding_batch(texts), embedder.embed_passages(texts), atol=1e-5
    )


def test_any_llama_index_llm_is_a_generator() -> None:
    gen = LlamaIndexGenerator(MockLLM(max_tokens=5))
    messages = [("system", "只根据文档回答。"), ("user", "问题")]
    streamed = "".join(gen.stream(messages))
    assert streamed and streamed == gen.complete(messages)


def test_ask_and_ingest_do_not_import_llama_index() -> None:
    code = (
        "import sys\n"
        "import rag.serve.cli, rag.system, rag.index.hybrid, rag.search.retriever\n"
        "import rag.read.extractive, rag.ingest.loaders\n"
        "assert 'llama_index' not in sys.modules, 'llama_index imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
