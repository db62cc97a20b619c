"""Fuzzing the loaders, the cleaner and the chunker with random bytes and random Unicode.

Hypothesis generates the inputs with `derandomize=True`: the same examples on every run,
so a failure in CI is repeatable. `RAG_FUZZ_EXAMPLES=N` runs N examples per test instead
(e.g. 5000 for a long local run); `RAG_FUZZ_SEED=S` draws a fresh random sequence.

The contract under test: a loader returns documents or raises `LoadError` (our clear error,
naming the file, one line) and nothing else; the cleaner keeps lines verbatim; the chunker's
spans lie inside the text, are never longer than the chunk size and cover every non-blank
character. Every call must also be fast: a slow example is a regular expression that
backtracks and will hang on a longer input (two such were found, see docs/reliability.md).
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from rag.errors import LoadError
from rag.index.segment import tokenize
from rag.ingest.chunking import chunk_id, chunk_spans, split_sentences
from rag.ingest.clean import clean_text
from rag.ingest.decode import _norm_newlines, decode_bytes
from rag.ingest.loaders import BINARY_FORMATS, SUPPORTED, Document, load_file
from rag.textnorm import normalize

EXAMPLES = int(os.environ.get("RAG_FUZZ_EXAMPLES", "0"))
SLOW_S = 5.0  # per example; real inputs of this size take milliseconds


def fuzz(n: int):
    """Hypothesis settings for one test: `n` examples (or $RAG_FUZZ_EXAMPLES), repeatable."""
    fresh = os.environ.get("RAG_FUZZ_SEED")
    s = settings(
        max_examples=EXAMPLES or n,
        deadline=None,  # timing is asserted explicitly, with a bound a busy CI box meets
        derandomize=fresh is None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    return (lambda f: seed(int(fresh))(s(f))) if fresh else s


# --------------------------------------------------------------------------- inputs

# Pieces that hit the decoders' and parsers' branches: BOMs, NULs, legacy CJK lead bytes,
# lone continuation bytes, markup, front matter, line breaks.
BYTE_PIECES = [
    b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00", b"\x00", b"\x00\x00",
    b"\x80", b"\xa1\xa1", b"\xb4\xde", b"\xa4\xa4", b"\x81\x30\x81\x30", b"\xe5\xb4\x82",
    b"\xc3", b"\xed\xa0\x80", b"\r\n", b"\n", b"\r", b"\t", b" ", b"abc", b"123",
    "崂山区".encode(), "嶗山區".encode("big5"), "崂山区".encode("gbk"),
    "崂山".encode("utf-16-le"), b"<p>", b"</div>", b"<!--", b"<![CDATA[", b"<?", b"&#x0;",
    b"---\n", b"# ", b"title: x\n", b'{"text": "', b'"}\n', b"%PDF-1.4\n", b"PK\x03\x04",
]  # fmt: skip
TEXT_PIECES = [
    "a", "字", "首页", "/", "|", " ", "\t", "\u3000", "。", "，", "！", "!", "?", "…", "...",
    ".", "\n", "\n\n", "\r\n", "#", "<", ">", "<p>", "</p>", "<!--", "-->", "---", "[详细]",
    "版权所有", "责任编辑：", "2023-01-02", "12", "(qū)", "（注）", "”", "\ufeff", "𠀀",
    "Ａ", "ﬁ", "\u200b", "\u2028", "e\u0301",
]  # fmt: skip

hostile_bytes = st.one_of(
    st.binary(max_size=3000),
    st.lists(st.sampled_from(BYTE_PIECES), max_size=300).map(b"".join),
)
any_text = st.text(max_size=3000)  # every code point except surrogates
piece_text = st.lists(st.sampled_from(TEXT_PIECES), max_size=600).map("".join)
# A short unit repeated many times, then a tail: the shape that makes a backtracking
# pattern blow up ("a//" * 14 + "aaaaaaa" took 56 s in the cleaner's menu rule).
repeated_text = st.builds(
    lambda unit, n, tail: unit * n + tail,
    st.lists(st.sampled_from(TEXT_PIECES), min_size=1, max_size=3).map("".join),
    st.integers(2, 1500),
    st.text(max_size=8),
)
hostile_text = st.one_of(any_text, piece_text, repeated_text)
# Text a UTF-8 .txt file can hold without being taken for binary data.
printable_text = st.text(
    st.one_of(st.characters(blacklist_categories=("Cs", "Cc")), st.sampled_from("\t\n\r\x0b\x0c ")),
    max_size=2000,
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def seeds(fuzz_dir) -> dict[str, bytes]:
    """Small valid PDF and DOCX files to mutate (the parsers reject pure noise at once)."""
    import docx
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.setTitle("培训报告")
    for page in ("威海市安全生产培训班", "第二页：嶗山區動員大會 2023"):
        c.setFont("STSong-Light", 14)
        c.drawString(72, 760, page)
        c.showPage()
    c.save()
    d = docx.Document()
    d.add_heading("威海市培训通知", level=1)
    d.add_paragraph("各区市应急管理局：特此通知。")
    d.add_table(rows=1, cols=2).cell(0, 0).text = "张三"
    path = fuzz_dir / "seed.docx"
    d.save(str(path))
    return {".pdf": buf.getvalue(), ".docx": path.read_bytes()}


def check_load(path: Path) -> list[Document]:
    """Load `path`; anything but documents or a one-line LoadError naming it fails the test."""
    t0 = time.perf_counter()
    try:
        # OCR off: a damaged page whose text layer is lost would be read by OCR at a few
        # seconds a page; the parsers' robustness is what is fuzzed (OCR: test_office_files)
        docs = load_file(path, path.parent, ocr=False)
    except LoadError as e:
        assert e.path == str(path) or e.path.startswith(str(path.with_suffix("")))
        assert e.reason and "\n" not in e.reason and "Traceback" not in e.reason
        docs = []
    else:
        assert docs
        for d in docs:
            assert isinstance(d.text, str) and d.text.strip()
            # a text file names its encoding; a binary format (PDF, DOCX ...) has none
            assert d.doc_id and len(d.file_hash) == 64
            assert bool(d.encoding) == (d.format not in BINARY_FORMATS)
            assert isinstance(d.meta.get("title"), str) and d.meta.title.strip()
    assert time.perf_counter() - t0 < SLOW_S, f"{path.name}: slow on {path.read_bytes()[:80]!r}"
    return docs


# --------------------------------------------------------------------------- loaders


@fuzz(400)
@given(data=hostile_bytes)
def test_decode_bytes_returns_text_or_a_clear_error(data):
    t0 = time.perf_counter()
    try:
        text, encoding = decode_bytes(data, name="fuzz.txt")
    except LoadError as e:
        assert e.path == "fuzz.txt" and e.reason and "\n" not in e.reason
    else:
        assert isinstance(text, str) and "\x00" not in text
        assert encoding == encoding.lower() and encoding
    assert time.perf_counter() - t0 < SLOW_S


@fuzz(400)
@given(ext=st.sampled_from(sorted(SUPPORTED)), data=hostile_bytes)
def test_random_bytes_in_every_format(fuzz_dir, ext, data):
    path = fuzz_dir / f"random{ext}"
    path.write_bytes(data)
    check_load(path)


@fuzz(300)
@given(
    ext=st.sampled_from([".txt", ".md", ".markdown", ".html", ".htm", ".jsonl"]), text=hostile_text
)
def test_random_unicode_in_text_formats(fuzz_dir, ext, text):
    path = fuzz_dir / f"unicode{ext}"
    path.write_text(text, encoding="utf-8")
    check_load(path)


@fuzz(300)
@given(text=printable_text)
def test_printable_utf8_text_round_trips_exactly(fuzz_dir, text):
    path = fuzz_dir / "exact.txt"
    path.write_bytes(text.encode("utf-8"))
    expected = _norm_newlines(text).lstrip("\ufeff")
    docs = check_load(path)
    if expected.strip():
        assert [d.text for d in docs] == [expected]
    else:
        assert docs == []


@fuzz(150)
@given(
    ext=st.sampled_from([".pdf", ".docx"]),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=12),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_damaged_pdf_and_docx(fuzz_dir, seeds, ext, flips, cut):
    data = bytearray(seeds[ext])
    for where, value in flips:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    path = fuzz_dir / f"damaged{ext}"
    path.write_bytes(bytes(data))
    check_load(path)


@fuzz(40)
@given(
    names=st.lists(
        st.sampled_from(["word/document.xml", "[Content_Types].xml", "../evil", "/abs"]),
        max_size=4,
        unique=True,
    )
)
def test_zip_archives_named_docx(fuzz_dir, names):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, name in enumerate(names):
            zf.writestr(name, f"<w:document>{i}</w:document>")
    path = fuzz_dir / "archive.docx"
    path.write_bytes(buf.getvalue())
    check_load(path)
    assert not (fuzz_dir.parent / "evil").exists()  # nothing is extracted anywhere


# --------------------------------------------------------------------------- cleaner


@fuzz(400)
@given(text=hostile_text)
def test_cleaner_keeps_lines_verbatim(text):
    t0 = time.perf_counter()
    cleaned = clean_text(text)
    assert time.perf_counter() - t0 < SLOW_S, repr(text[:200])
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = [ln for ln in cleaned.text.split("\n") if ln]
    it = iter(lines)  # kept lines are the input's own lines, in order
    assert all(any(k == ln for ln in it) for k in kept)
    assert cleaned.kept_lines == len(kept)
    for d in cleaned.dropped:
        assert lines[d.line_no - 1] == d.text and d.reason


# --------------------------------------------------------------------------- chunker


@fuzz(400)
@given(
    text=hostile_text,
    size=st.integers(20, 400),
    overlap=st.integers(0, 3),
)
def test_chunks_cover_the_text_within_the_size(text, size, overlap):
    t0 = time.perf_counter()
    spans = chunk_spans(text, size, overlap)
    assert time.perf_counter() - t0 < SLOW_S
    covered = bytearray(len(text))
    prev_start = -1
    for s, e in spans:
        assert 0 <= s < e <= len(text)
        assert e - s <= size
        assert text[s:e] == text[s:e].strip() != ""  # no blank chunk, no blank edges
        assert s > prev_start  # every chunk makes progress
        prev_start = s
        covered[s:e] = b"\x01" * (e - s)
    assert all(covered[i] or c.isspace() for i, c in enumerate(text))
    for s, e in split_sentences(text):
        assert text[s:e] == text[s:e].strip() and e > s
    assert [chunk_id("d", s, e, text[s:e]) for s, e in spans] == [
        chunk_id("d", s, e, text[s:e]) for s, e in chunk_spans(text, size, overlap)
    ]


@fuzz(200)
@given(text=hostile_text)
def test_text_path_of_ingest_never_fails(text):
    """Cleaned text -> chunks -> normalised, tokenised passages, as `rag.index.build.ingest` does."""
    body = clean_text(text).text
    for s, e in chunk_spans(body, 300, 1):
        n = normalize(body[s:e])
        assert len(n.text) == len(n.offsets)
        assert all(0 <= o < e - s for o in n.offsets)
        assert n.offsets == sorted(n.offsets)
        assert all(isinstance(t, str) and t for t in tokenize(n.text, normalized=True))
