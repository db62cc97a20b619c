"""The chunk table of one index version: ids, documents, spans and texts of every row.

Row i is row i of the FAISS index and of the BM25 matrix. On disk it is three files,
so that opening a 225k-chunk index costs a few arrays, not 165 MB of JSON:

    chunks.json       {"ids": [...], "docs": [...]}: chunk ids; document ids in first-row order
    chunks.npy        int64 (rows, 4): document (index into "docs"), start, end, text end byte
    chunk_texts.bin   every chunk's text, UTF-8, back to back; memory-mapped, decoded on access

Texts stay in the file until a row is read, so serving holds no 225k Python strings.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLUMNS_FILE, SPANS_FILE, TEXTS_FILE = "chunks.json", "chunks.npy", "chunk_texts.bin"


class TextColumn(Sequence[str]):
    """Chunk texts read from one UTF-8 blob by byte offsets (a read-only sequence of str)."""

    def __init__(self, blob: bytes | mmap.mmap, ends: np.ndarray, path: Path | None = None):
        self._blob, self._ends, self._path = blob, ends, path

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, row):  # type: ignore[override]
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = range(len(self))[row]  # IndexError and negative rows as for a list
        a = int(self._ends[row - 1]) if row else 0
        try:
            return self._blob[a : int(self._ends[row])].decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{self._path}: row {row} is not UTF-8 ({e.reason})") from None

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


@dataclass
class ChunkTable:
    ids: list[str]
    doc_ids: list[str]  # per row
    starts: list[int]
    ends: list[int]
    texts: Sequence[str]
    doc_order: list[str]  # distinct documents in first-row order (whole-document BM25 rows)
    doc_of_row: np.ndarray  # int64: each row's position in doc_order

    @classmethod
    def build(cls, ids, doc_ids, starts, ends, texts) -> ChunkTable:
        cols = [list(ids), list(doc_ids), list(starts), list(ends), list(texts)]
        if len({len(c) for c in cols}) != 1:
            raise ValueError(f"chunk columns differ in length: {[len(c) for c in cols]}")
        pos: dict[str, int] = {}
        doc_of_row = np.fromiter((pos.setdefault(d, len(pos)) for d in cols[1]), np.int64)
        return cls(*cols, doc_order=list(pos), doc_of_row=doc_of_row)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: Sequence[int]) -> ChunkTable:
        """These rows, in this order."""
        cols = (self.ids, self.doc_ids, self.starts, self.ends, self.texts)
        return ChunkTable.build(*([c[i] for i in rows] for c in cols))

    def extend(self, other: ChunkTable) -> ChunkTable:
        """This table's rows followed by `other`'s."""
        return ChunkTable.build(
            self.ids + other.ids,
            self.doc_ids + other.doc_ids,
            self.starts + other.starts,
            self.ends + other.ends,
            [*self.texts, *other.texts],
        )

    # persistence ---------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the three files (the caller fsyncs the folder)."""
        enc = [t.encode("utf-8") for t in self.texts]
        spans = np.empty((len(self), 4), np.int64)
        spans[:, 0] = self.doc_of_row
        spans[:, 1] = self.starts
        spans[:, 2] = self.ends
        spans[:, 3] = np.cumsum([len(b) for b in enc], dtype=np.int64)
        (folder / TEXTS_FILE).write_bytes(b"".join(enc))
        np.save(folder / SPANS_FILE, spans, allow_pickle=False)
        cols = {"ids": self.ids, "docs": self.doc_order}
        (folder / COLUMNS_FILE).write_text(json.dumps(cols, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> ChunkTable:
        """Open the table; raises ValueError naming the file when it is damaged."""
        cols = json.loads((folder / COLUMNS_FILE).read_text(encoding="utf-8"))
        ids, docs = cols["ids"], cols["docs"]
        if not (isinstance(ids, list) and isinstance(docs, list)):
            raise ValueError(f"{folder / COLUMNS_FILE}: ids and docs must be lists")
        spans = np.load(folder / SPANS_FILE, allow_pickle=False)  # 32 bytes a row
        n = len(ids)
        if spans.dtype != np.int64 or spans.shape != (n, 4):
            raise ValueError(
                f"{folder / SPANS_FILE}: shape {spans.shape} {spans.dtype}, expected ({n}, 4) int64"
            )
        doc_of_row, text_end = spans[:, 0], spans[:, 3]
        path = folder / TEXTS_FILE
        size = path.stat().st_size
        if n and (
            doc_of_row.min() < 0
            or doc_of_row.max() >= len(docs)
            or (np.diff(text_end) < 0).any()
            or text_end[0] < 0
            or (spans[:, 1] > spans[:, 2]).any()
        ):
            raise ValueError(f"{folder / SPANS_FILE}: rows point outside the table")
        if (int(text_end[-1]) if n else 0) != size:
            raise ValueError(
                f"{path}: {size} bytes, the table expects {int(text_end[-1]) if n else 0}"
            )
        blob: bytes | mmap.mmap = b""
        if size:
            with open(path, "rb") as f:  # the mapping outlives the file object
                blob = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return cls(
            ids=ids,
            doc_ids=[docs[i] for i in doc_of_row.tolist()],
            starts=spans[:, 1].tolist(),
            ends=spans[:, 2].tolist(),
            texts=TextColumn(blob, text_end, path),
            doc_order=docs,
            doc_of_row=doc_of_row,
        )
