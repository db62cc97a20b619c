"""`rag index copy`: move an index's vectors into Milvus without embedding anything again.

The FAISS vectors are read back (`reconstruct_n`), the BM25 weights become sparse
vectors (`BM25Index.term_part`), and a new catalogue version that names the Milvus
collection is written, in the same index folder (the FAISS version stays as the previous
one) or in another (`--index`). Searching the copy gives the same chunks as the original.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.config import Settings, check_store
from rag.errors import ConfigError
from rag.index.hybrid import HybridIndex
from rag.index.store import FAISS, store_kind
from rag.index.versions import _write_version, index_lock

_BATCH = 5000  # chunks read from FAISS and written to Milvus at a time


@dataclass(frozen=True)
class CopyReport:
    index_dir: str
    uri: str
    collection: str
    n_docs: int
    n_chunks: int
    seconds: float


def copy_index(
    src: str | Path,
    uri: str,
    out: str | Path | None = None,
    kb: str | None = None,
    settings: Settings | None = None,
    replace: bool = False,
    log: Callable[[str], None] | None = None,
) -> CopyReport:
    """Copy the FAISS index in `src` to the Milvus store `uri` (a .db file or a server),
    knowledge base `kb` (default: the name of the `out` folder), and write its catalogue
    to `out` (default `src`)."""
    from rag.index.milvus import MilvusStore, collection_name

    log = log or (lambda m: print(m, file=sys.stderr))
    check_store(uri)
    if store_kind(uri) == FAISS:
        raise ConfigError("--to 应是 Milvus 存储：以 .db 结尾的文件，或 http://主机:19530")
    t0 = time.perf_counter()
    settings = (settings or Settings()).replace(index_dir=str(src), store=FAISS)
    source = HybridIndex.open(src, settings)
    if source.store.kind != FAISS:
        raise ConfigError(f"{src}：这个索引已经在 Milvus 中（{source.manifest['store']['uri']}）")
    out_dir = Path(out) if out is not None else Path(src)
    name = collection_name(kb or out_dir.resolve().name)
    n, dim = len(source), source.manifest["embedding"]["dim"]
    with index_lock(out_dir, log=log):
        store = MilvusStore.create(
            uri,
            name,
            dim,
            n_rows=n,
            ann_min=settings.ann_min_chunks,
            hnsw_m=settings.hnsw_m,
            ef_search=settings.hnsw_ef_search,
            replace=replace,
        )
        terms = store.sparse_rows(source.bm25, np.arange(n))
        faiss, embedded = source.vectors.client, source.n_embedded
        for a in range(0, n, _BATCH):
            b = min(a + _BATCH, n)
            # rows an ingest has not embedded yet get Milvus's placeholder (zeros) and
            # keep the manifest's n_embedded: the next ingest fills them in there
            vecs = np.zeros((b - a, dim), np.float32)
            if a < embedded:
                vecs[: min(b, embedded) - a] = faiss.reconstruct_n(a, min(b, embedded) - a)
            store.write(
                source.ids[a:b],
                source.doc_ids[a:b],
                vecs,
                terms[a:b],
                source.docs,
                fresh=True,
            )
            log(f"已复制 {b}/{n} 个分块")
        # copies: _write_version records new text offsets in these dicts
        docs = {k: dict(v) for k, v in source.docs.items()}
        manifest = {
            **{k: v for k, v in source.manifest.items() if k != "docs"},
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "store": store.record(),
            "settings": {**source.manifest.get("settings", {}), "store": uri},
            "docs": docs,
        }
        _write_version(out_dir, source, manifest, source.table, source.bm25, store, {}, None)
    return CopyReport(str(out_dir), uri, name, len(docs), n, round(time.perf_counter() - t0, 2))


def cmd_copy(args) -> int:
    r = copy_index(
        args.from_dir,
        args.to,
        out=args.index,
        kb=args.kb,
        settings=Settings.load(args.config),
        replace=args.replace,
    )
    print(
        f"已把 {r.n_docs} 个文档、{r.n_chunks} 个分块复制到 {r.uri} 的集合 {r.collection}"
        f"（未重新计算向量，用时 {r.seconds:.1f} 秒）；索引目录：{r.index_dir}"
    )
    return 0


def add_index_parser(subparsers, common) -> None:
    """`rag index copy --from DIR --to URI`: registered by rag.serve.cli."""
    ix = subparsers.add_parser("index", help="manage where an index is stored")
    sub = ix.add_subparsers(dest="index_cmd", required=True)
    cp = sub.add_parser(
        "copy",
        parents=[common],  # --index: the copy's catalogue folder (default --from); --config
        help="copy an index's vectors to Milvus without re-embedding",
        description="Copy the FAISS index in --from into a Milvus store (a milvus-lite .db "
        "file or a server) and write its catalogue to --index (default: --from).",
    )
    cp.add_argument("--from", dest="from_dir", required=True, metavar="DIR", help="index folder")
    cp.add_argument(
        "--to", required=True, metavar="URI", help="x.db, http://host:19530 or milvus://host:19530"
    )
    cp.add_argument("--kb", metavar="NAME", help="knowledge base name (default: the folder name)")
    cp.add_argument(
        "--replace", action="store_true", help="overwrite a collection that already holds rows"
    )
    cp.set_defaults(func=cmd_copy)
