"""The llama-index baseline: the same work done the way a new llama-index user would.

`VectorStoreIndex.from_documents(docs, embed_model=...)` with the default chunking
(SentenceSplitter, 1024 tokens, 200 overlap), the default in-memory SimpleVectorStore,
the default retriever (top-2). With the real model (`li_embed`) the embedding is what a
llama-index user writes for a sentence-transformers model, `HuggingFaceEmbedding` (the
same folder and prefixes, its default batch size 10); with stand-in vectors it is our
adapter, so the stand-ins are identical. At sizes where llama-index's own
chunking is not run, its nodes are our chunks with the same stand-in vectors, so the
vector-search work is identical. Run as `python -m rag.eval.bench.baseline PHASE PARAMS OUT`.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rag.eval.bench import measure
from rag.eval.bench.phases import _settings, main, token_stats

LI_DEFAULT_EMBED_BATCH = 10  # llama_index.core.constants.DEFAULT_EMBED_BATCH_SIZE


def _documents(corpus: str) -> list:
    from llama_index.core import Document

    docs = []
    for shard in sorted(Path(corpus).glob("*.jsonl")):
        with open(shard, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                meta = {"date": rec["date"]} if rec.get("date") else {}
                docs.append(Document(text=rec["text"], id_=rec["id"], metadata=meta))
    return docs


def _adapter(embedder: Any):
    from rag.integrations.llama_index import LlamaIndexEmbedding

    return LlamaIndexEmbedding(embedder, embed_batch_size=LI_DEFAULT_EMBED_BATCH)


def _timed_hf_embedding(emb: Any):
    """`HuggingFaceEmbedding` for our model folder, recording what it embeds and the time."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as our embedder sets it
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: nothing to fetch
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from pydantic import PrivateAttr

    class Timed(HuggingFaceEmbedding):
        _seen: list = PrivateAttr(default_factory=list)
        _secs: list = PrivateAttr(default_factory=lambda: [0.0, 0.0])  # wall, CPU

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            t, c = time.perf_counter(), time.process_time()
            out = super()._get_text_embeddings(texts)
            self._secs[0] += time.perf_counter() - t
            self._secs[1] += time.process_time() - c
            self._seen.extend(texts)
            return out

    return Timed(
        model_name=emb.model_path,
        query_instruction=emb.query_prefix,
        text_instruction=emb.passage_prefix,
        device="cpu",
    )


def phase_li_embed(p: dict) -> dict:
    """from_documents with the real model: chunking + embedding throughput."""
    from llama_index.core import VectorStoreIndex

    settings = _settings(p.get("index_dir", "/nonexistent"))
    from rag.embed.embedder import Embedder

    emb = Embedder.from_settings(settings)  # the model folder, prefixes and token counter
    model = _timed_hf_embedding(emb)
    model.get_query_embedding("预热")  # load the model outside the timed ingest
    docs = _documents(p["corpus"])
    t = time.perf_counter()
    index = VectorStoreIndex.from_documents(docs, embed_model=model)
    total = time.perf_counter() - t
    seconds, cpu_seconds = model._secs
    toks = token_stats(emb, model._seen, model.embed_batch_size, model.embed_batch_size)
    n_nodes = len(index.docstore.docs)
    return {
        "embed_model": f"HuggingFaceEmbedding(embed_batch_size={model.embed_batch_size})",
        "docs": len(docs),
        "chunks": n_nodes,
        "ingest_s": round(total, 3),
        "embed_s": round(seconds, 3),
        "docs_per_s": round(len(docs) / total, 3),
        "chunks_per_s": round(n_nodes / total, 3),
        "embed_tokens_per_s": round(toks["tokens"] / seconds, 1),
        "embed_padded_tokens_per_s": round(toks["padded_tokens"] / seconds, 1),
        "embed_cpu_s": round(cpu_seconds, 3),
        "embed_tokens_per_cpu_s": round(toks["tokens"] / max(cpu_seconds, 1e-9), 1),
        "tokens": toks,
        "peak_rss": measure.peak_rss(),
    }


def _nodes_from_our_index(index_dir: str) -> list:
    """Our chunks at this size, with the vectors our index holds, as llama-index nodes."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    from rag.index.hybrid import HybridIndex

    idx = HybridIndex.open(index_dir, _settings(index_dir))
    vecs = idx.vectors.vectors()
    nodes = []
    for row in range(len(idx)):
        node = TextNode(id_=idx.ids[row], text=idx.texts[row], embedding=vecs[row].tolist())
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=idx.doc_ids[row])
        nodes.append(node)
    return nodes


def phase_li_serve(p: dict) -> dict:
    """Build the llama-index index at this size, then time its default retriever."""
    from llama_index.core import VectorStoreIndex

    from rag.embed.embedder import Embedder
    from rag.eval.bench.surrogate import SurrogateEmbedder

    settings = _settings(p["index_dir"])
    real = Embedder.from_settings(settings)
    real.embed_query("预热")
    emb = SurrogateEmbedder(p.get("kind", "hash"), real_query=real)
    embed_model = _adapter(emb)
    rss0 = measure.rss()
    out: dict[str, Any] = {"mode": p["mode"]}
    if p["mode"] == "documents":  # llama-index's own chunking, stand-in vectors
        docs = _documents(p["corpus"])
        t, c = time.perf_counter(), time.process_time()
        index = VectorStoreIndex.from_documents(docs, embed_model=embed_model)
        build = time.perf_counter() - t  # chunking + stand-in vectors (negligible) + docstore
        cpu = time.process_time() - c
        out.update(docs=len(docs), docs_per_s=round(len(docs) / build, 2), cpu_s=round(cpu, 3))
        out["docs_per_cpu_s"] = round(len(docs) / max(cpu, 1e-9), 2)
    else:  # our chunks and vectors as nodes
        t = time.perf_counter()
        nodes = _nodes_from_our_index(p["index_dir"])
        prep = time.perf_counter() - t
        t = time.perf_counter()
        index = VectorStoreIndex(nodes, embed_model=embed_model)
        build = time.perf_counter() - t
        out["node_prep_s"] = round(prep, 3)
        del nodes
    out["build_s"] = round(build, 3)
    out["chunks"] = len(index.docstore.docs)
    out["rss_index"] = measure.rss()
    out["memory_bytes_per_chunk"] = round((out["rss_index"] - rss0) / max(out["chunks"], 1), 1)
    retriever = index.as_retriever()
    for q in p["warmup"]:
        retriever.retrieve(q)
    emb.query_ms.clear()
    measure.reset_peak_rss()
    lat = []
    deadline = time.perf_counter() + p.get("max_query_s", 120)
    for q in p["queries"]:
        t = time.perf_counter()
        retriever.retrieve(q)
        lat.append((time.perf_counter() - t) * 1e3)
        if time.perf_counter() > deadline:
            break
    out["queries"] = len(lat)
    out["top_k"] = retriever._similarity_top_k
    out["retrieve_ms"] = measure.summary(lat)
    out["search_ms"] = measure.summary([a - b for a, b in zip(lat, emb.query_ms)])
    out["real_query_embed_ms"] = measure.summary(emb.query_ms)
    out["peak_rss_serving"] = measure.peak_rss()
    if p.get("persist_dir"):
        shutil.rmtree(p["persist_dir"], ignore_errors=True)
        t = time.perf_counter()
        index.storage_context.persist(persist_dir=p["persist_dir"])
        out["persist_s"] = round(time.perf_counter() - t, 3)
        out["persist_bytes"] = sum(measure.folder_bytes(Path(p["persist_dir"])).values())
    return out


def phase_li_startup(p: dict) -> dict:
    """Process start to first retrieval from a persisted llama-index index."""
    t_main = time.time()
    from llama_index.core import StorageContext, load_index_from_storage

    from rag.embed.embedder import Embedder
    from rag.eval.bench.surrogate import SurrogateEmbedder

    t_import = time.time()
    settings = _settings(p.get("index_dir", "/nonexistent"))
    emb = SurrogateEmbedder(p.get("kind", "hash"), real_query=Embedder.from_settings(settings))
    ctx = StorageContext.from_defaults(persist_dir=p["persist_dir"])
    index = load_index_from_storage(ctx, embed_model=_adapter(emb))
    t_open = time.time()
    index.as_retriever().retrieve(p["question"])
    t_answer = time.time()
    return {
        "startup_s": round(t_answer - p["spawned"], 3),
        "interpreter_s": round(t_main - p["spawned"], 3),
        "imports_s": round(t_import - t_main, 3),
        "open_s": round(t_open - t_import, 3),
        "first_answer_s": round(t_answer - t_open, 3),
    }


PHASES = {"li_embed": phase_li_embed, "li_serve": phase_li_serve, "li_startup": phase_li_startup}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], PHASES))
