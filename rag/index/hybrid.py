"""The persistent hybrid index (FAISS + BM25 + chunk table) and incremental ingestion.

Layout of an index directory::

    DIR/CURRENT            name of the live version folder (replaced atomically)
    DIR/.lock              held by the one ingest allowed at a time
    DIR/v-<stamp>/         manifest.json, texts.jsonl, vectors.faiss, bm25_tf.npz,
                           bm25_vocab.json and the chunk table (rag/index/table.py)

With the Milvus store the vectors are not in the folder: the manifest's "store" names
the collection that holds them (rag/index/milvus.py); everything else is as above.

An ingest writes a complete new version folder, fsyncs it, then swaps CURRENT with
os.replace: a crash at any point leaves the previous version loadable. Nothing is pickled.

Opening reads no document and segments nothing: BM25 weights are saved precomputed, and
the manifest records the segmenter, so queries are tokenized the way the index was.
Large batches of new documents are chunked, normalised and segmented by one worker
process per core; new vectors are appended to the FAISS index when no row is removed.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import importlib.util
import json
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from pathlib import Path

from rag.config import Settings
from rag.errors import IndexSchemaError, IndexStoreError
from rag.index.bm25 import BM25Index
from rag.index.fill_status import last_failure
from rag.index.segment import LEGACY_SEGMENTER, SEGMENTERS, get_segmenter
from rag.index.store import FAISS, ChunkStore, LocalStore, store_kind
from rag.index.table import ChunkTable
from rag.index.vectors import FaissStore

# 2: the chunk table moved from one chunks.json to rag/index/table.py's three files
from rag.index.versions import SCHEMA_VERSION, _manifest_head, current_version
from rag.index.workers import embed_text, embed_title
from rag.ingest.planted import flags_in, planted_spans
from rag.types import PROVENANCE, Chunk, DocMeta

# --------------------------------------------------------------------------- reading
_PAGE = re.compile(r"第(\d+)页")
_ROW = re.compile(r"(.*) 第(\d+)行")


class HybridIndex:
    """One loaded, immutable version of the index."""

    def __init__(self, folder: Path, manifest: dict, table: ChunkTable, bm25: BM25Index, vectors):
        self.folder = folder
        self.manifest = manifest
        self.table = table
        self.ids: list[str] = table.ids
        self.doc_ids: list[str] = table.doc_ids
        self.starts: list[int] = table.starts
        self.ends: list[int] = table.ends
        self.texts: Sequence[str] = table.texts
        self.bm25 = bm25
        # the dense vectors: a FaissStore of this folder, or the Milvus collection
        self.vectors = vectors
        self._doc_rows: dict[str, list[int]] | None = None
        # what retrieval searches (rag/index/store.py): both answer in rows of this table
        self.store: ChunkStore
        if vectors.kind == FAISS:
            self.store = LocalStore(vectors, bm25, self.doc_rows)
        else:
            vectors.bind(self.ids, self.row_of, bm25, self.n_embedded)
            self.store = vectors
        # the few documents the answerers are reading now: a question reads the same
        # ones for its candidates' paragraphs, speakers and subjects (this version never
        # changes, so nothing goes stale)
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._texts_lock = threading.Lock()

    @functools.cached_property
    def row_of(self) -> dict[str, int]:
        """Row number of every chunk id."""
        return {cid: i for i, cid in enumerate(self.ids)}

    @property
    def n_embedded(self) -> int:
        """Rows with a dense vector: the first `n_embedded` rows of the chunk table.

        A large ingest makes its chunks searchable by keyword before their vectors exist
        (rag/index/build.py): the rows past this one are found by BM25 alone until a
        later version fills their vectors in.
        """
        return int(self.manifest.get("n_embedded", len(self.ids)))

    def pending_vectors(self) -> dict[str, int]:
        """Per document, its chunks still waiting for a vector (none listed: all have one)."""
        return dict(Counter(self.doc_ids[self.n_embedded :]))

    def fill_failure(self, doc_id: str | None = None) -> str | None:
        """Why the last background fill of this index's vectors failed (rag.index.fill_status);
        None when it did not. `doc_id` is for a view over several indexes."""
        return last_failure(self.folder.parent)

    def embed_inputs(self, rows: Sequence[int]) -> list[str]:
        """What the embedder was (or will be) given for these rows."""
        docs, doc_ids = self.docs, self.doc_ids
        return [embed_text(embed_title(docs[doc_ids[r]]), self.texts[r]) for r in rows]

    @property
    def segmenter(self) -> str:
        """The BM25 segmenter this index was built with ("jieba" or "rjieba")."""
        return self.bm25.segmenter

    def tokenize(self, text: str, normalized: bool = False) -> list[str]:
        """BM25 tokens of `text` as this index was tokenized (use this for its queries)."""
        return self.bm25.tokenize(text, normalized)

    @classmethod
    def open(cls, index_dir: str | Path, settings: Settings | None = None) -> HybridIndex:
        """Load the live version of the index in `index_dir`."""
        settings = settings or Settings()
        folder = current_version(Path(index_dir))
        if folder is None:
            raise IndexStoreError(
                f"{index_dir}: no index here yet; build one with `rag ingest PATH --index {index_dir}`"
            )
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            if manifest.get("schema_version") != SCHEMA_VERSION:
                raise IndexSchemaError(
                    f"{folder}: index schema {manifest.get('schema_version')} is not "
                    f"{SCHEMA_VERSION}; rebuild it with `rag ingest PATH --rebuild`"
                )
            table = ChunkTable.load(folder)
            n = len(table)
            unknown = set(table.doc_order) - manifest["docs"].keys()
            if unknown:
                raise IndexStoreError(
                    f"{folder}/chunks.json: chunks of {len(unknown)} documents the manifest "
                    f"does not list (e.g. {min(unknown)!r}); rebuild it with "
                    "`rag ingest PATH --rebuild`"
                )
            if not (folder / "texts.jsonl").is_file():
                raise IndexStoreError(
                    f"{folder}/texts.jsonl is missing; rebuild it with `rag ingest PATH --rebuild`"
                )
            segmenter = manifest.get("tokenizer", {}).get("name", LEGACY_SEGMENTER)
            if segmenter not in SEGMENTERS:
                raise IndexStoreError(
                    f"{folder}/manifest.json: unknown word segmenter {segmenter!r}; "
                    "rebuild it with `rag ingest PATH --rebuild`"
                )
            if importlib.util.find_spec(segmenter) is None:
                raise IndexStoreError(
                    f"{folder}: the index was built with the {segmenter} word segmenter, which "
                    f"is not installed: pip install {segmenter} (or rebuild it with "
                    "`rag ingest PATH --rebuild`)"
                )
            bm25 = BM25Index.load(folder, settings.bm25_k1, settings.bm25_b, segmenter)
            embedded = manifest.get("n_embedded", n)
            if not isinstance(embedded, int) or not 0 <= embedded <= n:
                raise IndexStoreError(
                    f"{folder}/manifest.json: n_embedded {embedded!r} is not a row count of "
                    f"its {n} chunks; rebuild it with `rag ingest PATH --rebuild`"
                )
            vectors = _open_vectors(folder, manifest, table, settings, embedded)
        except IndexStoreError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise IndexStoreError(
                f"{folder}: the index is damaged or was tampered with ({type(e).__name__}: {e}); "
                "rebuild it with `rag ingest PATH --rebuild`"
            ) from None
        if len(bm25) != n:
            raise IndexStoreError(f"{folder}: BM25 has {len(bm25)} rows for {n} chunks; rebuild")
        return cls(folder, manifest, table, bm25, vectors)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def docs(self) -> dict[str, dict]:
        return self.manifest["docs"]

    def chunk(self, row: int) -> Chunk:
        try:
            text = self.texts[row]
        except ValueError as e:  # chunk_texts.bin damaged after opening: name it, say the fix
            raise IndexStoreError(f"{e}; rebuild it with `rag ingest PATH --rebuild`") from None
        return Chunk(row, self.ids[row], self.doc_ids[row], text, self.starts[row], self.ends[row])

    def doc_meta(self, doc_id: str) -> DocMeta:
        """What citations show of a document (empty for an unknown id)."""
        d = self.docs.get(doc_id, {})
        meta = d.get("meta") or {}
        return DocMeta(
            title=d.get("title"),
            date=d.get("date"),
            author=d.get("author"),
            source_name=d.get("source_name"),
            source=d.get("source"),
            extra=tuple((k, meta[k]) for k in PROVENANCE if k in meta),
        )

    # metadata fields that say what a document is about: a question's constraint
    # (place, organisation, document number) is met by any of them for all its sentences
    LABEL_FIELDS = ("title", "source_name", "author")
    LABEL_META = ("issuer", "doc_number", "sheet", "caption")

    def doc_labels(self, doc_id: str) -> tuple[str, ...]:
        """The document's title, publisher, author, issuing body and number."""
        d = self.docs.get(doc_id, {})
        meta = d.get("meta") or {}
        values = [d.get(k) for k in self.LABEL_FIELDS] + [meta.get(k) for k in self.LABEL_META]
        return tuple(str(v) for v in values if v)

    @property
    def doc_order(self) -> list[str]:
        """Document ids in first-chunk order; the row order of `doc_bm25`."""
        return self.table.doc_order

    @functools.cached_property
    def doc_bm25(self) -> BM25Index:
        """BM25 over whole documents, derived from the chunk term counts (no re-segmenting)."""
        return self.bm25.grouped(self.table.doc_of_row, len(self.table.doc_order))

    def doc_rows(self, doc_id: str) -> list[int]:
        if self._doc_rows is None:
            rows: dict[str, list[int]] = {}
            for i, d in enumerate(self.doc_ids):
                rows.setdefault(d, []).append(i)
            self._doc_rows = rows
        return self._doc_rows.get(doc_id, [])

    def planted(self, doc_id: str) -> list[tuple[int, int, str]]:
        """Spans of the document's planted sentences (rag.ingest.planted), recorded at
        ingest; found now, once, for a document indexed before ingest recorded them."""
        d = self.docs.get(doc_id)
        if d is None:
            return []
        spans = d.get("planted")
        if spans is None:
            spans = d["planted"] = planted_spans(self.document_text(doc_id))
        return [tuple(s) for s in spans]

    def passage_flags(self, doc_id: str, start: int, end: int) -> tuple[str, ...]:
        """Why the passage at [start, end) of the document must not be taken at face value."""
        return flags_in(self.planted(doc_id), start, end)

    def location(self, doc_id: str, start: int, end: int) -> str:
        """Where [start, end) of the document is in its file ("第4页", "第3–4页",
        "工作表“预算” 第12行"), from the locations its loader recorded; "" if none."""
        locs = (self.docs.get(doc_id, {}).get("meta") or {}).get("locations") or []
        if not locs:
            return ""
        starts = [loc[0] for loc in locs]
        i = max(bisect.bisect_right(starts, start) - 1, 0)
        j = max(bisect.bisect_right(starts, max(start, end - 1)) - 1, 0)
        first, last = locs[i][1], locs[j][1]
        if first == last:
            return first
        a, b = _PAGE.fullmatch(first), _PAGE.fullmatch(last)
        if a and b:
            return f"第{a[1]}–{b[1]}页"
        a, b = _ROW.fullmatch(first), _ROW.fullmatch(last)
        if a and b and a[1] == b[1]:
            return f"{a[1]} 第{a[2]}–{b[2]}行"
        if "section" in locs[i][2:] + locs[j][2:]:  # across headings: where it starts
            return first or last
        return f"{first}至{last}"

    def is_ocr(self, doc_id: str, start: int, end: int) -> bool:
        """Whether any of [start, end) was read from a scan by OCR."""
        ocr = (self.docs.get(doc_id, {}).get("meta") or {}).get("ocr") or {}
        return any(s < end and start < e for _, s, e, *_ in ocr.get("lines") or [])

    TEXT_CACHE = 16  # documents

    def document_text(self, doc_id: str) -> str:
        """The whole (cleaned, original-script) text of a document, read lazily; the
        last `TEXT_CACHE` read are kept."""
        with self._texts_lock:
            if doc_id in self._texts:
                self._texts.move_to_end(doc_id)
                return self._texts[doc_id]
        text = self._read_text(doc_id)
        with self._texts_lock:
            self._texts[doc_id] = text
            while len(self._texts) > self.TEXT_CACHE:
                self._texts.popitem(last=False)
        return text

    def _read_text(self, doc_id: str) -> str:
        d = self.docs.get(doc_id)
        if d is None:
            raise KeyError(doc_id)
        path = self.folder / "texts.jsonl"
        try:
            with open(path, "rb") as f:
                f.seek(d["text_offset"])
                record = json.loads(f.readline())
            if record["doc_id"] != doc_id or not isinstance(record["text"], str):
                raise ValueError(f"the record at offset {d['text_offset']} is not {doc_id!r}")
            return record["text"]
        except (OSError, ValueError, KeyError, TypeError) as e:  # damaged or tampered with
            raise IndexStoreError(
                f"{path}: cannot read the text of {doc_id!r} ({type(e).__name__}: {e}); "
                "rebuild it with `rag ingest PATH --rebuild`"
            ) from None


def _open_vectors(
    folder: Path, manifest: dict, table: ChunkTable, settings: Settings, embedded: int
):
    """The version's vectors where its manifest says they are: vectors.faiss in the
    folder (the first `embedded` rows), or a Milvus collection (at `settings.store` when
    that names one)."""
    record = manifest.get("store") or {"kind": FAISS}
    dim = manifest["embedding"]["dim"]
    wanted = store_kind(settings.store)
    if record["kind"] == FAISS:
        if wanted != FAISS:
            raise IndexStoreError(
                f"{folder.parent}：这个索引的向量在本地 FAISS 文件中，不在 {settings.store}；"
                f"请先搬过去：rag index copy --from {folder.parent} --to {settings.store}"
            )
        return FaissStore.load(
            folder,
            table.ids[:embedded],
            table.doc_ids[:embedded],
            dim,
            ann_min=settings.ann_min_chunks,
            hnsw_m=settings.hnsw_m,
            ef_search=settings.hnsw_ef_search,
        )
    from rag.index.milvus import MilvusStore  # pymilvus only for an index that uses it

    uri = settings.store if wanted != FAISS else None
    return MilvusStore.open(record, uri, dim, ef_search=settings.hnsw_ef_search)


def warm_up_segmenter(index_dir: Path, background: bool = False) -> threading.Thread | None:
    """Load the word segmenter the index in `index_dir` was built with (its dictionary
    takes up to a second), optionally in a background thread while the index opens.

    The segmenter is read from the head of the manifest (written first), so this does
    not wait for the whole manifest to be parsed; any doubt means the legacy jieba.
    """

    def run() -> None:
        m = re.search(r'"tokenizer":\s*\{\s*"name":\s*"(\w+)"', _manifest_head(index_dir))
        with contextlib.suppress(Exception):
            get_segmenter(m.group(1) if m else LEGACY_SEGMENTER)

    if not background:
        run()
        return None
    # not a daemon: a process that exits while torch or the dictionary is still loading
    # would be killed mid-C++ ("terminate called without an active exception")
    t = threading.Thread(target=run, name="rag-segmenter-warm-up", daemon=False)
    t.start()
    return t
