"""Sentence-aware chunking for Chinese, with offsets into the original text.

Written here rather than using llama-index's SentenceSplitter because that splitter
measures tokens with an English tokenizer and does not keep character offsets through
its merges; citations need exact [start, end) spans of the original.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from rag.ingest.tables import CELL_SEP, is_row
from rag.types import Chunk

# A sentence ends at 。！？!?；; or …… (plus any closing quotes/brackets), or at a line break.
SENTENCE_END = re.compile(r"(?:[。！？!?；;]+|…+|\.{3,})[”’」』）)\]】〕》〉\"']*|\n+")
_SOFT_BREAK = re.compile(r"[，,、：:]")


class Span(NamedTuple):
    start: int
    end: int


def split_sentences(text: str) -> list[Span]:
    """Sentence spans of `text`; white space between sentences belongs to no span.

    A table row's line (rag.ingest.tables.is_row) is one span whatever its cells say:
    "建设内容：新建道路。改造管网。｜计划投资（万元）：42602.1" is one record, and a
    quote or a chunk cut at the 。 would part the project from its figure.
    """
    if CELL_SEP not in text:
        return _sentences(text, 0, len(text))
    spans: list[Span] = []
    pos = 0
    while pos <= len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        if is_row(text[pos:end]):
            _append_stripped(text, pos, end, spans)
        else:
            spans.extend(_sentences(text, pos, end))
        pos = end + 1
    return spans


def _sentences(text: str, start: int, end: int) -> list[Span]:
    spans: list[Span] = []
    pos = start
    for m in SENTENCE_END.finditer(text, start, end):
        stop = m.end() if not m.group().startswith("\n") else m.start()
        _append_stripped(text, pos, stop, spans)
        pos = m.end()
    _append_stripped(text, pos, end, spans)
    return spans


def _append_stripped(text: str, start: int, end: int, out: list[Span]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        out.append(Span(start, end))


def _split_long(text: str, span: Span, size: int) -> list[Span]:
    """Break a sentence longer than `size` at commas (a table row between its cells), or
    hard at `size` without them.

    Parts are trimmed like sentences: a cut inside a long run of blanks would otherwise
    make chunks of nothing but white space, which were embedded and indexed.
    """
    parts: list[Span] = []
    start = span.start
    row = is_row(text[span.start : span.end])
    while span.end - start > size:
        window = text[start : start + size]
        # a row is cut between cells, never between a header and its value
        cut = window.rfind(CELL_SEP) + 1 if row else 0
        if cut < size // 3:
            cut = max((m.end() for m in _SOFT_BREAK.finditer(window)), default=0)
        if cut < size // 3:  # no usable comma: hard cut
            cut = size
        _append_stripped(text, start, start + cut, parts)
        start += cut
    _append_stripped(text, start, span.end, parts)
    return parts


def chunk_spans(text: str, size: int = 300, overlap: int = 1) -> list[Span]:
    """Pack whole sentences into chunks of about `size` characters.

    Each chunk after the first starts with the last `overlap` sentences of the previous
    chunk (when they fit), so a fact split across a boundary is still found whole.
    """
    if size < 20:
        raise ValueError(f"chunk_size {size} is too small (use at least 20 characters)")
    sents: list[Span] = []
    for s in split_sentences(text):
        sents.extend(_split_long(text, s, size) if s.end - s.start > size else [s])
    chunks: list[Span] = []
    i = 0
    while i < len(sents):
        j = i
        while j < len(sents) and (j == i or sents[j].end - sents[i].start <= size):
            j += 1
        chunks.append(Span(sents[i].start, sents[j - 1].end))
        if j >= len(sents):
            break
        # Back up `overlap` sentences, but always make progress.
        nxt = max(j - overlap, i + 1)
        if sents[j].end - sents[nxt].start > size:  # overlap would not fit with the next
            nxt = j
        i = nxt
    return chunks


def chunk_id(doc_id: str, start: int, end: int, text: str) -> str:
    """Content-hash id: the same text at the same place gets the same id on every build."""
    h = hashlib.sha1(f"{doc_id}\x00{start}\x00{end}\x00{text}".encode()).hexdigest()
    return h[:20]


def chunk_document(doc_id: str, text: str, size: int = 300, overlap: int = 1) -> list[Chunk]:
    """One document's chunks with content-hash ids and offsets into `text`.

    `row` is the chunk's position within the document; the index renumbers rows.
    """
    return [
        Chunk(i, chunk_id(doc_id, start, end, text[start:end]), doc_id, text[start:end], start, end)
        for i, (start, end) in enumerate(chunk_spans(text, size, overlap))
    ]
